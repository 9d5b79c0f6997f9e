//! `conv2d_pool2x2_s8`: a convolution whose output goes straight through an optional lookup
//! table (sigmoid, tanh) into a 2x2, stride-2 max or average pooling, without materialising
//! the convolution output: the LeNet stage in one pass, so the arena holds only the pooled
//! result.
//!
//! Bit-exact with `conv2d_s8`, then the table, then `maxpool2d_s8` / `avgpool2d_s8` (tested
//! below against the references): each pooled value is computed from the same four int8
//! convolution outputs those kernels would produce.

use super::conv2d::clip;
use super::dot::{BLOCK, Patches, dot_x4, dot_x4_words};
#[cfg(arm_dsp)]
use super::dot::{Wide, dot_x4_block};
use super::{ConvParams, Dims, PerChannelQuant};
use crate::quant::Requant;

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
    finish(p, lut, q.multiplier[oc], q.shift[oc], acc)
}

/// Filter volumes up to this use [`conv2d_pool2x2_s8_patch`] whole (four stack patches of this
/// many int8 values, 640 bytes); larger filters whose kernel rows (`kw * in_c` values) fit it
/// are gathered and multiplied one kernel row at a time; the others take the per-channel path.
pub const PATCH: usize = 160;

/// Whether the patch kernel takes a filter of `filter_dims` (`[kh][kw][in_c]`): a whole
/// filter or one kernel row of it fits [`PATCH`]; it also pads with the input zero point
/// (`-input_offset`), which must be an int8.
pub const fn patch_fits(filter_dims: Dims, input_offset: i32) -> bool {
    filter_dims.w * filter_dims.c <= PATCH && -128 <= -input_offset && -input_offset <= 127
}

/// One requantized, clamped convolution output through the optional table.
#[inline(always)]
fn finish(p: &ConvParams, lut: Option<&[i8; 256]>, multiplier: i32, shift: i8, acc: i32) -> i32 {
    let rq = Requant::new(multiplier, shift, p.output_offset, p.act.min, p.act.max);
    through(lut, rq.apply(acc))
}

/// `v` (an int8 value) through the optional table.
#[inline(always)]
fn through(lut: Option<&[i8; 256]>, v: i32) -> i32 {
    match lut {
        Some(t) => t[(v + 128) as usize & 0xFF] as i32,
        None => v,
    }
}

/// `dst.copy_from_slice(src)` for short runs (a kernel row: 5 to a few dozen bytes) without a
/// call to `memcpy`, which costs more than the copy at these sizes.
#[cfg(not(arm_dsp))]
#[inline(always)]
fn copy_run(dst: &mut [i8], src: &[i8]) {
    let src = &src[..dst.len()];
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        // One (unaligned) word load and store where the target allows them.
        let w = u32::from_ne_bytes([s[0] as u8, s[1] as u8, s[2] as u8, s[3] as u8]);
        let [a, b, c, e] = w.to_ne_bytes();
        d[0] = a as i8;
        d[1] = b as i8;
        d[2] = c as i8;
        d[3] = e as i8;
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    if let (Some(d0), Some(&s0)) = (d.first_mut(), s.first()) {
        *d0 = s0;
    }
    if let (Some(d1), Some(&s1)) = (d.get_mut(1), s.get(1)) {
        *d1 = s1;
    }
    if let (Some(d2), Some(&s2)) = (d.get_mut(2), s.get(2)) {
        *d2 = s2;
    }
}

