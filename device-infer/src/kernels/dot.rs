//! The inner products every kernel reduces to, in two shapes:
//!
//! - [`dot_x4`]: four input patches against one weight run (the four convolution windows of one
//!   2x2 pooled output share their filter);
//! - [`dot_w2`]: one input run against two weight runs (two rows of a dense layer).
//!
//! Both compute `sum((x + offset) * w)` exactly in i32 (the accumulator bound is validated at
//! load). On Armv7E-M (`arm_dsp`, see build.rs) four int8 values are loaded as one word and
//! split into two pairs of 16-bit lanes with `sxtb16` / `sxtab16` (which also adds the offset),
//! and each pair is multiplied and accumulated with one `smlad`: two MACs per instruction. The
//! same integer sum in a different order, hence bit-exact with the portable code, which every
//! other target (Cortex-M0, the host) runs.

use super::conv2d_block::PATCH;

/// The four patches [`dot_x4`] reads: one array, so the `smlad` loop reaches all four from
/// one pointer with constant offsets.
pub(crate) type Patches = [[i8; PATCH]; 4];

/// `acc[p] += sum_i (patches[p][i] + offset) * w[i]` for `i < w.len()` (at most [`PATCH`]).
#[inline(always)]
pub(crate) fn dot_x4(patches: &Patches, w: &[i8], offset: i32, acc: &mut [i32; 4]) {
    let n = w.len().min(PATCH);
    let w = &w[..n];
    #[cfg(arm_dsp)]
    let done = dsp::dot_x4(patches, w, offset, acc);
    #[cfg(not(arm_dsp))]
    let done = 0;
    // sum((x + offset) * w) = sum(x * w) + offset * sum(w): the weight sum is shared by the
    // four windows and the int8 products vectorise well on the host.
    let w = &w[done..];
    let wsum: i32 = w.iter().map(|&v| v as i32).sum();
    for (a, x) in acc.iter_mut().zip(patches) {
        *a += x[done..n]
            .iter()
            .zip(w)
            .map(|(&x, &w)| x as i32 * w as i32)
            .sum::<i32>()
            + offset * wsum;
    }
}

/// [`dot_x4`] for a whole number of words (`w.len()` a multiple of 4, the padded layout):
/// on Armv7E-M the `smlad` loop alone, with no tail to finish.
#[inline(always)]
pub(crate) fn dot_x4_words(patches: &Patches, w: &[i8], offset: i32, acc: &mut [i32; 4]) {
    debug_assert!(w.len().is_multiple_of(4));
    #[cfg(arm_dsp)]
    dsp::dot_x4(patches, w, offset, acc);
    #[cfg(not(arm_dsp))]
    dot_x4(patches, w, offset, acc);
}

/// `(sum_i (x[i] + offset) * w0[i], sum_i (x[i] + offset) * w1[i])`; `w0` and `w1` are as
/// long as `x`.
#[inline]
pub(crate) fn dot_w2(x: &[i8], w0: &[i8], w1: &[i8], offset: i32) -> (i32, i32) {
    let n = x.len();
    let (w0, w1) = (&w0[..n], &w1[..n]);
    #[cfg(arm_dsp)]
    let (done, mut a0, mut a1) = dsp::dot_w2(x, w0, w1, offset);
    #[cfg(not(arm_dsp))]
    let (done, mut a0, mut a1) = (0, 0, 0);
    for ((&x, &u), &v) in x[done..].iter().zip(&w0[done..]).zip(&w1[done..]) {
        let x = x as i32 + offset;
        a0 += x * u as i32;
        a1 += x * v as i32;
    }
    (a0, a1)
}

/// Output channels per pass of [`dot_x4_block`] (and of the row variant's portable loop):
/// 32, so that a 32-channel layer widens and gathers its patches once per output.
pub(crate) const BLOCK: usize = 32;

/// The widened chunk [`dot_x4_block`] multiplies: 16 values of the four patches as 16-bit
/// pairs. The caller's, so that it is not cleared on every call.
#[cfg(arm_dsp)]
pub(crate) type Wide = [[u32; 8]; 4];

