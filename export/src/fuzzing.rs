//! The body of the `onnx_check` fuzz target (`fuzz/`), here so that plain `cargo test` replays
//! its committed regression inputs: read, check, report; on what checks, the float
//! interpreter and calibration + quantization on a few inputs. Panics only on a bug.

use crate::{check, float, graph, ops, quantize};

/// The largest graph input the harness runs (what checks may still be large).
pub const MAX_INPUT: usize = 1 << 16;

/// Runs `data` through everything `export check` and `export quantize` do.
pub fn onnx_check(data: &[u8]) {
    let Ok(g) = graph::parse(data) else { return };
    let Ok(a) = ops::analyse(&g) else { return };
    let r = check::report(&g, &a, None);
    assert!(!r.text.is_empty());
    let n: usize = g.input_shape.iter().product();
    if n == 0 || n > MAX_INPUT || !a.unsupported.is_empty() {
        return;
    }
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|k| {
            (0..n)
                .map(|i| ((i * 7 + k * 13) % 17) as f32 / 16.0)
                .collect()
        })
        .collect();
    if float::run(&g, &inputs[0]).is_err() {
        return;
    }
    if let Ok(ranges) = quantize::calibrate(&g, inputs.iter().map(|v| &v[..])) {
        let _ = quantize::quantize(&g, &ranges);
    }
}
