//! Training-time augmentation of colour images, applied while a batch is assembled (the stored
//! `u8` pixels never change, and evaluation never sees it).
//!
//! - [`Augment::CropFlip`] (CIFAR-10's usual recipe): pad by `pad` zeros on every side, take a
//!   random `h x w` window, flip it left-right with probability 1/2.
//! - [`Augment::ResizedCropFlip`] (the ImageNet recipe, for the flowers): a random window of
//!   `min_scale .. 1` of the image's area and aspect ratio `3/4 .. 4/3` (log-uniform), resampled
//!   bilinearly to the full size, flipped with probability 1/2.
//!
//! Every draw comes from a [`SplitMix64`] seeded by `(seed, iteration)`, so a resumed run sees
//! the same images.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// An augmentation policy (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Augment {
    /// No augmentation.
    #[default]
    None,
    /// Zero-pad, random crop back to size, random horizontal flip.
    CropFlip {
        /// Zeros on each side before cropping.
        pad: usize,
    },
    /// Random area and aspect crop, bilinear resize back to size, random horizontal flip.
    ResizedCropFlip {
        /// Smallest fraction of the image's area a crop covers (0 < min_scale <= 1).
        min_scale: f64,
    },
}

impl Augment {
    /// Whether the policy changes anything.
    pub fn is_none(&self) -> bool {
        matches!(self, Augment::None)
    }

