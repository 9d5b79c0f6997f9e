//! VGG (Simonyan & Zisserman 2014), configurations D (VGG-16) and E (VGG-19), optionally with
//! batch normalisation after every convolution (Ioffe & Szegedy 2015, torchvision's `_bn`).
//!
//! Five stages of 3x3 "same" convolutions (64, 128, 256, 512, 512 channels; D has 2, 2, 3, 3, 3
//! per stage, E 2, 2, 4, 4, 4), each followed by ReLU, each stage by a 2x2 max pool; then
//! FC 4096 -> ReLU -> dropout -> FC 4096 -> ReLU -> dropout -> classes. At 224x224 the last
//! stage ends at 7x7x512 = 25,088 features, and VGG-16 with 1,000 classes has 138,357,544
//! parameters. The flattened size follows the input, so reduced resolutions (a multiple of 32)
//! work. At export, each batch norm is folded into its convolution ([`Vgg::fold_batch_norm`]).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};

use super::alexnet::he;
use crate::kernels;
use crate::summary::{LayerSpec, Padding};

/// Configuration of [`Vgg`].
#[derive(Config, Debug)]
pub struct VggConfig {
    /// 16 (configuration D) or 19 (E).
    pub depth: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
    /// Batch normalisation after each convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Input height and width.
    #[config(default = "[224, 224]")]
    pub input: [usize; 2],
    /// Dropout probability of the two hidden dense layers (training only).
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// conv 3x3 "same" -> [batch norm] -> ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    relu: Relu,
}

impl ConvBnRelu {
    /// A convolution followed by an optional batch norm and ReLU.
    pub fn new(conv: Conv2d, bn: Option<BatchNorm>) -> Self {
        ConvBnRelu {
            conv,
            bn,
            relu: Relu::new(),
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.bn {
            // conv + ReLU through the CPU kernel on flex (burn's ops elsewhere).
            None => kernels::conv2d_act(&self.conv, x, true),
            Some(bn) => self
                .relu
                .forward(bn.forward(kernels::conv2d_act(&self.conv, x, false))),
        }
    }

    /// The same function with the batch norm (at its running statistics) folded into the
    /// convolution: `w' = w * g / sqrt(var + eps)`, `b' = (b - mean) * g / sqrt(var + eps) + beta`.
    pub fn fold_batch_norm(self) -> Self {
        let Some(bn) = self.bn else {
            return self;
        };
        let mut conv = self.conv;
        let [co, _, _, _] = conv.weight.dims();
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt(); // [C_out]
        let w = conv.weight.val() * scale.clone().reshape([co, 1, 1, 1]);
        let b = match &conv.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([co], &w.device()),
        };
        let b = (b - bn.running_mean.value()) * scale + bn.beta.val();
        conv.weight = Param::from_tensor(w);
        conv.bias = Some(Param::from_tensor(b));
        ConvBnRelu {
            conv,
            bn: None,
            relu: self.relu,
        }
    }
}

/// See the module docs.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The convolutions, stage by stage.
    stages: Vec<Vec<ConvBnRelu>>,
    pool: MaxPool2d,
    fc6: Linear,
    fc7: Linear,
    fc8: Linear,
    dropout: Dropout,
    relu: Relu,
}

impl VggConfig {
    /// Convolutions per stage, and channels per stage.
    fn plan(&self) -> ([usize; 5], [usize; 5]) {
        let per = match self.depth {
            16 => [2, 2, 3, 3, 3],
            19 => [2, 2, 4, 4, 4],
            d => panic!("VGG depth {d}: only 16 (D) and 19 (E) are defined"),
        };
        (per, [64, 128, 256, 512, 512])
    }

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let (per, ch) = self.plan();
        let mut l = Vec::new();
        for (n, c) in per.into_iter().zip(ch) {
            for _ in 0..n {
                l.push(LayerSpec::Conv {
                    out_channels: c,
                    kernel: 3,
                    stride: 1,
                    padding: Padding::Explicit(1),
                });
                if self.batch_norm {
                    l.push(LayerSpec::BatchNorm);
                }
                l.push(LayerSpec::Relu);
            }
            l.push(LayerSpec::MaxPool {
                kernel: 2,
                stride: 2,
            });
        }
        l.extend([
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 4096 },
            LayerSpec::Relu,
            LayerSpec::Dropout,
            LayerSpec::Dense { out: 4096 },
            LayerSpec::Relu,
            LayerSpec::Dropout,
            LayerSpec::Dense { out: self.classes },
        ]);
        l
    }

    /// Features entering fc6 (25,088 at 224x224); `None` if the input is too small.
    pub fn flat_features(&self) -> Option<usize> {
        let [h, w] = self.input;
        super::flat_features([self.in_channels, h, w], &self.layers())
    }

    /// Builds the network with fresh weights.
    ///
    /// # Panics
    /// If the depth is not 16 or 19, or the input is smaller than 32x32.
    pub fn init(&self, device: &Device) -> Vgg {
        let flat = self.flat_features().unwrap_or_else(|| {
            panic!("VGG needs an input of at least 32x32, got {:?}", self.input)
        });
        let (per, ch) = self.plan();
        let mut ci = self.in_channels;
        let stages = per
            .into_iter()
            .zip(ch)
            .map(|(n, co)| {
                (0..n)
                    .map(|_| {
                        let conv = Conv2dConfig::new([ci, co], [3, 3])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .with_initializer(he())
                            .init(device);
                        ci = co;
                        ConvBnRelu {
                            conv,
                            bn: self
                                .batch_norm
                                .then(|| BatchNormConfig::new(co).init(device)),
                            relu: Relu::new(),
                        }
                    })
                    .collect()
            })
            .collect();
        Vgg {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
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

impl Vgg {
    /// `[B, 3, 224, 224]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for stage in &self.stages {
            for layer in stage {
                x = layer.forward(x);
            }
            x = self.pool.forward(x); // 224 -> 112 -> 56 -> 28 -> 14 -> 7
        }
        let x: Tensor<2> = x.flatten(1, 3); // [B, 25088]
        let x = self.dropout.forward(self.relu.forward(self.fc6.forward(x))); // [B, 4096]
        let x = self.dropout.forward(self.relu.forward(self.fc7.forward(x))); // [B, 4096]
        self.fc8.forward(x) // [B, classes]
    }

    /// Whether any batch norm is left.
    pub fn has_batch_norm(&self) -> bool {
        self.stages.iter().flatten().any(|l| l.bn.is_some())
    }

    /// The same network (at inference) with every batch norm folded into its convolution.
    pub fn fold_batch_norm(self) -> Self {
        Vgg {
            stages: self
                .stages
                .into_iter()
                .map(|s| s.into_iter().map(ConvBnRelu::fold_batch_norm).collect())
                .collect(),
            ..self
        }
    }
}
