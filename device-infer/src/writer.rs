//! Host side: serialises a quantized model into the device format (`std` feature). It lives
//! beside the reader so the two cannot drift; `export quantize` fills a [`ModelSpec`](crate::writer::ModelSpec).

extern crate std;
use std::vec::Vec;

use crate::kernels::{Clamp, Dims, Pool2x2};
use crate::model::{FLAG_OVERLAP, Kind, MAGIC, VERSION, crc32, rows_overlap_ok};

/// One layer, with its constants.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// What it computes.
    pub kind: Kind,
    /// Input activation (HWC).
    pub input: Dims,
    /// Output activation (after fused pooling).
    pub output: Dims,
    /// `[kh, kw]` (pools and convolutions).
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[top, left]`.
    pub padding: [usize; 2],
    /// `-zp_in`.
    pub input_offset: i32,
    /// `zp_out`.
    pub output_offset: i32,
    /// Fused activation range.
    pub act: Clamp,
    /// int8 weights (OHWI / `[out][in]`).
    pub weights: Vec<i8>,
    /// int32 biases.
    pub bias: Vec<i32>,
    /// Per-channel multipliers.
    pub multiplier: Vec<i32>,
    /// Per-channel shifts.
    pub shift: Vec<i8>,
    /// Lookup table applied after requantization.
    pub lut: Option<[i8; 256]>,
}

impl LayerSpec {
    /// A standalone pooling layer (`kind` `MaxPool` or `AvgPool`): no constants, the output
    /// keeps the input's quantization (`zero_point`).
    pub fn pool(
        kind: Kind,
        (input, output): (Dims, Dims),
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        zero_point: i8,
    ) -> Self {
        LayerSpec {
            kind,
            input,
            output,
            kernel,
            stride,
            padding,
            input_offset: -(zero_point as i32),
            output_offset: zero_point as i32,
            act: Clamp::NONE,
            weights: Vec::new(),
            bias: Vec::new(),
            multiplier: Vec::new(),
            shift: Vec::new(),
            lut: None,
        }
    }
}

/// A whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Input shape (HWC).
    pub input: Dims,
    /// Input zero point.
    pub input_zero_point: i8,
    /// `u8` pixel -> input: multiplier.
    pub input_multiplier: i32,
    /// `u8` pixel -> input: shift.
    pub input_shift: i8,
    /// Output zero point.
    pub output_zero_point: i8,
    /// The layers in order.
    pub layers: Vec<LayerSpec>,
}

fn align4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn put_u16(v: &mut Vec<u8>, x: usize) {
    v.extend_from_slice(&(x as u16).to_le_bytes());
}

/// How [`write_planned`] lays out the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaPlan {
    /// Two disjoint buffers, each sized for the largest activation it holds.
    Separate,
    /// The smallest arena where buffer 1 may start inside buffer 0 and a fused conv+pool
    /// writes over the input rows it has consumed ([`FLAG_OVERLAP`]); the separate plan
    /// when overlapping saves nothing.
    Overlap,
}

/// The arena of a plan: `(arena length, buffer 1 offset, overlap flag)`.
pub fn arena_plan(spec: &ModelSpec, plan: ArenaPlan) -> (usize, usize, bool) {
    // Activation lengths per buffer: the input and every second output in buffer 0.
    let lens: Vec<(usize, usize)> = core::iter::once(spec.input.len())
        .chain(spec.layers.iter().map(|l| l.output.len()))
        .enumerate()
        .map(|(i, len)| (i % 2, len))
        .collect();
    let cap = |b: usize| {
        lens.iter()
            .filter(|l| l.0 == b)
            .map(|l| l.1)
            .max()
            .unwrap_or(0)
    };
    let separate_b1 = cap(0).div_ceil(4) * 4;
    let separate = (separate_b1 + cap(1), separate_b1, false);
    if plan == ArenaPlan::Separate {
        return separate;
    }
    let feasible = |b1: usize| {
        spec.layers.iter().enumerate().all(|(i, l)| {
            let at = |buf: usize| if buf == 0 { 0 } else { b1 };
            let (x0, y0) = (at(i % 2), at((i + 1) % 2));
            let (x1, y1) = (x0 + l.input.len(), y0 + l.output.len());
            if y0 >= x1 || y1 <= x0 {
                return true;
            }
            let filter = Dims {
                h: l.kernel[0],
                w: l.kernel[1],
                c: l.input.c,
            };
            matches!(l.kind, Kind::Conv2d(Some(_)))
                && crate::kernels::conv2d_block::patch_fits(filter, l.input_offset)
                && rows_overlap_ok(
                    l.input,
                    l.output,
                    l.kernel[0],
                    l.stride[0],
                    l.padding[0],
                    x0,
                    y0,
                )
        })
    };
    (0..separate_b1)
        .step_by(4)
        .filter(|&b1| feasible(b1))
        .map(|b1| (cap(0).max(b1 + cap(1)), b1, true))
        .min_by_key(|&(arena, b1, _)| (arena, b1))
        .filter(|o| o.0 < separate.0)
        .unwrap_or(separate)
}

/// Serialises `spec` with two disjoint arena buffers ([`ArenaPlan::Separate`]).
pub fn write(spec: &ModelSpec) -> Vec<u8> {
    write_planned(spec, ArenaPlan::Separate)
}

/// Serialises `spec`. Layers ping-pong between two arena buffers: buffer 0 holds the input and
/// every second activation, buffer 1 the others; `plan` places them.
pub fn write_planned(spec: &ModelSpec, plan: ArenaPlan) -> Vec<u8> {
    let n = spec.layers.len();
    let (arena, buffer1, overlap) = arena_plan(spec, plan);

    // Data after the header and the table.
    let table_end = 48 + 64 * n;
    let mut data: Vec<u8> = Vec::new();
    let mut place = |bytes: &[u8]| -> u32 {
        align4(&mut data);
        let off = (table_end + data.len()) as u32;
        data.extend_from_slice(bytes);
        off
    };
    let mut entries = Vec::with_capacity(64 * n);
    for (i, l) in spec.layers.iter().enumerate() {
        let w: Vec<u8> = l.weights.iter().map(|&v| v as u8).collect();
        let b: Vec<u8> = l.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let m: Vec<u8> = l.multiplier.iter().flat_map(|v| v.to_le_bytes()).collect();
        let s: Vec<u8> = l.shift.iter().map(|&v| v as u8).collect();
        let (w_off, b_off, m_off, s_off) = (place(&w), place(&b), place(&m), place(&s));
        let t_off = l.lut.map(|t| place(&t.map(|v| v as u8))).unwrap_or(0);
        let (kind, pool) = match l.kind {
            Kind::Conv2d(None) => (1u8, 0u8),
            Kind::Conv2d(Some(Pool2x2::Max)) => (1, 3),
            Kind::Conv2d(Some(Pool2x2::Avg)) => (1, 4),
            Kind::Dense => (2, 0),
            Kind::MaxPool => (3, 0),
            Kind::AvgPool => (4, 0),
        };
        let e = &mut entries;
        e.extend_from_slice(&[kind, pool]);
        for d in [
            l.input.h, l.input.w, l.input.c, l.output.h, l.output.w, l.output.c,
        ] {
            put_u16(e, d);
        }
        for v in [l.kernel, l.stride, l.padding].into_iter().flatten() {
            e.push(v as u8);
        }
        e.extend_from_slice(&l.input_offset.to_le_bytes());
        e.extend_from_slice(&l.output_offset.to_le_bytes());
        e.extend_from_slice(&[
            l.act.min as u8,
            l.act.max as u8,
            u8::from(l.lut.is_some()),
            0,
        ]);
        for v in [
            w_off,
            w.len() as u32,
            b_off,
            l.bias.len() as u32,
            m_off,
            s_off,
            t_off,
        ] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&[(i % 2) as u8, ((i + 1) % 2) as u8, 0, 0]);
    }
    align4(&mut data);

    let mut out = Vec::with_capacity(table_end + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    put_u16(&mut out, 48);
    let total = (table_end + data.len()) as u32;
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // CRC, filled below
    out.extend_from_slice(&(arena as u32).to_le_bytes());
    out.extend_from_slice(&(buffer1 as u32).to_le_bytes());
    put_u16(&mut out, n);
    put_u16(&mut out, spec.layers.last().map_or(0, |l| l.output.len()));
    for d in [spec.input.h, spec.input.w, spec.input.c] {
        put_u16(&mut out, d);
    }
    out.extend_from_slice(&[spec.input_zero_point as u8, spec.output_zero_point as u8]);
    out.extend_from_slice(&spec.input_multiplier.to_le_bytes());
    let flags = if overlap { FLAG_OVERLAP } else { 0 };
    out.extend_from_slice(&[spec.input_shift as u8, flags, 0, 0]);
    out.extend_from_slice(&48u32.to_le_bytes());
    debug_assert_eq!(out.len(), 48);
    out.extend_from_slice(&entries);
    out.extend_from_slice(&data);
    let crc = crc32(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A model file copied into 4-byte aligned memory, as [`crate::Model::from_bytes`] requires
/// (what `include_model!` does for an embedded file, for bytes read at run time on the host).
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = std::vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes, 4-byte aligned.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len]
    }
}
