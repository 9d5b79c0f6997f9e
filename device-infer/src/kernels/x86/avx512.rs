//! AVX-512 versions (F + BW + VNNI: Zen 4 and 5, Ice Lake and later) of the AVX2 kernels of
//! [`super`]: the same integer sums in another order and the same requantization, so bit-exact
//! with them and with the references (tested below, and through the dispatchers' property
//! tests on both levels).
//!
//! `vpdpwssd` multiplies 32 i16 pairs and adds each pair's sum into one of 16 i32 lanes: one
//! instruction where AVX2 takes `vpmaddwd` + `vpaddd` for half as many.
//!
//! - One input channel (a grayscale first layer): as in AVX2, the lanes are pooled columns,
//!   16 of them (a 12-wide pooled row in one vector instead of 8 + 4); with VBMI, four u8
//!   taps per lane, gathered by `vpermb` into a table of every image row's tap vectors once per
//!   layer.
//! - Other convolutions: the lanes are 16 output channels. Each tap pair of a window (two
//!   consecutive values of a kernel row, contiguous in the HWC image) is broadcast and
//!   multiplied by the 16 filters' weight pair: no patches, no lane sums, the four windows of a
//!   pooled output share every weight load.
//! - Convolutions whose zero point is an int8 (all that quantize makes) and dense layers use
//!   `vpdpbusd` instead: 64 u8 x s8 products into 16 lanes, the input as `x + 128` and the
//!   offset moved into the bias (convolutions) or a sum of the weights (dense).

use core::arch::x86_64::*;
use std::vec::Vec;

use super::super::conv2d_block::{Pool2x2, pool4};
use super::super::{Clamp, ConvParams, Dims, PerChannelQuant};
#[cfg(test)]
use super::ConvKernel;
use super::{C1_MAX_KH, Scratch, grow, pad_image};
use crate::quant::Requant;

/// Whether these kernels run on this CPU (checked once by std, then cached).
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// 32 i16 from the front of `s` (zeros if shorter, which callers never pass: the padded image
/// has slack).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn load32(s: &[i16]) -> __m512i {
    s.first_chunk::<32>()
        .map_or(_mm512_setzero_si512(), |a| bytemuck::cast(*a))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn load_i32x16(s: &[i32]) -> __m512i {
    s.first_chunk::<16>()
        .map_or(_mm512_setzero_si512(), |a| bytemuck::cast(*a))
}

/// [`requantize`](crate::quant::requantize) on 16 lanes: the rule of `requantize8` (see there
/// for why it is TFLM's), with AVX-512's masks for the blends and compares.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn requantize16(acc: __m512i, multiplier: __m512i, shift: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    let left = _mm512_max_epi32(shift, zero);
    let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    let x = _mm512_sllv_epi32(acc, left);
    let nudge = _mm512_set1_epi64(1 << 30);
    let even = _mm512_srli_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(x, multiplier), nudge));
    let odd = _mm512_mul_epi32(
        _mm512_srli_epi64::<32>(x),
        _mm512_srli_epi64::<32>(multiplier),
    );
    let odd = _mm512_slli_epi64::<32>(_mm512_srli_epi64::<31>(_mm512_add_epi64(odd, nudge)));
    let y = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    // RoundingDivideByPOT(y, right): shift, plus one when the remainder passes half (a
    // negative y needs strictly more than half).
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    let remainder = _mm512_and_si512(y, mask);
    let negative = _mm512_cmplt_epi32_mask(y, zero);
    let half = _mm512_srli_epi32::<1>(mask);
    let threshold = _mm512_mask_add_epi32(half, negative, half, one);
    let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    let q = _mm512_srav_epi32(y, right);
    _mm512_mask_add_epi32(q, up, q, one)
}

/// Requantizes 16 accumulators with `quant` (`[bias; 16], [multiplier; 16], [shift; 16]`),
/// adds the output offset, clamps and stores the first `out.len()` (at most 16) as int8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn finish16(acc: __m512i, quant: &[i32], output_offset: i32, act: Clamp, out: &mut [i8]) {
    let m = load_i32x16(&quant[16..]);
    let s = load_i32x16(&quant[32..]);
    let v = _mm512_add_epi32(requantize16(acc, m, s), _mm512_set1_epi32(output_offset));
    let v = _mm512_max_epi32(v, _mm512_set1_epi32(act.min as i32));
    let v = _mm512_min_epi32(v, _mm512_set1_epi32(act.max as i32));
    // Narrowed in one `vpmovdb` and stored in one go where 16 fit (16 byte stores were most
    // of a pooled output's store).
    let v: [i8; 16] = bytemuck::cast(_mm512_cvtepi32_epi8(v));
    match out.first_chunk_mut::<16>() {
        Some(d) => *d = v,
        None => {
            let n = out.len().min(16);
            out[..n].copy_from_slice(&v[..n]);
        }
    }
}

/// The little-endian i32 at byte `at` of `b` (0 if `b` is too short, which callers' slices
/// never are).
#[inline(always)]
fn word(b: &[u8], at: usize) -> i32 {
    b.get(at..at + 4)
        .map_or(0, |w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// Two i16 as one i32 word, the first in the low half (as `vpdpwssd` pairs them).
#[inline]
fn pack(lo: i16, hi: i16) -> i32 {
    (lo as u16 as u32 | (hi as u16 as u32) << 16) as i32
}

/// Bias, multiplier and shift of channels `16b..16b + 16` as three runs of 16 i32 (zeros past
/// the last channel), for every block `b`: `quant[48 * b..][..48]`.
fn block_quant16(quant: &mut [i32], q: &PerChannelQuant, bias: &[i32]) {
    let channels = bias.len().min(q.multiplier.len()).min(q.shift.len());
    for (b, blk) in quant.chunks_exact_mut(48).enumerate() {
        let lo = (16 * b).min(channels);
        let n = (channels - lo).min(16);
        let (bi, rest) = blk.split_at_mut(16);
        let (m, sh) = rest.split_at_mut(16);
        // Whole blocks as fixed-size copies (inlined moves; the slice copies were three
        // `memcpy` calls a block, every layer, every call).
        let whole = (
            bias.get(lo..).and_then(|v| v.first_chunk::<16>()),
            q.multiplier.get(lo..).and_then(|v| v.first_chunk::<16>()),
            q.shift.get(lo..).and_then(|v| v.first_chunk::<16>()),
            bi.first_chunk_mut::<16>(),
            m.first_chunk_mut::<16>(),
            sh.first_chunk_mut::<16>(),
        );
        if let (Some(b), Some(mu), Some(s), Some(db), Some(dm), Some(ds)) = whole {
            *db = *b;
            *dm = *mu;
            *ds = s.map(i32::from);
            continue;
        }
        for (i, ((db, dm), ds)) in bi.iter_mut().zip(m.iter_mut()).zip(sh).enumerate() {
            let c = lo + i;
            (*db, *dm, *ds) = if i < n {
                (bias[c], q.multiplier[c], q.shift[c] as i32)
            } else {
                (0, 0, 0)
            };
        }
    }
}

/// The pooled outputs of one channel through the general `pool4` (a table, an average pool):
/// `acc` holds the four windows' accumulators of up to 16 pooled outputs; output `l` goes to
/// `out[l * step]`, `l < count`.
#[allow(clippy::too_many_arguments)]
fn pool_store(
    p: &ConvParams,
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    multiplier: i32,
    shift: i8,
    acc: [[i32; 16]; 4],
    out: &mut [i8],
    step: usize,
    count: usize,
) {
    let rq = Requant::new(multiplier, shift, p.output_offset, p.act.min, p.act.max);
    let windows = acc[0]
        .iter()
        .zip(acc[1])
        .zip(acc[2])
        .zip(acc[3])
        .take(count);
    for (l, (((&w0, w1), w2), w3)) in windows.enumerate() {
        if let Some(o) = out.get_mut(l * step) {
            *o = pool4(rq, lut, pool, [w0, w1, w2, w3]);
        }
    }
}

/// One input channel, stride 1, kernels up to `C1_MAX_KH` x 8: with VBMI and a map small
/// enough, [`c1_flat`] (16 consecutive pooled outputs per vector, four taps of the flattened
/// kernel per lane); else `super::super::conv_pool_c1_avx2` with 16 pooled columns per vector.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn conv_pool_c1(
    s: &mut Scratch,
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
    c1_layer(
        s,
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
        true,
    )
}

/// [`conv_pool_c1`] without [`c1_flat`]: the row kernels, for the tests.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn conv_pool_c1_rows(
    s: &mut Scratch,
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
    c1_layer(
        s,
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
        false,
    )
}