/// `acc[j][p] += sum_i (patches[p][i] + offset) * filter[j * stride + i]` for `i < len`,
/// every filter `j < acc.len()` (at most [`BLOCK`]; `filter` holds at least
/// `(acc.len() - 1) * stride + len` values, `len <= PATCH`, and the patches hold the zero
/// point, `x + offset = 0`, past `len`). Whole filters have `stride == len` (the filter
/// volume); one kernel row of large filters has `len = kw * in_c` and `stride` the volume.
/// Armv7E-M only.
///
/// The patches are widened to 16-bit pairs (offset added) 16 values at a time, once for all
/// the filters, instead of once per filter as [`dot_x4`] does: per 4 values of a filter, one
/// weight word split into two pairs and 4 windows x (`ldrd` + 2 `smlad`), 15 instructions
/// for 16 MACs (26 in `dot_x4`). Reading a filter's chunk past `len` reads the values that
/// follow it, times zero; a chunk that would run past the end of `filter` (the last
/// filter's last one, more for filters under 16 values) is copied into a zero-padded buffer.
#[cfg(arm_dsp)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_x4_block(
    patches: &Patches,
    filter: &[i8],
    stride: usize,
    len: usize,
    offset: i32,
    wide: &mut Wide,
    acc: &mut [[i32; 4]],
) {
    let n = acc.len().min(BLOCK);
    let len = len.min(PATCH);
    if n == 0 || len == 0 || stride < len || filter.len() < (n - 1) * stride + len {
        return;
    }
    let total = filter.len();
    let chunks = len.div_ceil(16);
    // Every chunk of every filter inside `filter` (all blocks but the layer's last): no
    // per-chunk bookkeeping.
    let all_inside = (n - 1) * stride + 16 * chunks <= total;
    for c in 0..chunks {
        dsp::widen_chunk(patches, c, offset, wide);
        let at = 16 * c;
        // The filters j whose chunk, bytes j * stride + at .. + 16, lies inside `filter`
        // (all but the last when len >= 16, fewer for smaller filters); the others from a
        // copy.
        let inside = match total.checked_sub(at + 16) {
            _ if all_inside => n,
            Some(room) => (room / stride + 1).min(n),
            None => 0,
        };
        // One call site for both cases (the loop is inlined: one copy of it in flash).
        let mut w: [i8; 16];
        let mut j = 0;
        while j < n {
            let (src, count) = if j == 0 && inside > 0 {
                (&filter[at..], inside)
            } else {
                // at < len (c < len / 16 rounded up): the chunk starts inside `filter`.
                let start = j * stride + at;
                let part = &filter[start..total.min(start + 16)];
                w = [0; 16];
                w[..part.len()].copy_from_slice(part);
                (&w[..], 1)
            };
            dsp::chunk(src, stride, wide, &mut acc[j..j + count]);
            j += count;
        }
    }
}

/// The `smlad` paths. They handle whole words (4 values) and return how many values they
/// consumed; the caller finishes the tail.
#[cfg(arm_dsp)]
#[allow(unsafe_code)]
mod dsp {
    use super::{PATCH, Patches};
    use core::arch::asm;

    // SAFETY (the five helpers below): each `asm!` is one Armv7E-M DSP data-processing
    // instruction on registers only: it reads its register inputs, writes one output register,
    // touches no memory, no stack and no flags (`smlad` may set the sticky Q flag, which nothing here or
    // in Rust reads, so `preserves_flags` is not claimed for it). These instructions exist on
    // every target that sets `arm_dsp` (build.rs).

