//! The fused conv block against burn's own ops, through autodiff: same outputs and gradients.

use burn::tensor::{Device, Distribution, Tensor};
use host_train::kernels::{self, BlockKind};

fn assert_close(a: Tensor<4>, b: Tensor<4>, what: &str) {
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.into_data().try_to_vec().unwrap(),
        b.into_data().try_to_vec().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}");
    // Relative to the magnitude: bias gradients are sums over thousands of positions.
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max);
    assert!(max <= 1e-5, "{what}: max relative difference {max}");
}

#[test]
fn fused_block_matches_burn_ops_forward_and_backward() {
    let device = Device::flex().autodiff();
    for (batch, ci, hw, co, k, pad) in [
        (5, 1, 28, 6, 5, 2),
        (9, 6, 14, 16, 5, 0),
        (3, 2, 9, 4, 3, 1),
    ] {
        for kind in [BlockKind::ReluMax, BlockKind::SigmoidAvg] {
            let x = Tensor::<4>::random(
                [batch, ci, hw, hw],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let w = Tensor::<4>::random([co, ci, k, k], Distribution::Uniform(-0.5, 0.5), &device);
            let b = Tensor::<1>::random([co], Distribution::Uniform(-0.5, 0.5), &device);
            let probe = |out: &Tensor<4>| {
                Tensor::<4>::ones(out.dims(), &device)
                    .cumsum(3)
                    .div_scalar(7.0)
            };
            let run = |fused: bool| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let out = if fused {
                    kernels::conv_block(x.clone(), w.clone(), b.clone(), pad, kind)
                } else {
                    kernels::conv_block_composed(x.clone(), w.clone(), b.clone(), pad, kind)
                };
                let r = probe(&out);
                let grads = (out.clone() * r).sum().backward();
                (
                    out.without_autodiff(),
                    x.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (o1, dx1, dw1, db1) = run(true);
            let (o2, dx2, dw2, db2) = run(false);
            let what = format!("{kind:?} b{batch} ci{ci} {hw}x{hw} co{co} k{k} p{pad}");
            assert_eq!(o1.dims(), o2.dims(), "{what}: shape");
            assert_close(o1, o2, &format!("{what}: output"));
            assert_close(dx1, dx2, &format!("{what}: dx"));
            assert_close(dw1, dw2, &format!("{what}: dweight"));
            assert_close(
                db1.reshape([co, 1, 1, 1]),
                db2.reshape([co, 1, 1, 1]),
                &format!("{what}: dbias"),
            );
        }
    }
}

#[test]
fn fused_block_without_autodiff_is_the_same_function() {
    let device = Device::flex();
    let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Default, &device);
    let w = Tensor::<4>::random([6, 1, 5, 5], Distribution::Default, &device);
    let b = Tensor::<1>::random([6], Distribution::Default, &device);
    let fused = kernels::conv_block(x.clone(), w.clone(), b.clone(), 2, BlockKind::ReluMax);
    let composed = kernels::conv_block_composed(x, w, b, 2, BlockKind::ReluMax);
    assert_eq!(fused.dims(), [4, 6, 14, 14]);
    assert_close(fused, composed, "inference");
}

#[test]
fn plain_conv_kernel_matches_burn_ops_forward_and_backward() {
    let device = Device::flex().autodiff();
    // AlexNet's conv1 geometry (small), VGG's 3x3 same, a strided 5x5.
    for (batch, ci, hw, co, k, stride, pad) in [
        (5, 3, 31, 4, 11, 4, 2),
        (6, 4, 9, 5, 3, 1, 1),
        (3, 2, 12, 3, 5, 2, 2),
    ] {
        for relu in [true, false] {
            let x = Tensor::<4>::random(
                [batch, ci, hw, hw],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let w = Tensor::<4>::random([co, ci, k, k], Distribution::Uniform(-0.5, 0.5), &device);
            let b = Tensor::<1>::random([co], Distribution::Uniform(-0.5, 0.5), &device);
            let run = |fused: bool| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let out = if fused {
                    kernels::conv_act(x.clone(), w.clone(), b.clone(), stride, pad, relu)
                } else {
                    kernels::conv_act_composed(x.clone(), w.clone(), b.clone(), stride, pad, relu)
                };
                let r = Tensor::<4>::ones(out.dims(), &device)
                    .cumsum(3)
                    .div_scalar(7.0);
                let grads = (out.clone() * r).sum().backward();
                (
                    out.without_autodiff(),
                    x.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (o1, dx1, dw1, db1) = run(true);
            let (o2, dx2, dw2, db2) = run(false);
            let what =
                format!("relu {relu} b{batch} ci{ci} {hw}x{hw} co{co} k{k} s{stride} p{pad}");
            assert_eq!(o1.dims(), o2.dims(), "{what}: shape");
            assert_close(o1, o2, &format!("{what}: output"));
            assert_close(dx1, dx2, &format!("{what}: dx"));
            assert_close(dw1, dw2, &format!("{what}: dweight"));
            assert_close(
                db1.reshape([co, 1, 1, 1]),
                db2.reshape([co, 1, 1, 1]),
                &format!("{what}: dbias"),
            );
        }
    }
}
