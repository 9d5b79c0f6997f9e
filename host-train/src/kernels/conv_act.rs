//! `conv_act_f32`: a plain convolution `conv (k x k, stride s, padding p) + bias [-> ReLU]` as
//! one CPU kernel, forward and backward, on NCHW `f32` slices: the layers of AlexNet and VGG,
//! which the LeNet block kernel ([`super::conv_block`]) does not cover (strided, padded "same",
//! not followed by a 2x2 pool).
//!
//! Why: burn flex's convolution forward is an im2col + GEMM, but its backward computes the
//! weight gradient as a convolution whose kernel is the output gradient, and the input
//! gradient as a transposed convolution; on AlexNet and VGG that made a training step 2-3x
//! slower than PyTorch's. Here the backward is two GEMMs per image on the forward's im2col
//! layout (`dW += dZ col^T`, `dcol = W^T dZ`, then col2im), and the ReLU mask comes from the
//! stored output. Images are processed in fixed chunks of [`CHUNK`] on rayon and the weight and
//! bias gradients are summed chunk by chunk in order, so results do not depend on the number
//! of threads.
//!
//! Layouts: `x` `[B, Ci, H, W]`, `weight` `[Co, Ci, k, k]` (= `[Co, K]`, `K = Ci*k*k`), `bias`
//! `[Co]`, output `[B, Co, Ho, Wo]` with `Ho = (H + 2p - k) / s + 1`.
//!
//! [`reference`] is the slow, obviously-correct twin the tests compare against.

use rayon::prelude::*;

use super::conv_block::matmul;

/// Images per parallel task. Fixed, so the gradient sums never depend on the thread count.
pub const CHUNK: usize = 4;

thread_local! {
    /// Per-thread im2col and output-gradient buffers, kept between calls: the layers of a
    /// training step need tens of MB each, and fresh allocations of that size come from mmap,
    /// whose page faults and zeroing cost more than the im2col itself.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers resized to `a` and `b` elements (their
/// contents are unspecified: every user overwrites them).
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (x, y) = &mut *s;
        if x.len() < a {
            x.resize(a, 0.0);
        }
        if y.len() < b {
            y.resize(b, 0.0);
        }
        f(&mut x[..a], &mut y[..b])
    })
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub ci: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvDims {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Filter volume `Ci * k * k`.
    pub fn kvol(&self) -> usize {
        self.ci * self.k * self.k
    }
    /// Whether the geometry is usable (the kernel fits the padded input, stride > 0).
    pub fn valid(&self) -> bool {
        self.k > 0
            && self.stride > 0
            && self.h + 2 * self.pad >= self.k
            && self.w + 2 * self.pad >= self.k
    }
}

/// The output columns `ow` whose input column `ow * s + kw - pad` lies inside `0..w`.
fn valid_cols(d: &ConvDims, kw: usize) -> std::ops::Range<usize> {
    let (s, p, wo) = (d.stride, d.pad, d.wo());
    // ow * s + kw >= p  and  ow * s + kw < w + p
    let lo = p.saturating_sub(kw).div_ceil(s).min(wo);
    let hi = if d.w + p > kw {
        (d.w + p - kw).div_ceil(s).min(wo)
    } else {
        0
    };
    lo..hi.max(lo)
}

