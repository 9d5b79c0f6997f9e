//! `export check`: what a model is, whether the device runtime can run it, and whether it fits.

use std::fmt::Write as _;

use crate::graph::Graph;
use crate::ops::{self, Analysis};
use crate::targets::{self, CODE_RESERVE, Part, STACK_RESERVE};

/// Estimated int8 footprint on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// int8 weights.
    pub weights: usize,
    /// int32 biases.
    pub biases: usize,
    /// Per-channel requantization constants (i32 multiplier + i8 shift).
    pub quant: usize,
    /// Lookup tables (sigmoid, tanh).
    pub tables: usize,
    /// Model header and layer table.
    pub metadata: usize,
    /// Activation arena with conv/dense + bias + activation + pool fused and ping-pong buffers.
    pub arena: usize,
    /// Activation arena if every op had its own input and output buffers.
    pub arena_unfused: usize,
    /// The device model's arena as `export quantize` plans it: two separate buffers, and
    /// overlapping ones (the default); `None` when the graph does not quantize.
    pub device_arena: Option<(usize, usize)>,
}

impl Footprint {
    /// Model bytes in flash (without code).
    pub fn model_flash(&self) -> usize {
        self.weights + self.biases + self.quant + self.tables + self.metadata
    }
    /// Flash with the runtime's code reserve.
    pub fn flash(&self) -> usize {
        self.model_flash() + CODE_RESERVE
    }
    /// RAM with the stack reserve: the planned (overlapping) arena when known, else the
    /// estimate.
    pub fn ram(&self) -> usize {
        self.device_arena.map_or(self.arena, |(_, o)| o) + STACK_RESERVE
    }
}

/// The device model's arena for `graph` from its layer geometry alone (quantized with
/// placeholder ranges; the arena does not depend on them): `(separate, overlapping)`.
pub fn device_arena(graph: &Graph) -> Option<(usize, usize)> {
    use device_infer::writer::{ArenaPlan, arena_plan};
    let mut r = crate::quantize::Ranges::default();
    r.tensors.insert(graph.input.clone(), (0.0, 1.0));
    for n in &graph.nodes {
        for o in &n.outputs {
            r.tensors.insert(o.clone(), (-1.0, 1.0));
        }
    }
    let q = crate::quantize::quantize(graph, &r).ok()?;
    Some((
        arena_plan(&q.spec, ArenaPlan::Separate).0,
        arena_plan(&q.spec, ArenaPlan::Overlap).0,
    ))
}

/// Estimates the int8 footprint of an analysed graph.
pub fn footprint(graph: &Graph, a: &Analysis) -> Footprint {
    let mut f = Footprint::default();
    for n in &a.nodes {
        f.weights += n.info.weight_bytes;
        f.biases += n.info.bias_bytes;
        f.quant += 5 * n.info.quant_channels;
        f.tables += if n.info.lut { 256 } else { 0 };
    }
    f.metadata = 64 + 32 * a.nodes.len();
    // Activations, int8, per inference.
    let len = |s: &[usize]| s.iter().product::<usize>();
    let mut cur = len(&graph.input_shape);
    for n in a
        .nodes
        .iter()
        .filter(|n| !matches!(n.op.as_str(), "Reshape" | "Flatten" | "Identity"))
    {
        let out = len(&n.info.output);
        f.arena_unfused = f.arena_unfused.max(cur + out);
        cur = out;
    }
    // Fused: a conv/dense step and the bias, activation and pooling after it hold only the
    // step's input and its final output; steps ping-pong between two buffers.
    let mut arena = 0;
    let mut step_in = len(&graph.input_shape);
    let mut step_out: Option<usize> = None;
    for n in &a.nodes {
        let out = len(&n.info.output);
        match n.op.as_str() {
            "Reshape" | "Flatten" | "Identity" => {}
            "Conv" | "MatMul" | "Gemm" => {
                if let Some(o) = step_out {
                    arena = arena.max(step_in + o);
                    step_in = o;
                }
                step_out = Some(out);
            }
            "Add" | "Relu" | "Sigmoid" | "Tanh" | "MaxPool" | "AveragePool"
                if step_out.is_some() =>
            {
                step_out = Some(out)
            }
            _ => {
                if let Some(o) = step_out.take() {
                    arena = arena.max(step_in + o);
                    step_in = o;
                }
                arena = arena.max(step_in + out);
                step_in = out;
            }
        }
    }
    if let Some(o) = step_out {
        arena = arena.max(step_in + o);
    }
    f.arena = arena;
    f.device_arena = device_arena(graph);
    f
}

