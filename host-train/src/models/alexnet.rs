//! AlexNet (Krizhevsky, Sutskever & Hinton 2012) as the seed builds it, single tower:
//!
//! conv 96@11x11 s4 -> ReLU -> max 3x3 s2 -> LRN -> conv 256@5x5 -> ReLU -> max 3x3 s2 -> LRN ->
//! conv 384@3x3 -> ReLU -> conv 384@3x3 -> ReLU -> conv 256@3x3 -> ReLU -> max 3x3 s2 ->
//! FC 4096 -> ReLU -> dropout -> FC 4096 -> ReLU -> dropout -> classes.
//!
//! At 224x224 the first convolution pads by 2, which gives the paper's 55x55 maps (the paper's
//! 224 is really 227); every later convolution pads to keep its size ("same"), the pools do
//! not pad. The flattened size follows the input (9,216 at 224), so reduced resolutions work.
//! LRN uses the paper's constants (n 5, k 2, alpha 1e-4, beta 0.75).
//!
//! Where this differs from the seed's code (see `docs/models.md`): its last pool reads conv4 and
//! skips conv5 (here conv5 is used); its dropout stays on at test time (here dropout is active
//! only while training); it uses TensorFlow's LRN defaults (radius 5, bias 1, alpha 1, beta 0.5)
//! and tanh in the dense layers (here the paper's LRN and ReLU); its biases start at 1.0 (here
//! 0).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::kernels;
use crate::summary::{LayerSpec, Padding};

/// Configuration of [`AlexNet`].
#[derive(Config, Debug)]
pub struct AlexNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
    /// Input height and width.
    #[config(default = "[224, 224]")]
    pub input: [usize; 2],
    /// Dropout probability of the two hidden dense layers (training only).
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// Local response normalisation across channels (ONNX `LRN`): `y = x / (k + alpha/n *
/// sum_{window of n channels} x^2)^beta`.
///
/// Written with ops every exporter lowers: the channel window is a `[n, 1]` average pool over
/// `[B, 1, C, H*W]` (zeros padded, counted), and the power is `exp(-beta * ln(.))`, so the ONNX
/// export is complete (host-train's exporter then fuses the pattern back into one `LRN` node).
#[derive(Module, Debug)]
pub struct Lrn {
    /// Channels in the window (odd).
    pub size: usize,
    /// Scale.
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Bias.
    pub k: f64,
}

impl Lrn {
    /// The paper's constants.
    pub fn alexnet() -> Self {
        Lrn {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        }
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let sq: Tensor<4> = (x.clone() * x.clone()).reshape([b, 1, c, h * w]); // [B, 1, C, HW]
        let half = self.size / 2;
        let mean = avg_pool2d(
            sq,
            AvgPoolOptions::new([self.size, 1])
                .with_stride([1, 1])
                .with_padding([half, 0])
                .with_count_include_pad(true),
        ); // [B, 1, C, HW]
        let mean: Tensor<4> = mean.reshape([b, c, h, w]);
        let scale = mean
            .mul_scalar(self.alpha)
            .add_scalar(self.k)
            .log()
            .mul_scalar(-self.beta)
            .exp();
        x * scale
    }
}

/// See the module docs.
#[derive(Module, Debug)]
pub struct AlexNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    conv5: Conv2d,
    pool: MaxPool2d,
    lrn: Lrn,
    fc6: Linear,
    fc7: Linear,
    fc8: Linear,
    dropout: Dropout,
    relu: Relu,
}

/// He initialisation for ReLU layers (the seed draws truncated normals of std 0.1, which does
/// not train this deep from scratch without its bias-1.0 trick).
pub(crate) fn he() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

