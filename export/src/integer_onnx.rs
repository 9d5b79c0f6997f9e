//! The device model as an integer-only ONNX graph, for a bit-exact check by an independent
//! runtime.
//!
//! `model.int8.onnx` ([`crate::qonnx`]) is the standard int8 form (`QLinearConv` with float
//! scales): a runtime rounds its requantization once, in floating point, where the device
//! rounds twice in fixed point (TFLite-Micro's rule), so tract's outputs differ from ours by
//! a least significant bit here and there. The graph built here spells out the device's
//! arithmetic itself with integer ONNX ops, from the constants the device model holds (its
//! int8 weights, int32 biases, Q31 multipliers and shifts, zero points, clamps and tables):
//!
//! - raw `u8` pixels `[1, H, W, C]` in, quantized as [`Model::quantize_pixel`];
//! - convolutions and dense layers as `ConvInteger` / `MatMulInteger` (int32 sums; the
//!   padding is an explicit `Pad` with the input zero point, which adds nothing to a sum of
//!   `(x - zp) * w`), plus the bias;
//! - the requantization `requantize(acc, multiplier, shift)` of [`device_infer::quant`] in
//!   uint64 `Mul`/`Add`/`Div`/`Less` on values lifted by constants (so nothing is negative,
//!   every division floors, and no runtime's convention for signed division matters; tract
//!   reads ONNX int64 arithmetic as symbolic dimensions, onnxruntime has no uint64 `Where`,
//!   so neither is used), then the output zero point and the activation clamp;
//! - sigmoid/tanh tables as `Gather`, max pooling as int8 `MaxPool` over an explicit `-128`
//!   padding, average pooling as an integer sum (`ConvInteger` with a 0/1 identity filter)
//!   divided with the kernels' rounding (half away from zero) by the count of valid inputs;
//! - int8 outputs `[1, N]` in the device's order.
//!
//! A runtime that computes these ops exactly (integer arithmetic has one right answer) must
//! then reproduce device-infer's outputs bit for bit: the accumulation, padding, pooling and
//! layout of our kernels are checked by someone else's code, and the rounding rule by a
//! second, independent spelling of it. tract does (`export/tests/integer_onnx.rs`, the
//! golden sets' `tract-exact` target, the full MNIST and CIFAR-10 test sets), and so does
//! onnxruntime (`bench/ort_integer.py`).

use anyhow::{Result, bail, ensure};
use protos::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    attribute_proto::AttributeType, tensor_proto::DataType,
};

use crate::qonnx::{ints, node, value};
use device_infer::Model;
use device_infer::kernels::{Dims, Pool2x2};
use device_infer::model::{Kind, Layer};

/// The graph input's name (`u8`, `[1, H, W, C]`).
pub const INPUT: &str = "pixels";
/// The graph output's name (`i8`, `[1, outputs]`).
pub const OUTPUT: &str = "outputs_int8";

