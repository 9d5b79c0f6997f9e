//! `dense_s8`: fully connected layer, int8 input, `[out][in]` int8 weights, int32 bias,
//! per-output requantization, fused activation clamp.

use super::dot::dot_w2;
use super::{Clamp, PerChannelQuant};
use crate::quant::requantize;

/// `output[o] = clamp(requantize(bias[o] + sum_i (input[i] + input_offset) * w[o][i]) +
/// output_offset)`. `weights` holds `output.len() * input.len()` values.
///
/// Same arithmetic as the reference, as dot products over contiguous rows, two rows per pass
/// so each input word is loaded once for both (two MACs per `smlad` on a Cortex-M4). On an
/// x86-64 host with AVX2, `kernels::x86::dense_s8`.
#[allow(clippy::too_many_arguments)]
pub fn dense_s8(
    input_offset: i32,
    output_offset: i32,
    act: Clamp,
    q: &PerChannelQuant,
    input: &[i8],
    weights: &[i8],
    bias: &[i32],
    output: &mut [i8],
) {
    #[cfg(all(any(test, feature = "std"), target_arch = "x86_64"))]
    if super::x86::dense_s8(
        input_offset,
        output_offset,
        act,
        q,
        input,
        weights,
        bias,
        output,
    ) {
        return;
    }
    dense_s8_portable(
        input_offset,
        output_offset,
        act,
        q,
        input,
        weights,
        bias,
        output,
    )
}

/// [`dense_s8`] without the host SIMD path: what every microcontroller runs.
// A whole layer per call, in a frame of its own (not added to the model loop's stack).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn dense_s8_portable(
    input_offset: i32,
    output_offset: i32,
    act: Clamp,
    q: &PerChannelQuant,
    input: &[i8],
    weights: &[i8],
    bias: &[i32],
    output: &mut [i8],
) {
    let n = input.len();
    debug_assert_eq!(weights.len(), n * output.len());
    let finish = |o: usize, dot: i32| {
        act.apply(requantize(bias[o] + dot, q.multiplier[o], q.shift[o] as i32) + output_offset)
    };
    let mut rows = weights.chunks_exact(n.max(1));
    for (pair, outs) in output.chunks_mut(2).enumerate() {
        let o = 2 * pair;
        match (outs, rows.next(), rows.next()) {
            ([y0, y1], Some(w0), Some(w1)) => {
                let (a0, a1) = dot_w2(input, w0, w1, input_offset);
                *y0 = finish(o, a0);
                *y1 = finish(o + 1, a1);
            }
            ([y0], Some(w0), _) => *y0 = finish(o, dot_w2(input, w0, w0, input_offset).0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference;
    use proptest::prelude::*;

    #[test]
    fn literal() {
        // 2 inputs, 2 outputs, zero points: in 1, out -3; unit scale (0.5 * 2^1).
        let q = PerChannelQuant {
            multiplier: &[1 << 30, 1 << 30],
            shift: &[1, 1],
        };
        let mut out = [0i8; 2];
        dense_s8(
            -1,
            -3,
            Clamp::NONE,
            &q,
            &[3, 5],
            &[1, 2, -1, 0],
            &[10, 0],
            &mut out,
        );
        // (3-1)*1 + (5-1)*2 + 10 - 3 = 17; (3-1)*-1 + 0 - 3 = -5
        assert_eq!(out, [17, -5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn bit_exact_with_the_reference(
            input in proptest::collection::vec(any::<i8>(), 1..100),
            outs in 1usize..20,
            seed in any::<i32>(),
            zp_in in -128i32..128,
            zp_out in -128i32..128,
            m in (1i32 << 30)..i32::MAX,
            shift in -14i8..1,
            relu in any::<bool>(),
        ) {
            let n = input.len();
            let weights: Vec<i8> = (0..n * outs).map(|i| ((i as i32).wrapping_mul(seed) >> 8) as i8).map(|w| w.max(-127)).collect();
            let bias: Vec<i32> = (0..outs as i32).map(|i| i.wrapping_mul(seed) >> 12).collect();
            let mult = vec![m; outs];
            let shifts = vec![shift; outs];
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let act = if relu { Clamp { min: zp_out as i8, max: 127 } } else { Clamp::NONE };
            let mut fast = vec![0i8; outs];
            let mut portable = vec![0i8; outs];
            let mut slow = vec![0i8; outs];
            dense_s8(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut fast);
            dense_s8_portable(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut portable);
            reference::dense::dense_s8(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut slow);
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(portable, slow);
        }
    }
}