/// The body of [`conv_pool_c1`]; `flat`: whether [`c1_flat`] may take the layer.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn c1_layer(
    s: &mut Scratch,
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
    flat: bool,
) {
    let (kh, kw) = (filter_dims.h.min(C1_MAX_KH), filter_dims.w);
    let oc = out_dims.c;
    // With VBMI and an int8 zero point: four taps per lane (`vpdpbusd` on `x + 128`, the
    // offset moved into the starting sums); else pairs of i16 taps (`vpdpwssd`).
    let u8_path = vbmi() && u8_fits(p);
    let per = if u8_path { 4 } else { 2 };
    let nw = kw.div_ceil(per);
    let wp = if u8_path {
        pad_image_u8(&mut s.bytes, p, in_dims, input, filter_dims, out_dims)
    } else {
        pad_image(&mut s.image, p, in_dims, input, filter_dims, out_dims)
    };
    if u8_path && flat {
        let shape = [wp, out_dims.h, out_dims.w, kh, kw];
        if let Some(plan) = flat_plan(&mut s.flat, shape) {
            let words = grow(&mut s.quant, oc * (FLAT_MAX_WORDS + 1));
            let (words, start) = words.split_at_mut(oc * FLAT_MAX_WORDS);
            let filters = filter
                .chunks_exact(kh * kw)
                .zip(words.chunks_exact_mut(FLAT_MAX_WORDS));
            for (o, (w, dst)) in filters.enumerate() {
                for (j, d) in dst.iter_mut().enumerate() {
                    let at = |i: usize| w.get(4 * j + i).copied().unwrap_or(0) as u8;
                    *d = i32::from_le_bytes([at(0), at(1), at(2), at(3)]);
                }
                let sum: i32 = w.iter().map(|&v| v as i32).sum();
                start[o] = bias[o].wrapping_add((p.input_offset - 128).wrapping_mul(sum));
            }
            let image = grow(&mut s.bytes, plan.end);
            let store = C1Store {
                p,
                q,
                lut,
                pool,
                oc,
                vbmi: true,
            };
            let words: &[[i32; FLAT_MAX_WORDS]] = bytemuck::cast_slice(words);
            // SAFETY: the u8 path is only taken where the CPU has VBMI (`vbmi()` above).
            unsafe { c1_flat(plan, image, words, start, &store, output) };
            return;
        }
    }
    // Per channel and kernel row, the words of taps `per * j ..`, then per channel the sum
    // each window starts from.
    let words = grow(&mut s.quant, oc * kh * nw + oc);
    let (words, start) = words.split_at_mut(oc * kh * nw);
    for (o, (w, st)) in filter
        .chunks_exact(kh * kw)
        .zip(start.iter_mut())
        .enumerate()
    {
        for (dst, row) in words[o * kh * nw..]
            .chunks_exact_mut(nw)
            .zip(w.chunks_exact(kw))
        {
            for (d, vals) in dst.iter_mut().zip(row.chunks(per)) {
                let at = |i: usize| vals.get(i).copied().unwrap_or(0);
                *d = if u8_path {
                    i32::from_le_bytes([at(0) as u8, at(1) as u8, at(2) as u8, at(3) as u8])
                } else {
                    pack(at(0) as i16, at(1) as i16)
                };
            }
        }
        let sum: i32 = w.iter().map(|&v| v as i32).sum();
        *st = if u8_path {
            bias[o].wrapping_add((p.input_offset - 128).wrapping_mul(sum))
        } else {
            bias[o]
        };
    }
    let (words, start) = (&*words, &*start);
    let groups = out_dims.w.div_ceil(16);
    if u8_path {
        let rows = 2 * out_dims.h + kh;
        // SAFETY: the u8 path is only taken where the CPU has VBMI (`vbmi()` above).
        unsafe { quad_table(&s.bytes, wp, rows, groups, &mut s.quads) };
    }
    let img = C1Image {
        wide: &s.image[..],
        quads: &s.quads[..],
        wp,
        kh,
        groups,
    };
    match (u8_path, nw) {
        (true, 1) => c1_rows::<1, true>(&img, words, start, p, q, lut, pool, out_dims, output),
        (true, _) => c1_rows::<2, true>(&img, words, start, p, q, lut, pool, out_dims, output),
        (false, 1) => c1_rows::<1, false>(&img, words, start, p, q, lut, pool, out_dims, output),
        (false, 2) => c1_rows::<2, false>(&img, words, start, p, q, lut, pool, out_dims, output),
        (false, 3) => c1_rows::<3, false>(&img, words, start, p, q, lut, pool, out_dims, output),
        (false, _) => c1_rows::<4, false>(&img, words, start, p, q, lut, pool, out_dims, output),
    }
}

/// Most words of taps per lane in [`c1_flat`] (kernels of up to 32 taps: 5 x 5 takes 7).
const FLAT_MAX_WORDS: usize = 8;
/// Most sources (tap vectors a call) of one [`FlatPlan`]; larger maps take the row kernels.
const FLAT_MAX_VECTORS: usize = 4096;
/// Layer shapes whose plans a scratch keeps.
const FLAT_PLANS: usize = 8;

/// The gathers of [`c1_flat`] for one layer shape `[wp, oh, ow, kh, kw]` (padded image row,
/// pooled output rows and columns, kernel rows and columns): for every group `g` of 16
/// consecutive pooled outputs (row-major over the whole map), window `w` of the 2x2 pool and
/// word `k` of the flattened kernel, the vector whose lane `l` holds the taps `4k .. 4k + 4`
/// (row-major over the kernel) of window `w` of output `16g + l`: the 128 image bytes from
/// `at[i]` permuted by `patterns[pattern[i]]`, `i = (4g + w) * nq + k`. Taps past the kernel
/// and lanes past the map read byte 0 of the source (their weights are zero, their results
/// not stored).
pub(super) struct FlatPlan {
    shape: [usize; 5],
    /// Whether every source spans at most 128 bytes (else the row kernels take the layer).
    fits: bool,
    nq: usize,
    at: Vec<usize>,
    /// Per source, which of `patterns` permutes it: groups that start at the same column
    /// share their index vectors (a 12-wide map: 15 patterns for 252 sources), which keeps
    /// the plan small in L1 beside the dense weights.
    pattern: Vec<u16>,
    patterns: Vec<[u8; 64]>,
    /// One past the last image byte a source reads.
    end: usize,
}

impl FlatPlan {
    fn new(shape: [usize; 5]) -> FlatPlan {
        let [wp, oh, ow, kh, kw] = shape;
        let (taps, total) = (kh * kw, oh * ow);
        let nq = taps.div_ceil(4);
        let vectors = total.div_ceil(16) * 4 * nq;
        let mut plan = FlatPlan {
            shape,
            fits: false,
            nq,
            at: Vec::with_capacity(vectors),
            pattern: Vec::with_capacity(vectors),
            patterns: Vec::new(),
            end: 0,
        };
        if nq == 0 || nq > FLAT_MAX_WORDS || vectors > FLAT_MAX_VECTORS {
            return plan;
        }
        let mut seen = std::collections::HashMap::new();
        for g in 0..total.div_ceil(16) {
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                for k in 0..nq {
                    // The image byte of tap `4k + b` of lane `l`'s window, where both exist.
                    let addr = |i: usize| {
                        let (n, t) = (16 * g + i / 4, 4 * k + i % 4);
                        let (py, px) = (n / ow, n % ow);
                        (n < total && t < taps)
                            .then(|| (2 * py + dy + t / kw) * wp + 2 * px + dx + t % kw)
                    };
                    let base = (0..64).filter_map(addr).min().unwrap_or(0);
                    let mut idx = [0u8; 64];
                    for (i, d) in idx.iter_mut().enumerate() {
                        match addr(i).map(|a| a - base) {
                            Some(off) if off >= 128 => return plan,
                            Some(off) => *d = off as u8,
                            None => {}
                        }
                    }
                    let next = plan.patterns.len() as u16; // < FLAT_MAX_VECTORS
                    let pattern = *seen.entry(idx).or_insert(next);
                    if pattern == next {
                        plan.patterns.push(idx);
                    }
                    plan.at.push(base);
                    plan.pattern.push(pattern);
                    plan.end = plan.end.max(base + 128);
                }
            }
        }
        plan.fits = true;
        plan
    }
}

/// The plan for `shape` from `cache` (made and kept, the oldest dropped past [`FLAT_PLANS`],
/// when new); `None` where the shape does not fit [`c1_flat`].
fn flat_plan(cache: &mut Vec<FlatPlan>, shape: [usize; 5]) -> Option<&FlatPlan> {
    let i = match cache.iter().position(|p| p.shape == shape) {
        Some(i) => i,
        None => {
            if cache.len() >= FLAT_PLANS {
                cache.remove(0);
            }
            cache.push(FlatPlan::new(shape));
            cache.len() - 1
        }
    };
    cache.get(i).filter(|p| p.fits)
}

/// The one-channel layer over [`FlatPlan`]'s gathers: per group of 16 pooled outputs, the
/// `4 nq` tap vectors by `vpermt2b` (VBMI), then up to six channels at a time, `nq` words
/// each against every window (24 chains). Where the row kernels spend `kh * ceil(kw / 4)`
/// words on a pooled row whose width rarely fills the 16 lanes (14 of LeNet5-like's, 5 x 5: 10
/// words), this spends `ceil(kh * kw / 4)` (7) on full vectors. `words[o]`: channel `o`'s
/// words of four taps (u8 bytes of its i8 weights, zero past the kernel), `start[o]` its
/// starting sum (bias and offset term, as in [`conv_pool_c1`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
fn c1_flat(
    plan: &FlatPlan,
    image: &[u8],
    words: &[[i32; FLAT_MAX_WORDS]],
    start: &[i32],
    store: &C1Store,
    output: &mut [i8],
) {
    let [_, oh, ow, _, _] = plan.shape;
    let (nq, oc, total) = (plan.nq, store.oc, oh * ow);
    let mut t = [[_mm512_setzero_si512(); FLAT_MAX_WORDS]; 4];
    // Set once per call, not per group (their zeroing was a `memset` call a group): each
    // group overwrites the channels it reads.
    let mut res = [[0i8; 16]; 16];
    let mut acc = [[_mm512_setzero_si512(); 4]; 6];
    let sources = plan
        .at
        .chunks_exact(4 * nq)
        .zip(plan.pattern.chunks_exact(4 * nq));
    for (g, (at, pattern)) in sources.enumerate() {
        let windows = at.chunks_exact(nq).zip(pattern.chunks_exact(nq));
        for (tw, (at, pattern)) in t.iter_mut().zip(windows) {
            for (tk, (&a, &k)) in tw.iter_mut().zip(at.iter().zip(pattern)) {
                let src = image.get(a..).and_then(|b| b.first_chunk::<128>());
                *tk = match (src, plan.patterns.get(k as usize)) {
                    (Some(b), Some(idx)) => {
                        let [lo, hi]: [__m512i; 2] = bytemuck::cast(*b);
                        _mm512_permutex2var_epi8(lo, bytemuck::cast(*idx), hi)
                    }
                    _ => _mm512_setzero_si512(),
                };
            }
        }
        let (n0, count) = (16 * g, (total - 16 * g).min(16));
        let Some(out) = output.get_mut(n0 * oc..) else {
            return;
        };
        let mut o = 0;
        while o < oc {
            let n = match oc - o {
                6.. => 6,
                3..=5 => 3,
                r => r,
            };
            let (w, st) = (&words[o..], &start[o..]);
            match n {
                6 => flat_windows::<6>(&t, nq, w, st, &mut acc),
                3 => flat_windows::<3>(&t, nq, w, st, &mut acc),
                2 => flat_windows::<2>(&t, nq, w, st, &mut acc),
                _ => flat_windows::<1>(&t, nq, w, st, &mut acc),
            }
            for (c, &a) in acc.iter().enumerate().take(n) {
                store.channel(o + c, a, &mut res, out, count);
            }
            o += n;
        }
    }
}

