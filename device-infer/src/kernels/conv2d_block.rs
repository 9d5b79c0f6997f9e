//! `conv2d_pool2x2_s8`: a convolution whose output goes straight through an optional lookup
//! table (sigmoid, tanh) into a 2x2, stride-2 max or average pooling, without materialising
//! the convolution output: the LeNet stage in one pass, so the arena holds only the pooled
//! result.
//!
//! Bit-exact with `conv2d_s8`, then the table, then `maxpool2d_s8` / `avgpool2d_s8` (tested
//! below against the references): each pooled value is computed from the same four int8
//! convolution outputs those kernels would produce.

use super::conv2d::clip;
use super::{ConvParams, Dims, PerChannelQuant};
use crate::quant::requantize;

/// The pooling fused after the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool2x2 {
    /// 2x2 max, stride 2.
    Max,
    /// 2x2 average, stride 2, rounded half away from zero.
    Avg,
}

/// Where one convolution window lies in the input: its first row and column (may be
/// negative) and the clipped kernel rows and columns.
#[derive(Clone, Copy)]
struct Window {
    iy0: isize,
    ix0: isize,
    ky: (usize, usize),
    kx: (usize, usize),
}

impl Window {
    fn new(p: &ConvParams, in_dims: Dims, filter_dims: Dims, oy: usize, ox: usize) -> Self {
        let iy0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
        let ix0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
        Window {
            iy0,
            ix0,
            ky: clip(iy0, filter_dims.h, in_dims.h),
            kx: clip(ix0, filter_dims.w, in_dims.w),
        }
    }
}

/// One convolution output value for channel `oc` (requantized, clamped, through the table).
#[allow(clippy::too_many_arguments)]
#[inline]
fn conv_at(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    lut: Option<&[i8; 256]>,
    win: &Window,
    oc: usize,
) -> i32 {
    let c = in_dims.c;
    let (kh, kw) = (filter_dims.h, filter_dims.w);
    let (kx_lo, kx_hi) = win.kx;
    let run = (kx_hi - kx_lo) * c;
    let mut acc = bias[oc];
    if run > 0 {
        let col = (win.ix0 + kx_lo as isize) as usize;
        for ky in win.ky.0..win.ky.1 {
            let iy = (win.iy0 + ky as isize) as usize;
            let xs = &input[(iy * in_dims.w + col) * c..][..run];
            let ws = &filter[((oc * kh + ky) * kw + kx_lo) * c..][..run];
            acc += super::conv2d::dot(xs, ws, p.input_offset);
        }
    }
    let v = p
        .act
        .apply(requantize(acc, q.multiplier[oc], q.shift[oc] as i32) + p.output_offset);
    match lut {
        Some(t) => t[(v as i32 + 128) as usize] as i32,
        None => v as i32,
    }
}

/// Filter volumes up to this use [`conv2d_pool2x2_s8_patch`] (a stack patch of this many
/// i16 values, 320 bytes); larger ones take the per-channel path.
pub const PATCH: usize = 160;
/// Output channels per block of the patch path (a stack block of i16 running values).
const CH_BLOCK: usize = 64;

/// Convolution + optional table + 2x2/2 pooling of one HWC image. `out_dims` is the pooled
/// size: `floor(conv_out / 2)` in each direction (validated at load). Dispatches to the
/// patch variant when the filter volume fits [`PATCH`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool2x2_s8(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    out_dims: Dims,
    output: &mut [i8],
) {
    if filter_dims.len() <= PATCH {
        conv2d_pool2x2_s8_patch(
            p,
            q,
            in_dims,
            input,
            filter_dims,
            filter,
            bias,
            lut,
            pool,
            out_dims,
            output,
        )
    } else {
        conv2d_pool2x2_s8_per_channel(
            p,
            q,
            in_dims,
            input,
            filter_dims,
            filter,
            bias,
            lut,
            pool,
            out_dims,
            output,
        )
    }
}