/// Builds the integer-only ONNX graph of a validated device model.
pub fn integer_onnx(m: &Model) -> Result<ModelProto> {
    let mut b = Builder::default();
    let d = m.input_dims();
    // Pixels: the input quantization, one "channel".
    let (mult, shift, zp) = m.input_quantization();
    let px = b.op("Cast", &[INPUT], vec![int("to", DataType::Int32 as i64)]);
    let q = b.requant(
        &px,
        &Requant {
            multiplier: &[mult],
            shift: &[shift],
            dims: &[],
            offset: zp as i64,
            min: -128,
            max: 127,
        },
    )?;
    let nchw = b.op("Transpose", &[&q], vec![ints("perm", &[0, 3, 1, 2])]);
    let mut act = Act::Nchw(nchw, d);
    for i in 0..m.layers() {
        let l = m
            .layer_at(i)
            .map_err(|e| anyhow::anyhow!("layer {i}: {e}"))?;
        act = b
            .layer(act, &l)
            .map_err(|e| e.context(format!("layer {i} ({:?})", l.kind)))?;
    }
    let flat = b.flat(act);
    b.nodes
        .push(node("Identity", OUTPUT, &[flat], OUTPUT, Vec::new()));
    Ok(ModelProto {
        ir_version: 8,
        producer_name: "lenet-edge export (integer verification graph)".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "integer".into(),
            node: b.nodes,
            initializer: b.inits,
            input: vec![value(INPUT, DataType::Uint8, &[1, d.h, d.w, d.c])],
            output: vec![value(OUTPUT, DataType::Int8, &[1, m.outputs()])],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An activation: int8 NCHW with the device's dims, or int8 `[1, n]` in the device's (HWC)
/// order.
enum Act {
    Nchw(String, Dims),
    Flat(String, usize),
}

/// One requantization: per-channel `multiplier`/`shift` broadcast over `dims` (empty for a
/// scalar), then `+ offset` and the clamp to `[min, max]`.
struct Requant<'a> {
    multiplier: &'a [i32],
    shift: &'a [i8],
    dims: &'a [usize],
    offset: i64,
    min: i64,
    max: i64,
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    next: usize,
}

impl Builder {
    fn name(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{what}_{}", self.next)
    }

    /// A node with one output, named after its op.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.name(&op.to_lowercase());
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        self.nodes.push(node(op, &out, &inputs, &out, attrs));
        out
    }

    fn constant(&mut self, what: &str, dt: DataType, dims: &[usize], raw: Vec<u8>) -> String {
        let name = self.name(what);
        self.inits.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn i64s(&mut self, what: &str, dims: &[usize], v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(what, DataType::Int64, dims, raw)
    }

    fn u64s(&mut self, what: &str, dims: &[usize], v: &[u64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(what, DataType::Uint64, dims, raw)
    }

    fn f64s(&mut self, what: &str, dims: &[usize], v: &[f64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(what, DataType::Double, dims, raw)
    }

    fn i32s(&mut self, what: &str, dims: &[usize], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(what, DataType::Int32, dims, raw)
    }

    fn i8s(&mut self, what: &str, dims: &[usize], v: &[i8]) -> String {
        let raw = v.iter().map(|&x| x as u8).collect();
        self.constant(what, DataType::Int8, dims, raw)
    }

    fn cast(&mut self, x: &str, to: DataType) -> String {
        self.op("Cast", &[x], vec![int("to", to as i64)])
    }

    /// `clamp(x, min, max)` for an int32 `x`.
    fn clamp(&mut self, x: &str, min: i8, max: i8) -> String {
        let (lo, hi) = (
            self.i32s("min", &[], &[min as i32]),
            self.i32s("max", &[], &[max as i32]),
        );
        let x = self.op("Max", &[x, &lo], vec![]);
        self.op("Min", &[&x, &hi], vec![])
    }

    /// int32 accumulators -> int8: [`device_infer::quant::requantize`], offset, clamp.
    ///
    /// Written in `uint64` (tract reads ONNX `int64` arithmetic as symbolic dimensions), on
    /// values lifted by constants so that no intermediate is negative and every division
    /// floors; `x` enters as `x + 2^31` through `double` (exact for every int32).
    fn requant(&mut self, acc: &str, r: &Requant) -> Result<String> {
        let c = r.multiplier.len();
        ensure!(c == r.shift.len() && c > 0, "multipliers and shifts differ");
        ensure!(
            r.multiplier.iter().all(|&m| m >= 0),
            "a negative requantization multiplier"
        );
        ensure!(
            r.shift.iter().all(|&s| (-31..=30).contains(&s)),
            "a requantization shift outside -31..=30"
        );
        let dims = r.dims;
        // 1. x = acc << max(shift, 0), wrapping in 32 bits as the device does (a wrapping
        //    int32 Mul by 2^left), then xu = x + 2^31 in [0, 2^32).
        let mut x = acc.to_string();
        if r.shift.iter().any(|&s| s > 0) {
            let pow: Vec<i32> = r.shift.iter().map(|&s| 1i32 << s.clamp(0, 30)).collect();
            let p = self.i32s("left", dims, &pow);
            x = self.op("Mul", &[&x, &p], vec![]);
        }
        let xf = self.cast(&x, DataType::Double);
        let half_range = self.f64s("two31", &[], &[2f64.powi(31)]);
        let xf = self.op("Add", &[&xf, &half_range], vec![]);
        let xu = self.cast(&xf, DataType::Uint64);
        // 2. high = floor((x * m + 2^30) / 2^31) (the doubling high multiply; for m >= 0
        //    the same as TFLM's nudged, truncating form): with x * m = xu * m - 2^31 * m,
        //    xu * m + (2^62 + 2^30 - 2^31 * m) = x * m + 2^30 + 2^62 lies in (0, 2^63), and
        //    its floor over 2^31 is hu = high + 2^31.
        const TWO31: u64 = 1 << 31;
        let m: Vec<u64> = r.multiplier.iter().map(|&m| m as u64).collect();
        let k: Vec<u64> = m
            .iter()
            .map(|&m| (1u64 << 62) + (1 << 30) - TWO31 * m)
            .collect();
        let (mu, ku) = (
            self.u64s("multiplier", dims, &m),
            self.u64s("nudge", dims, &k),
        );
        let t = self.op("Mul", &[&xu, &mu], vec![]);
        let t = self.op("Add", &[&t, &ku], vec![]);
        let d31 = self.u64s("two31", &[], &[TWO31]);
        let hu = self.op("Div", &[&t, &d31], vec![]);
        // 3. rounding_divide_by_pot(high, right), d = 2^right: (high >> right) + (remainder >
        //    (d - 1) / 2 + [high < 0]) is floor((high + a) / d) with a = d / 2 for high >= 0
        //    and d / 2 - 1 for high < 0 (no rounding at all for d = 1). Lifted by L = 2^40, a
        //    multiple of every d: vu = floor((hu + a + L - 2^31) / d) = v + L / d.
        const L: u64 = 1 << 40;
        let d: Vec<u64> = r
            .shift
            .iter()
            .map(|&s| 1u64 << (-(s as i32)).clamp(0, 31))
            .collect();
        let lifted =
            |a: fn(u64) -> u64| -> Vec<u64> { d.iter().map(|&d| a(d) + L - TWO31).collect() };
        let a_pos = lifted(|d| if d == 1 { 0 } else { d / 2 });
        // a_neg = a_pos - step: written without `Where` (onnxruntime has no uint64 one).
        let step: Vec<u64> = d.iter().map(|&d| u64::from(d > 1)).collect();
        let (a_pos, step, du) = (
            self.u64s("round_pos", dims, &a_pos),
            self.u64s("round_step", dims, &step),
            self.u64s("pot", dims, &d),
        );
        let neg = self.op("Less", &[&hu, &d31], vec![]);
        let neg = self.cast(&neg, DataType::Uint64);
        let down = self.op("Mul", &[&neg, &step], vec![]);
        let a = self.op("Sub", &[&a_pos, &down], vec![]);
        let v = self.op("Add", &[&hu, &a], vec![]);
        let vu = self.op("Div", &[&v, &du], vec![]);
        // 4. y = clamp(v + offset, min, max), as y + 128 = clamp(vu, lo, hi) - s with
        //    b = L / d >= 512: lo = b - offset + min, hi = b - offset + max, s = b - offset
        //    - 128, all positive, and clamp(vu, lo, hi) >= lo >= s.
        let b: Vec<i64> = d.iter().map(|&d| (L / d) as i64).collect();
        let per = |f: &dyn Fn(i64) -> i64| -> Vec<u64> { b.iter().map(|&b| f(b) as u64).collect() };
        let lo = per(&|b| b - r.offset + r.min);
        let hi = per(&|b| b - r.offset + r.max);
        let sub = per(&|b| b - r.offset - 128);
        let (lo, hi, sub) = (
            self.u64s("min", dims, &lo),
            self.u64s("max", dims, &hi),
            self.u64s("unlift", dims, &sub),
        );
        let v = self.op("Max", &[&vu, &lo], vec![]);
        let v = self.op("Min", &[&v, &hi], vec![]);
        let y = self.op("Sub", &[&v, &sub], vec![]);
        let y = self.cast(&y, DataType::Int32);
        let k128 = self.i32s("k128", &[], &[128]);
        let y = self.op("Sub", &[&y, &k128], vec![]);
        Ok(self.cast(&y, DataType::Int8))
    }

    /// An int8 `[1, n]` view of an activation, in the device's HWC order.
    fn flat(&mut self, act: Act) -> String {
        match act {
            Act::Flat(x, _) => x,
            Act::Nchw(x, d) => {
                let t = self.op("Transpose", &[&x], vec![ints("perm", &[0, 2, 3, 1])]);
                let shape = self.i64s("shape", &[2], &[1, d.len() as i64]);
                self.op("Reshape", &[&t, &shape], vec![])
            }
        }
    }

    /// An NCHW view of an activation with the device's `dims`.
    fn nchw(&mut self, act: Act, dims: Dims) -> Result<String> {
        match act {
            Act::Nchw(x, d) => {
                ensure!(d == dims, "input {dims:?} after an output of {d:?}");
                Ok(x)
            }
            Act::Flat(x, n) => {
                ensure!(n == dims.len(), "input {dims:?} after {n} outputs");
                let shape = self.i64s(
                    "shape",
                    &[4],
                    &[1, dims.h as i64, dims.w as i64, dims.c as i64],
                );
                let r = self.op("Reshape", &[&x, &shape], vec![]);
                Ok(self.op("Transpose", &[&r], vec![ints("perm", &[0, 3, 1, 2])]))
            }
        }
    }

    /// Pads `x` (NCHW, `input` dims) on top/left by `pad` and on bottom/right by what the
    /// last of `need` windows of `k` with `stride` reaches, with `value`; returns the padded
    /// tensor and the number of windows an ONNX window op will produce on it.
    fn pad(
        &mut self,
        x: &str,
        input: Dims,
        l: &Layer,
        need: [usize; 2],
        value: i8,
    ) -> Result<(String, [usize; 2])> {
        let mut after = [0usize; 2];
        let mut windows = [0usize; 2];
        let size = [input.h, input.w];
        for a in 0..2 {
            ensure!(need[a] > 0, "no output");
            let reach = (need[a] - 1) * l.stride[a] + l.kernel[a];
            after[a] = reach.saturating_sub(size[a] + l.padding[a]);
            let total = size[a] + l.padding[a] + after[a];
            windows[a] = (total - l.kernel[a]) / l.stride[a] + 1;
        }
        if l.padding == [0, 0] && after == [0, 0] {
            return Ok((x.to_string(), windows));
        }
        let pads = self.i64s(
            "pads",
            &[8],
            &[
                0,
                0,
                l.padding[0] as i64,
                l.padding[1] as i64,
                0,
                0,
                after[0] as i64,
                after[1] as i64,
            ],
        );
        let v = self.i8s("pad_value", &[], &[value]);
        Ok((self.op("Pad", &[x, &pads, &v], vec![]), windows))
    }

    /// Crops an NCHW tensor of `have` windows to the `want` the device computes.
    fn crop(&mut self, x: String, have: [usize; 2], want: [usize; 2]) -> Result<String> {
        ensure!(
            have[0] >= want[0] && have[1] >= want[1],
            "{have:?} windows where the device computes {want:?}"
        );
        if have == want {
            return Ok(x);
        }
        let starts = self.i64s("starts", &[2], &[0, 0]);
        let ends = self.i64s("ends", &[2], &[want[0] as i64, want[1] as i64]);
        let axes = self.i64s("axes", &[2], &[2, 3]);
        Ok(self.op("Slice", &[&x, &starts, &ends, &axes], vec![]))
    }

    /// The input zero point of a layer, as the int8 a `ConvInteger` takes.
    fn zero_point(l: &Layer) -> Result<i8> {
        match i8::try_from(-l.input_offset) {
            Ok(z) => Ok(z),
            Err(_) => bail!(
                "input offset {} is no int8 zero point (ConvInteger needs one)",
                l.input_offset
            ),
        }
    }

    /// Sums of `k` windows per channel (int32), as `ConvInteger` with a 0/1 identity filter.
    fn window_sums(&mut self, x: &str, c: usize, k: [usize; 2], stride: [usize; 2]) -> String {
        let mut w = vec![0i8; c * c * k[0] * k[1]];
        for o in 0..c {
            w[(o * c + o) * k[0] * k[1]..][..k[0] * k[1]].fill(1);
        }
        let w = self.i8s("ones", &[c, c, k[0], k[1]], &w);
        self.op(
            "ConvInteger",
            &[x, &w],
            vec![ints("kernel_shape", &k), ints("strides", &stride)],
        )
    }

    /// `s / n` rounded half away from zero, `s` int32, `n` a positive int32 tensor (written
    /// on magnitudes so that the division is of non-negative numbers).
    fn rounded_mean(&mut self, s: &str, n: &str, half: &str) -> String {
        let zero = self.i32s("zero", &[], &[0]);
        let neg = self.op("Less", &[s, &zero], vec![]);
        let abs = self.op("Abs", &[s], vec![]);
        let up = self.op("Add", &[&abs, half], vec![]);
        let q = self.op("Div", &[&up, n], vec![]);
        let nq = self.op("Neg", &[&q], vec![]);
        self.op("Where", &[&neg, &nq, &q], vec![])
    }

    fn layer(&mut self, act: Act, l: &Layer) -> Result<Act> {
        let o = l.output;
        let act = match l.kind {
            Kind::Conv2d(pool) => {
                let x = self.nchw(act, l.input)?;
                let zp = Self::zero_point(l)?;
                let fused = if pool.is_some() { 2 } else { 1 };
                let need = [fused * o.h, fused * o.w];
                let (x, windows) = self.pad(&x, l.input, l, need, zp)?;
                // OHWI -> OIHW.
                let (kh, kw, c) = (l.kernel[0], l.kernel[1], l.input.c);
                ensure!(l.weights.len() == o.c * kh * kw * c, "weights length");
                let mut w = vec![0i8; l.weights.len()];
                for oc in 0..o.c {
                    for y in 0..kh {
                        for xx in 0..kw {
                            for ic in 0..c {
                                w[((oc * c + ic) * kh + y) * kw + xx] =
                                    l.weights[((oc * kh + y) * kw + xx) * c + ic];
                            }
                        }
                    }
                }
                let w = self.i8s("weights", &[o.c, c, kh, kw], &w);
                let z = self.i8s("x_zero_point", &[], &[zp]);
                let acc = self.op(
                    "ConvInteger",
                    &[&x, &w, &z],
                    vec![ints("kernel_shape", &l.kernel), ints("strides", &l.stride)],
                );
                let acc = self.crop(acc, windows, need)?;
                let bias = self.i32s("bias", &[o.c, 1, 1], l.bias);
                let acc = self.op("Add", &[&acc, &bias], vec![]);
                let y = self.requant(&acc, &layer_requant(l, &[o.c, 1, 1]))?;
                let y = self.table(y, l);
                let y = match pool {
                    None => y,
                    Some(Pool2x2::Max) => self.op(
                        "MaxPool",
                        &[&y],
                        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
                    ),
                    Some(Pool2x2::Avg) => {
                        let s = self.window_sums(&y, o.c, [2, 2], [2, 2]);
                        let (four, two) =
                            (self.i32s("four", &[], &[4]), self.i32s("two", &[], &[2]));
                        let mean = self.rounded_mean(&s, &four, &two);
                        self.cast(&mean, DataType::Int8)
                    }
                };
                Act::Nchw(y, o)
            }
            Kind::Dense => {
                let k = l.input.len();
                let x = self.flat(act);
                let zp = Self::zero_point(l)?;
                ensure!(l.weights.len() == o.c * k, "weights length");
                // [out][in] -> [in][out].
                let mut w = vec![0i8; l.weights.len()];
                for n in 0..o.c {
                    for i in 0..k {
                        w[i * o.c + n] = l.weights[n * k + i];
                    }
                }
                let w = self.i8s("weights", &[k, o.c], &w);
                let z = self.i8s("x_zero_point", &[], &[zp]);
                let acc = self.op("MatMulInteger", &[&x, &w, &z], vec![]);
                let bias = self.i32s("bias", &[o.c], l.bias);
                let acc = self.op("Add", &[&acc, &bias], vec![]);
                let y = self.requant(&acc, &layer_requant(l, &[o.c]))?;
                Act::Flat(self.table(y, l), o.c)
            }
            Kind::MaxPool => {
                let x = self.nchw(act, l.input)?;
                let (x, windows) = self.pad(&x, l.input, l, [o.h, o.w], i8::MIN)?;
                let y = self.op(
                    "MaxPool",
                    &[&x],
                    vec![ints("kernel_shape", &l.kernel), ints("strides", &l.stride)],
                );
                let y = self.crop(y, windows, [o.h, o.w])?;
                let y = if (l.act.min, l.act.max) == (i8::MIN, i8::MAX) {
                    y
                } else {
                    let y = self.cast(&y, DataType::Int32);
                    let y = self.clamp(&y, l.act.min, l.act.max);
                    self.cast(&y, DataType::Int8)
                };
                Act::Nchw(y, o)
            }
            Kind::AvgPool => {
                let x = self.nchw(act, l.input)?;
                let (x, windows) = self.pad(&x, l.input, l, [o.h, o.w], 0)?;
                let s = self.window_sums(&x, o.c, l.kernel, l.stride);
                let s = self.crop(s, windows, [o.h, o.w])?;
                // The valid (unpadded) inputs of each window; an all-padding window (count 0)
                // has sum 0 and mean 0, divided here by 1.
                let count = |out: usize, a: usize, len: usize| {
                    let start = (out * l.stride[a]) as isize - l.padding[a] as isize;
                    (0..l.kernel[a] as isize)
                        .filter(|k| (0..len as isize).contains(&(start + k)))
                        .count()
                };
                let mut n = Vec::with_capacity(o.h * o.w);
                for oy in 0..o.h {
                    for ox in 0..o.w {
                        n.push((count(oy, 0, l.input.h) * count(ox, 1, l.input.w)).max(1) as i32);
                    }
                }
                let half: Vec<i32> = n.iter().map(|&n| n / 2).collect();
                let (n, half) = (
                    self.i32s("count", &[1, 1, o.h, o.w], &n),
                    self.i32s("half", &[1, 1, o.h, o.w], &half),
                );
                let mean = self.rounded_mean(&s, &n, &half);
                let y = self.clamp(&mean, l.act.min, l.act.max);
                Act::Nchw(self.cast(&y, DataType::Int8), o)
            }
        };
        Ok(act)
    }

    /// The layer's sigmoid/tanh table, if it has one, as a `Gather` on `x + 128`.
    fn table(&mut self, x: String, l: &Layer) -> String {
        let Some(t) = l.lut else { return x };
        let t = self.i8s("table", &[256], t);
        // int32 indices: tract reads int64 arithmetic as symbolic dimensions.
        let i = self.cast(&x, DataType::Int32);
        let k = self.i32s("table_offset", &[], &[128]);
        let i = self.op("Add", &[&i, &k], vec![]);
        self.op("Gather", &[&t, &i], vec![int("axis", 0)])
    }
}

fn layer_requant<'a>(l: &Layer<'a>, dims: &'a [usize]) -> Requant<'a> {
    Requant {
        multiplier: l.multiplier,
        shift: l.shift,
        dims,
        offset: l.output_offset as i64,
        min: l.act.min as i64,
        max: l.act.max as i64,
    }
}
