//! The op registry: ONNX op type -> handler that checks a node, infers its output shape and
//! counts its parameters and MACs. An op not listed here is reported as "unsupported op X
//! (supported: ...)". Each handler file pairs with the device runtime's kernel of the same
//! name (`conv2d.rs`, `pool.rs`, `dense.rs`, ...).

pub mod conv2d;
pub mod dense;
pub mod elementwise;
pub mod pool;
pub mod reshape;

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::graph::{Constant, Graph, Node};

/// What a handler learns about one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpInfo {
    /// Output shape (batch axis included).
    pub output: Vec<usize>,
    /// Trainable parameters the node owns (weights + biases).
    pub params: usize,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// int8 weight bytes on the device.
    pub weight_bytes: usize,
    /// int32 bias bytes on the device.
    pub bias_bytes: usize,
    /// Output channels with their own requantization constants (multiplier + shift).
    pub quant_channels: usize,
    /// A 256-entry int8 lookup table (sigmoid, tanh).
    pub lut: bool,
}

/// The inputs a handler sees: shapes of runtime values, and constants by position.
pub struct Inputs<'a> {
    /// The node.
    pub node: &'a Node,
    /// Per input: the runtime shape, or `None` for a constant / omitted input.
    pub shapes: Vec<Option<Vec<usize>>>,
    /// Per input: the constant, when it is one.
    pub constants: Vec<Option<&'a Constant>>,
}

impl<'a> Inputs<'a> {
    /// The shape of runtime input `i`.
    pub fn shape(&self, i: usize) -> Result<&[usize]> {
        match self.shapes.get(i) {
            Some(Some(s)) => Ok(s),
            _ => bail!(
                "node {}: input {i} must be a runtime tensor",
                self.node.name
            ),
        }
    }

    /// Constant input `i` as float32.
    pub fn f32_const(&self, i: usize, what: &str) -> Result<(&'a [usize], &'a [f32])> {
        match self.constants.get(i).copied().flatten() {
            Some(Constant::F32 { dims, data }) => Ok((dims, data)),
            Some(_) => bail!("node {}: {what} must be float32", self.node.name),
            None => bail!(
                "node {}: {what} (input {i}) must be an initializer",
                self.node.name
            ),
        }
    }

    /// Whether input `i` is present (optional inputs may be omitted).
    pub fn has(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(|s| !s.is_empty())
    }
}

type Handler = fn(&Inputs) -> Result<OpInfo>;

/// The ops the device runtime can run, with their handlers.
pub const SUPPORTED: &[(&str, Handler)] = &[
    ("Conv", conv2d::conv),
    ("MaxPool", pool::max_pool),
    ("AveragePool", pool::average_pool),
    ("Relu", elementwise::same_shape),
    ("Sigmoid", elementwise::lut),
    ("Tanh", elementwise::lut),
    ("Softmax", elementwise::softmax),
    ("Identity", elementwise::same_shape),
    ("Flatten", reshape::flatten),
    ("Reshape", reshape::reshape),
    ("MatMul", dense::matmul),
    ("Gemm", dense::gemm),
    ("Add", dense::add_bias),
];

/// Ops this tool understands (shapes, MACs, the float interpreter's tract run) that the device
/// runtime does not run: a model using them is for the edge box (tract), not the
/// microcontroller.
pub const OFF_DEVICE: &[(&str, Handler)] = &[
    ("LRN", elementwise::lrn),
    ("Dropout", elementwise::same_shape),
];

/// The supported op names, for messages.
pub fn supported_names() -> String {
    SUPPORTED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One analysed node.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op: String,
    /// What the handler found.
    pub info: OpInfo,
}

/// The whole graph analysed.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Runtime nodes in execution order.
    pub nodes: Vec<NodeReport>,
    /// Nodes computed at export time because all their inputs are constants.
    pub folded: Vec<String>,
    /// Ops the device runtime cannot run: (node, op).
    pub unsupported: Vec<(String, String)>,
    /// Of those, the ones this tool knows (shapes inferred, analysis went on past them).
    pub off_device: Vec<(String, String)>,
    /// The graph output's shape, when inference reached it.
    pub output_shape: Option<Vec<usize>>,
}

/// Folds a node whose inputs are all constants (shape ops on weights, as burn-onnx writes
/// for biases), returning its constant output.
fn fold(node: &Node, constants: &[Option<&Constant>]) -> Option<Result<Constant>> {
    let all_const = node
        .inputs
        .iter()
        .zip(constants)
        .all(|(n, c)| n.is_empty() || c.is_some());
    if !all_const || node.inputs.is_empty() {
        return None;
    }
    match node.op.as_str() {
        "Reshape" | "Flatten" | "Identity" => Some((|| {
            let Some(Constant::F32 { dims, data }) = constants[0] else {
                bail!("node {}: can only fold float32 constants", node.name);
            };
            let inputs = Inputs {
                node,
                shapes: vec![Some(dims.clone()), None],
                constants: constants.to_vec(),
            };
            let handler = SUPPORTED
                .iter()
                .find(|(n, _)| *n == node.op)
                .expect("listed")
                .1;
            let out = handler(&inputs)?.output;
            Ok(Constant::F32 {
                dims: out,
                data: data.clone(),
            })
        })()),
        _ => None,
    }
}

