//! `conv2d_pool2x2_s8_c1`: the [`conv2d_pool2x2_s8`](super::conv2d_pool2x2_s8) case of one
//! input channel at stride 1 (the first layer of a grayscale network: LeNet's 5x5 on 28x28).
//!
//! With one channel a kernel row is only `kw` values, so gathering int8 patches and widening
//! them per window costs as much as the arithmetic. Instead, for each row of pooled outputs the
//! `kh + 1` input rows it needs are widened once into a 16-bit strip (`x + input_offset`, 0 in
//! the padding), and for each output channel its filter rows are packed into 16-bit pairs
//! `(w[2j], w[2j + 1])` (0 past the row). A window's kernel row is then `ceil(kw / 2)` pairs
//! read straight from the strip, one `smlad` each on Armv7E-M (portable code elsewhere, the
//! same integer sums), and the four windows of a pooled output share every weight pair.

use super::conv2d_block::channel_requant;
#[cfg(not(arm_dsp))]
use super::conv2d_block::pool4;
use super::{ConvParams, Dims, PerChannelQuant, Pool2x2};

/// Largest kernel side.
pub const C1_MAX_K: usize = 5;
/// Most output channels.
pub const C1_MAX_OC: usize = 8;
/// Strip width (16-bit values): `2 * pooled width + 6` must fit (the Armv7E-M loop reads three
/// pairs per kernel row whatever `kw`, against zero weights past the row).
pub const C1_STRIP_W: usize = 40;
const MAX_PAIRS: usize = C1_MAX_K.div_ceil(2);
/// Most pooled columns: `2 * (C1_MAX_PW - 1) + 2 * MAX_PAIRS < C1_STRIP_W`.
#[cfg(arm_dsp)]
const C1_MAX_PW: usize = (C1_STRIP_W - 2 * MAX_PAIRS) / 2;

/// Whether [`conv2d_pool2x2_s8_c1`] handles this layer. On Armv7E-M only a max pool without
/// a table (the patch kernel takes the others: the firmware carries one loop here, not two).
pub const fn c1_fits(
    stride: [usize; 2],
    in_dims: Dims,
    filter_dims: Dims,
    out_dims: Dims,
    pool: Pool2x2,
    has_lut: bool,
) -> bool {
    in_dims.c == 1
        && stride[0] == 1
        && stride[1] == 1
        && 1 <= filter_dims.h
        && filter_dims.h <= C1_MAX_K
        && 1 <= filter_dims.w
        && filter_dims.w <= C1_MAX_K
        && out_dims.c <= C1_MAX_OC
        && 2 * out_dims.w + 2 * MAX_PAIRS <= C1_STRIP_W
        && (!cfg!(arm_dsp) || (matches!(pool, Pool2x2::Max) && !has_lut))
}

