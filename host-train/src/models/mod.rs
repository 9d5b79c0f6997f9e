//! The built-in networks, one file each, and what they share.
//!
//! Every network takes a `[B, C, H, W]` batch of pixels in `[0, 1]` and returns `[B, classes]`
//! logits. Besides its burn module, each config describes its architecture as a list of
//! [`LayerSpec`]s, which `host-train summary` (and later the exporter's budget check) reads
//! without building the module; a test checks that both agree on shapes and parameter counts.

pub mod alexnet;
pub mod cmsis_cifar10;
pub mod fc;
pub mod lenet5;
pub mod lenet5_like;
pub mod vgg;

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{PaddingConfig2d, Relu, Sigmoid};
use burn::tensor::{Device, Tensor};

pub use alexnet::{AlexNet, AlexNetConfig};
pub use cmsis_cifar10::{CmsisCifar10, CmsisCifar10Config};
pub use fc::{Fc, FcConfig};
pub use lenet5::{LeNet5, LeNet5Config};
pub use lenet5_like::{LeNet5Like, LeNet5LikeConfig};
pub use vgg::{Vgg, VggConfig};

use crate::kernels;
use crate::summary::{LayerSpec, Padding};

/// The networks `--model` can name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One fully connected layer, 784 -> 10 (multinomial logistic regression).
    Fc,
    /// The original LeNet-5 (LeCun 1998): sigmoid activations, 2x2 average pooling.
    Lenet5,
    /// LeNet-5's shape with ReLU and 2x2 max pooling (`--pool avg`: the seed's average pooling).
    Lenet5Like,
    /// AlexNet (Krizhevsky 2012), single tower, LRN, 224x224 (see `models::alexnet`).
    Alexnet,
    /// VGG-16 (configuration D).
    Vgg16,
    /// VGG-16 with batch normalisation after each convolution (folded at export).
    Vgg16Bn,
    /// VGG-19 (configuration E).
    Vgg19,
    /// VGG-19 with batch normalisation.
    Vgg19Bn,
    /// The CIFAR-10 network of the CMSIS-NN paper (Lai et al. 2018): three 5x5 convolutions
    /// (32, 32, 64) with 2x2 max pooling, one dense layer (see `models::cmsis_cifar10`).
    CmsisCifar10,
    /// The same with batch normalisation after each convolution (folded at export).
    CmsisCifar10Bn,
}

/// The sub-sampling of the LeNets' stages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// 2x2 max pooling.
    Max,
    /// 2x2 average pooling.
    Avg,
}

/// Architecture choices beyond the model's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelOptions {
    /// The LeNets' pooling (`None`: the model's own: max for LeNet5-like, average for LeNet-5).
    #[serde(default)]
    pub pool: Option<PoolKind>,
    /// The LeNets' two convolutions' feature maps (`None`: LeNet-5's 6 and 16).
    #[serde(default)]
    pub filters: Option<[usize; 2]>,
}

