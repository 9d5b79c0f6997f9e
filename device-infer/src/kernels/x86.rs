//! AVX2 versions of the host's hot kernels (x86-64 with the `std` feature; AVX2 detected at
//! run time, the portable kernels otherwise): [`conv2d_pool2x2_s8`] and [`dense_s8`]; their
//! AVX-512 (F + BW + VNNI) versions in [`avx512`], taken where the CPU has them ([`level`]).
//!
//! Same integer sums as the portable kernels in another order (i32 addition is associative
//! and commutative, even wrapping), the same requantization rule, so bit-exact with the
//! references (tested below and through the dispatchers' property tests).
//!
//! How: inputs are widened once to i16 with the input offset added (`x + offset` lies in
//! `-383..=382`), weights to i16 or sign-extended on load; `vpmaddwd` multiplies 16 pairs and
//! adds neighbours into 8 i32 lanes (no saturation: `|a*b + c*d| < 2^17`). A convolution's
//! lanes are 8 output channels, each pair of a window's values broadcast against their weight
//! pairs (packed once per layer); a one-channel first layer instead puts 8 pooled columns in
//! the lanes; dense layers put outputs in the lanes over packed weights and broadcast input
//! quads (eight rows at a time, their lanes summed by a `vphaddd` tree, where a layer is too
//! large to pack). `requantize8` applies
//! [`requantize`](crate::quant::requantize) to all 8 lanes.
//!
//! Scratch (the widened image, packed filters, the dense input) lives in a per-thread buffer
//! that only grows: the host has a heap, the device path never comes here.

// The target-feature functions are safe; calling them needs `unsafe` until AVX2 is known to be
// present, which the two entry points check first.
#![allow(unsafe_code)]

use core::arch::x86_64::*;
use core::cell::{Cell, RefCell};
use std::vec::Vec;

mod avx512;

use super::conv2d_block::{Pool2x2, pool4};
use super::{Clamp, ConvParams, Dims, PerChannelQuant};
use crate::quant::Requant;

/// Whether the AVX2 kernels run on this CPU (checked once by std, then cached).
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// The vector kernels a CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// 256-bit, `vpmaddwd`.
    Avx2,
    /// 512-bit, `vpdpwssd` (AVX-512 F + BW + VNNI).
    Avx512,
}

std::thread_local! {
    /// The highest level this thread may use ([`with_level`]); `None`: what the CPU has.
    static CAP: Cell<Option<Option<Level>>> = const { Cell::new(None) };
}

/// The kernels this thread runs: the best the CPU has, capped by [`with_level`].
pub fn level() -> Option<Level> {
    let detected = if avx512::available() {
        Some(Level::Avx512)
    } else if available() {
        Some(Level::Avx2)
    } else {
        None
    };
    match CAP.get() {
        Some(cap) => detected.min(cap),
        None => detected,
    }
}

/// Runs `f` with this thread's kernels capped at `cap` (`None`: the portable ones), so that
/// tests and benchmarks can compare the levels on one machine.
pub fn with_level<R>(cap: Option<Level>, f: impl FnOnce() -> R) -> R {
    let before = CAP.replace(Some(cap));
    let r = f();
    CAP.set(before);
    r
}

#[derive(Default)]
struct Scratch {
    image: Vec<i16>,
    vector: Vec<__m256i>,
    quant: Vec<i32>,
    /// The one-channel layer's per-channel requantization constants.
    rq: Vec<Rq8>,
    /// Filters of recent layers, packed (see `avx512::packed_filters`; the AVX2 convolution
    /// reads them too).
    packed: Vec<avx512::Packed>,
    /// The AVX-512 u8 image (`avx512::pad_image_u8`).
    bytes: Vec<u8>,
    /// Its tap quads for a one-channel layer (`avx512::quad_table`).
    quads: Vec<[u8; 64]>,
    /// Gather plans of recent one-channel layer shapes (`avx512::FlatPlan`).
    flat: Vec<avx512::FlatPlan>,
    /// Whether the filters this scratch sees at an address are always the same bytes, so
    /// that a cached packing is found by address instead of by comparing the bytes: set only
    /// while a [`ModelScratch`] is in use, whose owner's model is borrowed, immutable, for
    /// the owner's whole life.
    fixed_weights: bool,
}

std::thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A scratch of its own for one model's runs (the int8 engine keeps one beside the model it
/// borrows): while [`ModelScratch::with`] runs, the kernels use it instead of the thread's,
/// and find their packed filters by address, not by comparing the filter bytes with a kept
/// copy (a tenth of LeNet5-like's batch-1 time).
///
/// Sound only for one model whose bytes cannot change while this lives: the engine owns it
/// and borrows its model for as long.
#[derive(Default)]
pub struct ModelScratch(Scratch);

impl ModelScratch {
    /// Runs `f` (one inference of the owner's model) with this scratch as the thread's.
    pub fn with<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Puts the thread's scratch back, even if `f` panics.
        struct Restore<'a>(&'a mut Scratch);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                SCRATCH.with_borrow_mut(|s| core::mem::swap(s, self.0));
                self.0.fixed_weights = false;
            }
        }
        self.0.fixed_weights = true;
        SCRATCH.with_borrow_mut(|s| core::mem::swap(s, &mut self.0));
        let _restore = Restore(&mut self.0);
        f()
    }
}

/// `v.resize(n)` without shrinking or touching what is kept (callers overwrite what they read).
fn grow<T: Copy + bytemuck::Zeroable>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::zeroed());
    }
    &mut v[..n]
}

/// A fused conv + 2x2 pool kernel of this module (the arguments of
/// [`conv2d_pool2x2_s8`](super::conv2d_pool2x2_s8) after the scratch).
type ConvKernel = unsafe fn(
    &mut Scratch,
    &ConvParams,
    &PerChannelQuant,
    Dims,
    &[i8],
    Dims,
    &[i8],
    &[i32],
    Option<&[i8; 256]>,
    Pool2x2,
    Dims,
    &mut [i8],
);

/// [`conv2d_pool2x2_s8`](super::conv2d_pool2x2_s8) with AVX-512 or AVX2 ([`level`]); returns
/// `false` (and writes nothing) when the CPU has neither.
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
) -> bool {
    let Some(level) = level() else {
        return false;
    };
    let c1 =
        in_dims.c == 1 && p.stride == [1, 1] && filter_dims.h <= C1_MAX_KH && filter_dims.w <= 8;
    let kernel: ConvKernel = match (level, c1) {
        (Level::Avx512, true) => avx512::conv_pool_c1,
        (Level::Avx512, false) if avx512::u8_fits(p) => avx512::conv_pool_u8,
        (Level::Avx512, false) => avx512::conv_pool,
        (Level::Avx2, true) => conv_pool_c1_avx2,
        (Level::Avx2, false) => conv_pool_avx2,
    };
    SCRATCH.with_borrow_mut(|s| {
        // SAFETY: the only precondition of a `target_feature` function is that the CPU has
        // the features; `level` detected them.
        unsafe {
            kernel(
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
            )
        }
    });
    true
}