/// One-channel convolution + optional table + 2x2/2 pooling (see the module docs); the
/// arguments are those of [`conv2d_pool2x2_s8`](super::conv2d_pool2x2_s8) and must satisfy
/// [`c1_fits`]. Bit-exact with it.
#[allow(clippy::too_many_arguments)]
// Its own frame: the strip and the weight pairs must not add to the patch variant's stack.
#[inline(never)]
pub fn conv2d_pool2x2_s8_c1(
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
    let (kh, kw) = (filter_dims.h.min(C1_MAX_K), filter_dims.w.min(C1_MAX_K));
    // Pairs per kernel row (the Armv7E-M loop always reads MAX_PAIRS, zero weights past it).
    #[cfg(not(arm_dsp))]
    let pairs = kw.div_ceil(2);
    let n_oc = out_dims.c.min(C1_MAX_OC).min(bias.len());
    let used_w = (2 * out_dims.w + 2 * MAX_PAIRS).min(C1_STRIP_W);
    let mut strip = [[0i16; C1_STRIP_W]; C1_MAX_K + 1];
    #[cfg(arm_dsp)]
    let mut best = [0i32; C1_MAX_PW];
    for py in 0..out_dims.h {
        // Input rows 2 py - pad + r, r = 0..=kh, columns c - pad; 0 outside (the zero point
        // plus the offset).
        let iy0 = (2 * py) as isize - p.padding[0] as isize;
        let left = p.padding[1].min(used_w);
        for (r, row) in strip.iter_mut().enumerate().take(kh + 1) {
            let row = &mut row[..used_w];
            let iy = iy0 + r as isize;
            if iy < 0 || iy as usize >= in_dims.h {
                row.fill(0);
                continue;
            }
            // Columns [0, left) and past the input are padding; the rest one run of the row.
            let src = &input[iy as usize * in_dims.w..][..in_dims.w];
            let (pad_l, rest) = row.split_at_mut(left);
            pad_l.fill(0);
            let n = rest.len().min(src.len());
            let (body, pad_r) = rest.split_at_mut(n);
            for (v, &x) in body.iter_mut().zip(&src[..n]) {
                *v = (x as i32 + p.input_offset) as i16;
            }
            pad_r.fill(0);
        }
        for oc in 0..n_oc {
            // Filter `oc`'s rows as 16-bit pairs (packed once per pooled row and channel).
            let mut wt = [[0u32; MAX_PAIRS]; C1_MAX_K];
            let rows = filter[oc * kh * kw..][..kh * kw].chunks_exact(kw);
            for (row, f) in wt.iter_mut().zip(rows) {
                for (w, two) in row.iter_mut().zip(f.chunks(2)) {
                    let lo = two[0] as i16 as u16 as u32;
                    let hi = two.get(1).map_or(0, |&v| v as i16 as u16 as u32);
                    *w = lo | (hi << 16);
                }
            }
            let rq = channel_requant(p, q, oc);
            // Armv7E-M (max pool, no table: `c1_fits`): the whole row of pooled outputs in
            // one loop that keeps each one's largest window sum, requantized after (see
            // `pool4`).
            #[cfg(arm_dsp)]
            {
                let _ = (lut, pool);
                let n = out_dims.w.min(C1_MAX_PW);
                dsp::row_max(&wt, &strip, n, kh, &mut best);
                let b = bias[oc];
                let mut at = py * out_dims.w * out_dims.c + oc;
                for &m in &best[..n] {
                    if let Some(o) = output.get_mut(at) {
                        *o = rq.apply(m + b) as i8;
                    }
                    at += out_dims.c;
                }
            }
            #[cfg(not(arm_dsp))]
            for px in 0..out_dims.w {
                let c0 = 2 * px;
                let mut acc = [bias[oc]; 4];
                for (ky, w) in wt.iter().enumerate().take(kh) {
                    let (r0, r1) = (&strip[ky], &strip[ky + 1]);
                    for (j, &wp) in w.iter().enumerate().take(pairs) {
                        let c = c0 + 2 * j;
                        acc[0] = smlad(pair_at(r0, c), wp, acc[0]);
                        acc[1] = smlad(pair_at(r0, c + 1), wp, acc[1]);
                        acc[2] = smlad(pair_at(r1, c), wp, acc[2]);
                        acc[3] = smlad(pair_at(r1, c + 1), wp, acc[3]);
                    }
                }
                output[(py * out_dims.w + px) * out_dims.c + oc] = pool4(rq, lut, pool, acc);
            }
        }
    }
}

/// `acc + a.lo * b.lo + a.hi * b.hi` over signed 16-bit lanes (what `smlad` computes).
#[cfg(not(arm_dsp))]
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let lo = |v: u32| v as u16 as i16 as i32;
    let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
    acc + lo(a) * lo(b) + hi(a) * hi(b)
}

/// Values `c` and `c + 1` of `row` as one word (`c` in the low half).
#[cfg(not(arm_dsp))]
#[inline(always)]
fn pair_at(row: &[i16], c: usize) -> u32 {
    (row[c] as u16 as u32) | ((row[c + 1] as u16 as u32) << 16)
}

/// The Armv7E-M loops: over the kernel rows of one filter, and over a row of pooled outputs.
#[cfg(arm_dsp)]
#[allow(unsafe_code)]
mod dsp {
    /// One kernel row for the four windows: three weight pairs from `{wp}` (post-incremented),
    /// each against the pairs at byte offsets 0 / 2 (row ky, dx = 0 / 1) and 80 / 82 (row
    /// ky + 1) from `{xp}`, accumulated into `{a0}`..`{a3}`: 27 instructions, no memory
    /// written.
    macro_rules! kernel_row {
        () => {
            concat!(
                "ldr {w}, [{wp}], #4\n",
                "ldr {x}, [{xp}]\n",
                "smlad {a0}, {x}, {w}, {a0}\n",
                "ldr {x}, [{xp}, #2]\n",
                "smlad {a1}, {x}, {w}, {a1}\n",
                "ldr {x}, [{xp}, #80]\n",
                "smlad {a2}, {x}, {w}, {a2}\n",
                "ldr {x}, [{xp}, #82]\n",
                "smlad {a3}, {x}, {w}, {a3}\n",
                "ldr {w}, [{wp}], #4\n",
                "ldr {x}, [{xp}, #4]\n",
                "smlad {a0}, {x}, {w}, {a0}\n",
                "ldr {x}, [{xp}, #6]\n",
                "smlad {a1}, {x}, {w}, {a1}\n",
                "ldr {x}, [{xp}, #84]\n",
                "smlad {a2}, {x}, {w}, {a2}\n",
                "ldr {x}, [{xp}, #86]\n",
                "smlad {a3}, {x}, {w}, {a3}\n",
                "ldr {w}, [{wp}], #4\n",
                "ldr {x}, [{xp}, #8]\n",
                "smlad {a0}, {x}, {w}, {a0}\n",
                "ldr {x}, [{xp}, #10]\n",
                "smlad {a1}, {x}, {w}, {a1}\n",
                "ldr {x}, [{xp}, #88]\n",
                "smlad {a2}, {x}, {w}, {a2}\n",
                "ldr {x}, [{xp}, #90]\n",
                "smlad {a3}, {x}, {w}, {a3}",
            )
        };
    }