impl ModelKind {
    /// All built-in models.
    pub const ALL: &'static [ModelKind] = &[
        ModelKind::Fc,
        ModelKind::Lenet5,
        ModelKind::Lenet5Like,
        ModelKind::Alexnet,
        ModelKind::Vgg16,
        ModelKind::Vgg16Bn,
        ModelKind::Vgg19,
        ModelKind::Vgg19Bn,
        ModelKind::CmsisCifar10,
        ModelKind::CmsisCifar10Bn,
    ];

    /// The architecture for an input of `[c, h, w]` and `classes` outputs, default options.
    pub fn layers(self, input: [usize; 3], classes: usize) -> Vec<LayerSpec> {
        self.layers_with(input, classes, &ModelOptions::default())
    }

    /// The architecture for an input of `[c, h, w]` and `classes` outputs.
    pub fn layers_with(
        self,
        input: [usize; 3],
        classes: usize,
        opts: &ModelOptions,
    ) -> Vec<LayerSpec> {
        let [c, h, w] = input;
        match self {
            ModelKind::Fc => FcConfig::new(c * h * w, classes).layers(),
            ModelKind::Lenet5 => self.lenet5(input, classes, opts).layers(),
            ModelKind::Lenet5Like => self.lenet5_like(input, classes, opts).layers(),
            ModelKind::Alexnet => AlexNetConfig::new(c, classes).with_input([h, w]).layers(),
            ModelKind::CmsisCifar10 | ModelKind::CmsisCifar10Bn => {
                self.cmsis(input, classes).layers()
            }
            _ => self.vgg(input, classes).expect("a VGG").layers(),
        }
    }

    fn lenet5(self, [c, h, w]: [usize; 3], classes: usize, o: &ModelOptions) -> LeNet5Config {
        LeNet5Config::new(c, classes)
            .with_input([h, w])
            .with_filters(o.filters.unwrap_or([6, 16]))
            .with_max_pool(o.pool == Some(PoolKind::Max))
    }

    fn lenet5_like(
        self,
        [c, h, w]: [usize; 3],
        classes: usize,
        o: &ModelOptions,
    ) -> LeNet5LikeConfig {
        LeNet5LikeConfig::new(c, classes)
            .with_input([h, w])
            .with_filters(o.filters.unwrap_or([6, 16]))
            .with_max_pool(o.pool != Some(PoolKind::Avg))
    }

    fn cmsis(self, [c, h, w]: [usize; 3], classes: usize) -> CmsisCifar10Config {
        CmsisCifar10Config::new(c, classes)
            .with_input([h, w])
            .with_batch_norm(self == ModelKind::CmsisCifar10Bn)
    }

    fn vgg(self, [c, h, w]: [usize; 3], classes: usize) -> Option<VggConfig> {
        let (depth, bn) = match self {
            ModelKind::Vgg16 => (16, false),
            ModelKind::Vgg16Bn => (16, true),
            ModelKind::Vgg19 => (19, false),
            ModelKind::Vgg19Bn => (19, true),
            _ => return None,
        };
        Some(
            VggConfig::new(depth, c, classes)
                .with_batch_norm(bn)
                .with_input([h, w]),
        )
    }

    /// Checks that the model can take `[c, h, w]` inputs (every window fits).
    pub fn check_input(
        self,
        input: [usize; 3],
        classes: usize,
        opts: &ModelOptions,
    ) -> Result<(), crate::summary::ShapeError> {
        crate::summary::summarize(input, &self.layers_with(input, classes, opts)).map(|_| ())
    }

    /// Builds the network with freshly initialised weights on `device` (seed the device first
    /// for reproducible weights), default options.
    pub fn init(self, input: [usize; 3], classes: usize, device: &Device) -> Network {
        self.init_with(input, classes, &ModelOptions::default(), device)
    }

    /// Builds the network with freshly initialised weights on `device`.
    ///
    /// # Panics
    /// If the input is too small for the model (see [`Self::check_input`]).
    pub fn init_with(
        self,
        input: [usize; 3],
        classes: usize,
        opts: &ModelOptions,
        device: &Device,
    ) -> Network {
        let [c, h, w] = input;
        match self {
            ModelKind::Fc => Network::Fc(FcConfig::new(c * h * w, classes).init(device)),
            ModelKind::Lenet5 => Network::Lenet5(self.lenet5(input, classes, opts).init(device)),
            ModelKind::Lenet5Like => {
                Network::Lenet5Like(self.lenet5_like(input, classes, opts).init(device))
            }
            ModelKind::Alexnet => Network::Alexnet(
                AlexNetConfig::new(c, classes)
                    .with_input([h, w])
                    .init(device),
            ),
            ModelKind::CmsisCifar10 | ModelKind::CmsisCifar10Bn => {
                Network::CmsisCifar10(self.cmsis(input, classes).init(device))
            }
            _ => Network::Vgg(self.vgg(input, classes).expect("a VGG").init(device)),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Fc => "fc",
            ModelKind::Lenet5 => "lenet5",
            ModelKind::Lenet5Like => "lenet5-like",
            ModelKind::Alexnet => "alexnet",
            ModelKind::Vgg16 => "vgg16",
            ModelKind::Vgg16Bn => "vgg16-bn",
            ModelKind::Vgg19 => "vgg19",
            ModelKind::Vgg19Bn => "vgg19-bn",
            ModelKind::CmsisCifar10 => "cmsis-cifar10",
            ModelKind::CmsisCifar10Bn => "cmsis-cifar10-bn",
        })
    }
}

