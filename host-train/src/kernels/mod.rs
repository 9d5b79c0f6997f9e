//! Fused training kernels for the CPU, plugged into burn through its backend-extension API.
//!
//! [`conv_block`] computes `pool2x2(act(conv2d(x, w, b)))` for the LeNet stages. On the flex
//! backend (with or without autodiff) it runs [`conv_block::forward`] / [`conv_block::backward`];
//! on any other device (the GPU backends) [`conv_block`] falls back to burn's own ops, so models
//! call one function everywhere. The fused path's gradients are checked against burn's composed
//! ops in `tests/kernels.rs`.

pub mod conv_act;
pub mod conv_block;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use conv_act::ConvDims;
use conv_block::BlockDims;
pub use conv_block::BlockKind;

/// `kind` as a flag that crosses the dispatch boundary.
fn kind_of(relu_max: bool) -> BlockKind {
    if relu_max {
        BlockKind::ReluMax
    } else {
        BlockKind::SigmoidAvg
    }
}

/// Backend operations of the fused LeNet stage. Implemented for flex and for autodiff over it.
#[backend_extension(Flex, Autodiff)]
pub trait ConvBlockOps: Backend {
    /// Inference forward: `pool2x2(act(conv2d(x, weight, bias)))`, stride 1, `padding` zeros
    /// on every side; ReLU + max pool when `relu_max`, else sigmoid + average pool.
    fn conv_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
    ) -> FloatTensor<Self>;

    /// Training forward: the output and what the backward pass needs (see
    /// [`conv_block::aux_len`]).
    fn conv_block_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients `(dx, dweight, dbias)` from the output gradient; `dx` is empty (shape `[0]`)
    /// unless `need_dx`.
    #[allow(clippy::too_many_arguments)]
    fn conv_block_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        aux: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
        need_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn dims_of(x: &FlexTensor, weight: &FlexTensor, padding: usize) -> BlockDims {
    let xs = x.shape();
    let ws = weight.shape();
    BlockDims {
        batch: xs[0],
        ci: xs[1],
        h: xs[2],
        w: xs[3],
        co: ws[0],
        k: ws[2],
        pad: padding,
    }
}

fn flex(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape)),
        DType::F32,
    )
}

/// The kernels read row-major storage.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

impl ConvBlockOps for Flex {
    fn conv_block(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: usize,
        relu_max: bool,
    ) -> FlexTensor {
        Self::conv_block_train(x, weight, bias, padding, relu_max).0
    }

    fn conv_block_train(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: usize,
        relu_max: bool,
    ) -> (FlexTensor, FlexTensor) {
        let d = dims_of(&x, &weight, padding);
        let (x, weight, bias) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
        let kind = kind_of(relu_max);
        let (out, aux) =
            conv_block::forward(x.storage(), weight.storage(), bias.storage(), &d, kind);
        let aux_len = conv_block::aux_len(&d, kind);
        (
            flex(out, vec![d.batch, d.co, d.hp(), d.wp()]),
            flex(aux, vec![d.batch, aux_len]),
        )
    }

    fn conv_block_backward(
        x: FlexTensor,
        weight: FlexTensor,
        aux: FlexTensor,
        grad: FlexTensor,
        padding: usize,
        relu_max: bool,
        need_dx: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let d = dims_of(&x, &weight, padding);
        let (x, weight, aux, grad) = (
            contiguous(&x),
            contiguous(&weight),
            contiguous(&aux),
            contiguous(&grad),
        );
        let g = conv_block::backward(
            x.storage(),
            weight.storage(),
            aux.storage(),
            grad.storage(),
            &d,
            kind_of(relu_max),
            need_dx,
        );
        let dx_shape = if need_dx {
            vec![d.batch, d.ci, d.h, d.w]
        } else {
            vec![0]
        };
        (
            flex(g.dx, dx_shape),
            flex(g.dweight, vec![d.co, d.ci, d.k, d.k]),
            flex(g.dbias, vec![d.co]),
        )
    }
}

#[derive(Debug)]
struct ConvBlockBackward;

