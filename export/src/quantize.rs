//! Post-training int8 quantization (TFLite / ONNX QLinear scheme) of a checked graph into the
//! device format.
//!
//! - Activations: asymmetric per tensor, from the min/max seen on calibration images (the
//!   range always contains 0). The input is fixed at scale 1/255, zero point -128, so a `u8`
//!   pixel maps exactly to `p - 128`.
//! - Weights: symmetric per output channel, `[-127, 127]`; biases int32 at `s_in * s_w`.
//! - Each layer's rescale `s_in * s_w / s_out` is a Q31 multiplier and shift per channel.
//! - ReLU folds into the output clamp `[zp_out, 127]`; sigmoid / tanh become 256-entry tables
//!   (outputs at 1/256, zp -128 and 1/128, zp 0, as TFLite); a 2x2 / stride-2 pooling right
//!   after a convolution is fused into it.
//! - Dense layers after a flatten get their weight columns permuted from ONNX's CHW order to the
//!   device's HWC order; convolution filters go from OIHW to OHWI.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use device_infer::kernels::{Clamp, Dims, Pool2x2};
use device_infer::model::Kind;
use device_infer::quant::quantize_multiplier;
use device_infer::writer::{LayerSpec, ModelSpec};

use crate::float::{self, Value};
use crate::graph::{Constant, Graph, Node};
use crate::ops::{pair, resolve_pads};

/// Activation quantization of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActQuant {
    /// Real value of one step.
    pub scale: f32,
    /// The int8 code of real zero.
    pub zero_point: i8,
}

impl ActQuant {
    /// From an observed range (widened to contain 0).
    pub fn from_range(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let span = (max - min).max(1e-8);
        let scale = span / 255.0;
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
        ActQuant { scale, zero_point }
    }

    /// The quantized code of `v`.
    pub fn quantize(&self, v: f32) -> i8 {
        ((v / self.scale).round() + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }

    /// The real value of code `q`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as f32 - self.zero_point as f32)
    }
}

/// The network input's quantization: `u8 / 255` in `[0, 1]`.
pub const INPUT: ActQuant = ActQuant {
    scale: 1.0 / 255.0,
    zero_point: -128,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    None,
    Relu,
    Sigmoid,
    Tanh,
}

/// One device layer, as planned from the graph before quantization.
#[derive(Debug, Clone)]
struct Step {
    kind: Kind,
    /// Conv / MatMul / Gemm node.
    node: Node,
    /// The value name of the linear output (after the bias add).
    linear_out: String,
    /// Bias constant, if any.
    bias: Option<Vec<f32>>,
    act: Act,
    /// The value name of the step's final output (after activation and pooling).
    out: String,
    /// Input and output shapes in CHW (batch dropped).
    in_chw: Vec<usize>,
    out_chw: Vec<usize>,
    /// Standalone pooling: kernel, stride, padding.
    pool: Option<([usize; 2], [usize; 2], [usize; 2])>,
}

fn f32_const<'a>(g: &'a Graph, name: &str) -> Result<(&'a [usize], &'a [f32])> {
    match g.constants.get(name) {
        Some(Constant::F32 { dims, data }) => Ok((dims, data)),
        _ => {
            // burn-onnx reshapes biases through a constant Reshape node.
            let node = g
                .nodes
                .iter()
                .find(|n| n.outputs.first().is_some_and(|o| o == name))
                .with_context(|| format!("{name} is not a constant"))?;
            f32_const(
                g,
                node.inputs.first().context("constant node without input")?,
            )
        }
    }
}

