//! The integer verification graph (`export::integer_onnx`) run by tract reproduces
//! device-infer bit for bit on random models that use every layer kind and option the device
//! format has: fused max and average pooling, tables, standalone pools with padding, odd
//! and non-square kernels, strides, positive and negative shifts, clamps, dense after conv
//! and after dense.

use device_infer::kernels::{Clamp, Dims, Pool2x2, window_out};
use device_infer::model::Kind;
use device_infer::writer::{AlignedBytes, LayerSpec, ModelSpec, write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn i8s(&mut self, n: usize, lo: i64) -> Vec<i8> {
        (0..n).map(|_| self.range(lo, 127) as i8).collect()
    }
}

/// Per-channel constants of a layer with `oc` outputs: multipliers in `[2^30, 2^31)`, shifts
/// mostly negative with a positive one now and then, a zero point, a clamp (ReLU half the
/// time), a table a third of the time.
fn constants(r: &mut Rng, l: &mut LayerSpec, oc: usize, fan_in: usize) {
    l.weights = r.i8s(oc * fan_in, -127);
    l.bias = (0..oc).map(|_| r.range(-5000, 5000) as i32).collect();
    l.multiplier = (0..oc)
        .map(|_| r.range(1 << 30, (1i64 << 31) - 1) as i32)
        .collect();
    // Random sums have a spread of about sqrt(fan_in) * 70 * 70: a shift that brings them
    // to int8 range (+-64), and one channel in ten with a positive one (the
    // requantization's wrapping left shift; those outputs mostly saturate).
    let base = (6.0 - (3700.0 * (fan_in as f64).sqrt()).log2()).round() as i64;
    l.shift = (0..oc)
        .map(|_| match r.below(10) {
            0 => r.range(1, 3) as i8,
            _ => (base + r.range(-2, 2)).clamp(-31, 0) as i8,
        })
        .collect();
    let zo = r.range(-128, 20);
    l.output_offset = zo as i32;
    l.act = if r.below(2) == 0 {
        Clamp {
            min: zo as i8,
            max: 127,
        }
    } else {
        Clamp {
            min: r.range(-128, -100) as i8,
            max: r.range(90, 127) as i8,
        }
    };
    if r.below(3) == 0 {
        let mut t = [0i8; 256];
        for (i, v) in t.iter_mut().enumerate() {
            *v = ((i as i64 * 37 + r.range(0, 3)) % 256 - 128) as i8;
        }
        l.lut = Some(t);
    }
}

fn blank(kind: Kind, input: Dims, zp_in: i8) -> LayerSpec {
    let mut l = LayerSpec::pool(kind, (input, input), [1, 1], [1, 1], [0, 0], zp_in);
    l.output_offset = 0;
    l
}