impl<B: Backend + ConvBlockOps> Backward<B, 3> for ConvBlockBackward {
    // x, weight, the forward's aux, padding, relu_max.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, usize, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, aux, padding, relu_max) = ops.state;
        let (dx, dw, db) =
            B::conv_block_backward(x, weight, aux, grad, padding, relu_max, node_x.is_some());
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + ConvBlockOps, C: CheckpointStrategy> ConvBlockOps for Autodiff<B, C> {
    fn conv_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match ConvBlockBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, aux) =
                    B::conv_block_train(x.clone(), weight.clone(), bias, padding, relu_max);
                prep.finish((x, weight, aux, padding, relu_max), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_block(x, weight, bias, padding, relu_max))
            }
        }
    }

    fn conv_block_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // Only the inner backend's training forward is ever called (from `conv_block` above);
        // here the results are plain constants for the graph.
        let (out, aux) = B::conv_block_train(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            padding,
            relu_max,
        );
        (Self::from_inner(out), Self::from_inner(aux))
    }

    fn conv_block_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        aux: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        padding: usize,
        relu_max: bool,
        need_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw, db) = B::conv_block_backward(
            x.into_primitive(),
            weight.into_primitive(),
            aux.into_primitive(),
            grad.into_primitive(),
            padding,
            relu_max,
            need_dx,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dw),
            Self::from_inner(db),
        )
    }
}

/// Whether tensors on `device` run on the flex backend (where the fused kernels apply).
pub fn is_flex(device: &burn::tensor::Device) -> bool {
    device.clone().without_autodiff() == burn::tensor::Device::flex()
}

/// The block through burn's own ops: the path on other backends, and the reference the fused
/// kernel is tested against.
pub fn conv_block_composed(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    padding: usize,
    kind: BlockKind,
) -> Tensor<4> {
    use burn::tensor::activation::{relu, sigmoid};
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    let z = conv2d(
        x,
        weight,
        Some(bias),
        ConvOptions::new([1, 1], [padding, padding], [1, 1], 1),
    );
    match kind {
        BlockKind::ReluMax => burn::nn::pool::MaxPool2dConfig::new([2, 2])
            .init()
            .forward(relu(z)),
        BlockKind::SigmoidAvg => burn::nn::pool::AvgPool2dConfig::new([2, 2])
            .init()
            .forward(sigmoid(z)),
    }
}

/// `pool2x2(act(conv2d(x, weight, bias)))` through the fused kernel: `x [B, Ci, H, W]`,
/// `weight [Co, Ci, k, k]`, `bias [Co]`, stride 1, `padding` zeros around.
pub fn conv_block(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    padding: usize,
    kind: BlockKind,
) -> Tensor<4> {
    use burn::backend::Dispatch;
    let out = Dispatch::conv_block(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        padding,
        kind == BlockKind::ReluMax,
    );
    Tensor::from_dispatch(out)
}