/// The four windows' accumulators of `G` consecutive channels of [`c1_flat`] into
/// `acc[..G]`: word by word, each tap vector against every channel's broadcast word.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn flat_windows<const G: usize>(
    t: &[[__m512i; FLAT_MAX_WORDS]; 4],
    nq: usize,
    words: &[[i32; FLAT_MAX_WORDS]],
    start: &[i32],
    acc: &mut [[__m512i; 4]; 6],
) {
    let (Some(words), Some(start)) = (words.get(..G), start.get(..G)) else {
        return;
    };
    for (a, &st) in acc.iter_mut().zip(start) {
        *a = [_mm512_set1_epi32(st); 4];
    }
    for k in 0..nq.min(FLAT_MAX_WORDS) {
        for (a, w) in acc.iter_mut().zip(words) {
            let w = _mm512_set1_epi32(w[k]);
            for (a, t) in a.iter_mut().zip(t) {
                *a = _mm512_dpbusd_epi32(*a, t[k], w);
            }
        }
    }
}

/// [`super::lookup_u8`] with VBMI: per 64 bytes, the table's lower and upper 128 entries
/// by one `vpermi2b` each (indices' low 7 bits), blended by the indices' top bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
pub(super) fn lookup_u8(table: &[i8; 256], src: &[u8], dst: &mut [i8]) {
    let t: [__m512i; 4] = bytemuck::cast(*table);
    let (mut s64, mut d64) = (src.chunks_exact(64), dst.chunks_exact_mut(64));
    for (s, d) in (&mut s64).zip(&mut d64) {
        let (Some(s), Some(d)) = (s.first_chunk::<64>(), d.first_chunk_mut::<64>()) else {
            continue; // not reached: exact chunks
        };
        let idx: __m512i = bytemuck::cast(*s);
        let lo = _mm512_permutex2var_epi8(t[0], idx, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], idx, t[3]);
        let v = _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
        *d = bytemuck::cast(v);
    }
    for (d, &s) in d64.into_remainder().iter_mut().zip(s64.remainder()) {
        *d = table[s as usize];
    }
}

/// Whether the CPU has AVX-512 VBMI (`vpermb`), for the u8 one-channel kernel.
pub(super) fn vbmi() -> bool {
    std::is_x86_feature_detected!("avx512vbmi")
}

/// The padded image of [`conv_pool_c1`]: `wide` (i16, `x + offset`), or for the u8 path its
/// tap quads (see [`quad_table`]), whichever the path filled; its row length; the kernel
/// height; the groups of 16 pooled columns.
struct C1Image<'a> {
    wide: &'a [i16],
    quads: &'a [[u8; 64]],
    wp: usize,
    kh: usize,
    groups: usize,
}

/// For every row `y` of the u8 image, group `g` of 16 pooled columns, column phase `dx` and
/// tap quad `j`, the vector whose lane `l` holds the taps at row `y` from column
/// `2 * (16g + l) + dx + 4j`: `table[((y * groups + g) * 2 + dx) * 2 + j]`. Built once per
/// layer (each row serves up to `kh / 2 + 1` pooled rows), with VBMI's `vpermb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
fn quad_table(bytes: &[u8], wp: usize, rows: usize, groups: usize, table: &mut Vec<[u8; 64]>) {
    let idx: [[__m512i; 2]; 2] = [
        [bytemuck::cast(QUADS[0][0]), bytemuck::cast(QUADS[0][1])],
        [bytemuck::cast(QUADS[1][0]), bytemuck::cast(QUADS[1][1])],
    ];
    let t = grow(table, rows * groups * 4);
    for (y, row) in t.chunks_exact_mut(groups * 4).enumerate() {
        for (g, out) in row.chunks_exact_mut(4).enumerate() {
            let src = bytes
                .get(y * wp + 32 * g..)
                .and_then(|b| b.first_chunk::<64>())
                .map_or(_mm512_setzero_si512(), |b| bytemuck::cast(*b));
            out[0] = bytemuck::cast(_mm512_permutexvar_epi8(idx[0][0], src));
            out[1] = bytemuck::cast(_mm512_permutexvar_epi8(idx[0][1], src));
            out[2] = bytemuck::cast(_mm512_permutexvar_epi8(idx[1][0], src));
            out[3] = bytemuck::cast(_mm512_permutexvar_epi8(idx[1][1], src));
        }
    }
}

/// `vpermb` indices putting, in lane `l`, the bytes `2l + at .. 2l + at + 4` of a 64-byte
/// load; `QUADS[dx][j]` for column phase `dx` and tap quad `j`.
const QUADS: [[[u8; 64]; 2]; 2] = {
    let mut t = [[[0u8; 64]; 2]; 2];
    let mut k = 0;
    while k < 4 {
        let (dx, j) = (k / 2, k % 2);
        let mut i = 0;
        while i < 64 {
            t[dx][j][i] = (2 * (i / 4) + dx + 4 * j + i % 4) as u8;
            i += 1;
        }
        k += 1;
    }
    t
};

/// The loops of [`conv_pool_c1`] for `NP` words of taps per kernel row (pairs of i16, or
/// quads of u8 when `U8`): the image vectors of 16 pooled outputs (rows `2 * py ..= 2 * py +
/// kh`, both column phases) are loaded once into a table shared by every output channel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn c1_rows<const NP: usize, const U8: bool>(
    img: &C1Image,
    words: &[i32],
    start: &[i32],
    p: &ConvParams,
    q: &PerChannelQuant,
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    out_dims: Dims,
    output: &mut [i8],
) {
    let (wp, kh) = (img.wp, img.kh);
    let oc = out_dims.c;
    let mut v = [[[_mm512_setzero_si512(); NP]; 2]; C1_MAX_KH + 1];
    let store = C1Store {
        p,
        q,
        lut,
        pool,
        oc,
        vbmi: vbmi(),
    };
    for py in 0..out_dims.h {
        for px in (0..out_dims.w).step_by(16) {
            let count = (out_dims.w - px).min(16);
            // Lane l of `v[r][dx][j]`: the taps at row 2py + r from column 2(px + l) + dx +
            // 2j (two i16), or + 4j (four u8, from the quad table).
            for (r, vr) in v.iter_mut().take(kh + 1).enumerate() {
                let at = (2 * py + r) * wp + 2 * px;
                for (dx, vd) in vr.iter_mut().enumerate() {
                    for (j, vj) in vd.iter_mut().enumerate() {
                        *vj = if U8 {
                            let i = (((2 * py + r) * img.groups + px / 16) * 2 + dx) * 2 + j.min(1);
                            img.quads
                                .get(i)
                                .map_or(_mm512_setzero_si512(), |v| bytemuck::cast(*v))
                        } else {
                            load32(&img.wide[at + dx + 2 * j..])
                        };
                    }
                }
            }
            let out = &mut output[(py * out_dims.w + px) * oc..];
            let mut res = [[0i8; 16]; 16];
            // Three channels at a time: twelve independent chains hide `vpdpbusd`'s latency
            // (one channel's four chains left the kernel latency-bound).
            let (mut first, mut done) = (0, 0);
            let mut group = [[_mm512_setzero_si512(); 4]; 3];
            for o in 0..oc {
                if o == done {
                    let w = &words[o * kh * NP..];
                    let g = (oc - o).min(3);
                    (first, done) = (o, o + g);
                    match g {
                        3 => c1_windows::<3, NP, U8>(&v, w, &start[o..], kh, &mut group),
                        2 => c1_windows::<2, NP, U8>(&v, w, &start[o..], kh, &mut group),
                        _ => c1_windows::<1, NP, U8>(&v, w, &start[o..], kh, &mut group),
                    }
                }
                store.channel(o, group[o - first], &mut res, out, count);
            }
        }
    }
}

/// Requantization and stores of the one-channel kernels: channel `o`'s four window
/// accumulators of up to 16 consecutive pooled outputs (pixel `l` at `out[l * oc + o]`).
struct C1Store<'a> {
    p: &'a ConvParams,
    q: &'a PerChannelQuant<'a>,
    lut: Option<&'a [i8; 256]>,
    pool: Pool2x2,
    oc: usize,
    /// Whether the CPU has VBMI (for [`flush8`]).
    vbmi: bool,
}

/// [`C1Store::flush`] of up to 8 channels: `res[c][l]` (channel `c`, pixel `l`) to byte
/// `l * oc + c` of `out` for the `count` pixels, by two `vpermt2b` over the 128 bytes of
/// channels 0..8 (a 16 x 16 byte transpose took 64 shuffles). Where `out` has 128 bytes the
/// whole two vectors are stored: the bytes past `16 * oc` belong to later pixels, stored
/// after these.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
fn flush8(res: &[[i8; 16]; 16], oc: usize, out: &mut [i8], count: usize) {
    let Some(idx) = PIXEL_MAJOR.get(oc.wrapping_sub(1)) else {
        return;
    };
    let z: [__m512i; 4] = bytemuck::cast(*res);
    let v: [i8; 128] = bytemuck::cast([
        _mm512_permutex2var_epi8(z[0], bytemuck::cast(idx[0]), z[1]),
        _mm512_permutex2var_epi8(z[0], bytemuck::cast(idx[1]), z[1]),
    ]);
    match out.first_chunk_mut::<128>() {
        Some(d) => *d = v,
        None => {
            let n = (count * oc).min(out.len());
            out[..n].copy_from_slice(&v[..n]);
        }
    }
}

