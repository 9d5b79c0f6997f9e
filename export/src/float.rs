//! A plain float32 interpreter of a checked [`Graph`] (batch 1, NCHW): the reference the int8
//! model is calibrated on and compared with. Slow and obvious on purpose.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};

use crate::graph::{Constant, Graph, Node};
use crate::ops::{self, pair, resolve_pads};

/// A float tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Shape (batch axis included, always 1 here).
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

fn constant(c: &Constant) -> Option<Value> {
    match c {
        Constant::F32 { dims, data } => Some(Value {
            shape: dims.clone(),
            data: data.clone(),
        }),
        Constant::I64 { .. } => None,
    }
}

/// Runs the graph on one input (`input_shape` of the graph), returning every node output by
/// value name.
pub fn run(graph: &Graph, input: &[f32]) -> Result<HashMap<String, Value>> {
    let analysis = ops::analyse(graph)?;
    let shapes: HashMap<&str, &[usize]> = analysis
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.info.output.as_slice()))
        .collect();
    let mut vals: HashMap<String, Value> = HashMap::new();
    vals.insert(
        graph.input.clone(),
        Value {
            shape: graph.input_shape.clone(),
            data: input.to_vec(),
        },
    );
    for node in &graph.nodes {
        // Constant-only nodes (folded by the analysis) produce constants.
        let Some(&out_shape) = shapes.get(node.name.as_str()) else {
            continue;
        };
        let get = |i: usize| -> Result<Value> {
            let name = node
                .inputs
                .get(i)
                .with_context(|| format!("node {}: missing input {i}", node.name))?;
            if let Some(v) = vals.get(name) {
                return Ok(v.clone());
            }
            graph
                .constants
                .get(name)
                .and_then(constant)
                .or_else(|| fold_constant(graph, name))
                .with_context(|| format!("node {}: input {name} has no value", node.name))
        };
        let x = get(0)?;
        let data = match node.op.as_str() {
            "Relu" => x.data.iter().map(|v| v.max(0.0)).collect(),
            "Sigmoid" => x.data.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            "Tanh" => x.data.iter().map(|v| v.tanh()).collect(),
            "Identity" | "Reshape" | "Flatten" => x.data,
            "Softmax" => {
                let k = *out_shape.last().unwrap_or(&1);
                x.data
                    .chunks(k.max(1))
                    .flat_map(|row| {
                        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
                        let s: f32 = e.iter().sum();
                        e.into_iter().map(move |v| v / s)
                    })
                    .collect()
            }
            "Conv" => conv(
                node,
                &x,
                &get(1)?,
                if node.inputs.len() > 2 && !node.inputs[2].is_empty() {
                    Some(get(2)?)
                } else {
                    None
                },
                out_shape,
            )?,
            "MaxPool" | "AveragePool" => pool(node, &x, out_shape)?,
            "MatMul" => matmul(&x, &get(1)?, None),
            "Gemm" => {
                let b = get(1)?;
                let b = if node.int("transB", 0)? != 0 {
                    transpose(&b)
                } else {
                    b
                };
                let c = if node.inputs.len() > 2 {
                    Some(get(2)?)
                } else {
                    None
                };
                matmul(&x, &b, c.as_ref())
            }
            "Add" => {
                let y = get(1)?;
                let (a, b) = if x.data.len() >= y.data.len() {
                    (x, y)
                } else {
                    (y, x)
                };
                let n = b.data.len().max(1);
                a.data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v + b.data[i % n])
                    .collect()
            }
            op => bail!("node {}: float interpreter has no {op}", node.name),
        };
        vals.insert(
            node.outputs[0].clone(),
            Value {
                shape: out_shape.to_vec(),
                data,
            },
        );
    }
    Ok(vals)
}

/// A constant produced by a folded node (burn-onnx reshapes its biases).
fn fold_constant(graph: &Graph, name: &str) -> Option<Value> {
    let node = graph
        .nodes
        .iter()
        .find(|n| n.outputs.first().is_some_and(|o| o == name))?;
    let src = graph.constants.get(node.inputs.first()?)?;
    constant(src)
}

fn transpose(b: &Value) -> Value {
    let [r, c] = [b.shape[0], b.shape[1]];
    let mut data = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = b.data[i * c + j];
        }
    }
    Value {
        shape: vec![c, r],
        data,
    }
}

fn matmul(x: &Value, w: &Value, bias: Option<&Value>) -> Vec<f32> {
    let (k, n) = (w.shape[0], w.shape[1]);
    let rows = x.data.len() / k.max(1);
    let mut out = vec![0.0f32; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let mut acc = bias.map_or(0.0, |b| b.data[j % b.data.len().max(1)]) as f64;
            for i in 0..k {
                acc += x.data[r * k + i] as f64 * w.data[i * n + j] as f64;
            }
            out[r * n + j] = acc as f32;
        }
    }
    out
}

fn conv(node: &Node, x: &Value, w: &Value, b: Option<Value>, out: &[usize]) -> Result<Vec<f32>> {
    let [_, c, h, wd] = x.shape[..] else {
        bail!("node {}: rank", node.name)
    };
    let [m, _, kh, kw] = w.shape[..] else {
        bail!("node {}: weight rank", node.name)
    };
    let s = pair(node, "strides", [1, 1])?;
    let [pt, pl, _, _] = resolve_pads(node, [h, wd], [kh, kw], s)?;
    let (ho, wo) = (out[2], out[3]);
    let mut y = vec![0.0f32; m * ho * wo];
    for o in 0..m {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = b.as_ref().map_or(0.0, |b| b.data[o]) as f64;
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * s[0] + ky) as isize - pt as isize;
                            let ix = (ox * s[1] + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            acc += x.data[(ci * h + iy as usize) * wd + ix as usize] as f64
                                * w.data[((o * c + ci) * kh + ky) * kw + kx] as f64;
                        }
                    }
                }
                y[(o * ho + oy) * wo + ox] = acc as f32;
            }
        }
    }
    Ok(y)
}

fn pool(node: &Node, x: &Value, out: &[usize]) -> Result<Vec<f32>> {
    let [_, c, h, w] = x.shape[..] else {
        bail!("node {}: rank", node.name)
    };
    let k = pair(node, "kernel_shape", [1, 1])?;
    let s = pair(node, "strides", [1, 1])?;
    let [pt, pl, _, _] = resolve_pads(node, [h, w], k, s)?;
    let max = node.op == "MaxPool";
    let (ho, wo) = (out[2], out[3]);
    let mut y = vec![0.0f32; c * ho * wo];
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                let (mut m, mut sum, mut n) = (f32::NEG_INFINITY, 0.0f64, 0usize);
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * s[0] + ky) as isize - pt as isize;
                        let ix = (ox * s[1] + kx) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.data[(ch * h + iy as usize) * w + ix as usize];
                        m = m.max(v);
                        sum += v as f64;
                        n += 1;
                    }
                }
                y[(ch * ho + oy) * wo + ox] = if max {
                    m
                } else {
                    (sum / n.max(1) as f64) as f32
                };
            }
        }
    }
    Ok(y)
}