/// Plans device layers from the graph's node sequence.
fn plan(g: &Graph, shapes: &HashMap<String, Vec<usize>>) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let chw = |name: &str| -> Result<Vec<usize>> {
        let s = shapes
            .get(name)
            .with_context(|| format!("no shape for {name}"))?;
        Ok(s[1..].to_vec())
    };
    let mut cur = g.input.clone();
    for node in &g.nodes {
        if !shapes.contains_key(node.outputs[0].as_str()) {
            continue; // folded constant
        }
        let out = node.outputs[0].clone();
        let last = steps.last_mut();
        match node.op.as_str() {
            "Conv" | "MatMul" | "Gemm" => {
                let kind = if node.op == "Conv" {
                    Kind::Conv2d(None)
                } else {
                    Kind::Dense
                };
                let bias =
                    if node.op != "MatMul" && node.inputs.len() > 2 && !node.inputs[2].is_empty() {
                        Some(f32_const(g, &node.inputs[2])?.1.to_vec())
                    } else {
                        None
                    };
                steps.push(Step {
                    kind,
                    node: node.clone(),
                    linear_out: out.clone(),
                    bias,
                    act: Act::None,
                    out: out.clone(),
                    in_chw: chw(&cur)?,
                    out_chw: chw(&out)?,
                    pool: None,
                });
            }
            "Add" => {
                let s = last
                    .filter(|s| {
                        s.out == node.inputs[0]
                            && s.act == Act::None
                            && s.bias.is_none()
                            && s.kind == Kind::Dense
                    })
                    .with_context(|| {
                        format!(
                            "node {}: Add is only supported as the bias of a MatMul",
                            node.name
                        )
                    })?;
                s.bias = Some(f32_const(g, &node.inputs[1])?.1.to_vec());
                s.linear_out = out.clone();
                s.out = out.clone();
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                let s = last
                    .filter(|s| {
                        s.out == node.inputs[0]
                            && s.act == Act::None
                            && matches!(s.kind, Kind::Conv2d(None) | Kind::Dense)
                    })
                    .with_context(|| {
                        format!(
                            "node {}: {} must follow a convolution or dense layer",
                            node.name, node.op
                        )
                    })?;
                s.act = match node.op.as_str() {
                    "Relu" => Act::Relu,
                    "Sigmoid" => Act::Sigmoid,
                    _ => Act::Tanh,
                };
                s.out = out.clone();
            }
            "MaxPool" | "AveragePool" => {
                let shape = shapes.get(&node.inputs[0]).context("pool input")?;
                let k = pair(node, "kernel_shape", [1, 1])?;
                let st = pair(node, "strides", [1, 1])?;
                let pads = resolve_pads(node, [shape[2], shape[3]], k, st)?;
                let fusable = k == [2, 2] && st == [2, 2] && pads == [0; 4];
                let max = node.op == "MaxPool";
                match last {
                    Some(s)
                        if fusable && s.out == node.inputs[0] && s.kind == Kind::Conv2d(None) =>
                    {
                        s.kind = Kind::Conv2d(Some(if max { Pool2x2::Max } else { Pool2x2::Avg }));
                        s.out = out.clone();
                        s.out_chw = chw(&out)?;
                    }
                    _ => steps.push(Step {
                        kind: if max { Kind::MaxPool } else { Kind::AvgPool },
                        node: node.clone(),
                        linear_out: out.clone(),
                        bias: None,
                        act: Act::None,
                        out: out.clone(),
                        in_chw: chw(&cur)?,
                        out_chw: chw(&out)?,
                        pool: Some((k, st, [pads[0], pads[1]])),
                    }),
                }
            }
            "Reshape" | "Flatten" | "Identity" => {}
            "Softmax" if node.outputs[0] == g.output => {}
            op => bail!(
                "node {}: {op} cannot be quantized for the device yet",
                node.name
            ),
        }
        cur = out;
    }
    if steps.is_empty() {
        bail!("nothing to quantize");
    }
    Ok(steps)
}

fn hwc(chw: &[usize]) -> Dims {
    match *chw {
        [c, h, w] => Dims { h, w, c },
        [n] => Dims { h: 1, w: 1, c: n },
        _ => Dims {
            h: 1,
            w: 1,
            c: chw.iter().product(),
        },
    }
}