/// `dst[i] = table[src[i]]` for every byte (the int8 engine's pixel quantization): with
/// AVX-512 VBMI 64 bytes at a time (two `vpermi2b` over the table's halves, blended on each
/// index's top bit), with AVX2 32 at a time ([`lookup_u8_avx2`]), else byte by byte.
pub fn lookup_u8(table: &[i8; 256], src: &[u8], dst: &mut [i8]) {
    if avx512::available() && avx512::vbmi() {
        // SAFETY: the CPU has AVX-512 F, BW and VBMI (checked above).
        unsafe { avx512::lookup_u8(table, src, dst) };
        return;
    }
    if available() {
        // SAFETY: the CPU has AVX2 (checked above).
        unsafe { lookup_u8_avx2(table, src, dst) };
        return;
    }
    lookup_bytes(table, src, dst);
}

/// [`lookup_u8`] byte by byte.
fn lookup_bytes(table: &[i8; 256], src: &[u8], dst: &mut [i8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = table[s as usize];
    }
}

/// [`lookup_u8`] with AVX2, 32 bytes a step: each 16-entry sixteenth of the table looked up
/// by the index's low nibble (`vpshufb`, in both 128-bit lanes), then a tree of 15 byte blends
/// on the index's bits 4, 5, 6 and 7 picks the sixteenth (byte by byte, the int8 engine's
/// pixels were 3% of LeNet5-like's batch-1 profile on a Zen 3). The tail byte by byte.
#[target_feature(enable = "avx2")]
fn lookup_u8_avx2(table: &[i8; 256], src: &[u8], dst: &mut [i8]) {
    let parts: [__m256i; 16] = core::array::from_fn(|k| {
        let part: [i8; 16] = *table[16 * k..].first_chunk::<16>().unwrap_or(&[0; 16]);
        _mm256_broadcastsi128_si256(bytemuck::cast(part))
    });
    let nibble = _mm256_set1_epi8(0x0f);
    let whole = src.len().min(dst.len()) / 32 * 32;
    let (src32, src_tail) = src.split_at(whole);
    let (dst32, dst_tail) = dst.split_at_mut(whole);
    for (d, s) in dst32.chunks_exact_mut(32).zip(src32.chunks_exact(32)) {
        let (Some(d), Some(s)) = (d.first_chunk_mut::<32>(), s.first_chunk::<32>()) else {
            continue; // not reached: both are chunks of 32
        };
        let x: __m256i = bytemuck::cast(*s);
        let lo = _mm256_and_si256(x, nibble);
        let mut v: [__m256i; 16] = core::array::from_fn(|k| _mm256_shuffle_epi8(parts[k], lo));
        // Level `b` keeps, of each pair, the one bit `4 + b` of the index selects (moved to
        // each byte's top bit, which `vpblendvb` reads; lower bits from the byte below do
        // not matter).
        for (b, n) in [(0, 8), (1, 4), (2, 2), (3, 1)] {
            let m = match b {
                0 => _mm256_slli_epi16::<3>(x),
                1 => _mm256_slli_epi16::<2>(x),
                2 => _mm256_slli_epi16::<1>(x),
                _ => x,
            };
            for i in 0..n {
                v[i] = _mm256_blendv_epi8(v[2 * i], v[2 * i + 1], m);
            }
        }
        *d = bytemuck::cast(v[0]);
    }
    lookup_bytes(table, src_tail, dst_tail);
}

/// [`dense_s8`](super::dense_s8) with AVX2; returns `false` (and writes nothing) when the CPU
/// lacks AVX2.
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
) -> bool {
    let Some(level) = level() else {
        return false;
    };
    let kernel = match level {
        Level::Avx512 => avx512::dense_u8,
        Level::Avx2 => dense_avx2,
    };
    SCRATCH.with_borrow_mut(|s| {
        // SAFETY: as in `conv2d_pool2x2_s8`: `level` detected the features.
        unsafe {
            kernel(
                s,
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
    });
    true
}

/// 16 i16 from the front of `s` (zeros if shorter, which callers never pass).
#[inline]
#[target_feature(enable = "avx2")]
fn load16(s: &[i16]) -> __m256i {
    s.first_chunk::<16>()
        .map_or(_mm256_setzero_si256(), |a| bytemuck::cast(*a))
}

/// 16 i8 from the front of `s`, sign-extended to i16; a shorter `s` is padded with zeros.
#[inline]
#[target_feature(enable = "avx2")]
fn load_i8x16(s: &[i8]) -> __m256i {
    let a = match s.first_chunk::<16>() {
        Some(a) => *a,
        None => {
            let mut a = [0i8; 16];
            let n = s.len().min(16);
            a[..n].copy_from_slice(&s[..n]);
            a
        }
    };
    _mm256_cvtepi8_epi16(bytemuck::cast::<[i8; 16], __m128i>(a))
}

/// Stores 16 i16 at the front of `d` (which callers size for it).
#[inline]
#[target_feature(enable = "avx2")]
fn store16(d: &mut [i16], v: __m256i) {
    if let Some(d) = d.first_chunk_mut::<16>() {
        *d = bytemuck::cast(v);
    }
}

/// `d[i] = s[i] + offset` as i16 for every `i` (equal lengths).
#[inline]
#[target_feature(enable = "avx2")]
fn widen(d: &mut [i16], s: &[i8], offset: i32) {
    let off = _mm256_set1_epi16(offset as i16);
    let n = d.len().min(s.len());
    let (d, s) = (&mut d[..n], &s[..n]);
    let mut dc = d.chunks_exact_mut(16);
    let mut sc = s.chunks_exact(16);
    for (d, s) in (&mut dc).zip(&mut sc) {
        store16(d, _mm256_add_epi16(load_i8x16(s), off));
    }
    let rest = sc.remainder().len();
    if rest == 0 {
        return;
    }
    if n >= 16 {
        // The last 16 values again, overlapping the previous vector (same values there): one
        // vector instead of up to 15 scalar steps (a 28-pixel row's last 12).
        store16(
            &mut d[n - 16..],
            _mm256_add_epi16(load_i8x16(&s[n - 16..]), off),
        );
        return;
    }
    for (d, &s) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *d = (s as i32 + offset) as i16;
    }
}

/// The 8 lane sums of each of 8 vectors: `[sum(a[0]), ..., sum(a[7])]`.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum8(a: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(a[0], a[1]);
    let h23 = _mm256_hadd_epi32(a[2], a[3]);
    let h45 = _mm256_hadd_epi32(a[4], a[5]);
    let h67 = _mm256_hadd_epi32(a[6], a[7]);
    // Per 128-bit half: [a0, a1, a2, a3] partial sums (low half: lanes 0-3, high: 4-7).
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo, hi)
}