impl AlexNetConfig {
    /// The convolutional part: (out channels, kernel, stride, padding).
    const CONVS: [(usize, usize, usize, usize); 5] = [
        (96, 11, 4, 2),
        (256, 5, 1, 2),
        (384, 3, 1, 1),
        (384, 3, 1, 1),
        (256, 3, 1, 1),
    ];

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let conv = |i: usize| {
            let (out_channels, kernel, stride, p) = Self::CONVS[i];
            LayerSpec::Conv {
                out_channels,
                kernel,
                stride,
                padding: Padding::Explicit(p),
            }
        };
        let pool = LayerSpec::MaxPool {
            kernel: 3,
            stride: 2,
        };
        let lrn = LayerSpec::Lrn { size: 5 };
        vec![
            conv(0),
            LayerSpec::Relu,
            pool,
            lrn,
            conv(1),
            LayerSpec::Relu,
            pool,
            lrn,
            conv(2),
            LayerSpec::Relu,
            conv(3),
            LayerSpec::Relu,
            conv(4),
            LayerSpec::Relu,
            pool,
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 4096 },
            LayerSpec::Relu,
            LayerSpec::Dropout,
            LayerSpec::Dense { out: 4096 },
            LayerSpec::Relu,
            LayerSpec::Dropout,
            LayerSpec::Dense { out: self.classes },
        ]
    }

    /// Features entering fc6 (9,216 at 224x224); `None` if the input is too small.
    pub fn flat_features(&self) -> Option<usize> {
        let [h, w] = self.input;
        super::flat_features([self.in_channels, h, w], &self.layers())
    }

    /// Builds the network with fresh weights.
    ///
    /// # Panics
    /// If the input is too small for the architecture (check with [`Self::flat_features`]).
    pub fn init(&self, device: &Device) -> AlexNet {
        let flat = self
            .flat_features()
            .unwrap_or_else(|| panic!("AlexNet needs a larger input than {:?}", self.input));
        let mut ci = self.in_channels;
        let mut convs = Self::CONVS.iter().map(|&(co, k, s, p)| {
            let c = Conv2dConfig::new([ci, co], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_initializer(he())
                .init(device);
            ci = co;
            c
        });
        let mut next = || convs.next().expect("five convolutions");
        let (conv1, conv2, conv3, conv4, conv5) = (next(), next(), next(), next(), next());
        AlexNet {
            conv1,
            conv2,
            conv3,
            conv4,
            conv5,
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            lrn: Lrn::alexnet(),
            fc6: LinearConfig::new(flat, 4096)
                .with_initializer(he())
                .init(device),
            fc7: LinearConfig::new(4096, 4096)
                .with_initializer(he())
                .init(device),
            fc8: LinearConfig::new(4096, self.classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            relu: Relu::new(),
        }
    }
}

impl AlexNet {
    /// `[B, 3, 224, 224]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let r = &self.relu;
        // conv + ReLU through the CPU kernel on flex (burn's ops elsewhere).
        let cr = |conv: &Conv2d, x| kernels::conv2d_act(conv, x, true);
        let x = self.lrn.forward(self.pool.forward(cr(&self.conv1, x))); // [B, 96, 27, 27]
        let x = self.lrn.forward(self.pool.forward(cr(&self.conv2, x))); // [B, 256, 13, 13]
        let x = cr(&self.conv3, x); // [B, 384, 13, 13]
        let x = cr(&self.conv4, x); // [B, 384, 13, 13]
        let x = self.pool.forward(cr(&self.conv5, x)); // [B, 256, 6, 6]
        let x: Tensor<2> = x.flatten(1, 3); // [B, 9216]
        let x = self.dropout.forward(r.forward(self.fc6.forward(x))); // [B, 4096]
        let x = self.dropout.forward(r.forward(self.fc7.forward(x))); // [B, 4096]
        self.fc8.forward(x) // [B, classes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrn_matches_its_definition() {
        let d = Device::flex();
        let vals: Vec<f32> = (0..2 * 7 * 2 * 3)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
            .collect();
        let x = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(vals.clone(), [2, 7, 2, 3]),
            &d,
        );
        let l = Lrn {
            size: 5,
            alpha: 0.3,
            beta: 0.75,
            k: 2.0,
        };
        let y: Vec<f32> = l.forward(x).into_data().iter::<f32>().collect();
        let at = |b: usize, c: usize, p: usize| vals[(b * 7 + c) * 6 + p] as f64;
        for b in 0..2 {
            for c in 0..7usize {
                for p in 0..6 {
                    let lo = c.saturating_sub(2);
                    let hi = (c + 2).min(6);
                    let sum: f64 = (lo..=hi).map(|i| at(b, i, p).powi(2)).sum();
                    let want = at(b, c, p) / (2.0f64 + 0.3 / 5.0 * sum).powf(0.75);
                    let got = y[(b * 7 + c) * 6 + p] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * want.abs().max(1.0),
                        "{got} {want}"
                    );
                }
            }
        }
    }
}