/// `vpermt2b` indices of [`flush8`] for `oc = 1..=8`: output byte `j < 16 oc` is pixel `j /
/// oc`'s channel `j % oc`, at `16 (j % oc) + j / oc` of the channel-major source.
const PIXEL_MAJOR: [[[u8; 64]; 2]; 8] = {
    let mut t = [[[0u8; 64]; 2]; 8];
    let mut oc = 1;
    while oc <= 8 {
        let mut j = 0;
        while j < 16 * oc {
            t[oc - 1][j / 64][j % 64] = (16 * (j % oc) + j / oc) as u8;
            j += 1;
        }
        oc += 1;
    }
    t
};

impl C1Store<'_> {
    /// Channel `o` of the `count` pixels of `out`. With a max pool and no table, the results
    /// of up to 16 channels collect in `res` and are stored pixel by pixel once the channel
    /// block is done (a byte store per channel and pixel, with stride `oc`, cost a quarter of
    /// the kernel): call it for the channels in order. Small, to be inlined in the loops (an
    /// out-of-line call per channel cost as much as the sums); the rest out of line.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn channel(
        &self,
        o: usize,
        acc: [__m512i; 4],
        res: &mut [[i8; 16]; 16],
        out: &mut [i8],
        count: usize,
    ) {
        if self.pool == Pool2x2::Max && self.lut.is_none() {
            // Requantization is monotonic (see `pool4`): pool the accumulators.
            let best = _mm512_max_epi32(
                _mm512_max_epi32(acc[0], acc[1]),
                _mm512_max_epi32(acc[2], acc[3]),
            );
            let (p, q) = (self.p, self.q);
            let (m, sh) = (q.multiplier[o], q.shift[o] as i32);
            let r = requantize16(best, _mm512_set1_epi32(m), _mm512_set1_epi32(sh));
            let r = _mm512_add_epi32(r, _mm512_set1_epi32(p.output_offset));
            let r = _mm512_max_epi32(r, _mm512_set1_epi32(p.act.min as i32));
            let r = _mm512_min_epi32(r, _mm512_set1_epi32(p.act.max as i32));
            res[o % 16] = bytemuck::cast(_mm512_cvtepi32_epi8(r));
            if o % 16 == 15 || o + 1 == self.oc {
                self.flush(o, res, out, count);
            }
        } else {
            self.pooled(o, acc, out, count);
        }
    }

    /// Stores the block of channels that ends at `o` from `res`.
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn flush(&self, o: usize, res: &[[i8; 16]; 16], out: &mut [i8], count: usize) {
        let oc = self.oc;
        if self.vbmi && oc <= 8 {
            // SAFETY: `vbmi` says the CPU has VBMI.
            unsafe { flush8(res, oc, out, count) };
        } else if oc <= 16 {
            // One block of channels: transposed, a 16-byte store per pixel. The bytes past
            // its `oc` belong to the next pixel (or group, or row), stored after this one.
            for (l, px) in transpose16(res).iter().enumerate().take(count) {
                let at = l * oc;
                match out.get_mut(at..).and_then(|d| d.first_chunk_mut::<16>()) {
                    Some(d) => *d = *px,
                    None => out[at..at + oc].copy_from_slice(&px[..oc]),
                }
            }
        } else {
            let (g0, n) = (o - o % 16, o % 16 + 1);
            for (l, px_out) in out.chunks_mut(oc).take(count).enumerate() {
                for (d, r) in px_out[g0..g0 + n].iter_mut().zip(res.iter()) {
                    *d = r[l];
                }
            }
        }
    }

    /// Channel `o` through the general `pool4` (an average pool, or a table).
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn pooled(&self, o: usize, acc: [__m512i; 4], out: &mut [i8], count: usize) {
        let (m, sh) = (self.q.multiplier[o], self.q.shift[o]);
        let acc = acc.map(bytemuck::cast::<__m512i, [i32; 16]>);
        let (lut, pool, oc) = (self.lut, self.pool, self.oc);
        pool_store(self.p, lut, pool, m, sh, acc, &mut out[o..], oc, count);
    }
}

/// The transpose of a 16 x 16 byte matrix (`res[o][l]`: channel `o`, pixel `l`): pixel `l`'s
/// 16 channel bytes. Four rounds of interleaving row `i` with row `i + 8` (a perfect shuffle
/// of the 8 index bits, four times) put element `(o, l)` at `(l, o)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn transpose16(res: &[[i8; 16]; 16]) -> [[i8; 16]; 16] {
    let mut r: [__m128i; 16] = res.map(bytemuck::cast);
    for _ in 0..4 {
        let mut n = [_mm_setzero_si128(); 16];
        for i in 0..8 {
            n[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
            n[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
        }
        r = n;
    }
    r.map(bytemuck::cast)
}

/// The four windows' accumulators of `G` consecutive channels of [`c1_rows`] into `acc[..G]`:
/// channel `k`'s words of taps are `words[k * kh * NP..][..kh * NP]`, its starting sum
/// `start[k]`; `v` holds the image vectors of the pooled row (see there).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn c1_windows<const G: usize, const NP: usize, const U8: bool>(
    v: &[[[__m512i; NP]; 2]],
    words: &[i32],
    start: &[i32],
    kh: usize,
    acc: &mut [[__m512i; 4]; 3],
) {
    for (a, &st) in acc.iter_mut().zip(start).take(G) {
        *a = [_mm512_set1_epi32(st); 4];
    }
    for (ky, rr) in v.windows(2).take(kh).enumerate() {
        let (r0, r1) = (&rr[0], &rr[1]);
        for j in 0..NP {
            let x = [r0[0][j], r0[1][j], r1[0][j], r1[1][j]];
            for (k, a) in acc.iter_mut().enumerate().take(G) {
                let w = _mm512_set1_epi32(words.get((k * kh + ky) * NP + j).copied().unwrap_or(0));
                for (a, &x) in a.iter_mut().zip(&x) {
                    *a = if U8 {
                        _mm512_dpbusd_epi32(*a, x, w)
                    } else {
                        _mm512_dpwssd_epi32(*a, x, w)
                    };
                }
            }
        }
    }
}

/// A layer's filters packed for [`conv_pool`], [`conv_pool_u8`] or the AVX2 convolution (which
/// reads each 16-lane vector as two 8-channel halves), with the bytes and shape they were
/// packed from.
pub(super) struct Packed {
    /// `[oc, kh, run, kvol, values per word (2 or 4)]`.
    shape: [usize; 5],
    filter: Vec<i8>,
    /// Where `filter` was read from (compared instead of the bytes in a model's own scratch,
    /// see [`ModelScratch`](super::ModelScratch)).
    at: usize,
    /// `[block][ky][word]`, per lane of 16 output channels (zero past `oc`) a word of two
    /// i16 or four i8 weights of a kernel row (zero past its end); one vector each, aligned
    /// to 64 bytes ([`Packed::words`] reads them as words). Unaligned, every weight load
    /// straddled two cache lines: 5% of LeNet5-like's time on a Zen 5.
    pairs: Vec<__m512i>,
    /// Per output channel, the sum of its weights (for `conv_pool_u8`'s and `dense_u8`'s
    /// offset); zeros past `oc` to a whole block of 16.
    sums: Vec<i32>,
}

impl Packed {
    /// [`Packed::pairs`] as each vector's 16 words.
    pub(super) fn words(&self) -> &[[i32; 16]] {
        bytemuck::cast_slice(&self.pairs)
    }
}

/// Layers whose packed filters are kept per thread (a model's convolutions and small dense
/// layers, reused call after call: packing took a fifth of LeNet5-like's second layer).
const PACKED_LAYERS: usize = 16;

/// The packed form of `filter` (shape `[oc, kh, run, kvol, per]`, `per` values per word): from
/// the cache when an entry's shape and bytes are these (compared in full, so a new model at an
/// old address is packed anew; by address where the bytes at an address are `fixed`), else
/// packed and added, the oldest entry dropped past [`PACKED_LAYERS`].
pub(super) fn packed_filters<'a>(
    cache: &'a mut Vec<Packed>,
    fixed: bool,
    filter: &[i8],
    shape: [usize; 5],
) -> &'a Packed {
    let same = |e: &Packed| {
        e.shape == shape
            && e.filter.len() == filter.len()
            && if fixed {
                e.at == filter.as_ptr() as usize
            } else {
                e.filter == filter
            }
    };
    if let Some(i) = cache.iter().position(same) {
        return &cache[i];
    }
    let [oc, kh, run, kvol, per] = shape;
    let nw = run.div_ceil(per);
    let nk = kh * nw;
    let mut vectors = std::vec![<__m512i as bytemuck::Zeroable>::zeroed(); oc.div_ceil(16) * nk];
    let pairs: &mut [[i32; 16]] = bytemuck::cast_slice_mut(&mut vectors);
    let mut sums = std::vec![0i32; 16 * oc.div_ceil(16)];
    for (o, w) in filter.chunks_exact(kvol.max(1)).take(oc).enumerate() {
        sums[o] = w.iter().map(|&v| v as i32).sum();
        let blk = &mut pairs[o / 16 * nk..][..nk];
        for (dst, row) in blk.chunks_exact_mut(nw).zip(w.chunks_exact(run.max(1))) {
            for (d, vals) in dst.iter_mut().zip(row.chunks(per)) {
                let at = |i: usize| vals.get(i).copied().unwrap_or(0);
                d[o % 16] = if per == 4 {
                    i32::from_le_bytes([at(0) as u8, at(1) as u8, at(2) as u8, at(3) as u8])
                } else {
                    pack(at(0) as i16, at(1) as i16)
                };
            }
        }
    }
    if cache.len() >= PACKED_LAYERS {
        cache.remove(0);
    }
    cache.push(Packed {
        shape,
        filter: filter.to_vec(),
        at: filter.as_ptr() as usize,
        pairs: vectors,
        sums,
    });
    &cache[cache.len() - 1]
}