/// [`requantize`](crate::quant::requantize) on 8 lanes (multipliers non-negative, shifts in
/// `-31..=30`, as validated at load).
///
/// `SaturatingRoundingDoublingHighMul` for `b >= 0`: the TFLM nudge and truncating division,
/// `trunc((ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31)`, equal `floor((ab + 2^30) / 2^31)` (for
/// negative `ab`, `trunc(s / d) = floor((s + d - 1) / d)`), and the low 32 bits of that floor
/// are bits 31..62 of `ab + 2^30`: a logical 64-bit shift, which AVX2 has. The saturating case
/// (`a == b == i32::MIN`) cannot occur with `b >= 0`.
#[inline]
#[target_feature(enable = "avx2")]
fn requantize8(acc: __m256i, multiplier: __m256i, shift: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let left = _mm256_max_epi32(shift, zero);
    let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    let x = _mm256_sllv_epi32(acc, left);
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(_mm256_mul_epi32(x, multiplier), nudge));
    let odd = _mm256_mul_epi32(
        _mm256_srli_epi64::<32>(x),
        _mm256_srli_epi64::<32>(multiplier),
    );
    let odd = _mm256_slli_epi64::<32>(_mm256_srli_epi64::<31>(_mm256_add_epi64(odd, nudge)));
    let y = _mm256_blend_epi32::<0b1010_1010>(even, odd);
    // RoundingDivideByPOT(y, right): shift, plus one when the remainder passes half (a
    // negative y needs strictly more than half).
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let remainder = _mm256_and_si256(y, mask);
    let negative = _mm256_cmpgt_epi32(zero, y);
    let threshold = _mm256_sub_epi32(_mm256_srli_epi32::<1>(mask), negative);
    let up = _mm256_cmpgt_epi32(remainder, threshold);
    _mm256_sub_epi32(_mm256_srav_epi32(y, right), up)
}

/// [`requantize8`] for one channel's multiplier and shift in every lane, its constants
/// computed once per layer call instead of per vector (1.6% of LeNet5-like's batch-1 time on
/// a Zen 3, in one process).
#[derive(Clone, Copy)]
struct Rq8 {
    multiplier: __m256i,
    left: __m256i,
    right: __m256i,
    mask: __m256i,
    half: __m256i,
}

impl Rq8 {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(multiplier: i32, shift: i8) -> Self {
        let shift = shift as i32;
        let right = (-shift).max(0);
        let mask = ((1i64 << right) - 1) as i32;
        Rq8 {
            multiplier: _mm256_set1_epi32(multiplier),
            left: _mm256_set1_epi32(shift.max(0)),
            right: _mm256_set1_epi32(right),
            mask: _mm256_set1_epi32(mask),
            half: _mm256_set1_epi32(mask >> 1),
        }
    }

    /// `requantize8(acc, multiplier, shift)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn apply(&self, acc: __m256i) -> __m256i {
        let x = _mm256_sllv_epi32(acc, self.left);
        let nudge = _mm256_set1_epi64x(1 << 30);
        // The multiplier is the same in every lane, so also in the odd ones `vpmuldq` reads.
        let even = _mm256_mul_epi32(x, self.multiplier);
        let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(even, nudge));
        let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.multiplier);
        let odd = _mm256_slli_epi64::<32>(_mm256_srli_epi64::<31>(_mm256_add_epi64(odd, nudge)));
        let y = _mm256_blend_epi32::<0b1010_1010>(even, odd);
        let remainder = _mm256_and_si256(y, self.mask);
        let negative = _mm256_cmpgt_epi32(_mm256_setzero_si256(), y);
        let threshold = _mm256_sub_epi32(self.half, negative);
        let up = _mm256_cmpgt_epi32(remainder, threshold);
        _mm256_sub_epi32(_mm256_srav_epi32(y, self.right), up)
    }
}

/// Requantizes 8 accumulators, adds the output offset, clamps and stores the first
/// `out.len()` (at most 8) as int8.
#[inline]
#[target_feature(enable = "avx2")]
fn finish8(acc: __m256i, quant: &[i32], output_offset: i32, act: Clamp, out: &mut [i8]) {
    let m = load_i32x8(&quant[8..]);
    let s = load_i32x8(&quant[16..]);
    let v = _mm256_add_epi32(requantize8(acc, m, s), _mm256_set1_epi32(output_offset));
    let v = _mm256_max_epi32(v, _mm256_set1_epi32(act.min as i32));
    let v = _mm256_min_epi32(v, _mm256_set1_epi32(act.max as i32));
    if let Some(o) = out.first_chunk_mut::<8>() {
        // All 8: narrowed in registers, one 8-byte store (the lanes went through the stack to
        // eight byte stores: 4% of LeNet5-like's batch-1 time on a Zen 3, in one process).
        *o = bytemuck::cast(_mm_cvtsi128_si64(bytes8(v)));
        return;
    }
    let v: [i32; 8] = bytemuck::cast(v);
    for (o, &v) in out.iter_mut().zip(&v) {
        *o = v as i8;
    }
}

/// The 8 lanes of `v` (each in `-128..=127`) as the low 8 bytes of a vector.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes8(v: __m256i) -> __m128i {
    let w = _mm256_packs_epi32(v, v); // i16: [0..4, 0..4 | 4..8, 4..8]
    let b = _mm256_packs_epi16(w, w); // i8: [0..4 x4 | 4..8 x4]
    _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b))
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_i32x8(s: &[i32]) -> __m256i {
    s.first_chunk::<8>()
        .map_or(_mm256_setzero_si256(), |a| bytemuck::cast(*a))
}

/// Bias, multiplier and shift of channels `8b..8b + 8` as three runs of 8 i32 (zeros past
/// the last channel), for every block `b`: `quant[24 * b..][..24]`.
fn block_quant(quant: &mut [i32], q: &PerChannelQuant, bias: &[i32]) {
    for (b, blk) in quant.chunks_exact_mut(24).enumerate() {
        let o = 8 * b..8 * b + 8;
        let (bi, m, sh) = (
            bias.get(o.clone()),
            q.multiplier.get(o.clone()),
            q.shift.get(o),
        );
        if let (Some(bi), Some(m), Some(sh)) = (bi, m, sh) {
            let (b8, rest) = blk.split_at_mut(8);
            let (m8, s8) = rest.split_at_mut(8);
            b8.copy_from_slice(bi);
            m8.copy_from_slice(m);
            for (d, &s) in s8.iter_mut().zip(sh) {
                *d = s as i32;
            }
            continue;
        }
        for l in 0..8 {
            let o = 8 * b + l;
            let (bi, m, s) = match (bias.get(o), q.multiplier.get(o), q.shift.get(o)) {
                (Some(&bi), Some(&m), Some(&s)) => (bi, m, s as i32),
                _ => (0, 0, 0),
            };
            blk[l] = bi;
            blk[8 + l] = m;
            blk[16 + l] = s;
        }
    }
}