/// im2col of one image: `col[K, Ho*Wo]`, row `(ci*k + kh)*k + kw` holding
/// `x[ci, oh*s + kh - pad, ow*s + kw - pad]` (0 outside the image).
fn im2col(x: &[f32], d: &ConvDims, col: &mut [f32]) {
    let (ho, wo, k, p, s) = (d.ho(), d.wo(), d.k, d.pad, d.stride);
    for ci in 0..d.ci {
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut col[((ci * k + kh) * k + kw) * ho * wo..][..ho * wo];
                let cols = valid_cols(d, kw);
                for oh in 0..ho {
                    let dst = &mut row[oh * wo..(oh + 1) * wo];
                    let ih = (oh * s + kh).wrapping_sub(p);
                    if ih >= d.h || cols.is_empty() {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[(ci * d.h + ih) * d.w..][..d.w];
                    dst[..cols.start].fill(0.0);
                    dst[cols.end..].fill(0.0);
                    if s == 1 {
                        dst[cols.clone()]
                            .copy_from_slice(&src[cols.start + kw - p..cols.end + kw - p]);
                    } else {
                        for ow in cols.clone() {
                            dst[ow] = src[ow * s + kw - p];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col[K, Ho*Wo]` back into one image's gradient.
fn col2im(col: &[f32], d: &ConvDims, dx: &mut [f32]) {
    let (ho, wo, k, p, s) = (d.ho(), d.wo(), d.k, d.pad, d.stride);
    for ci in 0..d.ci {
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[((ci * k + kh) * k + kw) * ho * wo..][..ho * wo];
                let cols = valid_cols(d, kw);
                for oh in 0..ho {
                    let ih = (oh * s + kh).wrapping_sub(p);
                    if ih >= d.h || cols.is_empty() {
                        continue;
                    }
                    let dst = &mut dx[(ci * d.h + ih) * d.w..][..d.w];
                    let src = &row[oh * wo..(oh + 1) * wo];
                    if s == 1 {
                        for (o, g) in dst[cols.start + kw - p..cols.end + kw - p]
                            .iter_mut()
                            .zip(&src[cols.clone()])
                        {
                            *o += g;
                        }
                    } else {
                        for ow in cols.clone() {
                            dst[ow * s + kw - p] += src[ow];
                        }
                    }
                }
            }
        }
    }
}

/// Forward pass: `relu(conv(x) + bias)` (or without the ReLU), `[B, Co, Ho, Wo]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], d: &ConvDims, relu: bool) -> Vec<f32> {
    let (ho, wo, kv) = (d.ho(), d.wo(), d.kvol());
    let in_len = d.ci * d.h * d.w;
    let out_len = d.co * ho * wo;
    assert!(x.len() == d.batch * in_len && weight.len() == d.co * kv && bias.len() == d.co);
    let mut out = vec![0f32; d.batch * out_len];
    out.par_chunks_mut(CHUNK * out_len)
        .zip(x.par_chunks(CHUNK * in_len))
        .for_each(|(out, x)| {
            with_scratch(kv * ho * wo, 0, |col, _| {
                for (out, x) in out.chunks_mut(out_len).zip(x.chunks(in_len)) {
                    im2col(x, d, col);
                    matmul(out, weight, col, [d.co, kv, ho * wo], false, false);
                    for (plane, &b) in out.chunks_mut(ho * wo).zip(bias) {
                        if relu {
                            plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                        } else {
                            plane.iter_mut().for_each(|v| *v += b);
                        }
                    }
                }
            })
        });
    out
}

/// Gradients of a convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvGrads {
    /// `[B, Ci, H, W]`, empty unless asked for.
    pub dx: Vec<f32>,
    /// `[Co, Ci, k, k]`.
    pub dweight: Vec<f32>,
    /// `[Co]`.
    pub dbias: Vec<f32>,
}

/// Backward pass from the output gradient `dy [B, Co, Ho, Wo]`; `out` is the forward's output
/// (its sign is the ReLU's mask; unused without the ReLU).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    weight: &[f32],
    out: &[f32],
    dy: &[f32],
    d: &ConvDims,
    relu: bool,
    need_dx: bool,
) -> ConvGrads {
    let (ho, wo, kv) = (d.ho(), d.wo(), d.kvol());
    let in_len = d.ci * d.h * d.w;
    let out_len = d.co * ho * wo;
    assert!(
        x.len() == d.batch * in_len
            && dy.len() == d.batch * out_len
            && (!relu || out.len() == d.batch * out_len)
    );
    let mut dx = if need_dx {
        vec![0f32; d.batch * in_len]
    } else {
        Vec::new()
    };
    let chunks = d.batch.div_ceil(CHUNK);
    let mut partial = vec![(vec![0f32; d.co * kv], vec![0f32; d.co]); chunks];
    let dx_chunks: Vec<Option<&mut [f32]>> = if need_dx {
        dx.chunks_mut(CHUNK * in_len).map(Some).collect()
    } else {
        (0..chunks).map(|_| None).collect()
    };
    let wt = if need_dx {
        super::conv_block::transpose(weight, d.co, kv)
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
            with_scratch(kv * ho * wo, out_len, |col, dz| {
                for b in first..last {
                    let g = &dy[b * out_len..(b + 1) * out_len];
                    if relu {
                        let o = &out[b * out_len..(b + 1) * out_len];
                        for ((z, &gv), &ov) in dz.iter_mut().zip(g).zip(o) {
                            *z = if ov > 0.0 { gv } else { 0.0 };
                        }
                    } else {
                        dz.copy_from_slice(g);
                    }
                    for (c, plane) in dz.chunks(ho * wo).enumerate() {
                        db[c] += super::conv_block::sum8(plane);
                    }
                    im2col(&x[b * in_len..(b + 1) * in_len], d, col);
                    // dW [Co, K] += dz [Co, HoWo] * col^T [HoWo, K]
                    matmul(dw, dz, col, [d.co, ho * wo, kv], true, true);
                    if let Some(dxc) = dxc.as_deref_mut() {
                        // dcol [K, HoWo] = W^T [K, Co] * dz [Co, HoWo].
                        matmul(col, &wt, dz, [kv, d.co, ho * wo], false, false);
                        col2im(
                            col,
                            d,
                            &mut dxc[(b - first) * in_len..(b - first + 1) * in_len],
                        );
                    }
                }
            })
        });
    let (dweight, dbias) = super::conv_block::sum_partials(&partial, [d.co * kv, d.co]);
    ConvGrads { dx, dweight, dbias }
}

/// The slow, obviously-correct twin: direct loops straight from the definitions (f64 sums).
#[allow(clippy::needless_range_loop)] // indices as in the definition, on purpose
pub mod reference {
    use super::{ConvDims, ConvGrads};

    fn x_at(x: &[f32], d: &ConvDims, b: usize, c: usize, ih: isize, iw: isize) -> Option<usize> {
        (ih >= 0 && iw >= 0 && (ih as usize) < d.h && (iw as usize) < d.w)
            .then(|| ((b * d.ci + c) * d.h + ih as usize) * d.w + iw as usize)
            .filter(|&i| i < x.len())
    }

    /// Forward pass.
    pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], d: &ConvDims, relu: bool) -> Vec<f32> {
        let (ho, wo, k) = (d.ho(), d.wo(), d.k);
        let mut out = vec![0f32; d.batch * d.co * ho * wo];
        for b in 0..d.batch {
            for co in 0..d.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut z = bias[co] as f64;
                        for ci in 0..d.ci {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let ih = (oh * d.stride + kh) as isize - d.pad as isize;
                                    let iw = (ow * d.stride + kw) as isize - d.pad as isize;
                                    if let Some(i) = x_at(x, d, b, ci, ih, iw) {
                                        let wv = weight[((co * d.ci + ci) * k + kh) * k + kw];
                                        z += wv as f64 * x[i] as f64;
                                    }
                                }
                            }
                        }
                        let z = z as f32;
                        out[((b * d.co + co) * ho + oh) * wo + ow] =
                            if relu { z.max(0.0) } else { z };
                    }
                }
            }
        }
        out
    }

    /// Backward pass (the ReLU's mask from `out`).
    pub fn backward(
        x: &[f32],
        weight: &[f32],
        out: &[f32],
        dy: &[f32],
        d: &ConvDims,
        relu: bool,
    ) -> ConvGrads {
        let (ho, wo, k) = (d.ho(), d.wo(), d.k);
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; weight.len()];
        let mut db = vec![0f64; d.co];
        for b in 0..d.batch {
            for co in 0..d.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let o = ((b * d.co + co) * ho + oh) * wo + ow;
                        if relu && out[o] <= 0.0 {
                            continue;
                        }
                        let g = dy[o] as f64;
                        db[co] += g;
                        for ci in 0..d.ci {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let ih = (oh * d.stride + kh) as isize - d.pad as isize;
                                    let iw = (ow * d.stride + kw) as isize - d.pad as isize;
                                    if let Some(i) = x_at(x, d, b, ci, ih, iw) {
                                        let wi = ((co * d.ci + ci) * k + kh) * k + kw;
                                        dw[wi] += g * x[i] as f64;
                                        dx[i] += g * weight[wi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        ConvGrads {
            dx: f(dx),
            dweight: f(dw),
            dbias: f(db),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let max = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        assert!(max <= 1e-5, "{what}: max relative difference {max}");
    }

    #[test]
    fn matches_the_reference_on_strides_pads_and_odd_sizes() {
        let mut rng = crate::rng::SplitMix64::new(3);
        let mut r = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.below(2001) as f32 - 1000.0) / 1000.0)
                .collect()
        };
        for (batch, ci, h, w, co, k, stride, pad) in [
            (5, 3, 23, 23, 4, 11, 4, 2), // AlexNet's conv1 shape, small
            (3, 4, 7, 9, 5, 3, 1, 1),    // VGG-style same
            (2, 2, 8, 8, 3, 5, 2, 2),
            (9, 1, 6, 5, 2, 3, 3, 0),
            (1, 2, 4, 4, 2, 5, 1, 2), // kernel larger than the input, padded
        ] {
            let d = ConvDims {
                batch,
                ci,
                h,
                w,
                co,
                k,
                stride,
                pad,
            };
            assert!(d.valid());
            let (x, wt, b) = (r(batch * ci * h * w), r(co * ci * k * k), r(co));
            let dy = r(batch * co * d.ho() * d.wo());
            for relu in [true, false] {
                let what = format!("{d:?} relu {relu}");
                let out = forward(&x, &wt, &b, &d, relu);
                let want = reference::forward(&x, &wt, &b, &d, relu);
                close(&out, &want, &format!("{what}: out"));
                let g = backward(&x, &wt, &out, &dy, &d, relu, true);
                let gw = reference::backward(&x, &wt, &want, &dy, &d, relu);
                close(&g.dx, &gw.dx, &format!("{what}: dx"));
                close(&g.dweight, &gw.dweight, &format!("{what}: dw"));
                close(&g.dbias, &gw.dbias, &format!("{what}: db"));
                assert!(backward(&x, &wt, &out, &dy, &d, relu, false).dx.is_empty());
            }
        }
    }
}
