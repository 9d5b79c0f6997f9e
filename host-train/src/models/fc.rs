//! One fully connected layer, 784 -> 10: the seed's first network (multinomial logistic
//! regression on raw pixels).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::summary::LayerSpec;

/// Configuration of [`Fc`].
#[derive(Config, Debug)]
pub struct FcConfig {
    /// Input features (`C * H * W`; 784 for MNIST).
    pub inputs: usize,
    /// Output classes.
    pub classes: usize,
}

/// `flatten -> linear`.
#[derive(Module, Debug)]
pub struct Fc {
    linear: Linear,
}

impl FcConfig {
    /// Builds the network with fresh weights.
    pub fn init(&self, device: &Device) -> Fc {
        Fc {
            linear: LinearConfig::new(self.inputs, self.classes).init(device),
        }
    }

    /// The architecture, for `summary`.
    pub fn layers(&self) -> Vec<LayerSpec> {
        vec![LayerSpec::Flatten, LayerSpec::Dense { out: self.classes }]
    }
}

impl Fc {
    /// `[B, C, H, W]` -> `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // [B, C, H, W] -> [B, C*H*W]
        let x: Tensor<2> = x.flatten(1, 3);
        self.linear.forward(x)
    }
}