/// Writes the input widened to i16, offset and padded so that every window of the `2 * out`
/// convolution rows and columns lies inside (padding holds 0: the zero point plus the offset)
/// into `image`, and returns its row length in pixels. Two rows and 64 values of slack let
/// the kernels read whole vectors (32 values for AVX-512) past a row's end.
#[target_feature(enable = "avx2")]
fn pad_image(
    image: &mut Vec<i16>,
    p: &ConvParams,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    out_dims: Dims,
) -> usize {
    let c = in_dims.c;
    let hp = (p.padding[0] + in_dims.h).max((2 * out_dims.h - 1) * p.stride[0] + filter_dims.h);
    let wp = (p.padding[1] + in_dims.w).max((2 * out_dims.w - 1) * p.stride[1] + filter_dims.w);
    let image = grow(image, (hp + 2) * wp * c + 64);
    let row = in_dims.w * c;
    if p.padding[1] == 0 && wp * c == row {
        // No columns of padding (VALID, as LeNet5-like's second layer): the rows are one run;
        // only the rows above and below (and the slack) are filled.
        let (top, rest) = image.split_at_mut((p.padding[0] * row).min(image.len()));
        let (body, bottom) = rest.split_at_mut((in_dims.h * row).min(rest.len()));
        top.fill(0);
        widen(body, input, p.input_offset);
        bottom.fill(0);
        return wp;
    }
    image.fill(0);
    for (y, src) in input.chunks_exact(row.max(1)).take(in_dims.h).enumerate() {
        let at = ((y + p.padding[0]) * wp + p.padding[1]) * c;
        widen(&mut image[at..at + row], src, p.input_offset);
    }
    wp
}

/// Stores the pooled outputs of one channel through the general `pool4` (a table, an average
/// pool): `acc` holds the four windows' accumulators of up to 8 pooled outputs; output `l`
/// goes to `out[l * step]`, `l < count`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
fn pool_store(
    p: &ConvParams,
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    multiplier: i32,
    shift: i8,
    acc: [__m256i; 4],
    out: &mut [i8],
    step: usize,
    count: usize,
) {
    let [a0, a1, a2, a3] = acc.map(bytemuck::cast::<__m256i, [i32; 8]>);
    let rq = Requant::new(multiplier, shift, p.output_offset, p.act.min, p.act.max);
    let windows = a0.into_iter().zip(a1).zip(a2).zip(a3).take(count);
    for (l, (((w0, w1), w2), w3)) in windows.enumerate() {
        if let Some(o) = out.get_mut(l * step) {
            *o = pool4(rq, lut, pool, [w0, w1, w2, w3]);
        }
    }
}

/// One input channel, stride 1 (a grayscale first layer): vectors over 8 pooled outputs of a
/// row instead of over the filter. For pooled column `px + l` and window `(dy, dx)`, the
/// kernel taps `(ky, kx), (ky, kx + 1)` are the input pair at column `2 * (px + l) + dx + kx`:
/// for the 8 lanes, 8 consecutive pairs, one unaligned load. Each pair of taps is one
/// broadcast weight pair (an odd last tap pairs with 0), so no patches and no lane sums.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn conv_pool_c1_avx2(
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
    let (kh, kw) = (filter_dims.h, filter_dims.w);
    let wp = pad_image(&mut s.image, p, in_dims, input, filter_dims, out_dims);
    let image = &s.image[..];
    // Weight pairs `(w[ky][2j], w[ky][2j + 1])` as i32 words, per channel and kernel row.
    let np = kw.div_ceil(2);
    let pairs = grow(&mut s.quant, out_dims.c * kh * np);
    for (dst, w) in pairs.chunks_exact_mut(np).zip(filter.chunks_exact(kw)) {
        for (d, j) in dst.iter_mut().zip((0..kw).step_by(2)) {
            let hi = w.get(j + 1).map_or(0, |&v| v as i16);
            *d = (w[j] as i16 as u16 as u32 | (hi as u16 as u32) << 16) as i32;
        }
    }
    let pairs = &*pairs;
    s.rq.clear();
    let channels = q.multiplier.iter().zip(q.shift).take(out_dims.c);
    s.rq.extend(channels.map(|(&m, &sh)| Rq8::new(m, sh)));
    let rows = C1Rows {
        image,
        wp,
        kh,
        pairs,
        rq: &s.rq,
    };
    match np {
        1 => c1_rows::<1>(&rows, p, q, bias, lut, pool, out_dims, output),
        2 => c1_rows::<2>(&rows, p, q, bias, lut, pool, out_dims, output),
        3 => c1_rows::<3>(&rows, p, q, bias, lut, pool, out_dims, output),
        _ => c1_rows::<4>(&rows, p, q, bias, lut, pool, out_dims, output),
    }
}

/// Kernels up to this many rows (and 8 columns) take the one-channel path.
const C1_MAX_KH: usize = 8;

/// What [`c1_rows`] reads: the padded image, its row length, the kernel height and the weight
/// pairs (`[oc][kh][NP]`).
struct C1Rows<'a> {
    image: &'a [i16],
    wp: usize,
    kh: usize,
    pairs: &'a [i32],
    /// Each channel's requantization constants.
    rq: &'a [Rq8],
}

