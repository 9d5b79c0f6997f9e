//! Architecture summaries: per layer output shape, parameters, MACs and activation bytes, computed
//! from a [`LayerSpec`] list without building or running the network.
//!
//! The spatial output-size rule is the seed's (and TensorFlow's):
//! SAME: `ceil(in / stride)`; VALID: `ceil((in - k + 1) / stride)`. Explicit symmetric padding
//! `p` gives `floor((in + 2p - k) / stride) + 1`. Pooling windows use VALID.

use std::fmt::Write as _;

/// Spatial padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// Output size `ceil(in / stride)`, the input padded as evenly as possible.
    Same,
    /// No padding.
    Valid,
    /// `p` zeros on every side.
    Explicit(usize),
}

/// One layer of an architecture, as the summary (and later the exporter) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSpec {
    /// 2-D convolution with a square kernel, with bias.
    Conv {
        /// Output channels.
        out_channels: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: Padding,
    },
    /// Max pooling.
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling.
    AvgPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// `[C, H, W]` -> `[C*H*W]`.
    Flatten,
    /// Fully connected layer with bias.
    Dense {
        /// Output features.
        out: usize,
    },
    /// ReLU.
    Relu,
    /// Sigmoid.
    Sigmoid,
    /// Local response normalisation across `size` neighbouring channels (AlexNet).
    Lrn {
        /// Channels in the window.
        size: usize,
    },
    /// Batch normalisation per channel: 2 trainable parameters per channel (scale, shift) and
    /// 2 running statistics; folded into the preceding convolution at export.
    BatchNorm,
    /// Dropout (training only; the identity at inference).
    Dropout,
}

/// The seed's output-size rule for one spatial dimension, or `None` when the window does not
/// fit (or the stride is 0).
pub fn conv_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Option<usize> {
    if stride == 0 || kernel == 0 {
        return None;
    }
    match padding {
        Padding::Same => Some(input.div_ceil(stride)),
        Padding::Valid => (input + 1)
            .checked_sub(kernel)
            .map(|n| n.div_ceil(stride))
            .filter(|&n| n > 0),
        Padding::Explicit(p) => (input + 2 * p).checked_sub(kernel).map(|n| n / stride + 1),
    }
}

/// One row of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Layer name, e.g. `conv 6@5x5 s1 same`.
    pub name: String,
    /// Output shape without the batch axis (`[C, H, W]` or `[N]`).
    pub output: Vec<usize>,
    /// Trainable parameters (weights + biases).
    pub params: usize,
    /// Multiply-accumulates for one image.
    pub macs: usize,
}

impl LayerRow {
    /// Output elements for one image.
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }
}

/// An error in an architecture: a window that does not fit its input, or a layer that needs a
/// different rank.
#[derive(Debug, thiserror::Error)]
#[error("layer {index} ({name}): {msg}")]
pub struct ShapeError {
    /// Index of the offending layer.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub msg: String,
}

fn pad_name(p: Padding) -> String {
    match p {
        Padding::Same => "same".into(),
        Padding::Valid => "valid".into(),
        Padding::Explicit(p) => format!("pad {p}"),
    }
}

/// Walks the layers from an input of shape `[C, H, W]`.
pub fn summarize(input: [usize; 3], layers: &[LayerSpec]) -> Result<Vec<LayerRow>, ShapeError> {
    let mut shape: Vec<usize> = input.to_vec();
    let mut rows = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let err = |name: &str, msg: String| ShapeError {
            index,
            name: name.to_string(),
            msg,
        };
        let spatial = |name: &str, shape: &[usize]| -> Result<[usize; 3], ShapeError> {
            match *shape {
                [c, h, w] => Ok([c, h, w]),
                _ => Err(err(name, format!("needs a [C, H, W] input, got {shape:?}"))),
            }
        };
        let (name, output, params, macs) = match *layer {
            LayerSpec::Conv {
                out_channels,
                kernel,
                stride,
                padding,
            } => {
                let name = format!(
                    "conv {out_channels}@{kernel}x{kernel} s{stride} {}",
                    pad_name(padding)
                );
                let [c, h, w] = spatial(&name, &shape)?;
                let size = |x| {
                    conv_output_size(x, kernel, stride, padding).ok_or_else(|| {
                        err(
                            &name,
                            format!("a {kernel}x{kernel} window does not fit {h}x{w}"),
                        )
                    })
                };
                let (oh, ow) = (size(h)?, size(w)?);
                let params = out_channels * c * kernel * kernel + out_channels;
                let macs = oh * ow * out_channels * c * kernel * kernel;
                (name, vec![out_channels, oh, ow], params, macs)
            }
            LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
                let kind = if matches!(layer, LayerSpec::MaxPool { .. }) {
                    "max"
                } else {
                    "avg"
                };
                let name = format!("{kind}pool {kernel}x{kernel} s{stride}");
                let [c, h, w] = spatial(&name, &shape)?;
                let size = |x| {
                    conv_output_size(x, kernel, stride, Padding::Valid).ok_or_else(|| {
                        err(
                            &name,
                            format!("a {kernel}x{kernel} window does not fit {h}x{w}"),
                        )
                    })
                };
                (name.clone(), vec![c, size(h)?, size(w)?], 0, 0)
            }
            LayerSpec::Flatten => ("flatten".to_string(), vec![shape.iter().product()], 0, 0),
            LayerSpec::Dense { out } => {
                let name = format!("dense {out}");
                let inputs = match *shape {
                    [n] => n,
                    _ => return Err(err(&name, format!("needs a flat input, got {shape:?}"))),
                };
                (name, vec![out], inputs * out + out, inputs * out)
            }
            LayerSpec::Relu => ("relu".to_string(), shape.clone(), 0, 0),
            LayerSpec::Sigmoid => ("sigmoid".to_string(), shape.clone(), 0, 0),
            LayerSpec::Lrn { size } => {
                let name = format!("lrn {size}");
                spatial(&name, &shape)?;
                (name, shape.clone(), 0, 0)
            }
            LayerSpec::BatchNorm => {
                let [c, _, _] = spatial("batchnorm", &shape)?;
                ("batchnorm".to_string(), shape.clone(), 2 * c, 0)
            }
            LayerSpec::Dropout => ("dropout".to_string(), shape.clone(), 0, 0),
        };
        shape = output.clone();
        rows.push(LayerRow {
            name,
            output,
            params,
            macs,
        });
    }
    Ok(rows)
}

