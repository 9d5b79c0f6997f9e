//! The CIFAR-10 network of ARM's CMSIS-NN paper (Lai, Suda & Chandra 2018, "CMSIS-NN: Efficient
//! Neural Network Kernels for Arm Cortex-M CPUs", arXiv:1801.06601, section 4; the network is
//! Caffe's `cifar10_quick` with its hidden dense layer removed, and the paper's example is
//! `arm_nnexamples_cifar10` in the CMSIS-NN sources):
//!
//! 32x32x3 -> conv 32@5x5 SAME -> ReLU -> max 2x2 -> conv 32@5x5 SAME -> ReLU -> max 2x2 ->
//! conv 64@5x5 SAME -> ReLU -> max 2x2 -> flatten (4x4x64 = 1,024) -> dense 10.
//!
//! 12,298,240 multiply-accumulates and 89,578 parameters with 10 classes. Differences from the
//! paper's example, which pools 3x3 with stride 2 over a right/bottom-padded border: we pool
//! 2x2 with stride 2 (the same map sizes, 16/8/4, and our fused conv+pool kernels on the
//! host and the device), and pool after the ReLU (the two commute for max pooling). The
//! optional batch normalisation after each convolution (`cmsis-cifar10-bn`) is ours; it folds
//! into the convolution at export, so the device graph is the same.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::vgg::ConvBnRelu;
use super::{ConvBlock, ConvBlockSpec};
use crate::summary::{LayerSpec, Padding};

/// Configuration of [`CmsisCifar10`].
#[derive(Config, Debug)]
pub struct CmsisCifar10Config {
    /// Input channels (3 for CIFAR-10).
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
    /// Input height and width (a multiple of 8).
    #[config(default = "[32, 32]")]
    pub input: [usize; 2],
    /// Batch normalisation after each convolution (folded at export).
    #[config(default = false)]
    pub batch_norm: bool,
}

/// One stage: conv 5x5 SAME -> [batch norm] -> ReLU -> max 2x2.
#[derive(Module, Debug)]
pub enum Stage {
    /// Without batch norm: the fused conv + ReLU + pool block.
    Plain(ConvBlock),
    /// With batch norm (or after folding it), pooled by the network.
    Normed(ConvBnRelu),
}

/// See the module docs.
#[derive(Module, Debug)]
pub struct CmsisCifar10 {
    stages: Vec<Stage>,
    pool: MaxPool2d,
    out: Linear,
}

impl CmsisCifar10Config {
    /// The three convolutions' feature maps.
    pub const FILTERS: [usize; 3] = [32, 32, 64];

    fn specs(&self) -> [ConvBlockSpec; 3] {
        let [a, b, c] = Self::FILTERS;
        let spec = |channels| ConvBlockSpec {
            channels,
            kernel: 5,
            padding: Padding::Same,
            pool: 2,
            max_pool: true,
            relu: true,
        };
        [spec([self.in_channels, a]), spec([a, b]), spec([b, c])]
    }

    /// Builds the network with fresh weights.
    ///
    /// # Panics
    /// If the input is too small (under 8x8).
    pub fn init(&self, device: &Device) -> CmsisCifar10 {
        let input = [self.in_channels, self.input[0], self.input[1]];
        let flat = super::flat_features(input, &self.layers())
            .unwrap_or_else(|| panic!("the CMSIS-NN CIFAR-10 net does not fit a {input:?} input"));
        let stages = self
            .specs()
            .iter()
            .map(|s| {
                if self.batch_norm {
                    let conv = Conv2dConfig::new(s.channels, [5, 5])
                        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                        .with_initializer(super::alexnet::he())
                        .init(device);
                    let bn = BatchNormConfig::new(s.channels[1]).init(device);
                    Stage::Normed(ConvBnRelu::new(conv, Some(bn)))
                } else {
                    Stage::Plain(s.init(device))
                }
            })
            .collect();
        CmsisCifar10 {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            out: LinearConfig::new(flat, self.classes).init(device),
        }
    }

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut l = Vec::new();
        for s in self.specs() {
            let [conv, relu, pool] = s.layers();
            l.push(conv);
            if self.batch_norm {
                l.push(LayerSpec::BatchNorm);
            }
            l.extend([relu, pool]);
        }
        l.extend([LayerSpec::Flatten, LayerSpec::Dense { out: self.classes }]);
        l
    }
}

impl CmsisCifar10 {
    /// `[B, 3, 32, 32]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for stage in &self.stages {
            x = match stage {
                Stage::Plain(b) => b.forward(x),
                Stage::Normed(c) => self.pool.forward(c.forward(x)),
            }; // 32 -> 16 -> 8 -> 4
        }
        let x: Tensor<2> = x.flatten(1, 3); // [B, 1024]
        self.out.forward(x)
    }

    /// The same network (at inference) with every batch norm folded into its convolution.
    pub fn fold_batch_norm(self) -> Self {
        let stages = self
            .stages
            .into_iter()
            .map(|s| match s {
                Stage::Normed(c) => Stage::Normed(c.fold_batch_norm()),
                plain => plain,
            })
            .collect();
        CmsisCifar10 { stages, ..self }
    }
}
