//! `dense_s8`: fully connected layer, int8 input, `[out][in]` int8 weights, int32 bias,
//! per-output requantization, fused activation clamp.

use super::dot::dot_w2;
use super::{Clamp, PerChannelQuant};
#[cfg(any(arm_dsp, test))]
use crate::quant::Requant;
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
    // Armv7E-M: four rows per pass over the widened input.
    #[cfg(arm_dsp)]
    dense_s8_rows4(
        input_offset,
        output_offset,
        act,
        q,
        input,
        weights,
        bias,
        output,
    );
    #[cfg(not(arm_dsp))]
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

/// Inputs per widened chunk of `dense_s8_rows4` (1 KB of stack; LeNet's largest dense
/// layer has 400).
pub const DENSE_CHUNK: usize = 512;

/// [`dense_s8`] for Armv7E-M (tested on the host with a portable inner loop): the input is
/// widened once to 16-bit pairs with the offset added, in the order `sxtb16` splits a weight
/// word (`(x0, x2)`, `(x1, x3)` per 4 values), then four weight rows go through it per pass:
/// per 4 inputs one `ldrd` of the pairs and, per row, one weight word, two `sxtb16` and two
/// `smlad`s. 23 instructions for 16 MACs. Inputs past a multiple of 4 are finished in
/// portable code; longer inputs than [`DENSE_CHUNK`] are widened a chunk at a time.
#[cfg(any(arm_dsp, test))]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn dense_s8_rows4(
    input_offset: i32,
    output_offset: i32,
    act: Clamp,
    q: &PerChannelQuant,
    input: &[i8],
    weights: &[i8],
    bias: &[i32],
    output: &mut [i8],
) {
    let (n, rows) = (input.len(), output.len());
    if rows == 0 || weights.len() < n * rows || bias.len() < rows {
        return;
    }
    let words = n / 4;
    let mut wide = [0u32; DENSE_CHUNK / 2];
    let mut g = 0;
    while g < rows {
        // Rows (a, a + s, b, b + s): four consecutive ones (the last group moved back to
        // end at the last row), or for fewer than four rows each row at least once.
        let (a, b, s) = match rows {
            1 => (0, 0, 0),
            2 => (0, 0, 1),
            3 => (0, 1, 1),
            _ => {
                let a = g.min(rows - 4);
                (a, a + 2, 1)
            }
        };
        let idx = [a, a + s, b, b + s];
        let mut acc = [bias[a], bias[a + s], bias[b], bias[b + s]];
        // The input a chunk at a time (widened once when it fits one chunk).
        let mut w0 = 0;
        while w0 < words {
            let w1 = words.min(w0 + DENSE_CHUNK / 4);
            if g == 0 || words > DENSE_CHUNK / 4 {
                widen(&input[4 * w0..4 * w1], input_offset, &mut wide);
            }
            dot_rows4(
                &wide[..2 * (w1 - w0)],
                weights,
                n,
                [a, b, s],
                4 * w0,
                &mut acc,
            );
            w0 = w1;
        }
        if n > 4 * words {
            tail(input, input_offset, weights, 4 * words, idx, &mut acc);
        }
        for k in 0..4 {
            output[idx[k]] = finish(q, idx[k], acc[k], output_offset, act);
        }
        g = a + 4;
    }
}

/// `acc[k] += sum (x_i + offset) * w[idx[k]][i]` for the inputs `i >= from` (fewer than 4).
#[cfg(any(arm_dsp, test))]
fn tail(x: &[i8], offset: i32, w: &[i8], from: usize, idx: [usize; 4], acc: &mut [i32; 4]) {
    let n = x.len();
    for (acc, r) in acc.iter_mut().zip(idx) {
        for (&x, &w) in x[from..].iter().zip(&w[r * n + from..]) {
            *acc += (x as i32 + offset) * w as i32;
        }
    }
}

/// Output `r` from its accumulator: requantized, offset, clamped.
#[cfg(any(arm_dsp, test))]
fn finish(q: &PerChannelQuant, r: usize, acc: i32, offset: i32, act: Clamp) -> i8 {
    Requant::new(q.multiplier[r], q.shift[r], offset, act.min, act.max).apply(acc) as i8
}

/// `x` (a multiple of 4 values) as 16-bit pairs `(x0 + offset, x2 + offset)`,
/// `(x1 + offset, x3 + offset)` per 4 values.
#[cfg(any(arm_dsp, test))]
fn widen(x: &[i8], offset: i32, wide: &mut [u32]) {
    let lane = |v: i8| (v as i32 + offset) as u16 as u32;
    for (w, x) in wide.chunks_exact_mut(2).zip(x.chunks_exact(4)) {
        w[0] = lane(x[0]) | (lane(x[2]) << 16);
        w[1] = lane(x[1]) | (lane(x[3]) << 16);
    }
}