/// The loops of [`conv_pool_c1_avx2`] for `NP` weight pairs per kernel row: the image vectors
/// of 8 pooled outputs (rows `2 * py ..= 2 * py + kh`, both column phases) are loaded once
/// into a table shared by every output channel; the tap loop then has constant bounds.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn c1_rows<const NP: usize>(
    rows: &C1Rows,
    p: &ConvParams,
    q: &PerChannelQuant,
    bias: &[i32],
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    out_dims: Dims,
    output: &mut [i8],
) {
    let (image, wp, kh) = (rows.image, rows.wp, rows.kh.min(C1_MAX_KH));
    let oc = out_dims.c;
    let mut v = [[[_mm256_setzero_si256(); NP]; 2]; C1_MAX_KH + 1];
    let max_no_lut = pool == Pool2x2::Max && lut.is_none();
    // Six channels (LeNet5-like's first layer): each block's results kept, then stored as
    // whole pixels by `interleave6` (2% of LeNet5-like's batch-1 time on a Zen 3).
    let six = oc == 6 && max_no_lut;
    let mut results = [_mm256_setzero_si256(); 6];
    let offset = _mm256_set1_epi32(p.output_offset);
    let (lo, hi) = (
        _mm256_set1_epi32(p.act.min as i32),
        _mm256_set1_epi32(p.act.max as i32),
    );
    for py in 0..out_dims.h {
        for px in (0..out_dims.w).step_by(8) {
            let count = (out_dims.w - px).min(8);
            for (r, vr) in v.iter_mut().take(kh + 1).enumerate() {
                let at = (2 * py + r) * wp + 2 * px;
                // One 32-value array a row (`dx + 2 * j + 16 <= 23`): no bounds check per vector
                // (2% of LeNet5-like's batch-1 time on a Zen 3).
                let Some(row) = image.get(at..).and_then(|s| s.first_chunk::<32>()) else {
                    continue; // not reached: the padded image holds every window and 64 values more
                };
                for (dx, vd) in vr.iter_mut().enumerate() {
                    for (j, vj) in vd.iter_mut().enumerate().take(4) {
                        *vj = load16(&row[dx + 2 * j..]);
                    }
                }
            }
            let out = &mut output[(py * out_dims.w + px) * oc..];
            for (o, w) in rows.pairs.chunks_exact(kh * NP).take(oc).enumerate() {
                let mut acc = [_mm256_set1_epi32(bias[o]); 4];
                for (w, rr) in w.chunks_exact(NP).zip(v.windows(2)) {
                    let (r0, r1) = (&rr[0], &rr[1]);
                    for (j, &w) in w.iter().enumerate().take(NP) {
                        let w = _mm256_set1_epi32(w);
                        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(r0[0][j], w));
                        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(r0[1][j], w));
                        acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(r1[0][j], w));
                        acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(r1[1][j], w));
                    }
                }
                let (m, sh) = (q.multiplier[o], q.shift[o]);
                if max_no_lut {
                    // Requantization is monotonic (see `pool4`): pool the accumulators.
                    let best = _mm256_max_epi32(
                        _mm256_max_epi32(acc[0], acc[1]),
                        _mm256_max_epi32(acc[2], acc[3]),
                    );
                    let r = match rows.rq.get(o) {
                        Some(rq) => rq.apply(best),
                        None => {
                            requantize8(best, _mm256_set1_epi32(m), _mm256_set1_epi32(sh as i32))
                        }
                    };
                    let r = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, offset), lo), hi);
                    if six {
                        if let Some(d) = results.get_mut(o) {
                            *d = r;
                        }
                        continue;
                    }
                    let r: [i32; 8] = bytemuck::cast(r);
                    for (px_out, &r) in out.chunks_exact_mut(oc).zip(&r[..count]) {
                        if let Some(b) = px_out.get_mut(o) {
                            *b = r as i8;
                        }
                    }
                } else {
                    pool_store(p, lut, pool, m, sh, acc, &mut out[o..], oc, count);
                }
            }
            if six {
                let bytes = interleave6(&results);
                if let (8, Some(out)) = (count, out.first_chunk_mut::<48>()) {
                    *out = bytes;
                } else if let Some(out) = out.get_mut(..6 * count) {
                    out.copy_from_slice(&bytes[..6 * count]);
                }
            }
        }
    }
}

/// The 48 bytes of 8 pixels x 6 channels, pixel-major (HWC), from each channel's 8 results
/// (`r[o]`, lanes = pixels, each in `-128..=127`): packed to bytes, then one in-lane byte
/// shuffle per 128-bit half instead of 48 single-byte stores.
#[inline]
#[target_feature(enable = "avx2")]
fn interleave6(r: &[__m256i; 6]) -> [i8; 48] {
    // Per 128-bit half (4 pixels `q`): `ab` holds channel `o < 4` of pixel `q` at byte
    // `4 o + q`, `cc` channels 4 and 5 at `4 (o - 4) + q`.
    let ab = _mm256_packs_epi16(
        _mm256_packs_epi32(r[0], r[1]),
        _mm256_packs_epi32(r[2], r[3]),
    );
    let c = _mm256_packs_epi32(r[4], r[5]);
    let cc = _mm256_packs_epi16(c, c);
    // Output byte `t` of a half (`24` bytes: pixel `t / 6`, channel `t % 6`) from `ab` or `cc`.
    const fn index(from_ab: bool, first: usize) -> [i8; 32] {
        let mut ix = [-128i8; 32];
        let mut k = 0;
        while k < 32 {
            let t = first + k % 16;
            let (q, o) = (t / 6, t % 6);
            if t < 24 && (o < 4) == from_ab {
                ix[k] = if from_ab { 4 * o + q } else { 4 * (o - 4) + q } as i8;
            }
            k += 1;
        }
        ix
    }
    const IX: [[i8; 32]; 4] = [
        index(true, 0),
        index(false, 0),
        index(true, 16),
        index(false, 16),
    ];
    let ix = IX.map(bytemuck::cast::<[i8; 32], __m256i>);
    let x = _mm256_or_si256(
        _mm256_shuffle_epi8(ab, ix[0]),
        _mm256_shuffle_epi8(cc, ix[1]),
    );
    let y = _mm256_or_si256(
        _mm256_shuffle_epi8(ab, ix[2]),
        _mm256_shuffle_epi8(cc, ix[3]),
    );
    let (x, y): ([[i8; 16]; 2], [[i8; 16]; 2]) = (bytemuck::cast(x), bytemuck::cast(y));
    let mut out = [0i8; 48];
    for (h, d) in out.chunks_exact_mut(24).enumerate() {
        d[..16].copy_from_slice(&x[h % 2]);
        d[16..].copy_from_slice(&y[h % 2][..8]);
    }
    out
}

