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
    let model = model.valid();
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
    let bytes = onnx.into_bytes();
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
