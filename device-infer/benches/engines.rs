//! The edge engines' overhead: batch-1 latency of each `engine::Classify` implementation against
//! the raw call it wraps, on the committed LeNet5-like (`tests/golden/lenet5-like`), one thread,
//! in the same run. Raw tract is what an application would write itself: u8 pixels to a float
//! tensor, `plan.run`, read the output; the raw int8 model is `quantize_input` + `run_in_place`.
//!
//! The two sides run interleaved, in alternating blocks, so that drift of the machine (clock,
//! other load) falls on both; the spread of the per-block ratios, and raw tract timed against a
//! second plan of itself, say what "no difference" means.
//!
//!     cargo bench -p device-infer --features tract --bench engines

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use device_infer::engine::{Classify, Int8, ModelFile, Tract};
use tract_onnx::prelude::*;

const BLOCKS: usize = 30;
const PER_BLOCK: usize = 500;

/// A '7': a horizontal and a slanted stroke (the kernels' time does not depend on the pixels).
fn seven() -> Vec<u8> {
    (0..784)
        .map(|i| {
            let (y, x) = (i / 28, i % 28);
            if (y == 6 && (6..22).contains(&x)) || ((7..24).contains(&y) && x == 21 - (y - 7) / 2) {
                255
            } else {
                0
            }
        })
        .collect()
}

fn raw_tract(path: &Path) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 1, 28, 28]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap()
}

fn raw_tract_run(plan: &Arc<TypedRunnableModel>, pixels: &[u8]) -> usize {
    let x: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let t = Tensor::from_shape(&[1, 1, 28, 28], &x).unwrap();
    let out = plan.run(tvec!(t.into())).unwrap();
    let t = &out[0];
    // Read the output as the caller would (f32 logits or int8 codes) and take the argmax.
    if let Ok(v) = t.to_plain_array_view::<f32>() {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0
    } else {
        let v: Vec<i8> = t
            .to_plain_array_view::<i8>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        device_infer::argmax(&v)
    }
}

/// Median and p99 in microseconds of each side, interleaved block by block, and the
/// spread (min..max) of the per-block ratio of medians.
fn duel(mut a: impl FnMut(), mut b: impl FnMut()) -> ([f64; 2], [f64; 2], (f64, f64)) {
    for _ in 0..PER_BLOCK {
        a();
        b();
    }
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut(), out: &mut Vec<f64>| {
        let start = out.len();
        for _ in 0..PER_BLOCK {
            let t = Instant::now();
            f();
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mut block = out[start..].to_vec();
        block.sort_by(f64::total_cmp);
        block[block.len() / 2]
    };
    for i in 0..BLOCKS {
        let (ma, mb) = if i % 2 == 0 {
            let ma = time(&mut a, &mut ta);
            (ma, time(&mut b, &mut tb))
        } else {
            let mb = time(&mut b, &mut tb);
            (time(&mut a, &mut ta), mb)
        };
        ratios.push(ma / mb);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    ratios.sort_by(f64::total_cmp);
    (
        [pct(&mut ta, 0.5), pct(&mut ta, 0.99)],
        [pct(&mut tb, 0.5), pct(&mut tb, 0.99)],
        (ratios[0], ratios[ratios.len() - 1]),
    )
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/lenet5-like");
    let pixels = seven();
    println!(
        "batch 1, one thread, {BLOCKS} interleaved blocks of {PER_BLOCK} runs per side; LeNet5-like ({})",
        dir.display()
    );
    println!(
        "| engine | through Classify: p50 / p99 (us) | raw call: p50 / p99 (us) | ratio of medians | per-block ratio range |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, r: ([f64; 2], [f64; 2], (f64, f64))| {
        println!(
            "| {name} | {:.2} / {:.2} | {:.2} / {:.2} | {:.3} | {:.3} .. {:.3} |",
            r.0[0],
            r.0[1],
            r.1[0],
            r.1[1],
            r.0[0] / r.1[0],
            r.2.0,
            r.2.1
        );
    };

    let file = ModelFile::read(&dir.join("model.lnq8")).unwrap();
    let mut engine = Int8::new(&file).unwrap();
    let raw = device_infer::Model::from_bytes(file.bytes()).unwrap();
    let mut arena = vec![0i8; raw.arena_len()];
    row(
        "int8 (device model)",
        duel(
            || {
                black_box(engine.classify(black_box(&pixels)).unwrap().class);
            },
            || {
                let slot = raw.input_slot(&mut arena).unwrap();
                raw.quantize_input(black_box(&pixels), slot).unwrap();
                let out = raw.run_in_place(&mut arena, |_, _| {}).unwrap();
                black_box(device_infer::argmax(out));
            },
        ),
    );

    for (name, onnx) in [
        ("tract, float ONNX", "model.onnx"),
        ("tract, int8 ONNX", "model.int8.onnx"),
    ] {
        let path = dir.join(onnx);
        let mut engine = Tract::load(&path).unwrap();
        let plan = raw_tract(&path);
        assert_eq!(
            engine.classify(&pixels).unwrap().class,
            raw_tract_run(&plan, &pixels),
            "{name}: the engine and raw tract disagree"
        );
        // The noise floor: raw tract against itself (a second plan of the same file).
        let plan2 = raw_tract(&path);
        row(
            &format!("{name}: raw vs raw (noise)"),
            duel(
                || {
                    black_box(raw_tract_run(&plan2, black_box(&pixels)));
                },
                || {
                    black_box(raw_tract_run(&plan, black_box(&pixels)));
                },
            ),
        );
        row(
            name,
            duel(
                || {
                    black_box(engine.classify(black_box(&pixels)).unwrap().class);
                },
                || {
                    black_box(raw_tract_run(&plan, black_box(&pixels)));
                },
            ),
        );
    }
}