/// What calibration saw.
#[derive(Debug, Clone, Default)]
pub struct Ranges {
    /// Per tensor: the smallest and largest value.
    pub tensors: HashMap<String, (f32, f32)>,
    /// Per vector tensor (`[1, n]`, e.g. logits): the smallest and the largest runner-up
    /// (second largest value of an image). The network's raw output is quantized to the range
    /// where its argmax is decided (see [`decision_range`]); clear this map for the full
    /// min/max range instead.
    pub decision: HashMap<String, (f32, f32)>,
}

impl Ranges {
    fn observe(&mut self, name: String, v: &[f32], vector: bool) {
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let e = self.tensors.entry(name.clone()).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
        if vector && v.len() >= 2 {
            let (_, second) =
                v.iter()
                    .fold((f32::NEG_INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                        if x > a { (x, a) } else { (a, b.max(x)) }
                    });
            let e = self.decision.entry(name).or_insert((second, second));
            e.0 = e.0.min(second);
            e.1 = e.1.max(second);
        }
    }
}

/// The output range of a network's logits for an argmax decision, from the smallest and largest
/// runner-up seen in calibration: from the smallest runner-up (anything below never wins, so
/// it may saturate) to the largest plus half the span (a winner above that is a clear winner,
/// saturating it keeps it the argmax; the margin keeps test images' runners-up from
/// saturating with it). The codes go where close calls are made: on the LeNet5-like fixture
/// this removed 5 of the 7 int8-vs-float disagreements on the test set, all of them argmax
/// ties between int8 codes under min/max.
pub fn decision_range((lo, hi): (f32, f32)) -> (f32, f32) {
    (lo, hi + 0.5 * (hi - lo))
}

/// Runs the float graph on each image and records every value's min and max (and, for
/// vectors, the decision range).
pub fn calibrate<'a>(g: &Graph, images: impl Iterator<Item = &'a [f32]>) -> Result<Ranges> {
    let mut ranges = Ranges::default();
    for img in images {
        for (name, v) in float::run(g, img)? {
            let vector = v.shape.len() == 2 && v.shape[0] == 1;
            ranges.observe(name, &v.data, vector);
        }
    }
    Ok(ranges)
}

/// Like [`calibrate`], but each range is cut to the `pct` and `100 - pct` percentiles of the
/// values seen (a 4096-bin histogram per tensor over its min/max range, second pass), so rare
/// outliers do not stretch the scale. The range always keeps 0.
pub fn calibrate_percentile(g: &Graph, images: &[Vec<f32>], pct: f64) -> Result<Ranges> {
    const BINS: usize = 4096;
    let full = calibrate(g, images.iter().map(Vec::as_slice))?;
    let mut hist: HashMap<String, Vec<u64>> = full
        .tensors
        .keys()
        .map(|k| (k.clone(), vec![0u64; BINS]))
        .collect();
    for img in images {
        for (name, v) in float::run(g, img)? {
            let (Some(&(lo, hi)), Some(h)) = (full.tensors.get(&name), hist.get_mut(&name)) else {
                continue;
            };
            let width = (hi - lo).max(1e-12);
            for &x in &v.data {
                let b = (((x - lo) / width) * BINS as f32) as usize;
                h[b.min(BINS - 1)] += 1;
            }
        }
    }
    let mut out = Ranges {
        tensors: HashMap::new(),
        decision: full.decision,
    };
    for (name, (lo, hi)) in full.tensors {
        let h = &hist[&name];
        let total: u64 = h.iter().sum();
        let cut = ((1.0 - pct / 100.0) * total as f64).floor() as u64;
        let width = (hi - lo) / BINS as f32;
        let (mut acc, mut lo_bin) = (0u64, 0usize);
        while lo_bin < BINS && acc + h[lo_bin] <= cut {
            acc += h[lo_bin];
            lo_bin += 1;
        }
        let (mut acc, mut hi_bin) = (0u64, BINS);
        while hi_bin > lo_bin + 1 && acc + h[hi_bin - 1] <= cut {
            acc += h[hi_bin - 1];
            hi_bin -= 1;
        }
        // Bin edges; the outermost ones are the exact min and max.
        let edge = |bin: usize| match bin {
            0 => lo,
            BINS => hi,
            b => (lo + b as f32 * width).clamp(lo, hi),
        };
        out.tensors.insert(name, (edge(lo_bin), edge(hi_bin)));
    }
    Ok(out)
}