/// The input as unsigned bytes for `vpdpbusd`: `x + 128`, padded with `128 - input_offset`
/// (whose `+ input_offset - 128` is 0, as the padding's `x + input_offset` is), so that every
/// window of the `2 * out` convolution rows and columns lies inside; returns the row length in
/// pixels. Two rows and 128 bytes of slack let the kernel read whole words past a row's end.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn pad_image_u8(
    image: &mut Vec<u8>,
    p: &ConvParams,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    out_dims: Dims,
) -> usize {
    let c = in_dims.c;
    let hp = (p.padding[0] + in_dims.h).max((2 * out_dims.h - 1) * p.stride[0] + filter_dims.h);
    let wp = (p.padding[1] + in_dims.w).max((2 * out_dims.w - 1) * p.stride[1] + filter_dims.w);
    let image = grow(image, (hp + 2) * wp * c + 128);
    let fill = (128 - p.input_offset) as u8;
    let (row, left) = (in_dims.w * c, p.padding[1] * c);
    if left == 0 && wp * c == row {
        // No columns of padding (VALID, as LeNet5-like's second layer): the rows are one run,
        // each byte written once.
        let (top, rest) = image.split_at_mut((p.padding[0] * row).min(image.len()));
        let (body, bottom) = rest.split_at_mut((in_dims.h * row).min(rest.len()));
        top.fill(fill);
        flip(body, input);
        bottom.fill(fill);
        return wp;
    }
    // Padded: one fill of the whole image, then the rows (a fill of each row's few bytes of
    // padding on either side was a `memset` call each: 5% of LeNet5-like's time, whose first
    // layer pads its 28 rows by 2 columns).
    image.fill(fill);
    let rows = image.chunks_exact_mut((wp * c).max(1)).skip(p.padding[0]);
    for (dst, src) in rows.zip(input.chunks_exact(row.max(1))).take(in_dims.h) {
        if let Some(body) = dst.get_mut(left..left + row) {
            flip(body, src);
        }
    }
    wp
}

/// `dst[i] = src[i] + 128` as u8 (the sign bit flipped), 64 bytes per vector: the byte loop
/// ran 4 bytes a step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn flip(dst: &mut [u8], src: &[i8]) {
    let (mut d64, mut s64) = (dst.chunks_exact_mut(64), src.chunks_exact(64));
    for (d, s) in (&mut d64).zip(&mut s64) {
        let (Some(d), Some(s)) = (d.first_chunk_mut::<64>(), s.first_chunk::<64>()) else {
            continue; // not reached: exact chunks
        };
        let v: __m512i = bytemuck::cast(*s);
        *d = bytemuck::cast(_mm512_xor_si512(v, _mm512_set1_epi8(-128)));
    }
    for (d, &x) in d64.into_remainder().iter_mut().zip(s64.remainder()) {
        *d = (x as u8) ^ 0x80;
    }
}

/// Whether [`conv_pool_u8`] takes this layer: the padding's byte `128 - input_offset` must be
/// a u8 (an int8 zero point always is; the format allows offsets up to 255).
pub(super) fn u8_fits(p: &ConvParams) -> bool {
    (-127..=128).contains(&p.input_offset)
}

/// [`conv_pool`] with four taps per lane: `vpdpbusd` multiplies 64 u8 x s8 pairs into 16 i32
/// lanes (sums of four products, at most 4 x 255 x 128, never saturating). The image holds
/// `x + 128` as u8; `sum(w * (x + off)) = sum(w * (x + 128)) + (off - 128) * sum(w)`, exact in
/// i32, so the offset moves into the bias.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn conv_pool_u8(
    s: &mut Scratch,
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
    if out_dims.is_empty() {
        return;
    }
    let c = in_dims.c;
    let (kh, kw) = (filter_dims.h, filter_dims.w);
    let (sy, sx) = (p.stride[0], p.stride[1]);
    let kvol = filter_dims.len();
    let oc = out_dims.c;
    let blocks = oc.div_ceil(16);
    let wp = pad_image_u8(&mut s.bytes, p, in_dims, input, filter_dims, out_dims);
    let image = &s.bytes[..];
    let run = kw * c;
    let nw = run.div_ceil(4);
    let nk = kh * nw;
    let packed = packed_filters(
        &mut s.packed,
        s.fixed_weights,
        filter,
        [oc, kh, run, kvol, 4],
    );
    let weights = packed.words();
    let quant = grow(&mut s.quant, blocks * 48);
    block_quant16(quant, q, bias);
    for (o, &sum) in packed.sums.iter().enumerate() {
        let b = &mut quant[48 * (o / 16) + o % 16];
        *b = b.wrapping_add((p.input_offset - 128).wrapping_mul(sum));
    }

    let row_stride = wp * c;
    let max_no_lut = pool == Pool2x2::Max && lut.is_none();
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            let bases = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .map(|(dy, dx)| ((2 * py + dy) * sy * wp + (2 * px + dx) * sx) * c);
            let out = &mut output[(py * out_dims.w + px) * oc..][..oc];
            for ((blk, wblk), out) in quant
                .chunks_exact(48)
                .zip(weights.chunks_exact(nk))
                .zip(out.chunks_mut(16))
            {
                let acc = match nw {
                    8 => u8_windows::<8>(image, bases, row_stride, wblk, blk),
                    7 => u8_windows::<7>(image, bases, row_stride, wblk, blk),
                    6 => u8_windows::<6>(image, bases, row_stride, wblk, blk),
                    5 => u8_windows::<5>(image, bases, row_stride, wblk, blk),
                    4 => u8_windows::<4>(image, bases, row_stride, wblk, blk),
                    3 => u8_windows::<3>(image, bases, row_stride, wblk, blk),
                    2 => u8_windows::<2>(image, bases, row_stride, wblk, blk),
                    1 => u8_windows::<1>(image, bases, row_stride, wblk, blk),
                    _ => u8_windows_any(image, bases, row_stride, wblk, nw, blk),
                };
                store_pooled(p, lut, pool, acc, blk, out, max_no_lut);
            }
        }
    }
}

/// The four windows' accumulators of 16 channels of [`conv_pool_u8`] (starting from the
/// block's biases `blk`): `bases` where each window starts in the u8 image, `wblk` the
/// block's packed weights, `nw` words per kernel row, two chains per window.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn u8_windows_any(
    image: &[u8],
    bases: [usize; 4],
    row_stride: usize,
    wblk: &[[i32; 16]],
    nw: usize,
    blk: &[i32],
) -> [__m512i; 4] {
    let len = 4 * nw;
    // Two chains per window, as in `conv_pool`; plain loops (no closures).
    let mut acc = [load_i32x16(blk); 4];
    let mut odd = [_mm512_setzero_si512(); 4];
    for (ky, wrow) in wblk.chunks_exact(nw).enumerate() {
        let at = ky * row_stride;
        let (Some(r0), Some(r1), Some(r2), Some(r3)) = (
            image.get(bases[0] + at..bases[0] + at + len),
            image.get(bases[1] + at..bases[1] + at + len),
            image.get(bases[2] + at..bases[2] + at + len),
            image.get(bases[3] + at..bases[3] + at + len),
        ) else {
            continue; // not reached: the padded image holds every window
        };
        let (mut w2, mut q0, mut q1, mut q2, mut q3) = (
            wrow.chunks_exact(2),
            r0.chunks_exact(8),
            r1.chunks_exact(8),
            r2.chunks_exact(8),
            r3.chunks_exact(8),
        );
        for (w, (((a0, a1), a2), a3)) in
            (&mut w2).zip((&mut q0).zip(&mut q1).zip(&mut q2).zip(&mut q3))
        {
            let (we, wo): (__m512i, __m512i) = (bytemuck::cast(w[0]), bytemuck::cast(w[1]));
            let bc = |b: &[u8], at: usize| _mm512_set1_epi32(word(b, at));
            acc[0] = _mm512_dpbusd_epi32(acc[0], bc(a0, 0), we);
            acc[1] = _mm512_dpbusd_epi32(acc[1], bc(a1, 0), we);
            acc[2] = _mm512_dpbusd_epi32(acc[2], bc(a2, 0), we);
            acc[3] = _mm512_dpbusd_epi32(acc[3], bc(a3, 0), we);
            odd[0] = _mm512_dpbusd_epi32(odd[0], bc(a0, 4), wo);
            odd[1] = _mm512_dpbusd_epi32(odd[1], bc(a1, 4), wo);
            odd[2] = _mm512_dpbusd_epi32(odd[2], bc(a2, 4), wo);
            odd[3] = _mm512_dpbusd_epi32(odd[3], bc(a3, 4), wo);
        }
        if let [w] = w2.remainder() {
            let w: __m512i = bytemuck::cast(*w);
            let t = [
                q0.remainder(),
                q1.remainder(),
                q2.remainder(),
                q3.remainder(),
            ];
            for (a, t) in acc.iter_mut().zip(t) {
                *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(word(t, 0)), w);
            }
        }
    }
    for (a, o) in acc.iter_mut().zip(odd) {
        *a = _mm512_add_epi32(*a, o);
    }
    acc
}

