//! `Conv` (2-D, NCHW): checked here, run on the device by `conv2d_s8`.

use anyhow::{Result, bail};

use super::{Inputs, OpInfo, pair, resolve_pads, window_out};

/// Checks a Conv node and infers `[N, M, Ho, Wo]`.
pub fn conv(i: &Inputs) -> Result<OpInfo> {
    let node = i.node;
    let x = i.shape(0)?;
    let [n, c, h, w] = *x else {
        bail!(
            "node {}: Conv input is {x:?}, expected [N, C, H, W]",
            node.name
        );
    };
    let (wd, weights) = i.f32_const(1, "the weight")?;
    let [m, cg, kh, kw] = *wd else {
        bail!(
            "node {}: Conv weight is {wd:?}, expected [M, C, kH, kW]",
            node.name
        );
    };
    let group = node.int("group", 1)?;
    if group != 1 {
        bail!(
            "node {}: group {group} is not supported (only 1: no grouped or depthwise convolution yet)",
            node.name
        );
    }
    if cg != c {
        bail!(
            "node {}: weight has {cg} input channels, the input has {c}",
            node.name
        );
    }
    let k = pair(node, "kernel_shape", [kh, kw])?;
    if k != [kh, kw] {
        bail!(
            "node {}: kernel_shape {k:?} disagrees with the weight's {:?}",
            node.name,
            [kh, kw]
        );
    }
    let s = pair(node, "strides", [1, 1])?;
    if pair(node, "dilations", [1, 1])? != [1, 1] {
        bail!(
            "node {}: dilations other than 1 are not supported",
            node.name
        );
    }
    let [pt, pl, pb, pr] = resolve_pads(node, [h, w], k, s)?;
    let (Some(ho), Some(wo)) = (
        window_out(h, kh, s[0], pt, pb),
        window_out(w, kw, s[1], pl, pr),
    ) else {
        bail!(
            "node {}: a {kh}x{kw} kernel does not fit the padded {h}x{w} input",
            node.name
        );
    };
    let mut bias_len = 0;
    if i.has(2) {
        let (bd, _) = i.f32_const(2, "the bias")?;
        if bd != [m] {
            bail!("node {}: bias is {bd:?}, expected [{m}]", node.name);
        }
        bias_len = m;
    }
    Ok(OpInfo {
        output: vec![n, m, ho, wo],
        params: weights.len() + bias_len,
        macs: n * m * ho * wo * c * kh * kw,
        weight_bytes: weights.len(),
        bias_bytes: 4 * m,
        quant_channels: m,
        lut: false,
    })
}
