//! Runs an ONNX file through tract (an independent runtime) on a parity sample and compares
//! its logits with burn's.

use std::path::Path;

use anyhow::{Context, Result, bail};
use protos::lenet::ParitySample;
use tract_onnx::prelude::*;

/// How tract's logits compare with the sample's.
#[derive(Debug, Clone, PartialEq)]
pub struct Parity {
    /// Images compared.
    pub cases: usize,
    /// Largest absolute logit difference.
    pub max_abs_diff: f32,
    /// Largest burn logit magnitude in the sample: the scale of the relative difference.
    pub max_abs_logit: f32,
    /// Images whose predicted class (argmax) is the same.
    pub argmax_agree: usize,
    /// Images whose predicted class matches the label, by tract.
    pub correct: usize,
}

/// Index of the largest logit (the predicted class); the first on ties.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// Raw u8 pixels as the float model sees them: `p / 255` (host-train's preprocessing).
pub fn unit_pixels(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| p as f32 / 255.0).collect()
}

/// tract's logits for each image of `inputs` (`[N, ...]`), run one image at a time on a model
/// with a static batch of 1, or as one batch when the model's batch axis is not 1.
pub fn tract_logits(onnx: &Path, inputs: &[f32], shape: &[usize]) -> Result<Vec<Vec<f32>>> {
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .map_err(|e| anyhow::anyhow!("tract cannot load {}: {e:?}", onnx.display()))?;
    let fact = model
        .input_fact(0)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .clone();
    let batch_one = matches!(fact.shape.as_concrete_finite(), Ok(Some(s)) if s.first() == Some(&1));
    let per = shape[1..].iter().product::<usize>();
    let n = shape[0];
    let run_shape: Vec<usize> = if batch_one {
        std::iter::once(1)
            .chain(shape[1..].iter().copied())
            .collect()
    } else {
        shape.to_vec()
    };
    let model = model
        .with_input_fact(0, f32::fact(&run_shape).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract cannot prepare {}: {e:?}", onnx.display()))?;
    let run = |data: &[f32], shape: &[usize]| -> Result<Vec<f32>> {
        let t = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.to_vec())?;
        let out = model
            .run(tvec!(Tensor::from(t).into()))
            .map_err(|e| anyhow::anyhow!("tract run failed: {e:?}"))?;
        let v = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(v.iter().copied().collect())
    };
    if batch_one {
        (0..n)
            .map(|i| run(&inputs[i * per..(i + 1) * per], &run_shape))
            .collect()
    } else {
        let flat = run(inputs, shape)?;
        let k = flat.len() / n.max(1);
        Ok(flat.chunks(k.max(1)).map(<[f32]>::to_vec).collect())
    }
}

/// Compares tract on `onnx` with the burn logits of `sample`.
pub fn check(onnx: &Path, sample: &ParitySample) -> Result<Parity> {
    let inputs = sample.inputs.as_ref().context("parity sample: no inputs")?;
    let logits = sample.logits.as_ref().context("parity sample: no logits")?;
    let shape: Vec<usize> = inputs.shape.iter().map(|&d| d as usize).collect();
    if shape.is_empty() || shape.iter().product::<usize>() != inputs.data.len() {
        bail!(
            "parity sample: inputs shape {shape:?} does not match {} values",
            inputs.data.len()
        );
    }
    let n = shape[0];
    let k = logits.data.len() / n.max(1);
    if k == 0 || logits.data.len() != n * k {
        bail!("parity sample: {} logits for {n} images", logits.data.len());
    }
    let ours = tract_logits(onnx, &inputs.data, &shape)?;
    let mut p = Parity {
        cases: n,
        max_abs_diff: 0.0,
        max_abs_logit: 0.0,
        argmax_agree: 0,
        correct: 0,
    };
    for (i, t) in ours.iter().enumerate() {
        let b = &logits.data[i * k..(i + 1) * k];
        if t.len() != k {
            bail!(
                "tract returned {} logits per image, the sample has {k}",
                t.len()
            );
        }
        for (x, y) in t.iter().zip(b) {
            p.max_abs_diff = p.max_abs_diff.max((x - y).abs());
            p.max_abs_logit = p.max_abs_logit.max(y.abs());
        }
        p.argmax_agree += usize::from(argmax(t) == argmax(b));
        p.correct += usize::from(
            sample
                .labels
                .get(i)
                .is_some_and(|&l| l as usize == argmax(t)),
        );
    }
    Ok(p)
}

