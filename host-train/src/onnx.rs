//! ONNX export of a trained run (burn-onnx's forward-capture exporter), with a parity sample:
//! a few test images and burn's logits for them, so `export check` can prove that another
//! runtime computes the same thing without re-running burn.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
use protos::Message;
use protos::lenet::{ParitySample, Tensor as PbTensor};
use protos::onnx::{AttributeProto, ModelProto, NodeProto, TensorProto, attribute_proto};

use crate::checkpoint::write_atomic;
use crate::data::Splits;
use crate::models::Network;
use crate::train::load_run_model;

/// What `export-onnx` wrote.
#[derive(Debug)]
pub struct Exported {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// The parity sample beside it.
    pub sample: PathBuf,
    /// SHA-256 of the ONNX file.
    pub sha256: String,
    /// ONNX file size in bytes.
    pub bytes: usize,
}

/// `model.onnx` -> `model.sample.pb`.
pub fn sample_path(onnx: &Path) -> PathBuf {
    onnx.with_extension("sample.pb")
}

/// Exports the run's network to ONNX (opset 18, logits output) with a static batch of 1, or a
/// dynamic batch axis named `batch`, and writes a parity sample of the first `samples` test
/// images.
pub fn export_run(
    run_dir: &Path,
    out: &Path,
    data: &Splits,
    samples: usize,
    dynamic_batch: bool,
) -> Result<Exported> {
    let device = Device::flex();
    let (cfg, model) = load_run_model(run_dir, &device)?;
    let model = model.valid().for_export();
    let [c, h, w] = data.test.shape;
    let exporter = OnnxExporter::new();
    let onnx = if dynamic_batch {
        let spec = [InputSpec::new([
            AxisSpec::dynamic("batch"),
            AxisSpec::Static,
            AxisSpec::Static,
            AxisSpec::Static,
        ])];
        exporter.export_dynamic(
            &model,
            Tensor::<4>::zeros([1, c, h, w], &device),
            Tensor::<4>::zeros([2, c, h, w], &device),
            &spec,
            Network::forward,
        )
    } else {
        exporter.export(
            &model,
            Tensor::<4>::zeros([1, c, h, w], &device),
            Network::forward,
        )
    }
    .map_err(|e| anyhow::anyhow!("burn-onnx could not export {}: {e}", cfg.model))?;
    let mut bytes = onnx.into_bytes();
    // burn-onnx lowers no LRN: AlexNet's is written as primitive ops; put the ONNX op back.
    if matches!(model, Network::Alexnet(_)) {
        let mut proto = ModelProto::decode(&bytes[..]).context("burn-onnx wrote invalid ONNX")?;
        let fused = fuse_lrn(&mut proto);
        if fused != 2 {
            anyhow::bail!("expected AlexNet's 2 LRN patterns in the exported graph, found {fused}");
        }
        bytes = proto.encode_to_vec();
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_atomic(out, &bytes)?;
    let sha256 = crate::data::download::sha256_hex(&bytes);

    let n = samples.min(data.test.len());
    let indices: Vec<usize> = (0..n).collect();
    let (x, _) = data.test.batch(&indices, &device);
    let logits = model.forward(x.clone());
    let sample = ParitySample {
        generator: format!(
            "host-train {} export-onnx --run {} (burn 0.22.1, burn-onnx 0.22.0, {} {})",
            env!("CARGO_PKG_VERSION"),
            run_dir.display(),
            cfg.model,
            cfg.dataset
        ),
        onnx_sha256: sha256.clone(),
        inputs: Some(pb_tensor(x)),
        logits: Some(pb_tensor(logits)),
        labels: indices
            .iter()
            .map(|&i| data.test.labels[i] as u32)
            .collect(),
        indices: indices.iter().map(|&i| i as u64).collect(),
    };
    let sample_file = sample_path(out);
    write_atomic(&sample_file, &sample.encode_to_vec())?;
    Ok(Exported {
        onnx: out.to_path_buf(),
        sample: sample_file,
        sha256,
        bytes: bytes.len(),
    })
}

fn pb_tensor<const D: usize>(t: Tensor<D>) -> PbTensor {
    let shape = t.dims().iter().map(|&d| d as u64).collect();
    let data = t.into_data().iter::<f32>().collect();
    PbTensor { shape, data }
}

/// Reads a parity sample.
pub fn read_sample(path: &Path) -> Result<ParitySample> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ParitySample::decode(&bytes[..])
        .with_context(|| format!("{}: not a parity sample", path.display()))
}

/// The scalar of a one-element float initializer.
fn scalar(inits: &[TensorProto], name: &str) -> Option<f32> {
    let t = inits.iter().find(|t| t.name == name)?;
    if t.data_type != 1 || t.dims.iter().product::<i64>() != 1 {
        return None;
    }
    match (t.raw_data.len(), t.float_data.as_slice()) {
        (4, _) => Some(f32::from_le_bytes(t.raw_data[..4].try_into().ok()?)),
        (0, [v]) => Some(*v),
        _ => None,
    }
}