/// Infers shapes through the graph, folding constant subgraphs. Stops at the first op it
/// cannot run (listed in `unsupported`) or at the first invalid node (an error).
pub fn analyse(graph: &Graph) -> Result<Analysis> {
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    shapes.insert(graph.input.clone(), graph.input_shape.clone());
    let mut constants: HashMap<String, Constant> = graph.constants.clone();
    let mut out = Analysis::default();
    for node in &graph.nodes {
        let consts: Vec<Option<Constant>> = node
            .inputs
            .iter()
            .map(|i| constants.get(i).cloned())
            .collect();
        let const_refs: Vec<Option<&Constant>> = consts.iter().map(Option::as_ref).collect();
        if let Some(folded) = fold(node, &const_refs) {
            let c = folded?;
            for o in &node.outputs {
                constants.insert(o.clone(), c.clone());
            }
            out.folded.push(node.name.clone());
            continue;
        }
        let handler = match SUPPORTED.iter().find(|(n, _)| *n == node.op) {
            Some((_, h)) => h,
            None => match OFF_DEVICE.iter().find(|(n, _)| *n == node.op) {
                Some((_, h)) => {
                    out.unsupported.push((node.name.clone(), node.op.clone()));
                    out.off_device.push((node.name.clone(), node.op.clone()));
                    h
                }
                None => {
                    out.unsupported.push((node.name.clone(), node.op.clone()));
                    // Later nodes cannot be shaped without this one's output.
                    return Ok(out);
                }
            },
        };
        let inputs = Inputs {
            node,
            shapes: node.inputs.iter().map(|i| shapes.get(i).cloned()).collect(),
            constants: const_refs,
        };
        let info = handler(&inputs)?;
        if node.outputs.len() != 1 {
            bail!(
                "node {}: {} outputs; the supported ops have exactly one",
                node.name,
                node.outputs.len()
            );
        }
        shapes.insert(node.outputs[0].clone(), info.output.clone());
        out.nodes.push(NodeReport {
            name: node.name.clone(),
            op: node.op.clone(),
            info,
        });
    }
    out.output_shape = shapes.get(&graph.output).cloned();
    if out.output_shape.is_none() {
        bail!(
            "graph.output {} is a constant; nothing to run",
            graph.output
        );
    }
    Ok(out)
}

/// The seed's output-size rule for explicit pads: `floor((in + pads - k) / stride) + 1`.
pub fn window_out(
    input: usize,
    k: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
) -> Option<usize> {
    (stride > 0).then_some(())?;
    // Checked: pads and kernels come from the file (up to 2^63).
    input
        .checked_add(pad_begin)?
        .checked_add(pad_end)?
        .checked_sub(k)
        .map(|n| n / stride + 1)
}

/// Resolves `auto_pad` and `pads` of a Conv / pool node into `[top, left, bottom, right]`.
pub fn resolve_pads(
    node: &Node,
    hw: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = node.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => {
            let p = node.ints("pads", &[0, 0, 0, 0])?;
            match p.as_slice() {
                [t, l, b, r] if p.iter().all(|&v| v >= 0) => {
                    Ok([*t as usize, *l as usize, *b as usize, *r as usize])
                }
                _ => bail!(
                    "node {}: pads {p:?} must be 4 non-negative values [top, left, bottom, right]",
                    node.name
                ),
            }
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            // Output ceil(in / stride); total padding split, the odd one at the end (UPPER).
            let mut pads = [0usize; 4];
            for axis in 0..2 {
                let out = hw[axis].div_ceil(s[axis].max(1));
                // Saturating: strides and kernels come from the file; an absurd result fails
                // the output-size check that follows.
                let total = out
                    .saturating_sub(1)
                    .saturating_mul(s[axis])
                    .saturating_add(k[axis])
                    .saturating_sub(hw[axis]);
                let (small, big) = (total / 2, total - total / 2);
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
                pads[axis] = begin;
                pads[axis + 2] = end;
            }
            Ok(pads)
        }
        other => bail!(
            "node {}: auto_pad {other:?} is not an ONNX value",
            node.name
        ),
    }
}

/// Reads a 2-element attribute (kernel_shape, strides, dilations) as `[h, w]`.
pub fn pair(node: &Node, name: &str, default: [usize; 2]) -> Result<[usize; 2]> {
    let v = node.ints(name, &[default[0] as i64, default[1] as i64])?;
    match v.as_slice() {
        [a, b] if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
        _ => bail!(
            "node {}: {name} {v:?} must be two positive values (2-D only)",
            node.name
        ),
    }
}