/// [`copy_run`] on Armv7E-M: one loop of unaligned word copies (4 instructions a word; the
/// compiler's at opt-level "s" took 11), then the bytes left.
#[cfg(arm_dsp)]
#[allow(unsafe_code)]
#[inline(never)]
fn copy_run(dst: &mut [i8], src: &[i8]) {
    let n = dst.len().min(src.len());
    if n == 0 {
        return;
    }
    // SAFETY: copies n bytes from `src` to `dst` (both hold at least n), whole words first
    // (unaligned word loads and stores are allowed on Armv7-M for normal memory); writes only
    // `dst[..n]`, its register operands and the flags.
    unsafe {
        core::arch::asm!(
            "subs {n}, #4",
            "blo 2f",
            "1:",
            "ldr {t}, [{s}], #4",
            "str {t}, [{d}], #4",
            "subs {n}, #4",
            "bhs 1b",
            "2:",
            "adds {n}, #4",
            "beq 4f",
            "3:",
            "ldrb {t}, [{s}], #1",
            "strb {t}, [{d}], #1",
            "subs {n}, #1",
            "bne 3b",
            "4:",
            n = inout(reg) n => _,
            s = inout(reg) src.as_ptr() => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// The pooled output of one channel (its requantization `rq`) from the accumulators of its
/// four convolution windows.
/// A max pool without a table requantizes only the largest accumulator: requantization, the
/// offset and the clamp never decrease (multipliers are non-negative), so this equals the max
/// of the four requantized values.
#[inline(always)]
pub(super) fn pool4(rq: Requant, lut: Option<&[i8; 256]>, pool: Pool2x2, acc: [i32; 4]) -> i8 {
    if pool == Pool2x2::Max && lut.is_none() {
        rq.apply(acc[0].max(acc[1]).max(acc[2]).max(acc[3])) as i8
    } else {
        pool4_any(rq, lut, pool, acc)
    }
}

/// [`pool4`] with a table or an average: each window requantized (and looked up) first. Out
/// of line: one copy in flash for every call site of the max pool's fast path.
#[inline(never)]
fn pool4_any(rq: Requant, lut: Option<&[i8; 256]>, pool: Pool2x2, acc: [i32; 4]) -> i8 {
    let v = acc.map(|a| through(lut, rq.apply(a)));
    (match pool {
        Pool2x2::Max => v[0].max(v[1]).max(v[2]).max(v[3]),
        Pool2x2::Avg => avg4(v[0] + v[1] + v[2] + v[3]),
    }) as i8
}

/// The requantization of output channel `oc`.
#[inline(always)]
pub(super) fn channel_requant(p: &ConvParams, q: &PerChannelQuant, oc: usize) -> Requant {
    Requant::new(
        q.multiplier[oc],
        q.shift[oc],
        p.output_offset,
        p.act.min,
        p.act.max,
    )
}

/// Average of four values, rounded half away from zero.
#[inline(always)]
fn avg4(s: i32) -> i32 {
    if s >= 0 { (s + 2) / 4 } else { (s - 2) / 4 }
}

/// Convolution + optional table + 2x2/2 pooling of one HWC image. `out_dims` is the pooled
/// size: `floor(conv_out / 2)` in each direction (validated at load). Dispatches to the
/// patch variant when the filter volume fits [`PATCH`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
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
    // The x86-64 host with AVX2.
    #[cfg(all(any(test, feature = "std"), target_arch = "x86_64"))]
    if super::x86::conv2d_pool2x2_s8(
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
    ) {
        return;
    }
    // One input channel: the strip variant, where it pays (two MACs per `smlad`).
    if cfg!(arm_dsp)
        && super::conv2d_c1::c1_fits(
            p.stride,
            in_dims,
            filter_dims,
            out_dims,
            pool,
            lut.is_some(),
        )
    {
        super::conv2d_c1::conv2d_pool2x2_s8_c1(
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
    } else if patch_fits(filter_dims, p.input_offset) {
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
        // Without the `large-filters` feature nothing is computed here (the output is left as
        // it is); `Model::from_bytes` refuses such layers in that build.
        #[cfg(feature = "large-filters")]
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
        );
    }
}

/// The patch variant: the four windows of a pooled output are gathered into four contiguous
/// int8 patches in the filter's `[kh][kw][in_c]` order (padding holds the input zero point, so
/// it adds `(zp + input_offset) * w = 0`), then every output channel is one pass of its filter
/// row over the four patches (`dot_x4`: two MACs per `smlad` on a Cortex-M4), pooled by
/// `pool4`. Same integer sums in another order, hence bit-exact. A filter larger than
/// [`PATCH`] (whose kernel rows fit it, see [`patch_fits`]) is gathered and multiplied one
/// kernel row at a time, 16 or 32 output channels per pass; on Armv7E-M every filter is (one
/// conv kernel in flash, and the `smlad` block for every shape).
///
/// Inlined, so that a layer whose shape is known at compile time (`Model::run_static`) keeps
/// only the variant and block width it uses.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
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
    if filter_dims.len() > PATCH || cfg!(arm_dsp) {
        // 16 filters per pass where that is all there is: a smaller frame (the stack).
        let rows = if out_dims.c <= 16 {
            patch_rows_impl::<{ cfg!(arm_dsp) }, 16>
        } else {
            patch_rows_impl::<{ cfg!(arm_dsp) }, BLOCK>
        };
        return rows(
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
        );
    }
    // Whole words for the `smlad` path; elsewhere no padding.
    patch_impl::<{ cfg!(arm_dsp) }>(
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

/// [`conv2d_pool2x2_s8_patch`]; `PADDED` rounds the filter volume up to whole words (PATCH is
/// a multiple of 4), as the Armv7E-M path needs. Both settings are tested on the host.
#[allow(clippy::too_many_arguments)]
// Its own frame on Armv7E-M: the patches must not add to the one-channel variant's stack
// (elsewhere that variant is not used and inlining keeps the stack smaller).
#[inline(never)]
fn patch_impl<const PADDED: bool>(
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
    // Padding reads up to 3 values past a filter's end, inside the next filter when
    // `kvol >= 2`; only the last filter then lacks them and is read from a padded copy.
    let kvol_padded = if PADDED && kvol >= 2 {
        kvol.next_multiple_of(4)
    } else {
        kvol
    };
    // Every row a whole number of words: the dot needs no tail.
    let words_only = PADDED && kvol_padded.is_multiple_of(4);
    let pad = (-p.input_offset).clamp(-128, 127) as i8;
    let mut patches: Patches = [[pad; PATCH]; 4];
    #[cfg(arm_dsp)]
    let mut block_acc = [[0i32; 4]; BLOCK];
    #[cfg(arm_dsp)]
    let mut wide: Wide = [[0; 8]; 4];
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            let (iy0, ix0) = (
                (2 * py * p.stride[0]) as isize - p.padding[0] as isize,
                (2 * px * p.stride[1]) as isize - p.padding[1] as isize,
            );
            let (sy, sx) = (p.stride[0], p.stride[1]);
            // Armv7E-M keeps one gather loop (the general one) for flash; elsewhere the
            // interior fast path.
            let interior = !cfg!(arm_dsp)
                && iy0 >= 0
                && ix0 >= 0
                && iy0 as usize + sy + filter_dims.h <= in_dims.h
                && ix0 as usize + sx + kw <= in_dims.w;
            if interior {
                // All four windows inside the input: kernel row `ky` of window (dy, dx) is the
                // input row `iy0 + dy * sy + ky` from column `ix0 + dx * sx`.
                let row_len = kw * c;
                let stride = in_dims.w * c;
                let base = (iy0 as usize * in_dims.w + ix0 as usize) * c;
                let [p0, p1, p2, p3] = &mut patches;
                for ky in 0..filter_dims.h {
                    let at = base + ky * stride;
                    let d = ky * row_len;
                    copy_run(&mut p0[d..d + row_len], &input[at..]);
                    copy_run(&mut p1[d..d + row_len], &input[at + sx * c..]);
                    copy_run(&mut p2[d..d + row_len], &input[at + sy * stride..]);
                    copy_run(&mut p3[d..d + row_len], &input[at + sy * stride + sx * c..]);
                }
            }
            for (patch, (dy, dx)) in patches
                .iter_mut()
                .zip([(0, 0), (0, 1), (1, 0), (1, 1)])
                .filter(|_| !interior)
            {
                let win = Window::new(p, in_dims, filter_dims, 2 * py + dy, 2 * px + dx);
                let (kx_lo, kx_hi) = win.kx;
                let whole = win.ky == (0, filter_dims.h) && (kx_lo, kx_hi) == (0, kw);
                if !whole {
                    patch[..kvol].fill(pad);
                }
                // Each kernel row is one contiguous run of the input (kx_lo..kx_hi, all
                // channels): HWC rows and the [kh][kw][c] patch share their inner order.
                let run = (kx_hi - kx_lo) * c;
                // A window wholly inside the vertical padding has no rows (its first row
                // index would be negative): nothing to copy.
                if run > 0 && win.ky.0 < win.ky.1 {
                    let col = (win.ix0 + kx_lo as isize) as usize;
                    let iy = (win.iy0 + win.ky.0 as isize) as usize;
                    let mut src = (iy * in_dims.w + col) * c;
                    let mut dst = (win.ky.0 * kw + kx_lo) * c;
                    for _ in win.ky.0..win.ky.1 {
                        copy_run(&mut patch[dst..][..run], &input[src..][..run]);
                        src += in_dims.w * c;
                        dst += kw * c;
                    }
                }
            }
            let out = &mut output[(py * out_dims.w + px) * out_dims.c..][..out_dims.c];
            // Armv7E-M: the patches widened once per 16 values for a block of filters.
            #[cfg(arm_dsp)]
            if PADDED {
                for (b, outs) in out.chunks_mut(BLOCK).enumerate() {
                    let (o0, n) = (b * BLOCK, outs.len());
                    let acc = &mut block_acc[..n];
                    for (a, &bi) in acc.iter_mut().zip(&bias[o0..o0 + n]) {
                        *a = [bi; 4];
                    }
                    let rows = &filter[o0 * kvol..(o0 + n) * kvol];
                    dot_x4_block(&patches, rows, kvol, kvol, p.input_offset, &mut wide, acc);
                    for (j, (o, &a)) in outs.iter_mut().zip(acc.iter()).enumerate() {
                        *o = pool4(channel_requant(p, q, o0 + j), lut, pool, a);
                    }
                }
                continue;
            }
            for (oc, o) in out.iter_mut().enumerate() {
                let mut acc = [bias[oc]; 4];
                // Past `kvol` the patches hold the zero point (x + offset = 0), so reading the
                // next filter's first weights there adds nothing. Only the last filter can
                // fall short (see `kvol_padded`): it is read at its own length, the tail by
                // the portable code.
                match filter.get(oc * kvol..oc * kvol + kvol_padded) {
                    Some(row) if words_only => {
                        dot_x4_words(&patches, row, p.input_offset, &mut acc)
                    }
                    Some(row) => dot_x4(&patches, row, p.input_offset, &mut acc),
                    None => dot_x4(
                        &patches,
                        &filter[oc * kvol..][..kvol],
                        p.input_offset,
                        &mut acc,
                    ),
                }
                *o = pool4(channel_requant(p, q, oc), lut, pool, acc);
            }
        }
    }
}

/// The row variant of [`conv2d_pool2x2_s8_patch`] for filters larger than [`PATCH`] whose
/// kernel rows fit it: for each pooled output and each block of `B` (at most [`BLOCK`]) output
/// channels, kernel row `ky` of the four windows is gathered into the patches (`kw * in_c`
/// values each, the zero point past them) and multiplied with row `ky` of the block's filters
/// (`dot_x4_block` at the filter-volume stride on Armv7E-M when `PADDED`, `dot_x4` per filter
/// elsewhere); rows wholly inside the vertical padding are skipped (they add zero). Same
/// integer sums in another order, hence bit-exact.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn patch_rows_impl<const PADDED: bool, const B: usize>(
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
    let (kh, kw, c) = (filter_dims.h, filter_dims.w, in_dims.c);
    let row_len = kw * c;
    let kvol = filter_dims.len();
    if row_len == 0 || row_len > PATCH {
        return;
    }
    let pad = (-p.input_offset).clamp(-128, 127) as i8;
    let mut patches: Patches = [[pad; PATCH]; 4];
    let mut block_acc = [[0i32; 4]; B];
    #[cfg(arm_dsp)]
    let mut wide: Wide = [[0; 8]; 4];
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            let wins = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .map(|(dy, dx)| Window::new(p, in_dims, filter_dims, 2 * py + dy, 2 * px + dx));
            let out = &mut output[(py * out_dims.w + px) * out_dims.c..][..out_dims.c];
            for (b, outs) in out.chunks_mut(B).enumerate() {
                let (o0, n) = (b * B, outs.len());
                let acc = &mut block_acc[..n];
                for (a, &bi) in acc.iter_mut().zip(&bias[o0..o0 + n]) {
                    *a = [bi; 4];
                }
                for ky in 0..kh {
                    if !gather_row(&mut patches, &wins, ky, in_dims, input, kw, pad) {
                        continue;
                    }
                    let rows = &filter[o0 * kvol + ky * row_len..];
                    #[cfg(arm_dsp)]
                    if PADDED {
                        let off = p.input_offset;
                        dot_x4_block(&patches, rows, kvol, row_len, off, &mut wide, acc);
                        continue;
                    }
                    for (j, a) in acc.iter_mut().enumerate() {
                        dot_x4(&patches, &rows[j * kvol..][..row_len], p.input_offset, a);
                    }
                }
                for (j, (o, &a)) in outs.iter_mut().zip(acc.iter()).enumerate() {
                    *o = pool4(channel_requant(p, q, o0 + j), lut, pool, a);
                }
            }
        }
    }
}