/// `acc[k] += sum_i x_i * w[row_k][col + i]` over the widened values `x` (`x.len() / 2`
/// words of 4 inputs), rows `(a, a + s, b, b + s)` of the `[rows][n]` weights, for `[a, b, s]`.
#[cfg(all(test, not(arm_dsp)))]
fn dot_rows4(x: &[u32], w: &[i8], n: usize, [a, b, s]: [usize; 3], col: usize, acc: &mut [i32; 4]) {
    let lo = |v: u32| v as u16 as i16 as i32;
    let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
    for (acc, r) in acc.iter_mut().zip([a, a + s, b, b + s]) {
        let row = &w[r * n + col..][..2 * x.len()];
        for (p, w) in x.chunks_exact(2).zip(row.chunks_exact(4)) {
            *acc += lo(p[0]) * w[0] as i32
                + hi(p[0]) * w[2] as i32
                + lo(p[1]) * w[1] as i32
                + hi(p[1]) * w[3] as i32;
        }
    }
}

/// [`dot_rows4`] (the portable twin above) as one `smlad` loop.
#[cfg(arm_dsp)]
#[allow(unsafe_code)]
fn dot_rows4(x: &[u32], w: &[i8], n: usize, [a, b, s]: [usize; 3], col: usize, acc: &mut [i32; 4]) {
    use core::arch::asm;
    let words = x.len() / 2;
    if words == 0 || !x.as_ptr().is_aligned() || (a.max(b) + s) * n + col + 4 * words > w.len() {
        return;
    }
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    // SAFETY: reads the `2 * words` words of `x` (`ldrd`, word-aligned: checked above) and,
    // per row r of a, a + s, b, b + s, the `words` words from `w[r * n + col]` (inside `w`:
    // checked above; unaligned word loads are allowed on Armv7-M for normal memory). Writes
    // its register operands and the flags only.
    unsafe {
        asm!(
            "2:",
            "ldrd {x02}, {x13}, [{xp}], #8",
            "ldr {v}, [{wp}, {s}]",
            "sxtb16 {v13}, {v}, ror #8",
            "sxtb16 {v}, {v}",
            "smlad {a1}, {x02}, {v}, {a1}",
            "smlad {a1}, {x13}, {v13}, {a1}",
            "ldr {v}, [{wp}], #4",
            "sxtb16 {v13}, {v}, ror #8",
            "sxtb16 {v}, {v}",
            "smlad {a0}, {x02}, {v}, {a0}",
            "smlad {a0}, {x13}, {v13}, {a0}",
            "ldr {v}, [{wq}, {s}]",
            "sxtb16 {v13}, {v}, ror #8",
            "sxtb16 {v}, {v}",
            "smlad {a3}, {x02}, {v}, {a3}",
            "smlad {a3}, {x13}, {v13}, {a3}",
            "ldr {v}, [{wq}], #4",
            "sxtb16 {v13}, {v}, ror #8",
            "sxtb16 {v}, {v}",
            "smlad {a2}, {x02}, {v}, {a2}",
            "smlad {a2}, {x13}, {v13}, {a2}",
            "cmp {xp}, {xend}",
            "bne 2b",
            xp = inout(reg) x.as_ptr() => _,
            xend = in(reg) x.as_ptr().wrapping_add(2 * words),
            wp = inout(reg) w.as_ptr().wrapping_add(a * n + col) => _,
            wq = inout(reg) w.as_ptr().wrapping_add(b * n + col) => _,
            s = in(reg) s * n,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            x02 = out(reg) _,
            x13 = out(reg) _,
            v = out(reg) _,
            v13 = out(reg) _,
            options(nostack, readonly),
        );
    }
    *acc = [a0, a1, a2, a3];
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
            input in proptest::collection::vec(any::<i8>(), 1..1300),
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
            let mut rows4 = vec![0i8; outs];
            dense_s8_rows4(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut rows4);
            reference::dense::dense_s8(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut slow);
            // The dispatcher took the best level this CPU has; the AVX2 one too.
            #[cfg(target_arch = "x86_64")]
            {
                use crate::kernels::x86::{Level, with_level};
                let mut avx2 = vec![0i8; outs];
                with_level(Some(Level::Avx2), || dense_s8(-zp_in, zp_out, act, &q, &input, &weights, &bias, &mut avx2));
                prop_assert_eq!(&avx2, &slow);
            }
            prop_assert_eq!(&rows4, &slow);
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(portable, slow);
        }
    }
}