/// A random valid model: conv (fused pool or none), a standalone pool, a second conv, dense,
/// dense.
fn random_model(r: &mut Rng) -> Option<ModelSpec> {
    let mut d = Dims {
        h: 6 + r.below(9),
        w: 6 + r.below(9),
        c: 1 + r.below(3),
    };
    let input_zero_point = r.range(-128, 0) as i8;
    let mut layers = Vec::new();
    let mut zp = input_zero_point;
    for step in 0..5 {
        let l = match step {
            0 | 2 => {
                let k = [1 + r.below(5), 1 + r.below(4)];
                let s = [1 + r.below(2), 1 + r.below(2)];
                let p = [r.below(k[0]), r.below(k[1])];
                let oc = 1 + r.below(9);
                let ch = window_out(d.h, k[0], s[0], 2 * p[0])?;
                let cw = window_out(d.w, k[1], s[1], 2 * p[1])?;
                let pool = [None, Some(Pool2x2::Max), Some(Pool2x2::Avg)][r.below(3)];
                let out = match pool {
                    None => Dims {
                        h: ch,
                        w: cw,
                        c: oc,
                    },
                    Some(_) if ch >= 2 && cw >= 2 => Dims {
                        h: ch / 2,
                        w: cw / 2,
                        c: oc,
                    },
                    Some(_) => return None,
                };
                let mut l = blank(Kind::Conv2d(pool), d, zp);
                (l.output, l.kernel, l.stride, l.padding) = (out, k, s, p);
                constants(r, &mut l, oc, k[0] * k[1] * d.c);
                l
            }
            1 => {
                let kind = [Kind::MaxPool, Kind::AvgPool][r.below(2)];
                let k = [1 + r.below(3), 1 + r.below(3)];
                let s = [1 + r.below(2), 1 + r.below(2)];
                let p = [r.below(k[0]), r.below(k[1])];
                let oh = window_out(d.h, k[0], s[0], 2 * p[0])?;
                let ow = window_out(d.w, k[1], s[1], 2 * p[1])?;
                // The device accepts fewer outputs than the windows allow.
                let out = Dims {
                    h: oh - r.below(2).min(oh - 1),
                    w: ow,
                    c: d.c,
                };
                let mut l = LayerSpec::pool(kind, (d, out), k, s, p, zp);
                if r.below(2) == 0 {
                    l.act = Clamp {
                        min: r.range(-128, -60) as i8,
                        max: r.range(60, 127) as i8,
                    };
                }
                l
            }
            _ => {
                let n = 2 + r.below(9);
                let mut l = blank(Kind::Dense, d, zp);
                l.output = Dims { h: 1, w: 1, c: n };
                constants(r, &mut l, n, d.len());
                l
            }
        };
        d = l.output;
        zp = l.output_offset as i8;
        layers.push(l);
    }
    Some(ModelSpec {
        input: layers[0].input,
        input_zero_point,
        input_multiplier: r.range(1 << 30, (1i64 << 31) - 1) as i32,
        input_shift: r.range(-1, 1) as i8,
        output_zero_point: zp,
        layers,
    })
}

#[test]
fn tract_runs_the_integer_graph_bit_for_bit_on_random_models() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut models, mut kinds) = (0, std::collections::BTreeSet::new());
    let (mut tables, mut varied) = (0, 0);
    while models < 40 {
        let Some(spec) = random_model(&mut r) else {
            continue;
        };
        let bytes = write(&spec);
        let aligned = AlignedBytes::new(&bytes);
        let m = device_infer::Model::from_bytes(aligned.as_bytes())
            .unwrap_or_else(|e| panic!("model {models}: {e}\n{spec:?}"));
        models += 1;
        for l in &spec.layers {
            kinds.insert(format!("{:?}", l.kind));
            tables += usize::from(l.lut.is_some());
        }
        let images: Vec<Vec<u8>> = (0..8)
            .map(|_| (0..spec.input.len()).map(|_| r.next() as u8).collect())
            .collect();
        let pixels: Vec<&[u8]> = images.iter().map(|v| &v[..]).collect();
        let ours = export::deploy::host_outputs(&m, &pixels).unwrap();
        let theirs = export::parity::tract_integer_outputs(&m, &pixels)
            .unwrap_or_else(|e| panic!("model {models}: {e:#}\n{spec:?}"));
        assert_eq!(ours, theirs, "model {models}: {spec:?}");
        let distinct: std::collections::BTreeSet<i8> = ours.iter().flatten().copied().collect();
        varied += usize::from(distinct.len() > 4);
    }
    // Most models are not saturated: their outputs take several values.
    assert!(
        varied >= 30,
        "{varied} of {models} models with varied outputs"
    );
    for k in [
        "Conv2d(None)",
        "Conv2d(Some(Max))",
        "Conv2d(Some(Avg))",
        "MaxPool",
        "AvgPool",
        "Dense",
    ] {
        assert!(kinds.contains(k), "{k} not drawn: {kinds:?}");
    }
    assert!(tables > 5, "{tables} tables");
}

#[test]
fn a_zero_point_outside_int8_is_refused_with_the_layer() {
    let mut r = Rng(7);
    let spec = loop {
        if let Some(s) = random_model(&mut r) {
            break s;
        }
    };
    let mut spec = spec;
    // A uint8-style offset the device accepts (|offset| <= 255) but ConvInteger cannot take.
    spec.layers[3].input_offset = 200;
    let bytes = write(&spec);
    let aligned = AlignedBytes::new(&bytes);
    let m = device_infer::Model::from_bytes(aligned.as_bytes()).unwrap();
    let e = format!("{:#}", export::integer_onnx::integer_onnx(&m).unwrap_err());
    assert!(
        e.contains("layer 3") && e.contains("input offset 200"),
        "{e}"
    );
}
