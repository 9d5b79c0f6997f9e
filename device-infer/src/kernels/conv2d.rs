//! `conv2d_s8`: 2-D convolution, int8 HWC input, OHWI filter, int32 bias, per-channel
//! requantization, fused activation clamp. Any stride, any padding, any kernel size.
//!
//! Compared with [`reference::conv2d::conv2d_s8`](super::reference::conv2d::conv2d_s8), the
//! window is clipped to the image once per output row and column, so the inner loop is a dot
//! product of two contiguous runs (`kw_valid * in_c` values) with no bounds test. The arithmetic
//! is the same integer arithmetic, hence bit-exact.

use super::{ConvParams, Dims, PerChannelQuant};
use crate::quant::requantize;

/// The part `lo..hi` of a window of size `k` starting at `start` (may be negative) that lies
/// inside `0..len`.
pub(crate) fn clip(start: isize, k: usize, len: usize) -> (usize, usize) {
    // `lo <= k`, so the second range is never empty (written without `clamp`'s panic path).
    let lo = (-start).max(0).min(k as isize) as usize;
    let hi = (len as isize - start).max(lo as isize).min(k as isize) as usize;
    (lo, hi)
}

/// `sum((x + offset) * w)` over two runs of equal length.
pub(crate) fn dot(xs: &[i8], ws: &[i8], offset: i32) -> i32 {
    xs.iter()
        .zip(ws)
        .map(|(&x, &w)| (x as i32 + offset) * w as i32)
        .sum()
}