/// The LeNets' first padding: SAME (2 pixels) on 28x28 MNIST, which gives LeNet-5's 32x32
/// geometry; none on any other size (32x32 CIFAR-10 is that geometry already). Either way the
/// second stage ends at 5x5 (400 features) on the two datasets.
pub(crate) fn lenet_first_padding([h, w]: [usize; 2]) -> Padding {
    if (h, w) == (28, 28) {
        Padding::Same
    } else {
        Padding::Valid
    }
}

/// Features entering the first dense layer of `layers` on an input of `input`, or `None` when
/// the architecture does not fit the input (a window larger than its map).
pub(crate) fn flat_features(input: [usize; 3], layers: &[LayerSpec]) -> Option<usize> {
    crate::summary::summarize(input, layers)
        .ok()?
        .iter()
        .find(|r| r.name == "flatten")
        .map(|r| r.output_len())
}

/// Any built-in network, so the training loop, checkpoints and export handle one type.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per process; boxing would only add an indirection
pub enum Network {
    /// See [`Fc`].
    Fc(Fc),
    /// See [`LeNet5`].
    Lenet5(LeNet5),
    /// See [`LeNet5Like`].
    Lenet5Like(LeNet5Like),
    /// See [`AlexNet`].
    Alexnet(AlexNet),
    /// See [`Vgg`] (16 or 19, with or without batch norm).
    Vgg(Vgg),
    /// See [`CmsisCifar10`].
    CmsisCifar10(CmsisCifar10),
}

impl Network {
    /// Every parameter's values, in module order, as one flat vector: what two networks must
    /// share to compute the same function (unlike the saved record, which also holds the
    /// randomly drawn parameter ids).
    pub fn flat_weights(&self) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let data = param.val().into_data();
                self.0.extend(data.iter::<f32>());
            }
        }
        let mut c = Collect(Vec::new());
        self.visit(&mut c);
        c.0
    }

    /// `[B, C, H, W]` pixels in `[0, 1]` -> `[B, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Fc(m) => m.forward(x),
            Network::Lenet5(m) => m.forward(x),
            Network::Lenet5Like(m) => m.forward(x),
            Network::Alexnet(m) => m.forward(x),
            Network::Vgg(m) => m.forward(x),
            Network::CmsisCifar10(m) => m.forward(x),
        }
    }

    /// The network as it is exported: batch norms folded into their convolutions.
    pub fn for_export(self) -> Network {
        match self {
            Network::Vgg(v) => Network::Vgg(v.fold_batch_norm()),
            Network::CmsisCifar10(m) => Network::CmsisCifar10(m.fold_batch_norm()),
            other => other,
        }
    }
}

/// The non-linearity of a [`ConvBlock`] or hidden dense layer.
#[derive(Module, Debug)]
pub enum Activation {
    /// `max(0, x)`.
    Relu(Relu),
    /// `1 / (1 + e^-x)`.
    Sigmoid(Sigmoid),
}

impl Activation {
    /// Applies the activation element-wise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu(a) => a.forward(x),
            Activation::Sigmoid(a) => a.forward(x),
        }
    }
}

/// The sub-sampling of a [`ConvBlock`].
#[derive(Module, Debug)]
pub enum Pool {
    /// 2x2 (or k x k) max pooling.
    Max(MaxPool2d),
    /// k x k average pooling.
    Avg(AvgPool2d),
}

/// conv -> activation -> pool, the repeated stage of the LeNet family.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    activation: Activation,
    pool: Pool,
}