/// Renders a summary as a text table with totals. Activation bytes are per image: f32 = 4 bytes
/// per output element, int8 = 1. `peak` is the largest input + output pair of any layer, the
/// least a ping-pong arena must hold.
pub fn render(input: [usize; 3], rows: &[LayerRow]) -> String {
    let mut s = String::new();
    let dims = |v: &[usize]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    let _ = writeln!(
        s,
        "{:<24} {:>12} {:>10} {:>14} {:>10} {:>10}",
        "layer", "output", "params", "MACs", "act f32 B", "act int8 B"
    );
    let _ = writeln!(s, "{:<24} {:>12}", "input", dims(&input));
    let (mut params, mut macs, mut peak) = (0usize, 0usize, 0usize);
    let mut prev = input.iter().product::<usize>();
    for r in rows {
        let n = r.output_len();
        let _ = writeln!(
            s,
            "{:<24} {:>12} {:>10} {:>14} {:>10} {:>10}",
            r.name,
            dims(&r.output),
            r.params,
            r.macs,
            4 * n,
            n
        );
        params += r.params;
        macs += r.macs;
        peak = peak.max(prev + n);
        prev = n;
    }
    let _ = writeln!(s, "total: {params} parameters, {macs} MACs per image");
    let _ = writeln!(
        s,
        "weights: {} bytes f32, about {} bytes int8 (+ int32 biases)",
        4 * params,
        params
    );
    let _ = writeln!(
        s,
        "peak activations (largest layer input + output): {} bytes f32, {} bytes int8",
        4 * peak,
        peak
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_table_28_wide_5x5_strides_1_to_4() {
        let same: Vec<_> = (1..=4)
            .map(|s| conv_output_size(28, 5, s, Padding::Same).unwrap())
            .collect();
        let valid: Vec<_> = (1..=4)
            .map(|s| conv_output_size(28, 5, s, Padding::Valid).unwrap())
            .collect();
        assert_eq!(same, [28, 14, 10, 7]);
        assert_eq!(valid, [24, 12, 8, 6]);
    }

    #[test]
    fn explicit_padding_and_impossible_windows() {
        assert_eq!(conv_output_size(28, 5, 1, Padding::Explicit(2)), Some(28));
        assert_eq!(conv_output_size(28, 5, 2, Padding::Explicit(2)), Some(14));
        assert_eq!(conv_output_size(4, 5, 1, Padding::Valid), None);
        assert_eq!(conv_output_size(4, 5, 0, Padding::Same), None);
    }

    #[test]
    fn lenet5_like_shapes_params_macs() {
        let rows = summarize(
            [1, 28, 28],
            &crate::models::ModelKind::Lenet5Like.layers([1, 28, 28], 10),
        )
        .unwrap();
        let shapes: Vec<_> = rows.iter().map(|r| r.output.clone()).collect();
        assert_eq!(shapes[0], vec![6, 28, 28]);
        assert_eq!(shapes[2], vec![6, 14, 14]);
        assert_eq!(shapes[3], vec![16, 10, 10]);
        assert_eq!(shapes[5], vec![16, 5, 5]);
        assert_eq!(shapes[6], vec![400]);
        assert_eq!(shapes.last().unwrap(), &vec![10]);
        assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), 61_706);
        // conv1 28*28*6*25 + conv2 10*10*16*150 + 400*120 + 120*84 + 84*10
        assert_eq!(
            rows.iter().map(|r| r.macs).sum::<usize>(),
            117_600 + 240_000 + 48_000 + 10_080 + 840
        );
    }

    #[test]
    fn bad_architectures_are_errors() {
        let e = summarize(
            [1, 4, 4],
            &[LayerSpec::Conv {
                out_channels: 2,
                kernel: 5,
                stride: 1,
                padding: Padding::Valid,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("layer 0") && e.contains("does not fit 4x4"),
            "{e}"
        );
        let e = summarize([1, 4, 4], &[LayerSpec::Dense { out: 3 }])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a flat input"), "{e}");
    }

    #[test]
    fn render_has_totals() {
        let rows = summarize(
            [1, 28, 28],
            &crate::models::ModelKind::Fc.layers([1, 28, 28], 10),
        )
        .unwrap();
        let t = render([1, 28, 28], &rows);
        assert!(
            t.contains("total: 7850 parameters, 7840 MACs per image"),
            "{t}"
        );
    }
}
