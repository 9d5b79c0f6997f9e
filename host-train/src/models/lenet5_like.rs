//! LeNet-5's shape with the modern choices: ReLU activations and 2x2 max pooling. The first
//! convolution pads by 2 (SAME) so 28x28 MNIST keeps LeNet-5's 32x32 geometry.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor};

use super::{ConvBlock, ConvBlockSpec};
use crate::summary::{LayerSpec, Padding};

/// Configuration of [`LeNet5Like`].
#[derive(Config, Debug)]
pub struct LeNet5LikeConfig {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
}

/// conv 6@5x5 SAME -> ReLU -> max 2x2 -> conv 16@5x5 -> ReLU -> max 2x2 -> 120 -> ReLU -> 84 ->
/// ReLU -> 10.
#[derive(Module, Debug)]
pub struct LeNet5Like {
    block1: ConvBlock,
    block2: ConvBlock,
    fc1: Linear,
    fc2: Linear,
    out: Linear,
    relu: Relu,
}

impl LeNet5LikeConfig {
    fn blocks(&self) -> [ConvBlockSpec; 2] {
        let block = |channels, padding| ConvBlockSpec {
            channels,
            kernel: 5,
            padding,
            pool: 2,
            max_pool: true,
            relu: true,
        };
        [
            block([self.in_channels, 6], Padding::Same),
            block([6, 16], Padding::Valid),
        ]
    }

    /// Builds the network with fresh weights.
    pub fn init(&self, device: &Device) -> LeNet5Like {
        let [b1, b2] = self.blocks();
        LeNet5Like {
            block1: b1.init(device),
            block2: b2.init(device),
            fc1: LinearConfig::new(16 * 5 * 5, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            out: LinearConfig::new(84, self.classes).init(device),
            relu: Relu::new(),
        }
    }

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let [b1, b2] = self.blocks();
        let mut l: Vec<LayerSpec> = b1.layers().into_iter().chain(b2.layers()).collect();
        l.extend([
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 120 },
            LayerSpec::Relu,
            LayerSpec::Dense { out: 84 },
            LayerSpec::Relu,
            LayerSpec::Dense { out: self.classes },
        ]);
        l
    }
}

impl LeNet5Like {
    /// `[B, 1, 28, 28]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.block1.forward(x); // [B, 6, 14, 14]
        let x = self.block2.forward(x); // [B, 16, 5, 5]
        let x: Tensor<2> = x.flatten(1, 3); // [B, 400]
        let x = self.relu.forward(self.fc1.forward(x)); // [B, 120]
        let x = self.relu.forward(self.fc2.forward(x)); // [B, 84]
        self.out.forward(x) // [B, classes]
    }
}