/// 2-D convolution of one HWC image.
///
/// - `input`: `in_dims.len()` values; `filter`: `out_dims.c` filters of `filter_dims`
///   (`[kh][kw][in_c]`, `filter_dims.c == in_dims.c`); `bias`, `q`: `out_dims.c` entries;
/// - `out_dims` must be the window-output size of `in_dims` under `p` (validated at load).
// A whole layer per call, in a frame of its own (not added to the model loop's stack).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s8(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    out_dims: Dims,
    output: &mut [i8],
) {
    debug_assert_eq!(input.len(), in_dims.len());
    debug_assert_eq!(filter.len(), out_dims.c * filter_dims.len());
    debug_assert_eq!(output.len(), out_dims.len());
    let c = in_dims.c;
    let (kh, kw) = (filter_dims.h, filter_dims.w);
    for oy in 0..out_dims.h {
        let iy0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
        let (ky_lo, ky_hi) = clip(iy0, kh, in_dims.h);
        for ox in 0..out_dims.w {
            let ix0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
            let (kx_lo, kx_hi) = clip(ix0, kw, in_dims.w);
            let run = (kx_hi - kx_lo) * c;
            let out = &mut output[(oy * out_dims.w + ox) * out_dims.c..][..out_dims.c];
            // A window entirely in the padding reads nothing (and its column start may be
            // left of the image): the output is the bias alone.
            let rows = if run == 0 { 0..0 } else { ky_lo..ky_hi };
            for (oc, o) in out.iter_mut().enumerate() {
                let mut acc = bias[oc];
                for ky in rows.clone() {
                    let iy = (iy0 + ky as isize) as usize;
                    let xs =
                        &input[(iy * in_dims.w + (ix0 + kx_lo as isize) as usize) * c..][..run];
                    let ws = &filter[((oc * kh + ky) * kw + kx_lo) * c..][..run];
                    acc += dot(xs, ws, p.input_offset);
                }
                *o = p
                    .act
                    .apply(requantize(acc, q.multiplier[oc], q.shift[oc] as i32) + p.output_offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Clamp, reference, window_out};
    use crate::testutil::bytes;
    use proptest::prelude::*;

    #[test]
    fn clip_cases() {
        assert_eq!(clip(-2, 5, 28), (2, 5));
        assert_eq!(clip(25, 5, 28), (0, 3));
        assert_eq!(clip(3, 5, 28), (0, 5));
        assert_eq!(clip(-7, 5, 3), (5, 5));
        assert_eq!(clip(9, 5, 3), (0, 0));
    }

    /// One 3x3 input channel, a 2x2 filter of ones, unit requantization (multiplier 0.5 with
    /// shift 1), zero points 0: each output is the window sum.
    #[test]
    fn window_sums() {
        const INPUT: [i8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let p = ConvParams {
            input_offset: 0,
            output_offset: 0,
            stride: [1, 1],
            padding: [0, 0],
            act: Clamp::NONE,
        };
        let q = PerChannelQuant {
            multiplier: &[1 << 30],
            shift: &[1],
        };
        let mut out = [0i8; 4];
        let d = Dims { h: 3, w: 3, c: 1 };
        conv2d_s8(
            &p,
            &q,
            d,
            &INPUT,
            Dims { h: 2, w: 2, c: 1 },
            &[1; 4],
            &[0],
            Dims { h: 2, w: 2, c: 1 },
            &mut out,
        );
        assert_eq!(out, [12, 16, 24, 28]);
        // Padding 1, stride 2: corners see 1, 2+3, 4+7, ... (padded positions add nothing).
        let p = ConvParams {
            stride: [2, 2],
            padding: [1, 1],
            ..p
        };
        conv2d_s8(
            &p,
            &q,
            d,
            &INPUT,
            Dims { h: 2, w: 2, c: 1 },
            &[1; 4],
            &[0],
            Dims { h: 2, w: 2, c: 1 },
            &mut out,
        );
        assert_eq!(out, [1, 5, 11, 28]);
    }

    /// A random geometry with quantization parameters: (params, input, filter, output, seed).
    fn case() -> impl Strategy<Value = (ConvParams, Dims, Dims, Dims, u64)> {
        (
            1usize..7,
            1usize..9,
            1usize..9,
            1usize..4,
            1usize..5,
            1usize..6,
            1usize..3,
            0usize..3,
            -128i32..128,
            -128i32..128,
            any::<u64>(),
        )
            .prop_filter_map(
                "window fits",
                |(c, h, w, kh, kw, oc, s, pad, zp_in, zp_out, seed)| {
                    let oh = window_out(h, kh, s, 2 * pad)?;
                    let ow = window_out(w, kw, s, 2 * pad)?;
                    let p = ConvParams {
                        input_offset: -zp_in,
                        output_offset: zp_out,
                        stride: [s, s],
                        padding: [pad, pad],
                        // Half the cases with a fused ReLU: outputs below the zero point clamp.
                        act: if seed % 2 == 0 {
                            Clamp {
                                min: zp_out as i8,
                                max: 127,
                            }
                        } else {
                            Clamp::NONE
                        },
                    };
                    Some((
                        p,
                        Dims { h, w, c },
                        Dims { h: kh, w: kw, c },
                        Dims {
                            h: oh,
                            w: ow,
                            c: oc,
                        },
                        seed,
                    ))
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn bit_exact_with_the_reference((p, in_dims, fd, out_dims, seed) in case(), shift in -12i8..2, m in (1i32 << 30)..i32::MAX) {
            let oc = out_dims.c;
            let bias: Vec<i32> = (0..oc as i32).map(|i| (i - 2) * 977).collect();
            let input = bytes(in_dims.len(), seed);
            let filter: Vec<i8> = bytes(oc * fd.len(), seed ^ 0xABCD).into_iter().map(|v| v.max(-127)).collect();
            let mult: Vec<i32> = (0..oc).map(|i| m - i as i32 * 1000).collect();
            let shifts: Vec<i8> = (0..oc).map(|i| shift - (i % 3) as i8).collect();
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let mut fast = vec![0i8; out_dims.len()];
            let mut slow = vec![0i8; out_dims.len()];
            conv2d_s8(&p, &q, in_dims, &input, fd, &filter, &bias, out_dims, &mut fast);
            reference::conv2d::conv2d_s8(&p, &q, in_dims, &input, fd, &filter, &bias, out_dims, &mut slow);
            prop_assert_eq!(fast, slow);
        }
    }
}