/// Any other convolution with a 2x2 pool: lanes are 8 output channels; each word of a
/// window's kernel row (two i16 image values) is broadcast against the 8 filters' weight
/// pairs, so a `vpmaddwd` does 16 useful products and no lane sums are left (the earlier
/// lanes-over-the-kernel-row version ended every window and block with a `vphaddd` tree and
/// wasted a kernel row's padding to whole vectors). The weights are the AVX-512 kernels'
/// packing (`avx512::packed_filters`, cached per layer): each 16-channel vector is two 8-channel
/// halves, run together where the block has more than 8 channels.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn conv_pool_avx2(
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
    // last value pairs with a zero weight: the image value beside it adds nothing).
    let run = kw * c;
    let np = run.div_ceil(2);
    let nk = kh * np;
    let weights = avx512::packed_filters(
        &mut s.packed,
        s.fixed_weights,
        filter,
        [oc, kh, run, kvol, 2],
    )
    .words();
    // Two 8-channel quantization blocks per 16-channel weight block.
    let quant = grow(&mut s.quant, blocks * 48);
    block_quant(quant, q, bias);

    let row_bytes = 2 * wp * c;
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
                let (lo, hi) = blk.split_at(24);
                let io = (image, bases, row_bytes, wblk, np, [lo, hi]);
                if out.len() > 8 {
                    let acc = block_windows::<2>(io);
                    let (out_lo, out_hi) = out.split_at_mut(8);
                    store_pooled8(p, lut, pool, acc.map(|a| a[0]), lo, out_lo, max_no_lut);
                    store_pooled8(p, lut, pool, acc.map(|a| a[1]), hi, out_hi, max_no_lut);
                } else {
                    let acc = block_windows::<1>(io);
                    store_pooled8(p, lut, pool, acc.map(|a| a[0]), lo, out, max_no_lut);
                }
            }
        }
    }
}

/// What [`pair_windows`] reads: the image, the windows' starts, the row length in bytes, the
/// block's packed weights, pairs a kernel row, the halves' quantization blocks.
type WindowsIn<'a> = (
    &'a [u8],
    [usize; 4],
    usize,
    &'a [[i32; 16]],
    usize,
    [&'a [i32]; 2],
);

/// [`pair_windows`], unrolled for kernel rows of up to 16 pairs ([`pair_windows_n`]: 3% of
/// LeNet5-like's batch-1 time on a Zen 3, whose second layer has 15).
#[inline]
#[target_feature(enable = "avx2")]
fn block_windows<const H: usize>(io: WindowsIn) -> [[__m256i; H]; 4] {
    let (image, bases, row_bytes, wblk, np, quant) = io;
    if np == 15 && bases[1] == bases[0] + 12 && bases[3] == bases[2] + 12 {
        // Windows 3 words apart, 15 words a kernel row: 6 channels, 5 x 5, stride 1, as both
        // LeNet-5s' second layer (2% of LeNet5-like's batch-1 time on a Zen 3).
        return pair_windows_n::<H, 15, 3>(image, bases, row_bytes, wblk, quant);
    }
    macro_rules! unrolled {
        ($($n:literal)*) => {
            match np {
                $($n => pair_windows_n::<H, $n, 0>(image, bases, row_bytes, wblk, quant),)*
                _ => pair_windows::<H>(image, bases, row_bytes, wblk, np, quant),
            }
        };
    }
    unrolled!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The four windows' accumulators of [`conv_pool_avx2`] for the first `H` (1 or 2) 8-channel
/// halves of a 16-channel block, from the halves' biases (`quant`, see [`block_quant`]):
/// `bases` where the windows start in the image (bytes), `wblk` the block's packed weights
/// (`[ky][pair]`, 16 lanes), `np` pairs a kernel row. A kernel row is read 16 pairs (64 bytes)
/// at a time as one array, whose words need no bounds checks.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_windows<const H: usize>(
    image: &[u8],
    bases: [usize; 4],
    row_bytes: usize,
    wblk: &[[i32; 16]],
    np: usize,
    quant: [&[i32]; 2],
) -> [[__m256i; H]; 4] {
    let bias: [__m256i; H] = core::array::from_fn(|h| load_i32x8(quant[h % 2]));
    let mut acc = [bias; 4];
    for (ky, wrow) in wblk.chunks_exact(np.max(1)).enumerate() {
        for (seg, wseg) in wrow.chunks(16).enumerate() {
            let at = ky * row_bytes + 64 * seg;
            let row = |b: usize| image.get(b + at..).and_then(|r| r.first_chunk::<64>());
            let (Some(r0), Some(r1), Some(r2), Some(r3)) =
                (row(bases[0]), row(bases[1]), row(bases[2]), row(bases[3]))
            else {
                continue; // not reached: the padded image holds every window and 128 bytes more
            };
            pair_segment(&mut acc, [r0, r1, r2, r3], wseg);
        }
    }
    acc
}

/// One segment of up to 16 pairs of a kernel row for the four windows (`rows`, 64 bytes each
/// from the segment's start) against their packed weights `w`, into `acc`.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_segment<const H: usize>(
    acc: &mut [[__m256i; H]; 4],
    rows: [&[u8; 64]; 4],
    w: &[[i32; 16]],
) {
    for (k, w) in w.iter().enumerate().take(16) {
        pair_step(acc, rows.map(|r| _mm256_set1_epi32(word64(r, k))), w);
    }
}

/// [`pair_windows`] for kernel rows of `NP <= 16` pairs, unrolled; `S > 0`: each pair's
/// second window starts `S` words after its first ([`pair_segment_shared`]).
#[inline]
#[target_feature(enable = "avx2")]
fn pair_windows_n<const H: usize, const NP: usize, const S: usize>(
    image: &[u8],
    bases: [usize; 4],
    row_bytes: usize,
    wblk: &[[i32; 16]],
    quant: [&[i32]; 2],
) -> [[__m256i; H]; 4] {
    let bias: [__m256i; H] = core::array::from_fn(|h| load_i32x8(quant[h % 2]));
    let mut acc = [bias; 4];
    for (ky, wrow) in wblk.chunks_exact(NP.max(1)).enumerate() {
        let at = ky * row_bytes;
        let row = |b: usize| image.get(b + at..).and_then(|r| r.first_chunk::<64>());
        let (Some(r0), Some(r1), Some(r2), Some(r3), Some(wrow)) = (
            row(bases[0]),
            row(bases[1]),
            row(bases[2]),
            row(bases[3]),
            wrow.first_chunk::<NP>(),
        ) else {
            continue; // not reached: the padded image holds every window and 128 bytes more
        };
        // A fixed-length row: the segment's loop unrolls.
        if S == 0 {
            pair_segment(&mut acc, [r0, r1, r2, r3], wrow);
        } else {
            pair_segment_shared::<H, S>(&mut acc, [r0, r1, r2, r3], wrow);
        }
    }
    acc
}

/// One word step of the four windows: each window's broadcast word `x[i]` against the
/// first `H` 8-channel halves of its packed weight pairs `w`, into `acc[i]`.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_step<const H: usize>(acc: &mut [[__m256i; H]; 4], x: [__m256i; 4], w: &[i32; 16]) {
    let halves: [[i32; 8]; 2] = bytemuck::cast(*w);
    for h in 0..H {
        let w: __m256i = bytemuck::cast(halves[h % 2]);
        for (a, &x) in acc.iter_mut().zip(&x) {
            a[h] = _mm256_add_epi32(a[h], _mm256_madd_epi16(x, w));
        }
    }
}