/// Replaces each local-response-normalisation pattern that [`crate::models::alexnet::Lrn`]
/// exports as primitive ops,
/// `Mul(x, x) -> Reshape -> AveragePool[n x 1, pads n/2, counted] -> Reshape -> Mul(alpha) ->
/// Add(k) -> Log -> Mul(-beta) -> Exp -> Mul(x, .)`,
/// by one ONNX `LRN(size = n, alpha, beta, bias = k)` node (ONNX divides alpha by the size, as
/// the average does). Returns the number of patterns fused; initializers left unused are
/// dropped. A chain that does not match exactly is left alone.
pub fn fuse_lrn(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let consumers = |nodes: &[NodeProto], t: &str| -> Vec<usize> {
        nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.input.iter().any(|i| i == t))
            .map(|(i, _)| i)
            .collect()
    };
    let ints = |n: &NodeProto, name: &str| -> Vec<i64> {
        n.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.ints.clone())
            .unwrap_or_default()
    };
    let int = |n: &NodeProto, name: &str| n.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let mut fused = 0;
    let mut start = 0;
    'search: while start < graph.node.len() {
        let i0 = start;
        start += 1;
        let sq = &graph.node[i0];
        if sq.op_type != "Mul" || sq.input.len() != 2 || sq.input[0] != sq.input[1] {
            continue;
        }
        let x = sq.input[0].clone();
        // Follow the single-consumer chain and check each step's op.
        let ops = [
            "Reshape",
            "AveragePool",
            "Reshape",
            "Mul",
            "Add",
            "Log",
            "Mul",
            "Exp",
            "Mul",
        ];
        let mut chain = vec![i0];
        let mut cur = sq.output[0].clone();
        for op in ops {
            let c = consumers(&graph.node, &cur);
            let [next] = c.as_slice() else {
                continue 'search;
            };
            let n = &graph.node[*next];
            if n.op_type != op || n.output.len() != 1 {
                continue 'search;
            }
            chain.push(*next);
            cur = n.output[0].clone();
        }
        let node = |k: usize| &graph.node[chain[k]];
        let pool = node(2);
        let size = ints(pool, "kernel_shape");
        let half = size.first().copied().unwrap_or(0) / 2;
        let pool_ok = size.len() == 2
            && size[0] % 2 == 1
            && size[1] == 1
            && ints(pool, "strides") == [1, 1]
            && ints(pool, "pads") == [half, 0, half, 0]
            && int(pool, "count_include_pad") == Some(1);
        let last = node(9);
        let other = |n: &NodeProto, t: &str| n.input.iter().find(|i| *i != t).cloned();
        let (Some(alpha), Some(k), Some(neg_beta)) = (
            other(node(4), &node(3).output[0]).and_then(|s| scalar(&graph.initializer, &s)),
            other(node(5), &node(4).output[0]).and_then(|s| scalar(&graph.initializer, &s)),
            other(node(7), &node(6).output[0]).and_then(|s| scalar(&graph.initializer, &s)),
        ) else {
            continue;
        };
        if !pool_ok || !last.input.contains(&x) || !last.input.contains(&node(8).output[0]) {
            continue;
        }
        let attr_f = |name: &str, f: f32| AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Float as i32,
            f,
            ..Default::default()
        };
        let lrn = NodeProto {
            input: vec![x],
            output: last.output.clone(),
            name: format!("{}_lrn", sq.name),
            op_type: "LRN".into(),
            attribute: vec![
                attr_f("alpha", alpha),
                attr_f("beta", -neg_beta),
                attr_f("bias", k),
                AttributeProto {
                    name: "size".into(),
                    r#type: attribute_proto::AttributeType::Int as i32,
                    i: size[0],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        // The LRN takes the chain's last place, so every consumer still comes after it.
        let last_at = *chain.iter().max().expect("ten nodes");
        graph.node[last_at] = lrn;
        let mut drop: Vec<usize> = chain.into_iter().filter(|&i| i != last_at).collect();
        drop.sort_unstable();
        for i in drop.into_iter().rev() {
            graph.node.remove(i);
        }
        fused += 1;
        start = 0;
    }
    if fused > 0 {
        let used: std::collections::HashSet<&String> =
            graph.node.iter().flat_map(|n| n.input.iter()).collect();
        let keep: Vec<bool> = graph
            .initializer
            .iter()
            .map(|t| used.contains(&t.name))
            .collect();
        let mut it = keep.iter();
        graph
            .initializer
            .retain(|_| *it.next().expect("one flag each"));
    }
    fused
}