/// Kernel row `ky` of the four windows into the first `kw * c` values of the patches (the
/// zero point where a window lies in the padding). `false` when no window has that row (it
/// adds nothing).
#[inline(always)]
fn gather_row(
    patches: &mut Patches,
    wins: &[Window; 4],
    ky: usize,
    in_dims: Dims,
    input: &[i8],
    kw: usize,
    pad: i8,
) -> bool {
    let c = in_dims.c;
    let row_len = kw * c;
    let mut any = false;
    for (patch, win) in patches.iter_mut().zip(wins) {
        let (kx_lo, kx_hi) = win.kx;
        let has_row = win.ky.0 <= ky && ky < win.ky.1 && kx_lo < kx_hi;
        if !has_row || (kx_lo, kx_hi) != (0, kw) {
            patch[..row_len].fill(pad);
        }
        if has_row {
            let iy = (win.iy0 + ky as isize) as usize;
            let col = (win.ix0 + kx_lo as isize) as usize;
            let run = (kx_hi - kx_lo) * c;
            copy_run(
                &mut patch[kx_lo * c..][..run],
                &input[(iy * in_dims.w + col) * c..][..run],
            );
            any = true;
        }
    }
    any
}

/// The per-channel variant (any filter volume): the four windows of a pooled output are
/// located once and shared by all output channels.
#[allow(clippy::too_many_arguments)]
// A whole layer per call: its own frame keeps its window table off the other variants' stack.
#[inline(never)]
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
                    Pool2x2::Avg => avg4(v.iter().sum()),
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
            (c, h, w, k, oc, pad, st) in (1usize..5, 2usize..12, 2usize..12, 1usize..6, 1usize..12, 0usize..3, 1usize..3),
            zp in -128i32..128, zo in -128i32..128, m in (1i32 << 30)..i32::MAX, shift in -10i8..1,
            seed in any::<u64>(), relu in any::<bool>(), with_lut in any::<bool>(), max in any::<bool>(),
        ) {
            let (Some(ch), Some(cw)) = (window_out(h, k, st, 2 * pad), window_out(w, k, st, 2 * pad)) else { return Ok(()); };
            if ch < 2 || cw < 2 { return Ok(()); }
            let in_dims = Dims { h, w, c };
            let fd = Dims { h: k, w: k, c };
            let conv_dims = Dims { h: ch, w: cw, c: oc };
            let out_dims = Dims { h: ch / 2, w: cw / 2, c: oc };
            let p = ConvParams { input_offset: -zp, output_offset: zo, stride: [st, st], padding: [pad, pad], act: if relu { Clamp { min: zo as i8, max: 127 } } else { Clamp::NONE } };
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
            // The dispatcher took the best level this CPU has; the AVX2 one too.
            #[cfg(target_arch = "x86_64")]
            {
                use crate::kernels::x86::{Level, with_level};
                let mut avx2 = vec![0i8; out_dims.len()];
                with_level(Some(Level::Avx2), || conv2d_pool2x2_s8(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut avx2));
                prop_assert_eq!(&avx2, &fused);
            }
            let mut per_channel = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8_per_channel(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut per_channel);
            let mut patched = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8_patch(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut patched);
            // The whole-word layout of the Armv7E-M path, here with the portable dot.
            let mut padded = vec![0i8; out_dims.len()];
            patch_impl::<true>(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut padded);

            let mut conv = vec![0i8; conv_dims.len()];
            reference::conv2d::conv2d_s8(&p, &q, in_dims, &input, fd, &filter, &bias, conv_dims, &mut conv);
            if let Some(t) = lut { for v in conv.iter_mut() { *v = t[(*v as i32 + 128) as usize]; } }
            let pp = PoolParams { kernel: [2, 2], stride: [2, 2], padding: [0, 0], act: Clamp::NONE };
            let mut unfused = vec![0i8; out_dims.len()];
            if max { reference::pool::maxpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut unfused) } else { reference::pool::avgpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut unfused) }
            prop_assert_eq!(&fused, &unfused);
            prop_assert_eq!(&per_channel, &unfused);
            prop_assert_eq!(&patched, &unfused);
            if crate::kernels::conv2d_c1::c1_fits(p.stride, in_dims, fd, out_dims, pool, lut.is_some()) {
                let mut strip = vec![0i8; out_dims.len()];
                crate::kernels::conv2d_c1::conv2d_pool2x2_s8_c1(&p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut strip);
                prop_assert_eq!(&strip, &unfused);
            }
            prop_assert_eq!(&padded, &unfused);
        }

        /// Wide layers (the CIFAR-10 nets' 32 and 64 channels): filters past PATCH go through
        /// the row variant, which must equal the reference and the per-channel kernel.
        #[test]
        fn wide_filters_by_kernel_row_are_bit_exact(
            (c, h, w, k, oc, pad) in (17usize..=40, 2usize..9, 2usize..9, 3usize..6, 1usize..40, 0usize..3),
            zp in -128i32..128, zo in -128i32..128, m in (1i32 << 30)..i32::MAX, shift in -12i8..-4,
            seed in any::<u64>(), max in any::<bool>(),
        ) {
            let (Some(ch), Some(cw)) = (window_out(h, k, 1, 2 * pad), window_out(w, k, 1, 2 * pad)) else { return Ok(()); };
            if ch < 2 || cw < 2 || k * c > PATCH { return Ok(()); }
            let in_dims = Dims { h, w, c };
            let fd = Dims { h: k, w: k, c };
            prop_assume!(fd.len() > PATCH);
            let conv_dims = Dims { h: ch, w: cw, c: oc };
            let out_dims = Dims { h: ch / 2, w: cw / 2, c: oc };
            let p = ConvParams { input_offset: -zp, output_offset: zo, stride: [1, 1], padding: [pad, pad], act: Clamp { min: zo as i8, max: 127 } };
            let input = bytes(in_dims.len(), seed);
            let filter: Vec<i8> = bytes(oc * fd.len(), !seed).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..oc as i32).map(|i| i * 977 - 9000).collect();
            let mult: Vec<i32> = (0..oc as i32).map(|i| m - i * 1000).collect();
            let shifts = vec![shift; oc];
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let pool = if max { Pool2x2::Max } else { Pool2x2::Avg };
            let mut conv = vec![0i8; conv_dims.len()];
            reference::conv2d::conv2d_s8(&p, &q, in_dims, &input, fd, &filter, &bias, conv_dims, &mut conv);
            let pp = PoolParams { kernel: [2, 2], stride: [2, 2], padding: [0, 0], act: Clamp::NONE };
            let mut want = vec![0i8; out_dims.len()];
            if max { reference::pool::maxpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut want) } else { reference::pool::avgpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut want) }
            let mut rows = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8_patch(&p, &q, in_dims, &input, fd, &filter, &bias, None, pool, out_dims, &mut rows);
            prop_assert_eq!(&rows, &want);
            let mut padded = vec![0i8; out_dims.len()];
            patch_rows_impl::<true, 32>(&p, &q, in_dims, &input, fd, &filter, &bias, None, pool, out_dims, &mut padded);
            let mut narrow = vec![0i8; out_dims.len()];
            patch_rows_impl::<false, 16>(&p, &q, in_dims, &input, fd, &filter, &bias, None, pool, out_dims, &mut narrow);
            prop_assert_eq!(&narrow, &want);
            prop_assert_eq!(&padded, &want);
            let mut fused = vec![0i8; out_dims.len()];
            conv2d_pool2x2_s8(&p, &q, in_dims, &input, fd, &filter, &bias, None, pool, out_dims, &mut fused);
            prop_assert_eq!(&fused, &want);
            // The AVX2 kernel too: several 16-channel blocks, a partial last one, kernel rows
            // of more than 16 pairs.
            #[cfg(target_arch = "x86_64")]
            {
                use crate::kernels::x86::{Level, with_level};
                let mut avx2 = vec![0i8; out_dims.len()];
                with_level(Some(Level::Avx2), || conv2d_pool2x2_s8(&p, &q, in_dims, &input, fd, &filter, &bias, None, pool, out_dims, &mut avx2));
                prop_assert_eq!(&avx2, &want);
            }
        }
    }
}