/// [`pair_segment`] where windows 1 and 3 (`dx = 1`) start `S` words after windows 0 and 2
/// (stride 1, `2 S` channels): window 1's word `k` is window 0's word `k + S`, so one
/// broadcast serves both, kept in a register from one step to the next: 2 broadcasts per 8
/// `vpmaddwd` instead of 4.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_segment_shared<const H: usize, const S: usize>(
    acc: &mut [[__m256i; H]; 4],
    rows: [&[u8; 64]; 4],
    w: &[[i32; 16]],
) {
    let n = w.len().min(16);
    // Words `j, j + S, j + 2 S, ..`: each broadcast serves window 1 at `k` and window 0 at
    // `k + S` (likewise windows 3 and 2).
    for j in 0..S {
        let mut p0 = _mm256_set1_epi32(word64(rows[0], j));
        let mut p2 = _mm256_set1_epi32(word64(rows[2], j));
        let mut k = j;
        while k < n {
            let n1 = _mm256_set1_epi32(word64(rows[1], k));
            let n3 = _mm256_set1_epi32(word64(rows[3], k));
            pair_step(acc, [p0, n1, p2, n3], &w[k]);
            (p0, p2) = (n1, n3);
            k += S;
        }
    }
}

/// Word `k` (bytes `4k..4k + 4`, little-endian) of a 64-byte row; `k < 16`.
#[inline(always)]
fn word64(r: &[u8; 64], k: usize) -> i32 {
    let k = k % 16;
    i32::from_le_bytes([r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]])
}

/// Pools the four windows' accumulators of 8 channels and stores the first `out.len()` (at
/// most 8); `blk` the channels' quantization block ([`block_quant`]).
#[inline]
#[target_feature(enable = "avx2")]
fn store_pooled8(
    p: &ConvParams,
    lut: Option<&[i8; 256]>,
    pool: Pool2x2,
    acc: [__m256i; 4],
    blk: &[i32],
    out: &mut [i8],
    max_no_lut: bool,
) {
    if max_no_lut {
        // Requantization is monotonic (see `pool4`): pool the accumulators.
        let m = _mm256_max_epi32(
            _mm256_max_epi32(acc[0], acc[1]),
            _mm256_max_epi32(acc[2], acc[3]),
        );
        finish8(m, blk, p.output_offset, p.act, out);
    } else {
        let acc = acc.map(bytemuck::cast::<__m256i, [i32; 8]>);
        for (l, o) in out.iter_mut().enumerate() {
            let rq = Requant::new(
                blk[8 + l],
                blk[16 + l] as i8,
                p.output_offset,
                p.act.min,
                p.act.max,
            );
            *o = pool4(rq, lut, pool, [acc[0][l], acc[1][l], acc[2][l], acc[3][l]]);
        }
    }
}

/// Dense layers up to [`avx512::DENSE_PACK_MAX`] bytes of weights: lanes are outputs, over
/// the weights packed once per layer (the AVX-512 kernels' packing, cached: per 16 outputs,
/// four consecutive weights of each as one word), so the input is read as broadcast quads of
/// i16 and the weights as one sequential stream; no per-row setup or lane sums per 8 rows.
/// A quad of 4 outputs x 4 weights is 16 bytes, sign-extended by one `vpmovsxbw`; its
/// `vpmaddwd` against the broadcast quad leaves two partial sums per output, added at the end.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn dense_avx2(
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
    if weights.len() > avx512::DENSE_PACK_MAX {
        return dense_avx2_rows(
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
    let packed =
        avx512::packed_filters(&mut s.packed, s.fixed_weights, weights, [outs, 1, n, n, 4]);
    let words = packed.words();
    let blocks = outs.div_ceil(16);
    let quant = grow(&mut s.quant, blocks * 48);
    block_quant(quant, q, bias);
    // The input widened and offset, zero past `n` (those values meet zero weights).
    let xs = grow(&mut s.vector, nw.div_ceil(4));
    let x: &mut [i16] = bytemuck::cast_slice_mut(xs);
    x.fill(0);
    widen(&mut x[..n], input, input_offset);
    let quads: &[u64] = bytemuck::cast_slice(&*xs);
    let quads = &quads[..nw];
    let (mut b, mut done) = (0, 0);
    while b < blocks {
        let g = (blocks - b).min(2);
        let sums = match g {
            2 => dense_quads::<2>(&words[b * nw..], nw, quads),
            _ => dense_quads::<1>(&words[b * nw..], nw, quads),
        };
        for (blk, sum) in quant[48 * b..].chunks_exact(24).zip(sums).take(2 * g) {
            let out = &mut output[done..];
            let n8 = out.len().min(8);
            finish8(
                _mm256_add_epi32(sum, load_i32x8(blk)),
                blk,
                output_offset,
                act,
                &mut out[..n8],
            );
            done += n8;
        }
        b += g;
    }
}

/// The sums of `G` (1 or 2) consecutive 16-output blocks of [`dense_avx2`], as 8-output
/// vectors: block `i`'s packed words are `words[i * nw..][..nw]`, `quads` the input's `nw`
/// quads of i16.
#[inline]
#[target_feature(enable = "avx2")]
fn dense_quads<const G: usize>(words: &[[i32; 16]], nw: usize, quads: &[u64]) -> [__m256i; 4] {
    let zero = _mm256_setzero_si256();
    // Per block, four vectors of 4 outputs x 2 partial sums.
    let mut acc = [[zero; 4]; G];
    let mut rows: [&[[i32; 16]]; G] = [&[]; G];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = words.get(i * nw..(i + 1) * nw).unwrap_or(&[]);
    }
    if rows.iter().any(|r| r.len() != nw) || quads.len() < nw {
        return [zero; 4]; // not reached: `words` holds every block's words
    }
    for (k, &xq) in quads.iter().enumerate().take(nw) {
        let xb = _mm256_set1_epi64x(xq as i64);
        for (a, r) in acc.iter_mut().zip(&rows) {
            let w: [[i8; 16]; 4] = bytemuck::cast(r[k]);
            for (a, w) in a.iter_mut().zip(&w) {
                let w = _mm256_cvtepi8_epi16(bytemuck::cast::<[i8; 16], __m128i>(*w));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(w, xb));
            }
        }
    }
    // Each output's two partial sums are neighbours: `vphaddd` of two vectors leaves outputs
    // [0, 1, 4, 5 | 2, 3, 6, 7] of them; the 64-bit permute puts them in order.
    let mut out = [zero; 4];
    for (i, a) in acc.iter().enumerate() {
        for (h, o) in out.iter_mut().skip(2 * i).take(2).enumerate() {
            let t = _mm256_hadd_epi32(a[2 * h], a[2 * h + 1]);
            *o = _mm256_permute4x64_epi64::<0b11_01_10_00>(t);
        }
    }
    out
}