/// [`u8_windows_any`] for `NW` words per kernel row (LeNet5-like's second layer: 6 channels
/// x 5 taps, 8 words), unrolled: each window's kernel row read as one 32-byte array, whose
/// words need no bounds checks (the general loop's four slice checks per row and step were
/// most of its instructions).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn u8_windows<const NW: usize>(
    image: &[u8],
    bases: [usize; 4],
    row_stride: usize,
    wblk: &[[i32; 16]],
    blk: &[i32],
) -> [__m512i; 4] {
    let mut acc = [load_i32x16(blk); 4];
    let mut odd = [_mm512_setzero_si512(); 4];
    for (ky, wrow) in wblk.chunks_exact(NW).enumerate() {
        let at = ky * row_stride;
        let row = |b: usize| image.get(b + at..).and_then(|r| r.first_chunk::<32>());
        let (Some(r0), Some(r1), Some(r2), Some(r3), Some(wrow)) = (
            row(bases[0]),
            row(bases[1]),
            row(bases[2]),
            row(bases[3]),
            wrow.first_chunk::<NW>(),
        ) else {
            continue; // not reached: the padded image holds every window and 128 bytes more
        };
        for (k, w) in wrow.iter().enumerate() {
            let w: __m512i = bytemuck::cast(*w);
            let x = [
                _mm512_set1_epi32(word32(r0, k)),
                _mm512_set1_epi32(word32(r1, k)),
                _mm512_set1_epi32(word32(r2, k)),
                _mm512_set1_epi32(word32(r3, k)),
            ];
            let chains = if k % 2 == 0 { &mut acc } else { &mut odd };
            for (a, x) in chains.iter_mut().zip(x) {
                *a = _mm512_dpbusd_epi32(*a, x, w);
            }
        }
    }
    for (a, o) in acc.iter_mut().zip(odd) {
        *a = _mm512_add_epi32(*a, o);
    }
    acc
}

/// Word `k` (bytes `4k..4k + 4`, little-endian) of a 32-byte row; `k < 8`.
#[inline(always)]
fn word32(r: &[u8; 32], k: usize) -> i32 {
    let k = k % 8;
    i32::from_le_bytes([r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]])
}

/// Pools the four windows' accumulators of 16 channels and stores them (as `conv_pool`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn store_pooled(
    p: &ConvParams,
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    acc: [__m512i; 4],
    blk: &[i32],
    out: &mut [i8],
    max_no_lut: bool,
) {
    if max_no_lut {
        // Requantization is monotonic (see `pool4`): pool the accumulators.
        let m = _mm512_max_epi32(
            _mm512_max_epi32(acc[0], acc[1]),
            _mm512_max_epi32(acc[2], acc[3]),
        );
        finish16(m, blk, p.output_offset, p.act, out);
    } else {
        let acc = acc.map(bytemuck::cast::<__m512i, [i32; 16]>);
        for (l, o) in out.iter_mut().enumerate() {
            let rq = Requant::new(
                blk[16 + l],
                blk[32 + l] as i8,
                p.output_offset,
                p.act.min,
                p.act.max,
            );
            *o = pool4(rq, lut, pool, [acc[0][l], acc[1][l], acc[2][l], acc[3][l]]);
        }
    }
}

/// Any other convolution with a 2x2 pool: lanes are 16 output channels; each tap pair of a
/// window is broadcast against the 16 filters' weight pairs.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn conv_pool(
    s: &mut Scratch,
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
    if out_dims.is_empty() {
        return;
    }
    let c = in_dims.c;
    let (kh, kw) = (filter_dims.h, filter_dims.w);
    let (sy, sx) = (p.stride[0], p.stride[1]);
    let kvol = filter_dims.len();
    let oc = out_dims.c;
    let blocks = oc.div_ceil(16);
    let wp = pad_image(&mut s.image, p, in_dims, input, filter_dims, out_dims);
    let image: &[u8] = bytemuck::cast_slice(&s.image[..]);

    // A kernel row is `run = kw * c` values, contiguous in the image too; `np` pairs (an odd
    // last value pairs with a zero weight, the image value beside it adds nothing). Weights:
    // `[block][ky][pair]`, 16 channel lanes each (zero past `oc`).
    let run = kw * c;
    let np = run.div_ceil(2);
    let nk = kh * np;
    let weights = packed_filters(
        &mut s.packed,
        s.fixed_weights,
        filter,
        [oc, kh, run, kvol, 2],
    )
    .words();
    let quant = grow(&mut s.quant, blocks * 48);
    block_quant16(quant, q, bias);

    let row_stride = wp * c;
    let max_no_lut = pool == Pool2x2::Max && lut.is_none();
    for py in 0..out_dims.h {
        for px in 0..out_dims.w {
            // The four windows' first values in the padded image, in bytes.
            let bases = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .map(|(dy, dx)| 2 * ((2 * py + dy) * sy * wp + (2 * px + dx) * sx) * c);
            let out = &mut output[(py * out_dims.w + px) * oc..][..oc];
            for ((blk, wblk), out) in quant
                .chunks_exact(48)
                .zip(weights.chunks_exact(nk))
                .zip(out.chunks_mut(16))
            {
                let b = load_i32x16(blk);
                // Two chains per window (even and odd pairs): `vpdpwssd`'s latency is hidden
                // behind eight independent sums. (Plain loops: a closure here would not
                // inherit the target features, and was not inlined.)
                let mut acc = [b; 4];
                let mut odd = [_mm512_setzero_si512(); 4];
                let len = 4 * np;
                for (ky, wrow) in wblk.chunks_exact(np).enumerate() {
                    let at = 2 * ky * row_stride;
                    let (Some(r0), Some(r1), Some(r2), Some(r3)) = (
                        image.get(bases[0] + at..bases[0] + at + len),
                        image.get(bases[1] + at..bases[1] + at + len),
                        image.get(bases[2] + at..bases[2] + at + len),
                        image.get(bases[3] + at..bases[3] + at + len),
                    ) else {
                        continue; // not reached: the padded image holds every window
                    };
                    let (mut w2, mut q0, mut q1, mut q2, mut q3) = (
                        wrow.chunks_exact(2),
                        r0.chunks_exact(8),
                        r1.chunks_exact(8),
                        r2.chunks_exact(8),
                        r3.chunks_exact(8),
                    );
                    for (w, (((a0, a1), a2), a3)) in
                        (&mut w2).zip((&mut q0).zip(&mut q1).zip(&mut q2).zip(&mut q3))
                    {
                        let (we, wo): (__m512i, __m512i) =
                            (bytemuck::cast(w[0]), bytemuck::cast(w[1]));
                        acc[0] = _mm512_dpwssd_epi32(acc[0], we, _mm512_set1_epi32(word(a0, 0)));
                        acc[1] = _mm512_dpwssd_epi32(acc[1], we, _mm512_set1_epi32(word(a1, 0)));
                        acc[2] = _mm512_dpwssd_epi32(acc[2], we, _mm512_set1_epi32(word(a2, 0)));
                        acc[3] = _mm512_dpwssd_epi32(acc[3], we, _mm512_set1_epi32(word(a3, 0)));
                        odd[0] = _mm512_dpwssd_epi32(odd[0], wo, _mm512_set1_epi32(word(a0, 4)));
                        odd[1] = _mm512_dpwssd_epi32(odd[1], wo, _mm512_set1_epi32(word(a1, 4)));
                        odd[2] = _mm512_dpwssd_epi32(odd[2], wo, _mm512_set1_epi32(word(a2, 4)));
                        odd[3] = _mm512_dpwssd_epi32(odd[3], wo, _mm512_set1_epi32(word(a3, 4)));
                    }
                    // An odd number of pairs: the last one.
                    if let [w] = w2.remainder() {
                        let w: __m512i = bytemuck::cast(*w);
                        let t = [
                            q0.remainder(),
                            q1.remainder(),
                            q2.remainder(),
                            q3.remainder(),
                        ];
                        for (a, t) in acc.iter_mut().zip(t) {
                            *a = _mm512_dpwssd_epi32(*a, w, _mm512_set1_epi32(word(t, 0)));
                        }
                    }
                }
                for (a, o) in acc.iter_mut().zip(odd) {
                    *a = _mm512_add_epi32(*a, o);
                }
                store_pooled(p, lut, pool, acc, blk, out, max_no_lut);
            }
        }
    }
}

/// 64 i8 from the front of `s`; a shorter `s` is padded with zeros.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn load_i8x64(s: &[i8]) -> __m512i {
    let a = match s.first_chunk::<64>() {
        Some(a) => *a,
        None => {
            let mut a = [0i8; 64];
            let n = s.len().min(64);
            a[..n].copy_from_slice(&s[..n]);
            a
        }
    };
    bytemuck::cast(a)
}

/// The largest weight matrix (bytes) that [`dense_u8`] packs: its packed copy is kept and its
/// bytes compared on every call (a tenth of the layer's time at LeNet's 30 KB); larger layers
/// (an AlexNet or VGG classifier) stream their rows as they are, in [`dense_u8_rows`].
pub(super) const DENSE_PACK_MAX: usize = 256 * 1024;

