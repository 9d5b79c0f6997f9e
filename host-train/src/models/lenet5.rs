//! The original LeNet-5 (LeCun et al. 1998), as the seed trains it on 28x28 MNIST: the first
//! convolution pads by 2 (SAME), which is the paper's 32x32 input; sigmoid activations and 2x2
//! average pooling (the paper's trainable sub-sampling without its per-map coefficient); the
//! paper's RBF output layer is a plain linear layer giving logits.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Sigmoid};
use burn::tensor::{Device, Tensor};

use super::{ConvBlock, ConvBlockSpec};
use crate::summary::{LayerSpec, Padding};

/// Configuration of [`LeNet5`].
#[derive(Config, Debug)]
pub struct LeNet5Config {
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
    #[config(default = false)]
    pub max_pool: bool,
}

/// C1 6@5x5 SAME -> sigmoid -> S2 avg 2x2 -> C3 16@5x5 -> sigmoid -> S4 avg 2x2 -> F5 120 ->
/// sigmoid -> F6 84 -> sigmoid -> 10.
#[derive(Module, Debug)]
pub struct LeNet5 {
    c1: ConvBlock,
    c3: ConvBlock,
    f5: Linear,
    f6: Linear,
    out: Linear,
    sigmoid: Sigmoid,
}

impl LeNet5Config {
    fn blocks(&self) -> [ConvBlockSpec; 2] {
        let block = |channels, padding| ConvBlockSpec {
            channels,
            kernel: 5,
            padding,
            pool: 2,
            max_pool: self.max_pool,
            relu: false,
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
    pub fn init(&self, device: &Device) -> LeNet5 {
        let [c1, c3] = self.blocks();
        let input = [self.in_channels, self.input[0], self.input[1]];
        let flat = super::flat_features(input, &self.layers())
            .unwrap_or_else(|| panic!("the LeNet does not fit a {input:?} input"));
        LeNet5 {
            c1: c1.init(device),
            c3: c3.init(device),
            f5: LinearConfig::new(flat, 120).init(device),
            f6: LinearConfig::new(120, 84).init(device),
            out: LinearConfig::new(84, self.classes).init(device),
            sigmoid: Sigmoid::new(),
        }
    }

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let [c1, c3] = self.blocks();
        let mut l: Vec<LayerSpec> = c1.layers().into_iter().chain(c3.layers()).collect();
        l.extend([
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 120 },
            LayerSpec::Sigmoid,
            LayerSpec::Dense { out: 84 },
            LayerSpec::Sigmoid,
            LayerSpec::Dense { out: self.classes },
        ]);
        l
    }
}

impl LeNet5 {
    /// `[B, 1, 28, 28]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.c1.forward(x); // [B, 6, 14, 14]
        let x = self.c3.forward(x); // [B, 16, 5, 5]
        let x: Tensor<2> = x.flatten(1, 3); // [B, 400]
        let x = self.sigmoid.forward(self.f5.forward(x)); // [B, 120]
        let x = self.sigmoid.forward(self.f6.forward(x)); // [B, 84]
        self.out.forward(x) // [B, classes]
    }
}
