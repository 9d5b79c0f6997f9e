//! `Flatten` and `Reshape`: free on the device (NCHW data is already flat).

use anyhow::{Result, bail};

use super::{Inputs, OpInfo};
use crate::graph::Constant;

fn input_shape(i: &Inputs) -> Result<Vec<usize>> {
    Ok(i.shape(0)?.to_vec())
}

/// `Flatten(axis)`: `[prod(dims[..axis]), prod(dims[axis..])]`.
pub fn flatten(i: &Inputs) -> Result<OpInfo> {
    let x = input_shape(i)?;
    let rank = x.len() as i64;
    let mut axis = i.node.int("axis", 1)?;
    if axis < 0 {
        axis += rank;
    }
    if !(0..=rank).contains(&axis) {
        bail!(
            "node {}: Flatten axis {axis} out of range for rank {rank}",
            i.node.name
        );
    }
    let (a, b) = x.split_at(axis as usize);
    Ok(OpInfo {
        output: vec![a.iter().product(), b.iter().product()],
        ..OpInfo::default()
    })
}

/// `Reshape` with a constant int64 shape (`0` copies a dimension, `-1` is inferred).
pub fn reshape(i: &Inputs) -> Result<OpInfo> {
    let node = i.node;
    let x = input_shape(i)?;
    let target = match i.constants.get(1).copied().flatten() {
        Some(Constant::I64 { data, .. }) => data.clone(),
        Some(_) => bail!("node {}: the shape input must be int64", node.name),
        None => bail!(
            "node {}: the shape input must be a constant (dynamic reshapes are not supported)",
            node.name
        ),
    };
    let allow_zero = node.int("allowzero", 0)? != 0;
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (k, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(k);
                out.push(1);
            }
            0 if !allow_zero => out.push(*x.get(k).ok_or_else(|| {
                anyhow::anyhow!(
                    "node {}: shape[{k}] = 0 copies a dimension the input lacks",
                    node.name
                )
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => bail!("node {}: invalid target shape {target:?}", node.name),
        }
    }
    let known: usize = out.iter().product();
    if let Some(k) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            bail!("node {}: cannot reshape {x:?} into {target:?}", node.name);
        }
        out[k] = total / known;
    } else if known != total {
        bail!(
            "node {}: cannot reshape {x:?} ({total} elements) into {target:?}",
            node.name
        );
    }
    Ok(OpInfo {
        output: out,
        ..OpInfo::default()
    })
}