    use super::{C1_MAX_K, C1_MAX_PW, C1_STRIP_W, MAX_PAIRS};
    use core::arch::asm;

    /// For the pooled columns `px < n` of the strip's row: `best[px]` = the largest of the
    /// four windows' sums (without the bias) of [`rows`], all kernel rows `ky < kh`. One loop
    /// per row of outputs instead of one call per output: per column 17 instructions around
    /// the 27 per kernel row.
    #[inline(always)]
    pub(super) fn row_max(
        wt: &[[u32; MAX_PAIRS]; C1_MAX_K],
        strip: &[[i16; C1_STRIP_W]; C1_MAX_K + 1],
        n: usize,
        kh: usize,
        best: &mut [i32; C1_MAX_PW],
    ) {
        const _: () = assert!(2 * (C1_MAX_PW - 1) + 2 * MAX_PAIRS < C1_STRIP_W);
        let kh = kh.min(C1_MAX_K);
        let n = n.min(C1_MAX_PW);
        if kh == 0 || n == 0 {
            return;
        }
        // The loop's constants: first weight pair, kernel rows, how far the strip pointer moved
        // over the rows minus the 4 bytes (2 columns) to the next pooled column, and where
        // `best` ends.
        let ctx: [usize; 4] = [
            wt.as_ptr() as usize,
            kh,
            80 * kh - 4,
            best[..n].as_ptr_range().end as usize,
        ];
        // SAFETY: for each column px < n (the loop stops when the output pointer reaches
        // `ctx[3]`, one past best[n - 1], and n >= 1): reads `kh * 3` words of `wt`
        // (kh <= C1_MAX_K rows of 3) and, per kernel row ky < kh, the words at byte offsets
        // 0..=10 and 80..=90 from `&strip[ky][2 px]`: columns 2 px..=2 px + 6 of rows ky and
        // ky + 1 <= C1_MAX_K, inside the strip because 2 (n - 1) + 6 < C1_STRIP_W (the const
        // assert with n <= C1_MAX_PW). Writes best[px] for px < n, its register operands and
        // the flags. Word loads at 2-byte alignment are allowed on Armv7-M for normal memory.
        unsafe {
            asm!(
                "3:",
                "movs {a0}, #0",
                "movs {a1}, #0",
                "movs {a2}, #0",
                "movs {a3}, #0",
                "ldr {wp}, [{ctx}]",
                "ldr {k}, [{ctx}, #4]",
                "2:",
                kernel_row!(),
                "adds {xp}, #80",
                "subs {k}, #1",
                "bne 2b",
                "cmp {a1}, {a0}",
                "it gt",
                "movgt {a0}, {a1}",
                "cmp {a2}, {a0}",
                "it gt",
                "movgt {a0}, {a2}",
                "cmp {a3}, {a0}",
                "it gt",
                "movgt {a0}, {a3}",
                "str {a0}, [{out}], #4",
                "ldr {w}, [{ctx}, #8]",
                "subs {xp}, {xp}, {w}",
                "ldr {w}, [{ctx}, #12]",
                "cmp {out}, {w}",
                "bne 3b",
                ctx = in(reg) ctx.as_ptr(),
                out = inout(reg) best.as_mut_ptr() => _,
                xp = inout(reg) strip[0].as_ptr() => _,
                wp = out(reg) _,
                k = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                w = out(reg) _,
                x = out(reg) _,
                options(nostack),
            );
        }
    }
}
