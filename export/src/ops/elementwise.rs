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