/// [`dense`] with the lanes as 16 outputs: the weights packed once per layer (as a
/// convolution's, by [`packed_filters`]: per lane a word of four consecutive weights of its
/// row), four inputs broadcast per `vpdpbusd` (the input as `x + 128`, u8), 64 MACs per
/// instruction and no lane sums. The offset moves into the bias with the packed rows' sums:
/// `sum(w * (x + off)) = sum(w * (x + 128)) + (off - 128) * sum(w)`, exact in i32.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn dense_u8(
    s: &mut Scratch,
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
    let outs = output.len();
    if n == 0 || outs == 0 {
        return;
    }
    if weights.len() > DENSE_PACK_MAX {
        return dense_u8_rows(
            s,
            input_offset,
            output_offset,
            act,
            q,
            input,
            weights,
            bias,
            output,
        );
    }
    let nw = n.div_ceil(4);
    let packed = packed_filters(&mut s.packed, s.fixed_weights, weights, [outs, 1, n, n, 4]);
    let blocks = outs.div_ceil(16);
    let (quant, x) = grow(&mut s.quant, blocks * 48 + nw).split_at_mut(blocks * 48);
    block_quant16(quant, q, bias);
    // The input as u8 words of four (`x + 128`, 64 at a time); the up to three bytes past `n`
    // meet zero weights.
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(x);
    for (d, src) in bytes.chunks_mut(64).zip(input.chunks(64)) {
        let v: [u8; 64] = bytemuck::cast(_mm512_xor_si512(load_i8x64(src), _mm512_set1_epi8(-128)));
        d.copy_from_slice(&v[..d.len()]);
    }
    let x = &*x;
    let k = _mm512_set1_epi32(input_offset.wrapping_sub(128));
    // Four blocks of 16 outputs at a time, sharing each broadcast input word (one block at
    // a time loaded a word per `vpdpbusd` besides its weights), two chains per block.
    let mut b = 0;
    while b < blocks {
        let g = (blocks - b).min(4);
        let acc = match g {
            4 => dense_blocks::<4>(&packed.words()[b * nw..], nw, x),
            3 => dense_blocks::<3>(&packed.words()[b * nw..], nw, x),
            2 => dense_blocks::<2>(&packed.words()[b * nw..], nw, x),
            _ => dense_blocks::<1>(&packed.words()[b * nw..], nw, x),
        };
        for (i, acc) in acc.iter().enumerate().take(g) {
            let blk = &quant[48 * (b + i)..][..48];
            let sums = load_i32x16(&packed.sums[16 * (b + i)..]);
            let start = _mm512_add_epi32(load_i32x16(blk), _mm512_mullo_epi32(k, sums));
            let out = &mut output[16 * (b + i)..];
            let n = out.len().min(16);
            finish16(
                _mm512_add_epi32(*acc, start),
                blk,
                output_offset,
                act,
                &mut out[..n],
            );
        }
        b += g;
    }
}

/// The sums of `G` consecutive blocks of [`dense_u8`]: block `i`'s packed weights are
/// `pairs[i * nw..][..nw]`, `x` the input's `nw` words; two chains per block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dense_blocks<const G: usize>(pairs: &[[i32; 16]], nw: usize, x: &[i32]) -> [__m512i; 4] {
    let zero = _mm512_setzero_si512();
    let (mut even, mut odd) = ([zero; 4], [zero; 4]);
    let mut rows = [&[][..]; 4];
    for (i, r) in rows.iter_mut().enumerate().take(G) {
        *r = pairs.get(i * nw..(i + 1) * nw).unwrap_or(&[]);
    }
    let Some(x) = x.get(..nw) else {
        return even;
    };
    for r in rows.iter().take(G) {
        if r.len() != nw {
            return even; // not reached: `pairs` holds every block's words
        }
    }
    for j in 0..nw / 2 {
        let (x0, x1) = (_mm512_set1_epi32(x[2 * j]), _mm512_set1_epi32(x[2 * j + 1]));
        for i in 0..G {
            even[i] = _mm512_dpbusd_epi32(even[i], x0, bytemuck::cast(rows[i][2 * j]));
            odd[i] = _mm512_dpbusd_epi32(odd[i], x1, bytemuck::cast(rows[i][2 * j + 1]));
        }
    }
    if nw % 2 == 1 {
        let x0 = _mm512_set1_epi32(x[nw - 1]);
        for i in 0..G {
            even[i] = _mm512_dpbusd_epi32(even[i], x0, bytemuck::cast(rows[i][nw - 1]));
        }
    }
    for (e, o) in even.iter_mut().zip(odd) {
        *e = _mm512_add_epi32(*e, o);
    }
    even
}