/// How to build a [`ConvBlock`].
#[derive(Debug, Clone, Copy)]
pub struct ConvBlockSpec {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Square kernel size.
    pub kernel: usize,
    /// SAME or VALID (stride 1).
    pub padding: Padding,
    /// Pooling window and stride.
    pub pool: usize,
    /// Max (true) or average pooling.
    pub max_pool: bool,
    /// ReLU (true) or sigmoid.
    pub relu: bool,
}

impl ConvBlockSpec {
    /// Builds the block with fresh weights.
    pub fn init(&self, device: &Device) -> ConvBlock {
        let padding = match self.padding {
            Padding::Same => PaddingConfig2d::Same,
            Padding::Valid => PaddingConfig2d::Valid,
            Padding::Explicit(p) => PaddingConfig2d::Explicit(p, p, p, p),
        };
        let k = [self.kernel, self.kernel];
        let p = [self.pool, self.pool];
        ConvBlock {
            conv: Conv2dConfig::new(self.channels, k)
                .with_padding(padding)
                .init(device),
            activation: if self.relu {
                Activation::Relu(Relu::new())
            } else {
                Activation::Sigmoid(Sigmoid::new())
            },
            pool: if self.max_pool {
                Pool::Max(MaxPool2dConfig::new(p).init())
            } else {
                Pool::Avg(AvgPool2dConfig::new(p).init())
            },
        }
    }

    /// The block as summary layers.
    pub fn layers(&self) -> [LayerSpec; 3] {
        [
            LayerSpec::Conv {
                out_channels: self.channels[1],
                kernel: self.kernel,
                stride: 1,
                padding: self.padding,
            },
            if self.relu {
                LayerSpec::Relu
            } else {
                LayerSpec::Sigmoid
            },
            if self.max_pool {
                LayerSpec::MaxPool {
                    kernel: self.pool,
                    stride: self.pool,
                }
            } else {
                LayerSpec::AvgPool {
                    kernel: self.pool,
                    stride: self.pool,
                }
            },
        ]
    }
}

impl ConvBlock {
    /// `[B, C_in, H, W]` -> `[B, C_out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let (Some((padding, kind)), Some(bias)) = (self.fused(), &self.conv.bias)
            && kernels::is_flex(&x.device())
        {
            return kernels::conv_block(x, self.conv.weight.val(), bias.val(), padding, kind);
        }
        let x = self.activation.forward(self.conv.forward(x));
        match &self.pool {
            Pool::Max(p) => p.forward(x),
            Pool::Avg(p) => p.forward(x),
        }
    }

    /// The fused CPU kernel's parameters, when this block is one it computes: a square
    /// stride-1 convolution with symmetric padding, then ReLU + 2x2 max or sigmoid + 2x2 average
    /// pooling.
    fn fused(&self) -> Option<(usize, kernels::BlockKind)> {
        let c = &self.conv;
        let [k, k2] = c.kernel_size;
        if k != k2 || c.stride != [1, 1] || c.dilation != [1, 1] || c.groups != 1 {
            return None;
        }
        let padding = match c.padding {
            PaddingConfig2d::Valid => 0,
            PaddingConfig2d::Same if k % 2 == 1 => k / 2,
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
            _ => return None,
        };
        let pool_2x2 = |k: [usize; 2], s: [usize; 2]| k == [2, 2] && s == [2, 2];
        let kind = match (&self.activation, &self.pool) {
            (Activation::Relu(_), Pool::Max(p))
                if pool_2x2(p.kernel_size, p.stride)
                    && p.padding == PaddingConfig2d::Valid
                    && p.dilation == [1, 1]
                    && !p.ceil_mode =>
            {
                kernels::BlockKind::ReluMax
            }
            (Activation::Sigmoid(_), Pool::Avg(p))
                if pool_2x2(p.kernel_size, p.stride)
                    && p.padding == PaddingConfig2d::Valid
                    && !p.ceil_mode =>
            {
                kernels::BlockKind::SigmoidAvg
            }
            _ => return None,
        };
        Some((padding, kind))
    }
}