/// A quantized model and what the host needs to interpret it.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The device model description (serialise with `device_infer::writer::write`).
    pub spec: ModelSpec,
    /// For each device layer: the graph value it computes and its output quantization.
    pub layers: Vec<(String, ActQuant)>,
    /// For each device layer: what the int8 ONNX writer needs.
    pub steps: Vec<StepQuant>,
}

/// The quantization of one device layer, in graph terms.
#[derive(Debug, Clone)]
pub struct StepQuant {
    /// The Conv / MatMul / Gemm (or pool) node.
    pub node: Node,
    /// What the device computes.
    pub kind: Kind,
    /// Input quantization.
    pub input: ActQuant,
    /// The quantization the linear part is requantized to.
    pub target: ActQuant,
    /// Per output channel weight scales (empty for pools).
    pub weight_scales: Vec<f32>,
    /// int32 biases at `s_in * s_w`.
    pub bias: Vec<i32>,
    /// Whether a lookup table (sigmoid / tanh) follows.
    pub lut: bool,
}

fn lut(in_q: ActQuant, out_q: ActQuant, f: impl Fn(f32) -> f32) -> [i8; 256] {
    let mut t = [0i8; 256];
    for (i, v) in t.iter_mut().enumerate() {
        let x = in_q.dequantize((i as i32 - 128) as i8);
        *v = out_q.quantize(f(x));
    }
    t
}