/// [`dense`] for weight matrices too large to pack: `vpdpbusd` on the input as `x + 128` (u8)
/// and the weights as they are (no widening), 64 MACs per instruction, 8 rows per pass. The
/// offset moves out of the sum as in [`dense_u8`]; `sum(w)` comes from the same weight vectors
/// against ones (masked past the row's end). Lanes summed as in AVX2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dense_u8_rows(
    s: &mut Scratch,
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
    let outs = output.len();
    // The input as u8, zero past `n`: a row's last chunk may read into the next row (or is
    // zero-padded for the last row), which then adds nothing.
    let x = grow(&mut s.bytes, n.next_multiple_of(64));
    x.fill(0);
    for (d, &v) in x.iter_mut().zip(input) {
        *d = v as u8 ^ 0x80;
    }
    let xs: &[[u8; 64]] = bytemuck::cast_slice(&*x);
    let (full, tail) = (n / 64, n % 64);
    let ones = _mm512_set1_epi8(1);
    let ones_tail = _mm512_maskz_mov_epi8((1u64 << tail).wrapping_sub(1), ones);
    let k = _mm512_set1_epi32(input_offset.wrapping_sub(128));
    let blocks = outs.div_ceil(8);
    let quant = grow(&mut s.quant, blocks * 24);
    super::block_quant(quant, q, bias);
    for (b, (blk, out)) in quant.chunks_exact(24).zip(output.chunks_mut(8)).enumerate() {
        // Rows past the last one repeat it; their lanes are not stored.
        let mut rows: [&[[i8; 64]]; 8] = [&[]; 8];
        let mut tails: [&[i8]; 8] = [&[]; 8];
        for (l, (r, t)) in rows.iter_mut().zip(&mut tails).enumerate() {
            let w = &weights[(8 * b + l).min(outs - 1) * n..];
            let (whole, rest) = w.split_at(full * 64);
            *r = bytemuck::cast_slice(whole);
            *t = rest;
        }
        let mut acc = [_mm512_setzero_si512(); 8];
        let mut sum = [_mm512_setzero_si512(); 8];
        for (j, xv) in xs[..full].iter().enumerate() {
            let xv: __m512i = bytemuck::cast(*xv);
            for ((a, s), r) in acc.iter_mut().zip(&mut sum).zip(&rows) {
                let w: __m512i = bytemuck::cast(r[j]);
                *a = _mm512_dpbusd_epi32(*a, xv, w);
                *s = _mm512_dpbusd_epi32(*s, ones, w);
            }
        }
        if tail > 0 {
            let xv: __m512i = bytemuck::cast(xs[full]);
            for ((a, s), t) in acc.iter_mut().zip(&mut sum).zip(&tails) {
                let w = load_i8x64(t);
                *a = _mm512_dpbusd_epi32(*a, xv, w);
                *s = _mm512_dpbusd_epi32(*s, ones_tail, w);
            }
        }
        // Per row: the offset term, then the two 256-bit halves added: 8 rows of 8 lanes.
        let mut halves = [_mm256_setzero_si256(); 8];
        for ((h, a), s) in halves.iter_mut().zip(acc).zip(sum) {
            let v = _mm512_add_epi32(a, _mm512_mullo_epi32(k, s));
            *h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        }
        let total = _mm256_add_epi32(super::hsum8(&halves), super::load_i32x8(blk));
        super::finish8(total, blk, output_offset, act, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::requantize;
    use proptest::prelude::*;

    /// The reference convolution (`conv_dims`), through `lut` if given, then the reference
    /// 2x2 max or average pool (`out_dims`): what every fused kernel must produce.
    #[allow(clippy::too_many_arguments)]
    fn reference_conv_pool(
        p: &ConvParams,
        q: &PerChannelQuant,
        in_dims: Dims,
        input: &[i8],
        fd: Dims,
        filter: &[i8],
        bias: &[i32],
        lut: Option<&[i8; 256]>,
        max: bool,
        conv_dims: Dims,
        out_dims: Dims,
    ) -> Vec<i8> {
        use crate::kernels::{PoolParams, reference};
        let mut conv = vec![0i8; conv_dims.len()];
        reference::conv2d::conv2d_s8(p, q, in_dims, input, fd, filter, bias, conv_dims, &mut conv);
        if let Some(t) = lut {
            for v in conv.iter_mut() {
                *v = t[(*v as i32 + 128) as usize];
            }
        }
        let pp = PoolParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            act: Clamp::NONE,
        };
        let mut expected = vec![0i8; out_dims.len()];
        if max {
            reference::pool::maxpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut expected)
        } else {
            reference::pool::avgpool2d_s8(&pp, conv_dims, &conv, out_dims, &mut expected)
        }
        expected
    }

    /// LeNet5-like's first layer (28 x 28, 5 x 5, SAME: a 32-wide padded image, 14 x 14
    /// pooled) takes the flat kernel, its sources spanning at most 97 of 128 bytes; so does a
    /// VALID one (12 x 12: 9 groups of 16 outputs, 7 words); a map whose sources span more
    /// than 128 bytes does not.
    #[test]
    fn flat_plans_cover_lenet_and_refuse_wide_maps() {
        let same = FlatPlan::new([32, 14, 14, 5, 5]);
        assert!(same.fits);
        assert_eq!(same.at.len(), 13 * 4 * 7);
        assert_eq!(same.patterns.iter().flatten().max(), Some(&96));
        let lenet = FlatPlan::new([28, 12, 12, 5, 5]);
        assert!(lenet.fits);
        assert_eq!((lenet.nq, lenet.at.len()), (7, 9 * 4 * 7));
        // Groups start at columns 0, 4 and 8, and a window's offset moves the source, not
        // the pattern: at most 3 x 7 patterns for the 252 sources (15: some coincide).
        assert_eq!(lenet.patterns.len(), 15);
        // Taps of output 0, window (0, 0), word 1: kernel taps 4..8 = (0, 4), (1, 0..3).
        assert_eq!(lenet.at[1], 4);
        let idx = lenet.patterns[lenet.pattern[1] as usize];
        assert_eq!(&idx[..4], &[0, 24, 25, 26]);
        assert!(lenet.end <= 28 * 30 + 128);
        // 60-byte rows, 28 pooled columns: group 1 (outputs 16..32) straddles two pooled
        // rows, whose windows lie 2 x 60 bytes apart, plus a kernel row within a word.
        assert!(!FlatPlan::new([60, 28, 28, 5, 5]).fits);
        // Rows of 32 pooled columns: every group within one row.
        assert!(FlatPlan::new([68, 32, 32, 5, 5]).fits);
        // Over 32 taps.
        assert!(!FlatPlan::new([28, 11, 11, 7, 6]).fits);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Every AVX-512 convolution path against the references, with input offsets over the
        /// whole range the format allows (-255..=255: the i16 path where the u8 one cannot
        /// pad), strides, paddings, tables and both pools; up to 8 input channels, so kernel
        /// rows of 1..=10 words (every unrolled `u8_windows` and the general loop).
        #[test]
        fn conv_paths_match_the_references_over_all_offsets(
            (c, h, w, k, oc, pad, st) in (1usize..9, 2usize..12, 2usize..12, 1usize..6, 1usize..20, 0usize..3, 1usize..3),
            offset in -255i32..=255, zo in -128i32..128, m in (1i32 << 30)..i32::MAX, shift in -10i8..1,
            seed in any::<u64>(), with_lut in any::<bool>(), max in any::<bool>(),
        ) {
            use crate::kernels::window_out;
            if !super::super::available() { return Ok(()); }
            let (Some(ch), Some(cw)) = (window_out(h, k, st, 2 * pad), window_out(w, k, st, 2 * pad)) else { return Ok(()); };
            if ch < 2 || cw < 2 { return Ok(()); }
            let in_dims = Dims { h, w, c };
            let fd = Dims { h: k, w: k, c };
            let conv_dims = Dims { h: ch, w: cw, c: oc };
            let out_dims = Dims { h: ch / 2, w: cw / 2, c: oc };
            let p = ConvParams { input_offset: offset, output_offset: zo, stride: [st, st], padding: [pad, pad], act: Clamp::NONE };
            let input = crate::testutil::bytes(in_dims.len(), seed);
            let filter: Vec<i8> = crate::testutil::bytes(oc * fd.len(), !seed).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..oc as i32).map(|i| i * 311 - 500).collect();
            let (mult, shifts) = (vec![m; oc], vec![shift; oc]);
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let mut table = [0i8; 256];
            for (i, t) in table.iter_mut().enumerate() { *t = ((i as i32 * 37 + 11) % 256 - 128) as i8; }
            let lut = with_lut.then_some(&table);
            let pool = if max { Pool2x2::Max } else { Pool2x2::Avg };

            let expected = reference_conv_pool(&p, &q, in_dims, &input, fd, &filter, &bias, lut, max, conv_dims, out_dims);

            let mut s = Scratch::default();
            let mut run = |f: ConvKernel| {
                let mut out = vec![0i8; out_dims.len()];
                // SAFETY: the features are present (checked above).
                unsafe { f(&mut s, &p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut out) };
                out
            };
            // The AVX2 kernels (every x86-64 CPU these tests run on), twice: the second time
            // from the packed cache.
            prop_assert_eq!(&run(super::super::conv_pool_avx2), &expected);
            prop_assert_eq!(&run(super::super::conv_pool_avx2), &expected);
            if c == 1 && st == 1 && k <= C1_MAX_KH {
                prop_assert_eq!(&run(super::super::conv_pool_c1_avx2), &expected);
            }
            if !available() { return Ok(()); }
            prop_assert_eq!(&run(conv_pool), &expected);
            if u8_fits(&p) {
                prop_assert_eq!(&run(conv_pool_u8), &expected);
                // Again: the packed filters come from the cache this time.
                prop_assert_eq!(&run(conv_pool_u8), &expected);
            }
            if c == 1 && st == 1 && k <= C1_MAX_KH {
                prop_assert_eq!(&run(conv_pool_c1), &expected);
                // Again: the flat plan comes from the cache this time.
                prop_assert_eq!(&run(conv_pool_c1), &expected);
                prop_assert_eq!(&run(conv_pool_c1_rows), &expected);
            }
        }

        /// The one-channel kernels on maps up to MNIST's size and beyond (where the flat
        /// plan's sources outgrow 128 bytes and the row kernels take over), against the
        /// references, with rectangular kernels and many channels.
        #[test]
        fn one_channel_paths_match_the_reference(
            (h, w, kh, kw, oc, pad) in (2usize..40, 2usize..40, 1usize..=C1_MAX_KH, 1usize..=8, 1usize..40, 0usize..3),
            offset in -128i32..=127, zo in -128i32..128, m in (1i32 << 30)..i32::MAX, shift in -10i8..1,
            seed in any::<u64>(), with_lut in any::<bool>(), max in any::<bool>(), relu in any::<bool>(),
        ) {
            use crate::kernels::window_out;
            if !super::super::available() { return Ok(()); }
            let (Some(ch), Some(cw)) = (window_out(h, kh, 1, 2 * pad), window_out(w, kw, 1, 2 * pad)) else { return Ok(()); };
            if ch < 2 || cw < 2 { return Ok(()); }
            let in_dims = Dims { h, w, c: 1 };
            let fd = Dims { h: kh, w: kw, c: 1 };
            let conv_dims = Dims { h: ch, w: cw, c: oc };
            let out_dims = Dims { h: ch / 2, w: cw / 2, c: oc };
            let act = if relu { Clamp { min: zo as i8, max: 127 } } else { Clamp::NONE };
            let p = ConvParams { input_offset: offset, output_offset: zo, stride: [1, 1], padding: [pad, pad], act };
            let input = crate::testutil::bytes(in_dims.len(), seed);
            let filter: Vec<i8> = crate::testutil::bytes(oc * fd.len(), !seed).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..oc as i32).map(|i| i * 311 - 500).collect();
            let (mult, shifts) = (vec![m; oc], vec![shift; oc]);
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let mut table = [0i8; 256];
            for (i, t) in table.iter_mut().enumerate() { *t = ((i as i32 * 37 + 11) % 256 - 128) as i8; }
            let lut = with_lut.then_some(&table);
            let pool = if max { Pool2x2::Max } else { Pool2x2::Avg };

            let expected = reference_conv_pool(&p, &q, in_dims, &input, fd, &filter, &bias, lut, max, conv_dims, out_dims);

            let mut s = Scratch::default();
            // The AVX2 kernel everywhere, the AVX-512 ones where the CPU has them.
            let avx512: &[ConvKernel] = if available() { &[conv_pool_c1, conv_pool_c1, conv_pool_c1_rows] } else { &[] };
            for &f in [super::super::conv_pool_c1_avx2 as ConvKernel].iter().chain(avx512) {
                let mut out = vec![0i8; out_dims.len()];
                // SAFETY: the features are present (checked above).
                unsafe { f(&mut s, &p, &q, in_dims, &input, fd, &filter, &bias, lut, pool, out_dims, &mut out) };
                prop_assert_eq!(&out, &expected);
            }
        }

        /// Both dense paths (packed, and rows as they are for large layers) against the
        /// reference, twice (the second time from the packed cache); up to 6 blocks of 16
        /// outputs, so every group size of `dense_blocks`.
        #[test]
        fn dense_paths_match_the_reference(
            n in 1usize..300, outs in 1usize..90, offset in -255i32..=255, zo in -128i32..128,
            m in (1i32 << 30)..i32::MAX, shift in -14i8..1, seed in any::<u64>(), relu in any::<bool>(),
        ) {
            use crate::kernels::reference;
            if !super::super::available() { return Ok(()); }
            let input = crate::testutil::bytes(n, seed);
            let weights: Vec<i8> = crate::testutil::bytes(n * outs, !seed).into_iter().map(|v| v.max(-127)).collect();
            let bias: Vec<i32> = (0..outs as i32).map(|i| i * 977 - 9000).collect();
            let (mult, shifts) = (vec![m; outs], vec![shift; outs]);
            let q = PerChannelQuant { multiplier: &mult, shift: &shifts };
            let act = if relu { Clamp { min: zo as i8, max: 127 } } else { Clamp::NONE };
            let mut expected = vec![0i8; outs];
            reference::dense::dense_s8(offset, zo, act, &q, &input, &weights, &bias, &mut expected);
            let mut s = Scratch::default();
            // The AVX2 kernels everywhere (packed twice: the second time from the cache), the
            // AVX-512 ones where the CPU has them.
            type Dense = unsafe fn(&mut Scratch, i32, i32, Clamp, &PerChannelQuant, &[i8], &[i8], &[i32], &mut [i8]);
            let avx2: [Dense; 3] = [super::super::dense_avx2, super::super::dense_avx2, super::super::dense_avx2_rows];
            let avx512: [Dense; 3] = [dense_u8, dense_u8, dense_u8_rows];
            for f in avx2.into_iter().chain(avx512.into_iter().filter(|_| available())) {
                let mut out = vec![0i8; outs];
                // SAFETY: the features are present (checked above).
                unsafe { f(&mut s, offset, zo, act, &q, &input, &weights, &bias, &mut out) };
                prop_assert_eq!(&out, &expected);
            }
        }

        #[test]
        fn transpose16_transposes(m in proptest::array::uniform16(proptest::array::uniform16(any::<i8>()))) {
            if !available() { return Ok(()); }
            // SAFETY: the features are present (checked above).
            let t = unsafe { transpose16(&m) };
            for (o, row) in m.iter().enumerate() {
                for (l, &v) in row.iter().enumerate() {
                    prop_assert_eq!(t[l][o], v);
                }
            }
        }

        #[test]
        fn requantize16_matches_requantize(
            acc in proptest::array::uniform16(any::<i32>()),
            m in proptest::array::uniform16(prop_oneof![Just(0i32), (1i32 << 30)..i32::MAX, 0..i32::MAX]),
            shift in proptest::array::uniform16(-31i32..=30),
        ) {
            if !available() { return Ok(()); }
            let expected: [i32; 16] = core::array::from_fn(|l| requantize(acc[l], m[l], shift[l]));
            // SAFETY: the features are present (checked above).
            let got: [i32; 16] = unsafe {
                bytemuck::cast(requantize16(bytemuck::cast(acc), bytemuck::cast(m), bytemuck::cast(shift)))
            };
            prop_assert_eq!(got, expected);
        }
    }
}
