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
    /// Input height and width (28x28 MNIST, 32x32 CIFAR-10).
    #[config(default = "[28, 28]")]
    pub input: [usize; 2],
    /// Feature maps of the two convolutions (LeNet-5's 6 and 16).
    #[config(default = "[6, 16]")]
    pub filters: [usize; 2],
    /// Max pooling (true) or average pooling.
    #[config(default = true)]
    pub max_pool: bool,
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
            max_pool: self.max_pool,
            relu: true,
        };
        [
            block(
                [self.in_channels, self.filters[0]],
                super::lenet_first_padding(self.input),
            ),
            block(self.filters, Padding::Valid),
        ]
    }

    /// Builds the network with fresh weights.
    pub fn init(&self, device: &Device) -> LeNet5Like {
        let [b1, b2] = self.blocks();
        let input = [self.in_channels, self.input[0], self.input[1]];
        let flat = super::flat_features(input, &self.layers())
            .unwrap_or_else(|| panic!("the LeNet does not fit a {input:?} input"));
        LeNet5Like {
            block1: b1.init(device),
            block2: b2.init(device),
            fc1: LinearConfig::new(flat, 120).init(device),
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
