//! `maxpool2d_s8` and `avgpool2d_s8`: 2-D pooling of one HWC image, input and output sharing
//! scale and zero point (no requantization), padded positions skipped, fused activation
//! clamp.
//!
//! Unlike the references (one window per output value and channel), these walk each clipped
//! window once per output pixel and update all channels from contiguous runs; average pooling
//! accumulates in a fixed stack block of [`BLOCK`] channels, so no heap is needed.

use super::conv2d::clip;
use super::{Dims, PoolParams};

/// Channels per accumulator block of [`avgpool2d_s8`].
pub const BLOCK: usize = 32;

/// The clipped window of output `(oy, ox)`: row and column ranges in input coordinates.
fn window(
    p: &PoolParams,
    in_dims: Dims,
    oy: usize,
    ox: usize,
) -> (core::ops::Range<usize>, core::ops::Range<usize>) {
    let iy0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
    let ix0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
    let (ky_lo, ky_hi) = clip(iy0, p.kernel[0], in_dims.h);
    let (kx_lo, kx_hi) = clip(ix0, p.kernel[1], in_dims.w);
    let rows = (iy0 + ky_lo as isize) as usize..(iy0 + ky_hi as isize) as usize;
    let cols = (ix0 + kx_lo as isize) as usize..(ix0 + kx_hi as isize) as usize;
    (rows, cols)
}

/// Max pooling. `out_dims.c == in_dims.c`.
// A whole layer per call, in a frame of its own (not added to the model loop's stack).
#[inline(never)]
pub fn maxpool2d_s8(
    p: &PoolParams,
    in_dims: Dims,
    input: &[i8],
    out_dims: Dims,
    output: &mut [i8],
) {
    let c = in_dims.c;
    for oy in 0..out_dims.h {
        for ox in 0..out_dims.w {
            let out = &mut output[(oy * out_dims.w + ox) * c..][..c];
            let (rows, cols) = window(p, in_dims, oy, ox);
            if rows.is_empty() || cols.is_empty() {
                // An all-padding window (only with padding >= kernel): the reference's max of
                // nothing, clamped.
                out.fill(p.act.apply(i32::MIN));
                continue;
            }
            out.fill(i8::MIN);
            for iy in rows {
                for ix in cols.clone() {
                    let px = &input[(iy * in_dims.w + ix) * c..][..c];
                    for (o, &v) in out.iter_mut().zip(px) {
                        *o = (*o).max(v);
                    }
                }
            }
            for o in out.iter_mut() {
                *o = p.act.apply(*o as i32);
            }
        }
    }
}

/// Average pooling over the valid (unpadded) values, rounded half away from zero.
// Its own frame: the running sums stay off the convolution kernels' stack.
#[inline(never)]
pub fn avgpool2d_s8(
    p: &PoolParams,
    in_dims: Dims,
    input: &[i8],
    out_dims: Dims,
    output: &mut [i8],
) {
    let c = in_dims.c;
    for oy in 0..out_dims.h {
        for ox in 0..out_dims.w {
            let (rows, cols) = window(p, in_dims, oy, ox);
            let n = (rows.len() * cols.len()) as i32;
            let out = &mut output[(oy * out_dims.w + ox) * c..][..c];
            for (b, out) in out.chunks_mut(BLOCK).enumerate() {
                let mut sum = [0i32; BLOCK];
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let px = &input[(iy * in_dims.w + ix) * c + b * BLOCK..][..out.len()];
                        for (s, &v) in sum.iter_mut().zip(px) {
                            *s += v as i32;
                        }
                    }
                }
                for (o, &s) in out.iter_mut().zip(&sum) {
                    let mean = if n == 0 {
                        0
                    } else if s >= 0 {
                        (s + n / 2) / n
                    } else {
                        (s - n / 2) / n
                    };
                    *o = p.act.apply(mean);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Clamp, reference, window_out};
    use proptest::prelude::*;

    #[test]
    fn two_by_two() {
        // 2x4 image, 1 channel: windows [1 2 / 5 6] and [3 4 / 7 -8].
        let input = [1, 2, 3, 4, 5, 6, 7, -8];
        let p = PoolParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            act: Clamp::NONE,
        };
        let (i, o) = (Dims { h: 2, w: 4, c: 1 }, Dims { h: 1, w: 2, c: 1 });
        let mut out = [0i8; 2];
        maxpool2d_s8(&p, i, &input, o, &mut out);
        assert_eq!(out, [6, 7]);
        avgpool2d_s8(&p, i, &input, o, &mut out);
        // 14 / 4 = 3.5 -> 4; 6 / 4 = 1.5 -> 2
        assert_eq!(out, [4, 2]);
        let p = PoolParams {
            act: Clamp { min: 3, max: 5 },
            ..p
        };
        maxpool2d_s8(&p, i, &input, o, &mut out);
        assert_eq!(out, [5, 5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn bit_exact_with_the_reference(
            (h, w, c) in (1usize..9, 1usize..9, 1usize..70),
            k in 1usize..4,
            s in 1usize..4,
            pad in 0usize..2,
            seed in any::<u64>(),
            relu in any::<bool>(),
        ) {
            let (Some(oh), Some(ow)) = (window_out(h, k, s, 2 * pad), window_out(w, k, s, 2 * pad)) else {
                return Ok(());
            };
            let mut st = seed | 1;
            let input: Vec<i8> = (0..h * w * c).map(|_| { st ^= st << 13; st ^= st >> 7; st ^= st << 17; (st >> 40) as i8 }).collect();
            let p = PoolParams { kernel: [k, k], stride: [s, s], padding: [pad, pad], act: if relu { Clamp { min: -20, max: 127 } } else { Clamp::NONE } };
            let (i, o) = (Dims { h, w, c }, Dims { h: oh, w: ow, c });
            let (mut fast, mut slow) = (vec![0i8; o.len()], vec![0i8; o.len()]);
            maxpool2d_s8(&p, i, &input, o, &mut fast);
            reference::pool::maxpool2d_s8(&p, i, &input, o, &mut slow);
            prop_assert_eq!(&fast, &slow);
            avgpool2d_s8(&p, i, &input, o, &mut fast);
            reference::pool::avgpool2d_s8(&p, i, &input, o, &mut slow);
            prop_assert_eq!(&fast, &slow);
        }
    }
}
