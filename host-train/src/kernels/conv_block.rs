//! `conv_block_f32`: the LeNet stage `conv (k x k, stride 1, padding p) + bias -> activation
//! -> 2x2 pool, stride 2` as one CPU kernel, forward and backward, on NCHW `f32` slices.
//!
//! Why: burn's flex backend runs these as separate ops, and its convolution backward (a
//! convolution with the output gradient as a 28x28 kernel) and its generic 3-D pooling dominate
//! a LeNet training step. Here one pass per image does im2col + GEMM (the `gemm` crate, which
//! picks AVX2 / AVX-512 at run time), the bias, the activation and the pooling, and the backward
//! pass does the matching GEMMs. Images are processed in fixed chunks of [`CHUNK`] on rayon, and
//! the weight and bias gradients are summed chunk by chunk in order, so results do not depend on
//! the number of threads.
//!
//! Layouts: `x` `[B, Ci, H, W]`, `weight` `[Co, Ci, k, k]` (= `[Co, K]`, `K = Ci*k*k`), `bias`
//! `[Co]`, convolution output `[B, Co, Ho, Wo]` with `Ho = H + 2p - k + 1`, output
//! `[B, Co, Ho/2, Wo/2]` (an odd last row or column is dropped, as by a VALID 2x2 pool).
//!
//! [`reference`] is the slow, obviously-correct twin the tests compare against.

use rayon::prelude::*;

/// Images per parallel task. Fixed, so the gradient sums never depend on the thread count.
pub const CHUNK: usize = 8;

/// The activation and pooling of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// ReLU then 2x2 max pooling (LeNet5-like).
    ReluMax,
    /// Sigmoid then 2x2 average pooling (the original LeNet-5).
    SigmoidAvg,
}