    /// Lanes `(sext b0, sext b2)` of `x`.
    #[inline(always)]
    fn sxtb16(x: u32) -> u32 {
        let r: u32;
        unsafe {
            asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// Lanes `(sext b1, sext b3)` of `x`.
    #[inline(always)]
    fn sxtb16_ror8(x: u32) -> u32 {
        let r: u32;
        unsafe {
            asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// Lanes `(a.lo + sext b0, a.hi + sext b2)`.
    #[inline(always)]
    fn sxtab16(a: u32, x: u32) -> u32 {
        let r: u32;
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}", r = lateout(reg) r, a = in(reg) a, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// Lanes `(a.lo + sext b1, a.hi + sext b3)`.
    #[inline(always)]
    fn sxtab16_ror8(a: u32, x: u32) -> u32 {
        let r: u32;
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}, ror #8", r = lateout(reg) r, a = in(reg) a, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// `acc + a.lo * b.lo + a.hi * b.hi` (signed 16-bit lanes, wrapping 32-bit sum).
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        unsafe {
            asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 acc = in(reg) acc, options(pure, nomem, nostack));
        }
        r
    }

    /// Word `i` (values `4i..4i+4`) of `s`, little-endian; the caller guarantees the range.
    #[inline(always)]
    fn word(s: &[i8], i: usize) -> u32 {
        let b: &[i8; 4] = s[4 * i..4 * i + 4].try_into().unwrap_or(&[0; 4]);
        u32::from_le_bytes(b.map(|v| v as u8))
    }

    /// The offset in both 16-bit lanes (it is in -255..=255, validated at load).
    #[inline(always)]
    fn lanes(offset: i32) -> u32 {
        (offset as u32 & 0xFFFF) * 0x0001_0001
    }

    /// The whole-word part of [`super::dot_x4`] as one loop: per word of weights 26
    /// instructions for 16 MACs (the compiler spilled registers in the same loop written with
    /// the single-instruction helpers).
    #[inline(always)]
    pub(super) fn dot_x4(patches: &Patches, w: &[i8], offset: i32, acc: &mut [i32; 4]) -> usize {
        const _: () = assert!(
            PATCH == 160,
            "the loop below addresses the patches at +160 bytes"
        );
        let words = w.len().min(PATCH) / 4;
        if words == 0 {
            return 0;
        }
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        let x = patches.as_ptr() as *const i8;
        // SAFETY: the loop reads `words` u32 words from `w` (4 * words <= w.len()) and from
        // each of the four patches at byte offsets 0, 160, 320, 480 of `patches` (4 * words
        // <= PATCH, so every read stays inside its patch); unaligned word loads are allowed
        // on Armv7-M for normal memory. It writes only its register operands (the pointer
        // copies are marked as clobbered outputs) and the flags (not `preserves_flags`).
        unsafe {
            asm!(
                "2:",
                "ldr {w}, [{wp}], #4",
                "sxtb16 {w13}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldr {v}, [{xp}]",
                "sxtab16 {t}, {off}, {v}, ror #8",
                "smlad {a0}, {t}, {w13}, {a0}",
                "sxtab16 {v}, {off}, {v}",
                "smlad {a0}, {v}, {w}, {a0}",
                "ldr {v}, [{xp}, #160]",
                "sxtab16 {t}, {off}, {v}, ror #8",
                "smlad {a1}, {t}, {w13}, {a1}",
                "sxtab16 {v}, {off}, {v}",
                "smlad {a1}, {v}, {w}, {a1}",
                "ldr {v}, [{xp}, #320]",
                "sxtab16 {t}, {off}, {v}, ror #8",
                "smlad {a2}, {t}, {w13}, {a2}",
                "sxtab16 {v}, {off}, {v}",
                "smlad {a2}, {v}, {w}, {a2}",
                "ldr {v}, [{xp}, #480]",
                "sxtab16 {t}, {off}, {v}, ror #8",
                "smlad {a3}, {t}, {w13}, {a3}",
                "sxtab16 {v}, {off}, {v}",
                "smlad {a3}, {v}, {w}, {a3}",
                "adds {xp}, #4",
                "cmp {xp}, {xend}",
                "bne 2b",
                wp = inout(reg) w.as_ptr() => _,
                xp = inout(reg) x => _,
                xend = in(reg) x.wrapping_add(4 * words),
                off = in(reg) lanes(offset),
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                w = out(reg) _,
                w13 = out(reg) _,
                v = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly),
            );
        }
        *acc = [a0, a1, a2, a3];
        4 * words
    }

    /// Values `16 c..16 c + 16` of each patch as 16-bit pairs with the offset added, in the
    /// order `sxtb16` splits a weight word: per 4 values, `(x0, x2)` then `(x1, x3)`.
    /// One loop per window: 19 instructions for its 16 values (the compiler's loop at
    /// opt-level "s" took twice that).
    #[inline(always)]
    pub(super) fn widen_chunk(patches: &Patches, c: usize, offset: i32, wide: &mut [[u32; 8]; 4]) {
        if 16 * c + 16 > PATCH {
            return;
        }
        // From the whole array, so the pointer covers all four patches.
        let x = (patches.as_ptr() as *const i8).wrapping_add(16 * c);
        // SAFETY: reads the 16 bytes at 16 c (+ 16 c + 16 <= PATCH, checked) of each of the
        // four patches (byte offsets 0, 160, 320, 480 from `x`: `Patches` is one array of four
        // PATCH-byte rows; unaligned word loads are allowed on Armv7-M for normal memory) and
        // writes the 4 x 8 words of `wide` (`strd`, word-aligned), its register operands and
        // the flags.
        unsafe {
            asm!(
                "2:",
                "ldr {v}, [{xp}]",
                "sxtab16 {a}, {off}, {v}",
                "sxtab16 {b}, {off}, {v}, ror #8",
                "strd {a}, {b}, [{wp}]",
                "ldr {v}, [{xp}, #4]",
                "sxtab16 {a}, {off}, {v}",
                "sxtab16 {b}, {off}, {v}, ror #8",
                "strd {a}, {b}, [{wp}, #8]",
                "ldr {v}, [{xp}, #8]",
                "sxtab16 {a}, {off}, {v}",
                "sxtab16 {b}, {off}, {v}, ror #8",
                "strd {a}, {b}, [{wp}, #16]",
                "ldr {v}, [{xp}, #12]",
                "sxtab16 {a}, {off}, {v}",
                "sxtab16 {b}, {off}, {v}, ror #8",
                "strd {a}, {b}, [{wp}, #24]",
                "adds {xp}, #160",
                "adds {wp}, #32",
                "cmp {wp}, {end}",
                "bne 2b",
                xp = inout(reg) x => _,
                wp = inout(reg) wide.as_mut_ptr() => _,
                end = in(reg) wide.as_mut_ptr().wrapping_add(4),
                off = in(reg) lanes(offset),
                v = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            );
        }
    }

    /// For each `j < acc.len()`: the 16 weights at `w[j * stride..]` against the widened
    /// chunk, added to `acc[j]` (4 windows). `w` must hold `(acc.len() - 1) * stride + 16`
    /// values.
    #[inline(always)]
    pub(super) fn chunk(w: &[i8], stride: usize, wide: &[[u32; 8]; 4], acc: &mut [[i32; 4]]) {
        let n = acc.len();
        if n == 0 || stride > 0xFFFF || n > 0xFFFF || w.len() < (n - 1) * stride + 16 {
            return;
        }
        // The filter stride in the low half, the filters left in the high half.
        let sc = (stride | (n << 16)) as u32;
        // SAFETY: for each of the n filters j (the loop runs while the count in the high half
        // of `sc` is at least 1, and it starts at n >= 1): reads the words at byte offsets
        // 0, 4, 8, 12 from `w + j * stride` (inside `w`: (n - 1) * stride + 16 <= w.len(), checked
        // above; unaligned word loads are allowed on Armv7-M for normal memory), the 128 bytes
        // of `wide` (word-aligned, as `ldrd` needs), and reads then writes the 16 bytes of
        // acc[j] (`ldm` / `stmia`, word-aligned i32s). Writes r0-r3, its other register
        // operands and the flags.
        unsafe {
            asm!(
                "2:",
                "ldm {ap}, {{r0, r1, r2, r3}}",
                "ldr {w}, [{wp}]",
                "sxtb16 {w13}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x02}, {x13}, [{xp}]",
                "smlad r0, {x02}, {w}, r0",
                "smlad r0, {x13}, {w13}, r0",
                "ldrd {x02}, {x13}, [{xp}, #32]",
                "smlad r1, {x02}, {w}, r1",
                "smlad r1, {x13}, {w13}, r1",
                "ldrd {x02}, {x13}, [{xp}, #64]",
                "smlad r2, {x02}, {w}, r2",
                "smlad r2, {x13}, {w13}, r2",
                "ldrd {x02}, {x13}, [{xp}, #96]",
                "smlad r3, {x02}, {w}, r3",
                "smlad r3, {x13}, {w13}, r3",
                "ldr {w}, [{wp}, #4]",
                "sxtb16 {w13}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x02}, {x13}, [{xp}, #8]",
                "smlad r0, {x02}, {w}, r0",
                "smlad r0, {x13}, {w13}, r0",
                "ldrd {x02}, {x13}, [{xp}, #40]",
                "smlad r1, {x02}, {w}, r1",
                "smlad r1, {x13}, {w13}, r1",
                "ldrd {x02}, {x13}, [{xp}, #72]",
                "smlad r2, {x02}, {w}, r2",
                "smlad r2, {x13}, {w13}, r2",
                "ldrd {x02}, {x13}, [{xp}, #104]",
                "smlad r3, {x02}, {w}, r3",
                "smlad r3, {x13}, {w13}, r3",
                "ldr {w}, [{wp}, #8]",
                "sxtb16 {w13}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x02}, {x13}, [{xp}, #16]",
                "smlad r0, {x02}, {w}, r0",
                "smlad r0, {x13}, {w13}, r0",
                "ldrd {x02}, {x13}, [{xp}, #48]",
                "smlad r1, {x02}, {w}, r1",
                "smlad r1, {x13}, {w13}, r1",
                "ldrd {x02}, {x13}, [{xp}, #80]",
                "smlad r2, {x02}, {w}, r2",
                "smlad r2, {x13}, {w13}, r2",
                "ldrd {x02}, {x13}, [{xp}, #112]",
                "smlad r3, {x02}, {w}, r3",
                "smlad r3, {x13}, {w13}, r3",
                "ldr {w}, [{wp}, #12]",
                "sxtb16 {w13}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x02}, {x13}, [{xp}, #24]",
                "smlad r0, {x02}, {w}, r0",
                "smlad r0, {x13}, {w13}, r0",
                "ldrd {x02}, {x13}, [{xp}, #56]",
                "smlad r1, {x02}, {w}, r1",
                "smlad r1, {x13}, {w13}, r1",
                "ldrd {x02}, {x13}, [{xp}, #88]",
                "smlad r2, {x02}, {w}, r2",
                "smlad r2, {x13}, {w13}, r2",
                "ldrd {x02}, {x13}, [{xp}, #120]",
                "smlad r3, {x02}, {w}, r3",
                "smlad r3, {x13}, {w13}, r3",
                "stmia {ap}!, {{r0, r1, r2, r3}}",
                "uxtah {wp}, {wp}, {sc}",
                "sub {sc}, {sc}, #0x10000",
                "cmp {sc}, #0x10000",
                "bhs 2b",
                ap = inout(reg) acc.as_mut_ptr() => _,
                wp = inout(reg) w.as_ptr() => _,
                sc = inout(reg) sc => _,
                xp = in(reg) wide.as_ptr(),
                w = out(reg) _,
                w13 = out(reg) _,
                x02 = out(reg) _,
                x13 = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack),
            );
        }
    }