    /// Checks the parameters.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Augment::ResizedCropFlip { min_scale } if !(min_scale > 0.0 && min_scale <= 1.0) => {
                Err(format!(
                    "--augment-min-scale must be in (0, 1], got {min_scale}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Appends the augmented image `img` (`[c, h, w]` `u8`) to `out` as floats in `[0, 1]`.
    pub fn apply(&self, img: &[u8], shape: [usize; 3], rng: &mut SplitMix64, out: &mut Vec<f32>) {
        match *self {
            Augment::None => out.extend(img.iter().map(|&p| p as f32 / 255.0)),
            Augment::CropFlip { pad } => crop_flip(img, shape, pad, rng, out),
            Augment::ResizedCropFlip { min_scale } => {
                resized_crop_flip(img, shape, min_scale, rng, out)
            }
        }
    }
}

/// A uniform float in `[0, 1)`.
fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// See [`Augment::CropFlip`].
pub fn crop_flip(
    img: &[u8],
    [c, h, w]: [usize; 3],
    pad: usize,
    rng: &mut SplitMix64,
    out: &mut Vec<f32>,
) {
    // Window origin in padded coordinates, 0 ..= 2 * pad; as an offset into the image.
    let oy = rng.below(2 * pad + 1) as isize - pad as isize;
    let ox = rng.below(2 * pad + 1) as isize - pad as isize;
    let flip = rng.below(2) == 1;
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        for y in 0..h as isize {
            let sy = y + oy;
            for x in 0..w as isize {
                let xx = if flip { w as isize - 1 - x } else { x };
                let sx = xx + ox;
                let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                let p = if inside {
                    plane[sy as usize * w + sx as usize]
                } else {
                    0
                };
                out.push(p as f32 / 255.0);
            }
        }
    }
}

/// See [`Augment::ResizedCropFlip`].
pub fn resized_crop_flip(
    img: &[u8],
    [c, h, w]: [usize; 3],
    min_scale: f64,
    rng: &mut SplitMix64,
    out: &mut Vec<f32>,
) {
    let area = (h * w) as f64;
    // Up to 10 tries for a window that fits, as torchvision does; else the whole image.
    let (mut ch_, mut cw, mut y0, mut x0) = (h as f64, w as f64, 0.0, 0.0);
    for _ in 0..10 {
        let a = area * (min_scale + (1.0 - min_scale) * unit(rng));
        let ratio =
            ((3.0f64 / 4.0).ln() + unit(rng) * ((4.0f64 / 3.0).ln() - (3.0f64 / 4.0).ln())).exp();
        let (tw, th) = ((a * ratio).sqrt(), (a / ratio).sqrt());
        if tw <= w as f64 && th <= h as f64 {
            (ch_, cw) = (th, tw);
            y0 = unit(rng) * (h as f64 - th);
            x0 = unit(rng) * (w as f64 - tw);
            break;
        }
    }
    let flip = rng.below(2) == 1;
    let (sy, sx) = (ch_ / h as f64, cw / w as f64);
    for chn in 0..c {
        let plane = &img[chn * h * w..(chn + 1) * h * w];
        for y in 0..h {
            // Pixel centres map to pixel centres (align_corners = false).
            let fy = (y0 + (y as f64 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f64);
            let y1 = fy.floor() as usize;
            let y2 = (y1 + 1).min(h - 1);
            let wy = fy - y1 as f64;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let fx = (x0 + (xx as f64 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f64);
                let x1 = fx.floor() as usize;
                let x2 = (x1 + 1).min(w - 1);
                let wx = fx - x1 as f64;
                let p = |yy: usize, xx: usize| plane[yy * w + xx] as f64;
                let v = (1.0 - wy) * ((1.0 - wx) * p(y1, x1) + wx * p(y1, x2))
                    + wy * ((1.0 - wx) * p(y2, x1) + wx * p(y2, x2));
                out.push((v / 255.0) as f32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 2-channel 4x5 image with distinct values.
    fn img() -> Vec<u8> {
        (1..=40).collect()
    }

    fn to_u8(v: &[f32]) -> Vec<u8> {
        v.iter().map(|x| (x * 255.0).round() as u8).collect()
    }

    #[test]
    fn crop_flip_is_a_shifted_possibly_mirrored_copy() {
        let mut rng = SplitMix64::new(3);
        let src = img();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut out = Vec::new();
            crop_flip(&src, [2, 4, 5], 1, &mut rng, &mut out);
            let p = to_u8(&out);
            let found = (-1isize..=1)
                .flat_map(|oy| (-1isize..=1).flat_map(move |ox| [(oy, ox, false), (oy, ox, true)]))
                .find(|&(oy, ox, flip)| {
                    (0..2).all(|c| {
                        (0..4isize).all(|y| {
                            (0..5isize).all(|x| {
                                let xx = if flip { 4 - x } else { x };
                                let (sy, sx) = (y + oy, xx + ox);
                                let want = if (0..4).contains(&sy) && (0..5).contains(&sx) {
                                    src[c * 20 + (sy * 5 + sx) as usize]
                                } else {
                                    0
                                };
                                p[c * 20 + (y * 5 + x) as usize] == want
                            })
                        })
                    })
                });
            seen.insert(found.expect("a shifted, maybe flipped copy"));
        }
        // 9 offsets x 2 flips all occur.
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn full_scale_resized_crop_is_the_image_or_its_mirror() {
        // min_scale 1 and a square image: the crop is the whole image at ratio 1 only, so most
        // draws fall back to the whole image; every output is the image or its mirror.
        let src: Vec<u8> = (0..3 * 8 * 8).map(|i| (i * 7 % 251) as u8).collect();
        let mut rng = SplitMix64::new(1);
        let mut flips = 0;
        for _ in 0..20 {
            let mut out = Vec::new();
            resized_crop_flip(&src, [3, 8, 8], 1.0, &mut rng, &mut out);
            let p = to_u8(&out);
            let mirrored: Vec<u8> = (0..3 * 8 * 8)
                .map(|i| {
                    let (c, y, x) = (i / 64, i / 8 % 8, i % 8);
                    src[c * 64 + y * 8 + 7 - x]
                })
                .collect();
            let close = |a: &[u8], b: &[u8]| a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= 8);
            assert!(close(&p, &src) || close(&p, &mirrored));
            flips += close(&p, &mirrored) as usize;
        }
        assert!(flips > 0 && flips < 20);
    }

    #[test]
    fn resized_crop_of_a_ramp_stays_monotone_and_in_range() {
        // A horizontal ramp: any crop, resized, is still a ramp (increasing, or decreasing when
        // flipped) with values inside the image's range.
        let src: Vec<u8> = (0..16 * 16).map(|i| (i % 16 * 16) as u8).collect();
        let mut rng = SplitMix64::new(9);
        for _ in 0..50 {
            let mut out = Vec::new();
            resized_crop_flip(&src, [1, 16, 16], 0.3, &mut rng, &mut out);
            let row = &out[5 * 16..6 * 16];
            let inc = row.windows(2).all(|w| w[1] >= w[0] - 1e-6);
            let dec = row.windows(2).all(|w| w[1] <= w[0] + 1e-6);
            assert!(inc || dec, "{row:?}");
            assert!(out.iter().all(|v| (0.0..=240.0 / 255.0 + 1e-6).contains(v)));
        }
        assert!(Augment::ResizedCropFlip { min_scale: 0.0 }.check().is_err());
    }
}
