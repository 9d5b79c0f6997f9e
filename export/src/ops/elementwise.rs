//! Element-wise ops: `Relu` (folded into the previous layer's clamp on the device), `Sigmoid`
//! and `Tanh` (256-entry int8 lookup tables), `Softmax`, `Identity`.

use anyhow::{Result, bail};

use super::{Inputs, OpInfo};

/// Output shape = input shape, nothing stored.
pub fn same_shape(i: &Inputs) -> Result<OpInfo> {
    Ok(OpInfo {
        output: i.shape(0)?.to_vec(),
        ..OpInfo::default()
    })
}

/// LRN (local response normalisation across channels): same shape; `size` odd and positive,
/// `alpha`, `beta`, `bias` finite, `bias` > 0 (so the base of the power stays positive).
pub fn lrn(i: &Inputs) -> Result<OpInfo> {
    let n = i.node;
    let shape = i.shape(0)?;
    if shape.len() != 4 {
        anyhow::bail!(
            "node {}: LRN input must be [N, C, H, W], got {shape:?}",
            n.name
        );
    }
    let size = n.int("size", 0)?;
    if size <= 0 || size % 2 == 0 {
        anyhow::bail!("node {}: LRN size {size} must be odd and positive", n.name);
    }
    let (alpha, beta, bias) = (
        n.float("alpha", 1e-4)?,
        n.float("beta", 0.75)?,
        n.float("bias", 1.0)?,
    );
    if !(alpha.is_finite() && beta.is_finite() && bias.is_finite() && bias > 0.0) {
        anyhow::bail!(
            "node {}: LRN alpha {alpha}, beta {beta}, bias {bias} must be finite, bias > 0",
            n.name
        );
    }
    Ok(OpInfo {
        output: shape.to_vec(),
        // A square, a sum over the window and a division per element.
        macs: shape.iter().product::<usize>() * size as usize,
        ..OpInfo::default()
    })
}

/// Sigmoid / Tanh: a 256-byte table on the device.
pub fn lut(i: &Inputs) -> Result<OpInfo> {
    Ok(OpInfo {
        output: i.shape(0)?.to_vec(),
        lut: true,
        ..OpInfo::default()
    })
}

/// Softmax over the last axis (the only one the device runs).
pub fn softmax(i: &Inputs) -> Result<OpInfo> {
    let shape = i.shape(0)?;
    let axis = i.node.int("axis", -1)?;
    let rank = shape.len() as i64;
    if axis != -1 && axis != rank - 1 {
        bail!(
            "node {}: Softmax over axis {axis} of a rank-{rank} tensor; only the last axis is supported",
            i.node.name
        );
    }
    same_shape(i)
}
