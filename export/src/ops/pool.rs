//! `MaxPool` and `AveragePool` (2-D): checked here, run by `maxpool2d_s8` / `avgpool2d_s8`.

use anyhow::{Result, bail};

use super::{Inputs, OpInfo, pair, resolve_pads, window_out};

fn pool(i: &Inputs, max: bool) -> Result<OpInfo> {
    let node = i.node;
    let x = i.shape(0)?;
    let [n, c, h, w] = *x else {
        bail!(
            "node {}: {} input is {x:?}, expected [N, C, H, W]",
            node.name,
            node.op
        );
    };
    let k = pair(node, "kernel_shape", [0, 0]).map_err(|_| {
        anyhow::anyhow!(
            "node {}: kernel_shape (two positive values) is required",
            node.name
        )
    })?;
    let s = pair(node, "strides", [1, 1])?;
    if node.int("ceil_mode", 0)? != 0 {
        bail!("node {}: ceil_mode 1 is not supported", node.name);
    }
    if max && pair(node, "dilations", [1, 1])? != [1, 1] {
        bail!(
            "node {}: dilations other than 1 are not supported",
            node.name
        );
    }
    let [pt, pl, pb, pr] = resolve_pads(node, [h, w], k, s)?;
    if !max && pt + pl + pb + pr > 0 && node.int("count_include_pad", 0)? == 0 {
        bail!(
            "node {}: padded average pooling without count_include_pad is not supported",
            node.name
        );
    }
    let (Some(ho), Some(wo)) = (
        window_out(h, k[0], s[0], pt, pb),
        window_out(w, k[1], s[1], pl, pr),
    ) else {
        bail!(
            "node {}: a {}x{} window does not fit the padded {h}x{w} input",
            node.name,
            k[0],
            k[1]
        );
    };
    Ok(OpInfo {
        output: vec![n, c, ho, wo],
        ..OpInfo::default()
    })
}

/// `MaxPool`.
pub fn max_pool(i: &Inputs) -> Result<OpInfo> {
    pool(i, true)
}

/// `AveragePool`.
pub fn average_pool(i: &Inputs) -> Result<OpInfo> {
    pool(i, false)
}