/// Quantizes a checked graph with calibration `ranges`.
pub fn quantize(g: &Graph, ranges: &Ranges) -> Result<Quantized> {
    let analysis = crate::ops::analyse(g)?;
    if !analysis.unsupported.is_empty() {
        bail!("unsupported ops: {:?}", analysis.unsupported);
    }
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    shapes.insert(g.input.clone(), g.input_shape.clone());
    for (n, r) in g
        .nodes
        .iter()
        .filter(|n| !analysis.folded.contains(&n.name))
        .zip(&analysis.nodes)
    {
        shapes.insert(n.outputs[0].clone(), r.info.output.clone());
    }
    let steps = plan(g, &shapes)?;
    let range = |name: &str| {
        ranges
            .tensors
            .get(name)
            .copied()
            .with_context(|| format!("no calibration range for {name}"))
    };
    let last = steps.len().saturating_sub(1);

    let mut in_q = INPUT;
    // The device activation before each step: flattening is free in HWC, so a dense layer's
    // input is the previous layer's output as it lies in memory.
    let mut prev_out = hwc(&g.input_shape[1..]);
    let mut layers = Vec::with_capacity(steps.len());
    let mut steps_q = Vec::with_capacity(steps.len());
    let mut weight_scales: Vec<f32> = Vec::new();
    let mut specs = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let input = prev_out;
        let output = hwc(&s.out_chw);
        if input.len() != s.in_chw.iter().product::<usize>() {
            bail!(
                "node {}: input of {} values, the previous layer gives {}",
                s.node.name,
                s.in_chw.iter().product::<usize>(),
                input.len()
            );
        }
        // The quantization the linear part requantizes to, and the step's final one.
        let (target_q, out_q, act_clamp, table) = match s.act {
            Act::Sigmoid | Act::Tanh => {
                let (lo, hi) = range(&s.linear_out)?;
                let pre = ActQuant::from_range(lo, hi);
                let (post, f): (ActQuant, fn(f32) -> f32) = if s.act == Act::Sigmoid {
                    (
                        ActQuant {
                            scale: 1.0 / 256.0,
                            zero_point: -128,
                        },
                        |x| 1.0 / (1.0 + (-x).exp()),
                    )
                } else {
                    (
                        ActQuant {
                            scale: 1.0 / 128.0,
                            zero_point: 0,
                        },
                        f32::tanh,
                    )
                };
                (pre, post, Clamp::NONE, Some(lut(pre, post, f)))
            }
            Act::Relu | Act::None => {
                // The network's raw output (logits: the argmax decides) is quantized to the
                // decision range: 255 steps over the values that can win, not over the whole
                // range. With min/max, argmax ties between int8 codes were most of what int8
                // lost against float.
                let decision = ranges.decision.get(&s.out).copied();
                let (lo, hi) = match decision {
                    Some(r) if i == last && s.act == Act::None && s.kind == Kind::Dense => {
                        decision_range(r)
                    }
                    _ => range(&s.out)?,
                };
                let q = ActQuant::from_range(lo, hi);
                let clamp = if s.act == Act::Relu {
                    Clamp {
                        min: q.zero_point,
                        max: 127,
                    }
                } else {
                    Clamp::NONE
                };
                (q, q, clamp, None)
            }
        };
        let spec = match s.kind {
            Kind::Conv2d(_) | Kind::Dense => {
                let (wd, w) = f32_const(g, &s.node.inputs[1])?;
                // Per output channel: rows of the device layout ([o][kh][kw][ci] or [o][k]).
                let (oc, rows): (usize, Vec<Vec<f32>>) = if s.node.op == "Conv" {
                    let [m, c, kh, kw] = wd[..] else {
                        bail!("node {}: weight rank", s.node.name)
                    };
                    let rows = (0..m)
                        .map(|o| {
                            let mut r = Vec::with_capacity(c * kh * kw);
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    for ci in 0..c {
                                        r.push(w[((o * c + ci) * kh + ky) * kw + kx]);
                                    }
                                }
                            }
                            r
                        })
                        .collect();
                    (m, rows)
                } else {
                    // MatMul: x [K] @ W [K, N]; Gemm with transB: W [N, K].
                    let trans = s.node.op == "Gemm" && s.node.int("transB", 0)? != 0;
                    let (k, n) = if trans {
                        (wd[1], wd[0])
                    } else {
                        (wd[0], wd[1])
                    };
                    let at = |i: usize, o: usize| if trans { w[o * k + i] } else { w[i * n + o] };
                    // Device input index (HWC flatten) -> ONNX index (CHW flatten).
                    let d = input;
                    let onnx_index = |dev: usize| {
                        let (pix, c) = (dev / d.c, dev % d.c);
                        c * d.h * d.w + pix
                    };
                    if k != d.len() {
                        bail!(
                            "node {}: dense input {k} differs from the activation {}",
                            s.node.name,
                            d.len()
                        );
                    }
                    (
                        n,
                        (0..n)
                            .map(|o| (0..k).map(|i| at(onnx_index(i), o)).collect())
                            .collect(),
                    )
                };
                let mut weights = Vec::with_capacity(oc * rows[0].len());
                weight_scales.clear();
                let (mut bias, mut multiplier, mut shift) = (Vec::new(), Vec::new(), Vec::new());
                for (o, r) in rows.iter().enumerate() {
                    let amax = r.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let b = s.bias.as_ref().map_or(0.0, |b| b[o]);
                    // A channel whose weights all but vanished (weight decay leaves such
                    // filters) would get a rescale below what a Q31 multiplier and a shift
                    // of -31 represent, and a bias past the int32 range: its weight scale is
                    // raised until both fit (its tiny weights then round to 0, as they add
                    // nothing). Other channels are not affected (the floors are far below).
                    let (s_in, s_out) = (in_q.scale as f64, target_q.scale as f64);
                    let floor = (s_out / s_in / (1u64 << 30) as f64)
                        .max(b.abs() as f64 / s_in / (1u64 << 30) as f64)
                        as f32;
                    let s_w = if amax > 0.0 { amax / 127.0 } else { 1.0 }.max(floor);
                    weight_scales.push(s_w);
                    weights.extend(
                        r.iter()
                            .map(|v| (v / s_w).round().clamp(-127.0, 127.0) as i8),
                    );
                    let acc_scale = in_q.scale as f64 * s_w as f64;
                    bias.push(
                        (b as f64 / acc_scale)
                            .round()
                            .clamp(i32::MIN as f64, i32::MAX as f64) as i32,
                    );
                    let (m, sh) = quantize_multiplier(acc_scale / target_q.scale as f64);
                    if !(-31..=30).contains(&sh) {
                        bail!(
                            "node {}: rescale {} out of range",
                            s.node.name,
                            acc_scale / target_q.scale as f64
                        );
                    }
                    multiplier.push(m);
                    shift.push(sh as i8);
                }
                let (kernel, stride, padding) = if s.node.op == "Conv" {
                    let [_, _, kh, kw] = wd[..] else {
                        bail!("node {}: weight rank", s.node.name)
                    };
                    let st = pair(&s.node, "strides", [1, 1])?;
                    let p = resolve_pads(&s.node, [s.in_chw[1], s.in_chw[2]], [kh, kw], st)?;
                    ([kh, kw], st, [p[0], p[1]])
                } else {
                    ([0, 0], [0, 0], [0, 0])
                };
                LayerSpec {
                    kind: s.kind,
                    input,
                    output,
                    kernel,
                    stride,
                    padding,
                    input_offset: -(in_q.zero_point as i32),
                    output_offset: target_q.zero_point as i32,
                    act: act_clamp,
                    weights,
                    bias,
                    multiplier,
                    shift,
                    lut: table,
                }
            }
            Kind::MaxPool | Kind::AvgPool => {
                let (kernel, stride, padding) = s.pool.context("pool geometry")?;
                LayerSpec::pool(
                    s.kind,
                    (input, output),
                    kernel,
                    stride,
                    padding,
                    in_q.zero_point,
                )
            }
        };
        // Pools keep their input's quantization.
        let out_q = if matches!(s.kind, Kind::MaxPool | Kind::AvgPool) {
            in_q
        } else {
            out_q
        };
        specs.push(spec);
        layers.push((s.out.clone(), out_q));
        steps_q.push(StepQuant {
            node: s.node.clone(),
            kind: s.kind,
            input: in_q,
            target: target_q,
            weight_scales: std::mem::take(&mut weight_scales),
            bias: specs.last().map(|l| l.bias.clone()).unwrap_or_default(),
            lut: table.is_some(),
        });
        in_q = out_q;
        prev_out = output;
    }
    let (m, sh) = quantize_multiplier(1.0);
    Ok(Quantized {
        spec: ModelSpec {
            input: hwc(&g.input_shape[1..]),
            input_zero_point: INPUT.zero_point,
            input_multiplier: m,
            input_shift: sh as i8,
            output_zero_point: in_q.zero_point,
            layers: specs,
        },
        layers,
        steps: steps_q,
    })
}

/// CHW float values -> HWC order (the device layout).
pub fn chw_to_hwc(v: &Value) -> Vec<f32> {
    match v.shape[..] {
        [_, c, h, w] => {
            let mut out = vec![0.0; c * h * w];
            for ch in 0..c {
                for p in 0..h * w {
                    out[p * c + ch] = v.data[ch * h * w + p];
                }
            }
            out
        }
        _ => v.data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_range_follows_the_runners_up() {
        let mut r = Ranges::default();
        r.observe("logits".into(), &[1.0, 5.0, 3.0], true);
        r.observe("logits".into(), &[0.0, -2.0, 4.0], true);
        r.observe("hidden".into(), &[7.0, -1.0], false);
        assert_eq!(r.tensors["logits"], (-2.0, 5.0));
        // Runners-up 3 and 0.
        assert_eq!(r.decision["logits"], (0.0, 3.0));
        assert!(!r.decision.contains_key("hidden"));
        assert_eq!(decision_range((0.0, 3.0)), (0.0, 4.5));
        assert_eq!(decision_range((-2.0, 2.0)), (-2.0, 4.0));
    }
}