/// The patch variant: for each window, `x + input_offset` (0 in the padding) is gathered once
/// into a contiguous patch in the filter's `[kh][kw][in_c]` order, then every output channel is
/// one dot product of the patch with its filter row. Same integer sums in another order, hence
/// bit-exact.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool2x2_s8_patch(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    out_dims: Dims,
    output: &mut [i8],
) {
    let (kw, c) = (filter_dims.w, in_dims.c);
    let kvol = filter_dims.len().min(PATCH);
    let mut patch = [0i16; PATCH];
    let mut pooled = [0i16; CH_BLOCK];
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            let out = &mut output[(py * out_dims.w + px) * out_dims.c..][..out_dims.c];
            for (block, out) in out.chunks_mut(CH_BLOCK).enumerate() {
                for (pos, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    let win = Window::new(p, in_dims, filter_dims, 2 * py + dy, 2 * px + dx);
                    patch[..kvol].fill(0);
                    // Each kernel row is one contiguous run of the input (kx_lo..kx_hi, all
                    // channels): HWC rows and the [kh][kw][c] patch share their inner order.
                    let (kx_lo, kx_hi) = win.kx;
                    let run = (kx_hi - kx_lo) * c;
                    if run > 0 {
                        let col = (win.ix0 + kx_lo as isize) as usize;
                        for ky in win.ky.0..win.ky.1 {
                            let iy = (win.iy0 + ky as isize) as usize;
                            let src = &input[(iy * in_dims.w + col) * c..][..run];
                            let dst = &mut patch[(ky * kw + kx_lo) * c..][..run];
                            for (d, &x) in dst.iter_mut().zip(src) {
                                *d = (x as i32 + p.input_offset) as i16;
                            }
                        }
                    }
                    for (j, slot) in pooled[..out.len()].iter_mut().enumerate() {
                        let oc = block * CH_BLOCK + j;
                        let row = &filter[oc * kvol..][..kvol];
                        let acc = bias[oc]
                            + patch[..kvol]
                                .iter()
                                .zip(row)
                                .map(|(&x, &w)| x as i32 * w as i32)
                                .sum::<i32>();
                        let v = p.act.apply(
                            requantize(acc, q.multiplier[oc], q.shift[oc] as i32) + p.output_offset,
                        );
                        let v = match lut {
                            Some(t) => t[(v as i32 + 128) as usize],
                            None => v,
                        } as i16;
                        *slot = match (pool, pos) {
                            (_, 0) => v,
                            (Pool2x2::Max, _) => (*slot).max(v),
                            (Pool2x2::Avg, _) => *slot + v,
                        };
                    }
                }
                for (o, &s) in out.iter_mut().zip(&pooled) {
                    *o = match pool {
                        Pool2x2::Max => s as i8,
                        Pool2x2::Avg => {
                            let s = s as i32;
                            (if s >= 0 { (s + 2) / 4 } else { (s - 2) / 4 }) as i8
                        }
                    };
                }
            }
        }
    }
}

/// The per-channel variant (any filter volume): the four windows of a pooled output are
/// located once and shared by all output channels.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool2x2_s8_per_channel(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    out_dims: Dims,
    output: &mut [i8],
) {
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            let wins = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .map(|(dy, dx)| Window::new(p, in_dims, filter_dims, 2 * py + dy, 2 * px + dx));
            let out = &mut output[(py * out_dims.w + px) * out_dims.c..][..out_dims.c];
            for (oc, o) in out.iter_mut().enumerate() {
                let v = wins
                    .map(|w| conv_at(p, q, in_dims, input, filter_dims, filter, bias, lut, &w, oc));
                *o = match pool {
                    Pool2x2::Max => v.iter().copied().fold(i32::MIN, i32::max),
                    Pool2x2::Avg => {
                        let s: i32 = v.iter().sum();
                        if s >= 0 { (s + 2) / 4 } else { (s - 2) / 4 }
                    }
                } as i8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Clamp, PoolParams, reference, window_out};
    use crate::testutil::bytes;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn bit_exact_with_conv_then_table_then_pool(
            (c, h, w, k, oc, pad) in (1usize..5, 2usize..12, 2usize..12, 1usize..6, 1usize..6, 0usize..3),
            zp in -128i32..128, zo in -128i32..128, m in (1i32 << 30)..i32::MAX, shift in -10i8..1,
            seed in any::<u64>(), relu in any::<bool>(), with_lut in any::<bool>(), max in any::<bool>(),
        ) {
            let (Some(ch), Some(cw)) = (window_out(h, k, 1, 2 * pad), window_out(w, k, 1, 2 * pad)) else { return Ok(()); };
            if ch < 2 || cw < 2 { return Ok(()); }
            let in_dims = Dims { h, w, c };
            let fd = Dims { h: k, w: k, c };
            let conv_dims = Dims { h: ch, w: cw, c: oc };
            let out_dims = Dims { h: ch / 2, w: cw / 2, c: oc };
            let p = ConvParams { input_offset: -zp, output_offset: zo, stride: [1, 1], padding: [pad, pad], act: if relu { Clamp { min: zo as i8, max: 127 } } else { Clamp::NONE } };
            let input = bytes(in_dims.len(), seed);
            let filter: Vec<i8> = bytes(oc * fd.len(), !seed).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..oc as i32).map(|i| i * 311 - 500).collect();
            let mult = vec![m; oc];
            let shifts = vec![shift; oc];
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let mut table = [0i8; 256];
            for (i, t) in table.iter_mut().enumerate() { *t = ((i as i32 * 37 + 11) % 256 - 128) as i8; }
            let lut = with_lut.then_some(&table);
            let pool = if max { Pool2x2::Max } else { Pool2x2::Avg };

            let mut fused = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut fused);
            let mut per_channel = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8_per_channel(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut per_channel);
            let mut patched = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8_patch(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut patched);

            let mut conv = vec![0i8; conv_dims.len()];
            reference::conv2d::conv2d_s8(&p, &q, in_dims, &input, fd, &filter, &bias, conv_dims, &mut conv);
            if let Some(t) = lut { for v in conv.iter_mut() { *v = t[(*v as i32 + 128) as usize]; } }
            let pp = PoolParams { kernel: [2, 2], stride: [2, 2], padding: [0, 0], act: Clamp::NONE };
            let mut unfused = vec![0i8; out_dims.len()];
            if max { reference::pool::maxpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut unfused) } else { reference::pool::avgpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut unfused) }
            prop_assert_eq!(&fused, &unfused);
            prop_assert_eq!(&per_channel, &unfused);
            prop_assert_eq!(&patched, &unfused);
        }
    }
}