/// Geometry of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDims {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub ci: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Square kernel size.
    pub k: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl BlockDims {
    /// Convolution output height (stride 1).
    pub fn ho(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    /// Convolution output width.
    pub fn wo(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    /// Pooled output height.
    pub fn hp(&self) -> usize {
        self.ho() / 2
    }
    /// Pooled output width.
    pub fn wp(&self) -> usize {
        self.wo() / 2
    }
    /// Filter volume `Ci * k * k`.
    pub fn kvol(&self) -> usize {
        self.ci * self.k * self.k
    }
    /// Whether the geometry is usable (the kernel fits the padded input).
    pub fn valid(&self) -> bool {
        self.k > 0 && self.h + 2 * self.pad >= self.k && self.w + 2 * self.pad >= self.k
    }
}

/// `dst (m x n) = [dst +] a (m x k) * b (k x n)`, all row-major, or with `b_t` the transpose
/// of a row-major `n x k` matrix.
pub(crate) fn matmul(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    [m, k, n]: [usize; 3],
    accumulate: bool,
    b_t: bool,
) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let (b_cs, b_rs) = if b_t {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // SAFETY: the asserts above show every index gemm touches is in bounds: dst is m x n with
    // row stride n, a is m x k with row stride k, b is k x n read either row-major (row stride
    // n) or as the transpose of an n x k row-major matrix (column stride k); the three slices
    // do not overlap (one is &mut), and gemm runs on this thread (Parallelism::None).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The output columns `ow` whose input column `ow + kw - pad` lies inside a row of width `w`.
fn valid_cols(w: usize, wo: usize, kw: usize, pad: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(kw).min(wo);
    let hi = (w + pad).saturating_sub(kw).min(wo).max(lo);
    lo..hi
}

/// im2col of one image: `col[K, Ho*Wo]`, row `(ci*k + kh)*k + kw` holding
/// `x[ci, oh + kh - pad, ow + kw - pad]` (0 outside the image). Each output row is a zero
/// border around one contiguous copy of an input row.
fn im2col(x: &[f32], d: &BlockDims, col: &mut [f32]) {
    let (ho, wo, k, p) = (d.ho(), d.wo(), d.k, d.pad);
    for ci in 0..d.ci {
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut col[((ci * k + kh) * k + kw) * ho * wo..][..ho * wo];
                let cols = valid_cols(d.w, wo, kw, p);
                for oh in 0..ho {
                    let dst = &mut row[oh * wo..(oh + 1) * wo];
                    let ih = (oh + kh).wrapping_sub(p);
                    if ih >= d.h || cols.is_empty() {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[(ci * d.h + ih) * d.w..][..d.w];
                    dst[..cols.start].fill(0.0);
                    dst[cols.end..].fill(0.0);
                    dst[cols.clone()].copy_from_slice(&src[cols.start + kw - p..cols.end + kw - p]);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col[K, Ho*Wo]` back into one image's gradient.
fn col2im(col: &[f32], d: &BlockDims, dx: &mut [f32]) {
    let (ho, wo, k, p) = (d.ho(), d.wo(), d.k, d.pad);
    for ci in 0..d.ci {
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[((ci * k + kh) * k + kw) * ho * wo..][..ho * wo];
                let cols = valid_cols(d.w, wo, kw, p);
                for oh in 0..ho {
                    let ih = (oh + kh).wrapping_sub(p);
                    if ih >= d.h || cols.is_empty() {
                        continue;
                    }
                    let dst = &mut dx[(ci * d.h + ih) * d.w..][..d.w];
                    let src = &row[oh * wo..(oh + 1) * wo];
                    for (o, g) in dst[cols.start + kw - p..cols.end + kw - p]
                        .iter_mut()
                        .zip(&src[cols.clone()])
                    {
                        *o += g;
                    }
                }
            }
        }
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Index (0..4, row-major) of the first maximum of a 2x2 window.
fn argmax4(v: [f32; 4]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// What the backward pass needs from the forward pass, per image (see [`BlockDims`]):
/// - `ReluMax`: `[Co, Hp, Wp]`, for each pooled output the flat index in its `Ho x Wo` plane of
///   the window's (first) maximum when that maximum is positive, else -1 (no gradient);
/// - `SigmoidAvg`: `[Co, Ho, Wo]`, `s (1 - s) / 4` at every pooled position (0 elsewhere).
pub fn aux_len(d: &BlockDims, kind: BlockKind) -> usize {
    match kind {
        BlockKind::ReluMax => d.co * d.hp() * d.wp(),
        BlockKind::SigmoidAvg => d.co * d.ho() * d.wo(),
    }
}

/// Sum of a slice with eight independent accumulators (vectorises; the order is fixed).
pub(crate) fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Forward pass. Returns `(output [B, Co, Hp, Wp], aux)`; `aux` ([`aux_len`] per image) is
/// what [`backward`] needs.
pub fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    d: &BlockDims,
    kind: BlockKind,
) -> (Vec<f32>, Vec<f32>) {
    let (ho, wo, hp, wp, kv) = (d.ho(), d.wo(), d.hp(), d.wp(), d.kvol());
    let in_len = d.ci * d.h * d.w;
    let aux_len = aux_len(d, kind);
    let out_len = d.co * hp * wp;
    assert!(x.len() == d.batch * in_len && weight.len() == d.co * kv && bias.len() == d.co);
    let mut out = vec![0f32; d.batch * out_len];
    let mut aux = vec![0f32; d.batch * aux_len];
    out.par_chunks_mut(CHUNK * out_len)
        .zip(aux.par_chunks_mut(CHUNK * aux_len))
        .zip(x.par_chunks(CHUNK * in_len))
        .for_each(|((out, aux), x)| {
            let mut col = vec![0f32; kv * ho * wo];
            let mut z = vec![0f32; d.co * ho * wo];
            for ((out, aux), x) in out
                .chunks_mut(out_len)
                .zip(aux.chunks_mut(aux_len))
                .zip(x.chunks(in_len))
            {
                im2col(x, d, &mut col);
                matmul(&mut z, weight, &col, [d.co, kv, ho * wo], false, false);
                for (c, plane) in z.chunks_mut(ho * wo).enumerate() {
                    let o = &mut out[c * hp * wp..(c + 1) * hp * wp];
                    let b = bias[c];
                    match kind {
                        BlockKind::ReluMax => {
                            let idx = &mut aux[c * hp * wp..(c + 1) * hp * wp];
                            for i in 0..hp {
                                for j in 0..wp {
                                    let r0 = (2 * i) * wo + 2 * j;
                                    let pos = [r0, r0 + 1, r0 + wo, r0 + wo + 1];
                                    let p = pos[argmax4(pos.map(|p| plane[p]))];
                                    // relu then max == max then relu; the gradient goes to the
                                    // window's first maximum when it is positive.
                                    let m = plane[p] + b;
                                    o[i * wp + j] = m.max(0.0);
                                    idx[i * wp + j] = if m > 0.0 { p as f32 } else { -1.0 };
                                }
                            }
                        }
                        BlockKind::SigmoidAvg => {
                            let ds = &mut aux[c * ho * wo..(c + 1) * ho * wo];
                            for v in plane.iter_mut() {
                                *v = sigmoid(*v + b);
                            }
                            for i in 0..hp {
                                for j in 0..wp {
                                    let r0 = (2 * i) * wo + 2 * j;
                                    let mut sum = 0.0;
                                    for p in [r0, r0 + 1, r0 + wo, r0 + wo + 1] {
                                        sum += plane[p];
                                        ds[p] = plane[p] * (1.0 - plane[p]) * 0.25;
                                    }
                                    o[i * wp + j] = sum * 0.25;
                                }
                            }
                        }
                    }
                }
            }
        });
    (out, aux)
}

/// Gradients of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockGrads {
    /// `[B, Ci, H, W]`, empty unless asked for.
    pub dx: Vec<f32>,
    /// `[Co, Ci, k, k]`.
    pub dweight: Vec<f32>,
    /// `[Co]`.
    pub dbias: Vec<f32>,
}

/// Backward pass from the output gradient `dy [B, Co, Hp, Wp]` and the forward's `aux`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    aux: &[f32],
    dy: &[f32],
    d: &BlockDims,
    kind: BlockKind,
    need_dx: bool,
) -> BlockGrads {
    let (ho, wo, hp, wp, kv) = (d.ho(), d.wo(), d.hp(), d.wp(), d.kvol());
    let in_len = d.ci * d.h * d.w;
    let aux_len = aux_len(d, kind);
    let out_len = d.co * hp * wp;
    assert!(
        x.len() == d.batch * in_len
            && aux.len() == d.batch * aux_len
            && dy.len() == d.batch * out_len
    );
    let mut dx = if need_dx {
        vec![0f32; d.batch * in_len]
    } else {
        Vec::new()
    };
    let chunks = d.batch.div_ceil(CHUNK);
    // One partial (dweight, dbias) per chunk, summed in chunk order below.
    let mut partial = vec![(vec![0f32; d.co * kv], vec![0f32; d.co]); chunks];
    let dx_chunks: Vec<Option<&mut [f32]>> = if need_dx {
        dx.chunks_mut(CHUNK * in_len).map(Some).collect()
    } else {
        (0..chunks).map(|_| None).collect()
    };
    let wt = if need_dx {
        transpose(weight, d.co, kv)
    } else {
        Vec::new()
    };
    partial
        .par_iter_mut()
        .zip(dx_chunks)
        .enumerate()
        .for_each(|(ci, ((dw, db), mut dxc))| {
            let first = ci * CHUNK;
            let last = (first + CHUNK).min(d.batch);
            let mut col = vec![0f32; kv * ho * wo];
            let mut dz = vec![0f32; d.co * ho * wo];
            for b in first..last {
                let a = &aux[b * aux_len..(b + 1) * aux_len];
                let g = &dy[b * out_len..(b + 1) * out_len];
                dz.fill(0.0);
                for c in 0..d.co {
                    let dzp = &mut dz[c * ho * wo..(c + 1) * ho * wo];
                    let gp = &g[c * hp * wp..(c + 1) * hp * wp];
                    match kind {
                        BlockKind::ReluMax => {
                            for (&idx, &gv) in a[c * hp * wp..(c + 1) * hp * wp].iter().zip(gp) {
                                if idx >= 0.0 {
                                    dzp[idx as usize] += gv;
                                }
                            }
                        }
                        BlockKind::SigmoidAvg => {
                            let ds = &a[c * ho * wo..(c + 1) * ho * wo];
                            for i in 0..hp {
                                for j in 0..wp {
                                    let r0 = (2 * i) * wo + 2 * j;
                                    let gv = gp[i * wp + j];
                                    for p in [r0, r0 + 1, r0 + wo, r0 + wo + 1] {
                                        dzp[p] = gv * ds[p];
                                    }
                                }
                            }
                        }
                    }
                    db[c] += sum8(dzp);
                }
                im2col(&x[b * in_len..(b + 1) * in_len], d, &mut col);
                // dW [Co, K] += dz [Co, HoWo] * col^T [HoWo, K]
                matmul(dw, &dz, &col, [d.co, ho * wo, kv], true, true);
                if let Some(dxc) = dxc.as_deref_mut() {
                    // dcol [K, HoWo] = W^T [K, Co] * dz [Co, HoWo].
                    matmul(&mut col, &wt, &dz, [kv, d.co, ho * wo], false, false);
                    col2im(
                        &col,
                        d,
                        &mut dxc[(b - first) * in_len..(b - first + 1) * in_len],
                    );
                }
            }
        });
    let (dweight, dbias) = sum_partials(&partial, [d.co * kv, d.co]);
    BlockGrads { dx, dweight, dbias }
}

/// Sums per-chunk `(dweight, dbias)` partials in chunk order (so the result does not depend on
/// the thread count).
pub(crate) fn sum_partials(
    partial: &[(Vec<f32>, Vec<f32>)],
    [w, b]: [usize; 2],
) -> (Vec<f32>, Vec<f32>) {
    let mut dweight = vec![0f32; w];
    let mut dbias = vec![0f32; b];
    for (dw, db) in partial {
        for (acc, v) in dweight.iter_mut().zip(dw) {
            *acc += v;
        }
        for (acc, v) in dbias.iter_mut().zip(db) {
            *acc += v;
        }
    }
    (dweight, dbias)
}

pub(crate) fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// The slow, obviously-correct twin: direct loops straight from the definitions.
pub mod reference {
    use super::{BlockDims, BlockGrads, BlockKind, argmax4, sigmoid};

    fn at(x: &[f32], d: &BlockDims, b: usize, c: usize, ih: isize, iw: isize) -> f32 {
        if ih < 0 || iw < 0 || ih >= d.h as isize || iw >= d.w as isize {
            0.0
        } else {
            x[((b * d.ci + c) * d.h + ih as usize) * d.w + iw as usize]
        }
    }

    /// Forward pass: `(output, pre-pool activation [B, Co, Ho, Wo])`.
    pub fn forward(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        d: &BlockDims,
        kind: BlockKind,
    ) -> (Vec<f32>, Vec<f32>) {
        let (ho, wo, hp, wp, k) = (d.ho(), d.wo(), d.hp(), d.wp(), d.k);
        let mut act = vec![0f32; d.batch * d.co * ho * wo];
        for b in 0..d.batch {
            for co in 0..d.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut z = bias[co] as f64;
                        for ci in 0..d.ci {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let wv = weight[((co * d.ci + ci) * k + kh) * k + kw];
                                    let xv = at(
                                        x,
                                        d,
                                        b,
                                        ci,
                                        (oh + kh) as isize - d.pad as isize,
                                        (ow + kw) as isize - d.pad as isize,
                                    );
                                    z += wv as f64 * xv as f64;
                                }
                            }
                        }
                        let z = z as f32;
                        act[((b * d.co + co) * ho + oh) * wo + ow] = match kind {
                            BlockKind::ReluMax => z.max(0.0),
                            BlockKind::SigmoidAvg => sigmoid(z),
                        };
                    }
                }
            }
        }
        let mut out = vec![0f32; d.batch * d.co * hp * wp];
        for bc in 0..d.batch * d.co {
            for i in 0..hp {
                for j in 0..wp {
                    let a = |di: usize, dj: usize| act[(bc * ho + 2 * i + di) * wo + 2 * j + dj];
                    let win = [a(0, 0), a(0, 1), a(1, 0), a(1, 1)];
                    out[(bc * hp + i) * wp + j] = match kind {
                        BlockKind::ReluMax => win[argmax4(win)],
                        BlockKind::SigmoidAvg => (win[0] + win[1] + win[2] + win[3]) / 4.0,
                    };
                }
            }
        }
        (out, act)
    }

    /// Backward pass, as [`super::backward`] (always computes `dx`), from the inputs alone.
    pub fn backward(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        dy: &[f32],
        d: &BlockDims,
        kind: BlockKind,
    ) -> BlockGrads {
        let (ho, wo, hp, wp, k) = (d.ho(), d.wo(), d.hp(), d.wp(), d.k);
        let (_, act) = forward(x, weight, bias, d, kind);
        // Gradient at the convolution output.
        let mut dz = vec![0f64; act.len()];
        for bc in 0..d.batch * d.co {
            for i in 0..hp {
                for j in 0..wp {
                    let g = dy[(bc * hp + i) * wp + j] as f64;
                    let idx = |di: usize, dj: usize| (bc * ho + 2 * i + di) * wo + 2 * j + dj;
                    let pos = [idx(0, 0), idx(0, 1), idx(1, 0), idx(1, 1)];
                    match kind {
                        BlockKind::ReluMax => {
                            let p = pos[argmax4(pos.map(|p| act[p]))];
                            if act[p] > 0.0 {
                                dz[p] += g;
                            }
                        }
                        BlockKind::SigmoidAvg => {
                            for p in pos {
                                let s = act[p] as f64;
                                dz[p] += g / 4.0 * s * (1.0 - s);
                            }
                        }
                    }
                }
            }
        }
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; weight.len()];
        let mut db = vec![0f64; d.co];
        for b in 0..d.batch {
            for co in 0..d.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let g = dz[((b * d.co + co) * ho + oh) * wo + ow];
                        db[co] += g;
                        for ci in 0..d.ci {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let (ih, iw) = (
                                        (oh + kh) as isize - d.pad as isize,
                                        (ow + kw) as isize - d.pad as isize,
                                    );
                                    let wi = ((co * d.ci + ci) * k + kh) * k + kw;
                                    dw[wi] += g * at(x, d, b, ci, ih, iw) as f64;
                                    if ih >= 0 && iw >= 0 && ih < d.h as isize && iw < d.w as isize
                                    {
                                        dx[((b * d.ci + ci) * d.h + ih as usize) * d.w
                                            + iw as usize] += g * weight[wi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        BlockGrads {
            dx: f(dx),
            dweight: f(dw),
            dbias: f(db),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn rand(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn fast_matches_reference_on_random_geometries() {
        let mut rng = SplitMix64::new(11);
        for (batch, ci, h, w, co, k, pad) in [
            (3, 1, 28, 28, 6, 5, 2),
            (10, 6, 14, 14, 16, 5, 0),
            (9, 2, 7, 9, 3, 3, 1),
            (1, 3, 6, 5, 2, 1, 0),
            (17, 2, 5, 5, 4, 5, 2),
        ] {
            let d = BlockDims {
                batch,
                ci,
                h,
                w,
                co,
                k,
                pad,
            };
            let x = rand(batch * ci * h * w, &mut rng);
            let wt = rand(co * d.kvol(), &mut rng);
            let bias = rand(co, &mut rng);
            for kind in [BlockKind::ReluMax, BlockKind::SigmoidAvg] {
                let (out, aux) = forward(&x, &wt, &bias, &d, kind);
                let (rout, _) = reference::forward(&x, &wt, &bias, &d, kind);
                close(&out, &rout, "out");
                let dy = rand(out.len(), &mut rng);
                let g = backward(&x, &wt, &aux, &dy, &d, kind, true);
                let r = reference::backward(&x, &wt, &bias, &dy, &d, kind);
                close(&g.dx, &r.dx, "dx");
                close(&g.dweight, &r.dweight, "dweight");
                close(&g.dbias, &r.dbias, "dbias");
                let no_dx = backward(&x, &wt, &aux, &dy, &d, kind, false);
                assert!(no_dx.dx.is_empty());
                assert_eq!((no_dx.dweight, no_dx.dbias), (g.dweight, g.dbias));
            }
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let mut rng = SplitMix64::new(3);
        let d = BlockDims {
            batch: 37,
            ci: 6,
            h: 14,
            w: 14,
            co: 16,
            k: 5,
            pad: 0,
        };
        let x = rand(d.batch * 6 * 14 * 14, &mut rng);
        let wt = rand(16 * d.kvol(), &mut rng);
        let (out, aux) = forward(&x, &wt, &[0.1; 16], &d, BlockKind::ReluMax);
        let dy = rand(out.len(), &mut rng);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| backward(&x, &wt, &aux, &dy, &d, BlockKind::ReluMax, true))
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn max_pool_ties_go_to_the_first_element() {
        // A 1x1 kernel with weight 1: act = relu(x); a window of equal values.
        let d = BlockDims {
            batch: 1,
            ci: 1,
            h: 2,
            w: 2,
            co: 1,
            k: 1,
            pad: 0,
        };
        let x = [0.5, 0.5, 0.5, 0.5];
        let (out, aux) = forward(&x, &[1.0], &[0.0], &d, BlockKind::ReluMax);
        assert_eq!(out, vec![0.5]);
        let g = backward(&x, &[1.0], &aux, &[1.0], &d, BlockKind::ReluMax, true);
        assert_eq!(g.dx, vec![1.0, 0.0, 0.0, 0.0]);
    }
}