/// [`dense_avx2`] for weight matrices too large to pack: 8 rows at a time as they are, each
/// 16 weights sign-extended on load, the 8 rows' lanes summed by [`hsum8`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn dense_avx2_rows(
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
    let k16 = n.next_multiple_of(16);
    // The input widened and offset, zero past `n`: a row's last chunk may read into the next
    // row (or is zero-padded for the last row), which then adds nothing.
    let xs = grow(&mut s.vector, k16 / 16);
    let x: &mut [i16] = bytemuck::cast_slice_mut(xs);
    x.fill(0);
    widen(&mut x[..n], input, input_offset);
    let xs = &*xs;
    let blocks = outs.div_ceil(8);
    let quant = grow(&mut s.quant, blocks * 24);
    block_quant(quant, q, bias);
    for (b, (blk, out)) in quant.chunks_exact(24).zip(output.chunks_mut(8)).enumerate() {
        // Rows past the last one repeat it; their lanes are not stored.
        let full = n / 16;
        let mut rows: [&[[i8; 16]]; 8] = [&[]; 8];
        let mut tails: [&[i8]; 8] = [&[]; 8];
        for (l, (r, t)) in rows.iter_mut().zip(&mut tails).enumerate() {
            let w = &weights[(8 * b + l).min(outs - 1) * n..];
            let (whole, tail) = w.split_at(full * 16);
            *r = bytemuck::cast_slice(whole);
            // The partial last chunk reads on into the next row (times zero inputs) where
            // there is one: a plain load; only the last row's is copied and zero-padded.
            *t = tail;
        }
        let mut acc = [_mm256_setzero_si256(); 8];
        for (j, &xv) in xs[..full].iter().enumerate() {
            for (a, r) in acc.iter_mut().zip(&rows) {
                let w = _mm256_cvtepi8_epi16(bytemuck::cast::<[i8; 16], __m128i>(r[j]));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, w));
            }
        }
        if let Some(&xv) = xs.get(full) {
            for (a, t) in acc.iter_mut().zip(&tails) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, load_i8x16(t)));
            }
        }
        let sum = _mm256_add_epi32(hsum8(&acc), load_i32x8(blk));
        finish8(sum, blk, output_offset, act, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::requantize;
    use proptest::prelude::*;

    /// The vector table lookup against the byte loop: every byte value, every length up to
    /// four vectors (the remainders included), when the CPU has VBMI (else both are the loop).
    #[test]
    fn lookup_u8_matches_the_byte_loop() {
        let table: [i8; 256] = core::array::from_fn(|i| (i as i32 * 97 % 256 - 128) as i8);
        let src: Vec<u8> = (0..200).map(|i| (i * 151 % 256) as u8).collect();
        let every: Vec<u8> = (0..=255).collect();
        for s in [&src[..], &every[..]] {
            for n in 0..=s.len() {
                let mut got = std::vec![0i8; n];
                lookup_u8(&table, &s[..n], &mut got);
                let want: Vec<i8> = s[..n].iter().map(|&b| table[b as usize]).collect();
                assert_eq!(got, want, "length {n}");
                if available() {
                    got.fill(0);
                    // SAFETY: the CPU has AVX2 (checked).
                    unsafe { lookup_u8_avx2(&table, &s[..n], &mut got) };
                    assert_eq!(got, want, "AVX2, length {n}");
                }
            }
        }
    }

    /// A model's own scratch finds packed filters by address; the thread's keeps comparing
    /// bytes, so weights rewritten in place (a new model loaded where the old one was) are
    /// packed anew there, and the model scratch's address keys never leak into it.
    #[test]
    fn model_scratch_keys_by_address_and_the_threads_by_bytes() {
        use crate::kernels::{dense_s8, reference};
        let (n, outs) = (70, 20);
        let input = crate::testutil::bytes(n, 1);
        let mut weights: Vec<i8> = crate::testutil::bytes(n * outs, 2);
        let bias: Vec<i32> = (0..outs as i32).map(|i| 40 * i - 300).collect();
        let (mult, shifts) = (std::vec![1 << 30; outs], std::vec![-6i8; outs]);
        let q = PerChannelQuant {
            multiplier: &mult,
            shift: &shifts,
        };
        let run = |w: &[i8]| {
            let mut out = std::vec![0i8; outs];
            dense_s8(5, -3, Clamp::NONE, &q, &input, w, &bias, &mut out);
            out
        };
        let expected = |w: &[i8]| {
            let mut out = std::vec![0i8; outs];
            reference::dense::dense_s8(5, -3, Clamp::NONE, &q, &input, w, &bias, &mut out);
            out
        };
        let mut own = ModelScratch::default();
        let first = expected(&weights);
        assert_eq!(own.with(|| run(&weights)), first);
        assert_eq!(own.with(|| run(&weights)), first); // from its cache
        assert_eq!(run(&weights), first); // the thread's scratch packs its own
        for w in weights.iter_mut() {
            *w = w.wrapping_mul(3).max(-127);
        }
        let second = expected(&weights);
        assert_ne!(second, first);
        // Same address, new bytes: the thread's scratch sees the change.
        assert_eq!(run(&weights), second);
        // The model scratch would not (its owner's weights cannot change), which is why only
        // the engine, which borrows its model, holds one.
        if level().is_some() {
            assert_eq!(own.with(|| run(&weights)), first);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn requantize8_matches_requantize(
            acc in proptest::array::uniform8(any::<i32>()),
            m in proptest::array::uniform8(prop_oneof![Just(0i32), (1i32 << 30)..i32::MAX, 0..i32::MAX]),
            shift in proptest::array::uniform8(-31i32..=30),
        ) {
            if !available() { return Ok(()); }
            let expected: [i32; 8] = core::array::from_fn(|l| requantize(acc[l], m[l], shift[l]));
            // SAFETY: AVX2 is present (checked above).
            let got: [i32; 8] = unsafe {
                bytemuck::cast(requantize8(bytemuck::cast(acc), bytemuck::cast(m), bytemuck::cast(shift)))
            };
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn rq8_matches_requantize(
            acc in proptest::array::uniform8(any::<i32>()),
            m in prop_oneof![Just(0i32), (1i32 << 30)..i32::MAX, 0..i32::MAX],
            shift in -31i8..=30,
        ) {
            if !available() { return Ok(()); }
            let expected: [i32; 8] = core::array::from_fn(|l| requantize(acc[l], m, shift as i32));
            // SAFETY: AVX2 is present (checked above).
            let got: [i32; 8] = unsafe { bytemuck::cast(Rq8::new(m, shift).apply(bytemuck::cast(acc))) };
            prop_assert_eq!(got, expected);
        }
    }
}
