//! Fully connected layers: `MatMul` by a constant weight, `Gemm`, and `Add` of a constant bias
//! (burn-onnx writes `Linear` as MatMul + Add). Run on the device by `dense_s8`.

use anyhow::{Result, bail};

use super::{Inputs, OpInfo};

/// `[.., K] x [K, N]` with a constant `[K, N]` weight.
pub fn matmul(i: &Inputs) -> Result<OpInfo> {
    let node = i.node;
    let x = i.shape(0)?;
    let (wd, w) = i.f32_const(1, "the weight (right operand)")?;
    let [k, n] = *wd else {
        bail!(
            "node {}: MatMul weight is {wd:?}, expected [K, N]",
            node.name
        );
    };
    let Some((&xk, rows)) = x.split_last() else {
        bail!("node {}: MatMul input is a scalar", node.name);
    };
    if xk != k {
        bail!(
            "node {}: MatMul of {x:?} by [{k}, {n}]: inner dimensions differ",
            node.name
        );
    }
    let mut output = rows.to_vec();
    output.push(n);
    Ok(OpInfo {
        output,
        params: w.len(),
        macs: rows.iter().product::<usize>() * k * n,
        weight_bytes: w.len(),
        quant_channels: n,
        ..OpInfo::default()
    })
}

/// `Gemm(A, B, C)`: `alpha * A' B' + beta * C` with constant B and C, alpha = beta = 1.
pub fn gemm(i: &Inputs) -> Result<OpInfo> {
    let node = i.node;
    let a = i.shape(0)?;
    let [m, ka] = match (a, node.int("transA", 0)?) {
        ([m, k], 0) => [*m, *k],
        _ => bail!(
            "node {}: Gemm input must be [M, K] without transA",
            node.name
        ),
    };
    if node.float("alpha", 1.0)? != 1.0 || node.float("beta", 1.0)? != 1.0 {
        bail!(
            "node {}: Gemm alpha/beta other than 1 are not supported",
            node.name
        );
    }
    let (bd, b) = i.f32_const(1, "B")?;
    let [k, n] = match (bd, node.int("transB", 0)?) {
        ([k, n], 0) => [*k, *n],
        ([n, k], _) => [*k, *n],
        _ => bail!("node {}: Gemm B is {bd:?}, expected 2-D", node.name),
    };
    if k != ka {
        bail!(
            "node {}: Gemm of [{m}, {ka}] by [{k}, {n}]: inner dimensions differ",
            node.name
        );
    }
    let mut bias = 0;
    if i.has(2) {
        let (cd, c) = i.f32_const(2, "C")?;
        if c.len() != n || !(cd == [n] || cd == [1, n]) {
            bail!("node {}: Gemm C is {cd:?}, expected [{n}]", node.name);
        }
        bias = n;
    }
    Ok(OpInfo {
        output: vec![m, n],
        params: b.len() + bias,
        macs: m * k * n,
        weight_bytes: b.len(),
        bias_bytes: 4 * n,
        quant_channels: n,
        ..OpInfo::default()
    })
}

/// `Add` of a runtime tensor and a constant broadcast along the last axis (a bias).
pub fn add_bias(i: &Inputs) -> Result<OpInfo> {
    let node = i.node;
    let (x, c) = match (i.shapes.first(), i.shapes.get(1)) {
        (Some(Some(x)), Some(None)) => (x.clone(), i.f32_const(1, "the bias")?),
        (Some(None), Some(Some(x))) => (x.clone(), i.f32_const(0, "the bias")?),
        _ => bail!(
            "node {}: Add of two runtime tensors is not supported (only a constant bias)",
            node.name
        ),
    };
    let (cd, data) = c;
    let last = *x.last().unwrap_or(&1);
    if data.len() != last || cd.iter().rev().skip(1).any(|&d| d != 1) {
        bail!(
            "node {}: Add of {x:?} and a {cd:?} constant: only a bias along the last axis is supported",
            node.name
        );
    }
    Ok(OpInfo {
        output: x,
        params: data.len(),
        bias_bytes: 4 * data.len(),
        ..OpInfo::default()
    })
}