    #[inline(always)]
    pub(super) fn dot_w2(x: &[i8], w0: &[i8], w1: &[i8], offset: i32) -> (usize, i32, i32) {
        let words = x.len() / 4;
        let off = lanes(offset);
        let (x, w0, w1) = (&x[..4 * words], &w0[..4 * words], &w1[..4 * words]);
        let (mut a0, mut a1) = (0i32, 0i32);
        for i in 0..words {
            let v = word(x, i);
            let (x02, x13) = (sxtab16(off, v), sxtab16_ror8(off, v));
            let u = word(w0, i);
            a0 = smlad(x02, sxtb16(u), smlad(x13, sxtb16_ror8(u), a0));
            let u = word(w1, i);
            a1 = smlad(x02, sxtb16(u), smlad(x13, sxtb16_ror8(u), a1));
        }
        (4 * words, a0, a1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::bytes;
    use proptest::prelude::*;

    fn slow(x: &[i8], w: &[i8], offset: i32) -> i32 {
        x.iter()
            .zip(w)
            .map(|(&x, &w)| (x as i32 + offset) * w as i32)
            .sum()
    }

    proptest! {
        #[test]
        fn dots_equal_the_plain_sum(n in 0usize..=PATCH, offset in -255i32..=255, seed in any::<u64>(), extra in 0usize..5) {
            let x: Vec<Vec<i8>> = (0..4).map(|p| bytes(PATCH, seed ^ p)).collect();
            let w = bytes(n, !seed);
            let w1 = bytes(n + extra, seed.rotate_left(7));
            let mut acc = [1, -2, 3, i32::from(seed as u8)];
            let before = acc;
            let patches: Patches = core::array::from_fn(|p| x[p][..].try_into().unwrap());
            dot_x4(&patches, &w, offset, &mut acc);
            for p in 0..4 {
                prop_assert_eq!(acc[p], before[p] + slow(&x[p], &w, offset));
            }
            let (a, b) = dot_w2(&x[0][..n], &w, &w1, offset);
            prop_assert_eq!(a, slow(&x[0][..n], &w, offset));
            prop_assert_eq!(b, slow(&x[0][..n], &w1, offset));
        }
    }
}