/// Backend operations of the plain convolution `relu?(conv2d(x, w, b))` with stride and
/// symmetric padding (AlexNet's and VGG's layers). Implemented for flex and autodiff over it.
#[backend_extension(Flex, Autodiff)]
pub trait ConvActOps: Backend {
    /// Forward: `conv2d(x, weight, bias)` with `stride` and `padding` zeros on every side,
    /// then ReLU when `relu`.
    fn conv_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// Gradients `(dx, dweight, dbias)` from the output gradient and the forward's output;
    /// `dx` is empty (shape `[0]`) unless `need_dx`.
    #[allow(clippy::too_many_arguments)]
    fn conv_act_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        out: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        relu: bool,
        need_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn conv_dims(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: usize) -> ConvDims {
    let xs = x.shape();
    let ws = weight.shape();
    ConvDims {
        batch: xs[0],
        ci: xs[1],
        h: xs[2],
        w: xs[3],
        co: ws[0],
        k: ws[2],
        stride,
        pad: padding,
    }
}

impl ConvActOps for Flex {
    fn conv_act(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> FlexTensor {
        let d = conv_dims(&x, &weight, stride, padding);
        let (x, weight, bias) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
        let out = conv_act::forward(x.storage(), weight.storage(), bias.storage(), &d, relu);
        flex(out, vec![d.batch, d.co, d.ho(), d.wo()])
    }

    fn conv_act_backward(
        x: FlexTensor,
        weight: FlexTensor,
        out: FlexTensor,
        grad: FlexTensor,
        stride: usize,
        padding: usize,
        relu: bool,
        need_dx: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let d = conv_dims(&x, &weight, stride, padding);
        let (x, weight, out, grad) = (
            contiguous(&x),
            contiguous(&weight),
            contiguous(&out),
            contiguous(&grad),
        );
        let g = conv_act::backward(
            x.storage(),
            weight.storage(),
            out.storage(),
            grad.storage(),
            &d,
            relu,
            need_dx,
        );
        let dx_shape = if need_dx {
            vec![d.batch, d.ci, d.h, d.w]
        } else {
            vec![0]
        };
        (
            flex(g.dx, dx_shape),
            flex(g.dweight, vec![d.co, d.ci, d.k, d.k]),
            flex(g.dbias, vec![d.co]),
        )
    }
}

#[derive(Debug)]
struct ConvActBackward;

impl<B: Backend + ConvActOps> Backward<B, 3> for ConvActBackward {
    // x, weight, the forward's output, stride, padding, relu.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        usize,
        usize,
        bool,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, out, stride, padding, relu) = ops.state;
        let (dx, dw, db) = B::conv_act_backward(
            x,
            weight,
            out,
            grad,
            stride,
            padding,
            relu,
            node_x.is_some(),
        );
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + ConvActOps, C: CheckpointStrategy> ConvActOps for Autodiff<B, C> {
    fn conv_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match ConvActBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::conv_act(x.clone(), weight.clone(), bias, stride, padding, relu);
                prep.finish((x, weight, out.clone(), stride, padding, relu), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_act(x, weight, bias, stride, padding, relu))
            }
        }
    }

    fn conv_act_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        out: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        relu: bool,
        need_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw, db) = B::conv_act_backward(
            x.into_primitive(),
            weight.into_primitive(),
            out.into_primitive(),
            grad.into_primitive(),
            stride,
            padding,
            relu,
            need_dx,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dw),
            Self::from_inner(db),
        )
    }
}

/// `relu?(conv2d(x, weight, bias))` through the CPU kernel: `x [B, Ci, H, W]`,
/// `weight [Co, Ci, k, k]`, `bias [Co]`, `stride`, `padding` zeros around (flex only; see
/// [`conv_act_fits`]).
pub fn conv_act(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Tensor<4> {
    use burn::backend::Dispatch;
    let out = Dispatch::conv_act(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
        relu,
    );
    Tensor::from_dispatch(out)
}

/// The same function through burn's own ops: the path on other backends, and the reference
/// the kernel is tested against.
pub fn conv_act_composed(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Tensor<4> {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    let z = conv2d(
        x,
        weight,
        Some(bias),
        ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1),
    );
    if relu {
        burn::tensor::activation::relu(z)
    } else {
        z
    }
}

/// The `(stride, padding)` of `conv` when the plain kernel computes it: a square kernel, equal
/// strides, symmetric padding, no dilation or groups, a bias.
pub fn conv_act_fits(conv: &burn::nn::conv::Conv2d) -> Option<(usize, usize)> {
    use burn::nn::PaddingConfig2d;
    let [k, k2] = conv.kernel_size;
    let [s, s2] = conv.stride;
    if k != k2 || s != s2 || conv.dilation != [1, 1] || conv.groups != 1 || conv.bias.is_none() {
        return None;
    }
    let padding = match conv.padding {
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
        _ => return None,
    };
    Some((s, padding))
}

/// `relu?(conv(x))` for a burn `Conv2d`: the CPU kernel on flex when it fits, burn's ops
/// otherwise.
pub fn conv2d_act(conv: &burn::nn::conv::Conv2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    if let (Some((stride, padding)), Some(bias)) = (conv_act_fits(conv), &conv.bias)
        && is_flex(&x.device())
    {
        return conv_act(x, conv.weight.val(), bias.val(), stride, padding, relu);
    }
    let z = conv.forward(x);
    if relu {
        burn::tensor::activation::relu(z)
    } else {
        z
    }
}