impl Parity {
    /// The largest difference relative to the largest logit (at least 1, so near-zero logits do
    /// not inflate it): what a float tolerance means for deep nets whose logits reach tens.
    pub fn max_rel_diff(&self) -> f32 {
        self.max_abs_diff / self.max_abs_logit.max(1.0)
    }

    /// Within `tolerance` (relative, see [`Self::max_rel_diff`]) and the same class on every
    /// image.
    pub fn passes(&self, tolerance: f32) -> bool {
        self.max_rel_diff() <= tolerance && self.argmax_agree == self.cases
    }
}

/// Two runtimes' int8 outputs for the same inputs: the largest difference in LSB and on how
/// many inputs they pick the same class.
pub fn int8_agreement(ours: &[Vec<i8>], theirs: &[Vec<i8>]) -> (i32, usize) {
    ours.iter()
        .zip(theirs)
        .fold((0, 0), |(max_lsb, agree), (a, b)| {
            let lsb = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (x as i32 - y as i32).abs())
                .fold(max_lsb, i32::max);
            let same = device_infer::argmax(a) == device_infer::argmax(b);
            (lsb, agree + usize::from(same))
        })
}

/// Runs an int8 ONNX model (float input `[1, ...]`, int8 output) through tract on each input.
pub fn tract_int8_outputs(
    onnx: &Path,
    shape: &[usize],
    inputs: &[Vec<f32>],
) -> Result<Vec<Vec<i8>>> {
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract cannot prepare {}: {e:?}", onnx.display()))?;
    int8_runs(&model, shape, inputs.iter().cloned())
}

/// Runs a prepared model on each input of `shape`: its first output, as int8.
fn int8_runs<T: Datum>(
    model: &std::sync::Arc<TypedRunnableModel>,
    shape: &[usize],
    inputs: impl Iterator<Item = Vec<T>>,
) -> Result<Vec<Vec<i8>>> {
    inputs
        .enumerate()
        .map(|(i, x)| {
            let n = x.len();
            let t = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), x)
                .with_context(|| format!("input {i}: {n} values for {shape:?}"))?;
            let out = model
                .run(tvec!(Tensor::from(t).into()))
                .map_err(|e| anyhow::anyhow!("tract run failed on input {i}: {e:?}"))?;
            let v = out[0]
                .to_plain_array_view::<i8>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Ok(v.iter().copied().collect())
        })
        .collect()
}

/// Runs the integer verification graph of a device model ([`crate::integer_onnx`]) through
/// tract on raw pixels (HWC, one image each): int8 outputs to compare bit for bit with
/// device-infer's.
pub fn tract_integer_outputs(m: &device_infer::Model, pixels: &[&[u8]]) -> Result<Vec<Vec<i8>>> {
    use protos::Message;
    let proto = crate::integer_onnx::integer_onnx(m)?.encode_to_vec();
    let d = m.input_dims();
    let shape = [1, d.h, d.w, d.c];
    let model = tract_onnx::onnx()
        .model_for_read(&mut &proto[..])
        .and_then(|g| g.with_input_fact(0, u8::fact(shape).into()))
        .and_then(|g| g.into_optimized())
        .and_then(|g| g.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract cannot prepare the integer graph: {e:?}"))?;
    int8_runs(&model, &shape, pixels.iter().map(|p| p.to_vec()))
}