/// The rendered report and whether the model passes (supported and fits the target).
pub struct Report {
    /// Human-readable text.
    pub text: String,
    /// No unsupported op, and the model fits the target (when one is given).
    pub ok: bool,
    /// The footprint estimate.
    pub footprint: Footprint,
}

fn dims(v: &[usize]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Renders the per-node table, unsupported ops and the memory estimate against `target`.
pub fn report(graph: &Graph, a: &Analysis, target: Option<&Part>) -> Report {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "opset {}, producer {:?}, input {} {}",
        graph.opset,
        graph.producer,
        graph.input,
        dims(&graph.input_shape)
    );
    let _ = writeln!(
        s,
        "{:<12} {:<12} {:>14} {:>9} {:>10}",
        "node", "op", "output", "params", "MACs"
    );
    for n in &a.nodes {
        let _ = writeln!(
            s,
            "{:<12} {:<12} {:>14} {:>9} {:>10}",
            n.name,
            n.op,
            dims(&n.info.output),
            n.info.params,
            n.info.macs
        );
    }
    let params: usize = a.nodes.iter().map(|n| n.info.params).sum();
    let macs: usize = a.nodes.iter().map(|n| n.info.macs).sum();
    let _ = writeln!(
        s,
        "total: {} nodes ({} folded at export), {params} parameters, {macs} MACs",
        a.nodes.len(),
        a.folded.len()
    );
    if !graph.folded_batch_norms.is_empty() {
        let _ = writeln!(
            s,
            "batch norm: {} BatchNormalization nodes folded into their convolutions ({})",
            graph.folded_batch_norms.len(),
            graph.folded_batch_norms.join(", ")
        );
    }
    let mut ok = true;
    if a.unsupported.is_empty() {
        let _ = writeln!(s, "ops: all supported by the device runtime");
    } else {
        ok = false;
        for (node, op) in &a.unsupported {
            if a.off_device.iter().any(|(n, _)| n == node) {
                let _ = writeln!(
                    s,
                    "op {op} (node {node}): known (shape inferred), runs in tract on the edge box; the device runtime cannot run it"
                );
            } else {
                let _ = writeln!(
                    s,
                    "unsupported op {op} (node {node}): the device runtime cannot run it"
                );
            }
        }
        let _ = writeln!(s, "the device runtime supports: {}", ops::supported_names());
    }
    let f = footprint(graph, a);
    let _ = writeln!(
        s,
        "int8 flash estimate: {} bytes model ({} weights, {} biases, {} quantization, {} tables, {} metadata) + {} code = {} bytes",
        f.model_flash(),
        f.weights,
        f.biases,
        f.quant,
        f.tables,
        f.metadata,
        CODE_RESERVE,
        f.flash()
    );
    match f.device_arena {
        Some((separate, overlap)) => {
            let _ = writeln!(
                s,
                "int8 RAM: arena {overlap} bytes (the device model's plan: fused layers, overlapping buffers; {separate} separate, {} unfused) + {} stack = {} bytes",
                f.arena_unfused,
                STACK_RESERVE,
                f.ram()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "int8 RAM estimate: arena {} bytes (fused layers; {} unfused) + {} stack = {} bytes",
                f.arena,
                f.arena_unfused,
                STACK_RESERVE,
                f.ram()
            );
        }
    }
    if let Some(p) = target {
        let fits_flash = f.flash() <= p.flash;
        let fits_ram = f.ram() <= p.ram;
        let _ = writeln!(
            s,
            "target {} ({}): flash {} / {} bytes ({:.0}%) {}, RAM {} / {} bytes ({:.0}%) {}",
            p.name,
            p.core,
            f.flash(),
            p.flash,
            100.0 * f.flash() as f64 / p.flash as f64,
            if fits_flash { "fits" } else { "DOES NOT FIT" },
            f.ram(),
            p.ram,
            100.0 * f.ram() as f64 / p.ram as f64,
            if fits_ram { "fits" } else { "DOES NOT FIT" },
        );
        ok &= fits_flash && fits_ram;
    } else {
        let _ = writeln!(s, "(no --target; known parts: {})", targets::names());
    }
    Report {
        text: s,
        ok,
        footprint: f,
    }
}
