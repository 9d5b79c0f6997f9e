//! MNIST-style preprocessing for people's images of digits, as the MNIST digits were made
//! (LeCun et al.): grey; inverted when the background is light (MNIST is white ink on black);
//! the paper's level subtracted, measured locally so that uneven light (a phone photo's
//! gradient, shadow and dark corners) is not taken for ink, and the contrast stretched; cropped
//! to the ink's bounding
//! box; scaled to fit 20x20 keeping the aspect ratio (antialiased); placed in 28x28 so that its
//! centre of mass is the image centre. Without it a photographed or scanned digit (dark ink on
//! light paper, anywhere in a large frame) is usually misclassified.

use anyhow::{Context, Result, bail};
use image::{GrayImage, Luma};

/// Side of the output image.
pub const SIDE: u32 = 28;
/// Side of the box the digit is scaled into.
pub const BOX: u32 = 20;
/// Images longer than this on either side are scaled down to it before preprocessing.
pub const WORK_SIDE: u32 = 1024;

/// The largest image [`decode`] accepts, in each direction (a photo of a digit needs far less;
/// a header may declare 65,535 x 65,535).
pub const MAX_SIDE: u32 = 8192;
/// The most memory the decoder may allocate for one image.
pub const MAX_ALLOC: u64 = 256 << 20;

/// Decodes a PNG, JPEG or PGM (P2 / P5) file's bytes into grey pixels. Images larger than
/// [`MAX_SIDE`] in either direction, or needing more than [`MAX_ALLOC`] to decode, are errors
/// before anything that size is allocated.
pub fn decode(bytes: &[u8]) -> Result<GrayImage> {
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        return decode_pgm(bytes);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read the image")?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    if reader.format().is_none() {
        bail!("not a PNG, JPEG or PGM image");
    }
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => anyhow::anyhow!(
            "image too large ({l}): at most {MAX_SIDE} x {MAX_SIDE} pixels and {} MiB to decode",
            MAX_ALLOC >> 20
        ),
        e => anyhow::anyhow!("not a PNG, JPEG or PGM image, or a damaged one: {e}"),
    })?;
    Ok(img.to_luma8())
}

/// The body of the `image_decode` fuzz target (`fuzz/`), here so that plain `cargo test`
/// replays its committed regression inputs: decode, then preprocess what decodes. Panics only
/// on a bug.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes `data` and makes an MNIST-style digit of what decodes; errors are fine.
    pub fn image(data: &[u8]) {
        if let Ok(img) = super::decode(data)
            && let Ok(p) = super::mnist_style(&img)
        {
            assert_eq!(p.pixels.len(), (super::SIDE * super::SIDE) as usize);
        }
    }
}

/// A PGM image: `P5` (binary) or `P2` (ASCII), maxval up to 65535 (scaled to 8 bits).
fn decode_pgm(bytes: &[u8]) -> Result<GrayImage> {
    // Header tokens: magic, width, height, maxval; `#` starts a comment to the end of line.
    let mut pos = 0;
    let mut tokens = Vec::new();
    while tokens.len() < 4 {
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'#') {
            if bytes[pos] == b'#' {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                pos += 1;
            }
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            bail!("truncated PGM header");
        }
        tokens.push(std::str::from_utf8(&bytes[start..pos]).unwrap_or("?"));
    }
    let num = |i: usize, what: &str| -> Result<u32> {
        tokens[i]
            .parse::<u32>()
            .ok()
            .filter(|v| *v > 0)
            .with_context(|| format!("PGM {what} is not a positive number: {:?}", tokens[i]))
    };
    let (w, h, max) = (num(1, "width")?, num(2, "height")?, num(3, "maxval")?);
    if max > 65535 || w > MAX_SIDE || h > MAX_SIDE {
        bail!("PGM of {w}x{h}, maxval {max}: too large (at most {MAX_SIDE} x {MAX_SIDE})");
    }
    let n = (w * h) as usize;
    let scale = |v: u32| ((v.min(max) * 255 + max / 2) / max) as u8;
    let pixels: Vec<u8> = if tokens[0] == "P5" {
        let data = &bytes[(pos + 1).min(bytes.len())..];
        let per = if max > 255 { 2 } else { 1 };
        if data.len() < n * per {
            bail!(
                "truncated PGM: {} pixel bytes, {w}x{h} needs {}",
                data.len(),
                n * per
            );
        }
        (0..n)
            .map(|i| {
                let v = if per == 2 {
                    u16::from_be_bytes([data[2 * i], data[2 * i + 1]]) as u32
                } else {
                    data[i] as u32
                };
                scale(v)
            })
            .collect()
    } else {
        let text = std::str::from_utf8(&bytes[pos..]).context("P2 PGM is not text")?;
        let vals: Vec<u32> = text
            .split_ascii_whitespace()
            .take(n)
            .map(|t| t.parse::<u32>())
            .collect::<Result<_, _>>()
            .context("P2 PGM has a pixel that is not a number")?;
        if vals.len() < n {
            bail!("truncated PGM: {} pixels, {w}x{h} needs {n}", vals.len());
        }
        vals.into_iter().map(scale).collect()
    };
    GrayImage::from_raw(w, h, pixels).context("PGM size")
}

/// What [`mnist_style`] did, for a `--verbose` report.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The 28x28 pixels, row-major, white ink on black.
    pub pixels: Vec<u8>,
    /// Whether the image was inverted (its background was light).
    pub inverted: bool,
    /// The ink's bounding box in the input: x, y, width, height.
    pub bbox: (u32, u32, u32, u32),
}

/// The paper's level under every pixel of `v` (ink bright, paper dark): the darkest value of
/// each block of about a sixteenth of the image's longer side, the darkest of each block's 3x3
/// neighbourhood (so that a block inside a thick stroke takes the paper beside it), smoothed
/// over 3x3 blocks and interpolated bilinearly between block centres.
fn paper_level(v: &[f32], w: u32, h: u32) -> Vec<f32> {
    let bs = (w.max(h) / 16).max(4);
    let (gw, gh) = (w.div_ceil(bs), h.div_ceil(bs));
    let mut grid = vec![f32::MAX; (gw * gh) as usize];
    for y in 0..h {
        for x in 0..w {
            let g = &mut grid[((y / bs) * gw + x / bs) as usize];
            *g = g.min(v[(y * w + x) as usize]);
        }
    }
    let around = |g: &[f32], gx: u32, gy: u32, f: &dyn Fn(&mut dyn Iterator<Item = f32>) -> f32| {
        let mut it = (gy.saturating_sub(1)..(gy + 2).min(gh)).flat_map(|yy| {
            (gx.saturating_sub(1)..(gx + 2).min(gw)).map(move |xx| g[(yy * gw + xx) as usize])
        });
        f(&mut it)
    };
    let min3 = |it: &mut dyn Iterator<Item = f32>| it.fold(f32::MAX, f32::min);
    let mean3 = |it: &mut dyn Iterator<Item = f32>| {
        let (s, n) = it.fold((0.0, 0.0), |(s, n), v| (s + v, n + 1.0));
        s / n
    };
    let eroded: Vec<f32> = (0..gw * gh)
        .map(|i| around(&grid, i % gw, i / gw, &min3))
        .collect();
    let smooth: Vec<f32> = (0..gw * gh)
        .map(|i| around(&eroded, i % gw, i / gw, &mean3))
        .collect();
    let at = |gx: i64, gy: i64| {
        smooth[(gy.clamp(0, gh as i64 - 1) * gw as i64 + gx.clamp(0, gw as i64 - 1)) as usize]
    };
    let mut out = Vec::with_capacity(v.len());
    for y in 0..h {
        // Position in block-centre coordinates.
        let fy = (y as f32 + 0.5) / bs as f32 - 0.5;
        let (y0, ty) = (fy.floor() as i64, fy - fy.floor());
        for x in 0..w {
            let fx = (x as f32 + 0.5) / bs as f32 - 0.5;
            let (x0, tx) = (fx.floor() as i64, fx - fx.floor());
            let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
            let bottom = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Turns a grey image of one digit (any size, either polarity) into an MNIST-style 28x28
/// image. An image with no ink (flat) is an error.
pub fn mnist_style(img: &GrayImage) -> Result<Prepared> {
    let (w0, h0) = img.dimensions();
    if w0 == 0 || h0 == 0 {
        bail!("empty image");
    }
    // A large photo is first brought down to WORK_SIDE (the digit keeps far more detail than
    // 20x20 needs), which bounds the memory and time of what follows.
    let scale = (w0.max(h0) as f32 / WORK_SIDE as f32).max(1.0);
    let small;
    let img = if scale > 1.0 {
        let (w, h) = (
            ((w0 as f32 / scale).round() as u32).max(1),
            ((h0 as f32 / scale).round() as u32).max(1),
        );
        small = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
        &small
    } else {
        img
    };
    let (w, h) = img.dimensions();
    // Background: the median of the border pixels; light background -> dark ink: invert.
    let mut border: Vec<u8> = (0..w)
        .flat_map(|x| [img.get_pixel(x, 0)[0], img.get_pixel(x, h - 1)[0]])
        .chain((0..h).flat_map(|y| [img.get_pixel(0, y)[0], img.get_pixel(w - 1, y)[0]]))
        .collect();
    border.sort_unstable();
    let background = border[border.len() / 2];
    let inverted = background > 127;
    // Ink is bright from here on; the paper's level is measured locally, so a page under
    // uneven light (a phone photo: a gradient, a shadow, dark corners) is not taken for ink.
    let values: Vec<f32> = img
        .pixels()
        .map(|p| if inverted { 255 - p[0] } else { p[0] } as f32)
        .collect();
    let paper = paper_level(&values, w, h);
    let inks: Vec<f32> = values
        .iter()
        .zip(&paper)
        .map(|(v, p)| (v - p).max(0.0))
        .collect();
    let ink_at = |x: u32, y: u32| inks[(y * w + x) as usize];
    let peak = inks.iter().copied().fold(0.0f32, f32::max);
    if peak < 32.0 {
        bail!("no digit found: the image is flat (contrast {peak:.0} of 255)");
    }
    // Ink: more than a fifth of the peak (paper texture and JPEG noise stay out of the box).
    let threshold = 0.2 * peak;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink_at(x, y) > threshold {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    // Stretched ink, cropped: 0 background, 255 the strongest ink.
    let crop = GrayImage::from_fn(bw, bh, |x, y| {
        let v = ink_at(x0 + x, y0 + y) / peak * 255.0;
        Luma([v.round().clamp(0.0, 255.0) as u8])
    });
    // Into 20x20, keeping the aspect ratio.
    let s = BOX as f32 / bw.max(bh) as f32;
    let (sw, sh) = (
        ((bw as f32 * s).round() as u32).clamp(1, BOX),
        ((bh as f32 * s).round() as u32).clamp(1, BOX),
    );
    let scaled = image::imageops::resize(&crop, sw, sh, image::imageops::FilterType::CatmullRom);
    // Centre of mass of the scaled digit, placed at the centre of 28x28.
    let (mut m, mut mx, mut my) = (0f64, 0f64, 0f64);
    for (x, y, p) in scaled.enumerate_pixels() {
        let v = p[0] as f64;
        m += v;
        mx += v * (x as f64 + 0.5);
        my += v * (y as f64 + 0.5);
    }
    let (cx, cy) = if m > 0.0 {
        (mx / m, my / m)
    } else {
        (sw as f64 / 2.0, sh as f64 / 2.0)
    };
    let half = SIDE as f64 / 2.0;
    let (ox, oy) = ((half - cx).round() as i64, (half - cy).round() as i64);
    let mut pixels = vec![0u8; (SIDE * SIDE) as usize];
    for (x, y, p) in scaled.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..SIDE as i64).contains(&tx) && (0..SIDE as i64).contains(&ty) {
            pixels[(ty * SIDE as i64 + tx) as usize] = p[0];
        }
    }
    Ok(Prepared {
        pixels,
        inverted,
        bbox: if scale > 1.0 {
            let up = |v: u32| (v as f32 * scale).round() as u32;
            (up(x0), up(y0), up(bw), up(bh))
        } else {
            (x0, y0, bw, bh)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgm_both_flavours_and_bad_headers() {
        let p5 = [
            b"P5\n# a comment\n3 2\n255\n".as_slice(),
            &[0, 128, 255, 1, 2, 3],
        ]
        .concat();
        let img = decode(&p5).unwrap();
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.as_raw(), &[0, 128, 255, 1, 2, 3]);
        let p2 = b"P2 2 2 15\n0 15\n 7 8\n";
        assert_eq!(decode(p2).unwrap().as_raw(), &[0, 255, 119, 136]);
        let e = decode(b"P5 3 2 255\n\x00\x01").unwrap_err().to_string();
        assert!(e.contains("truncated PGM"), "{e}");
        let e = decode(b"P5 0 2 255\n").unwrap_err().to_string();
        assert!(e.contains("width"), "{e}");
        let e = format!("{:#}", decode(b"GIF89a....").unwrap_err());
        assert!(e.contains("not a PNG, JPEG or PGM"), "{e}");
    }

    #[test]
    fn a_dark_stroke_on_paper_becomes_a_centred_white_digit() {
        // A 3-pixel-wide vertical bar, dark on light grey, off-centre in a 100x60 frame.
        let img = GrayImage::from_fn(100, 60, |x, y| {
            if (70..73).contains(&x) && (10..50).contains(&y) {
                Luma([30])
            } else {
                Luma([220])
            }
        });
        let p = mnist_style(&img).unwrap();
        assert!(p.inverted);
        assert_eq!(p.bbox, (70, 10, 3, 40));
        // 40 rows -> 20; centred: rows 4..24, columns around 14.
        let rows: Vec<u32> = (0..SIDE)
            .filter(|&y| (0..SIDE).any(|x| p.pixels[(y * SIDE + x) as usize] > 128))
            .collect();
        assert_eq!((rows[0], *rows.last().unwrap()), (4, 23));
        let cols: Vec<u32> = (0..SIDE)
            .filter(|&x| (0..SIDE).any(|y| p.pixels[(y * SIDE + x) as usize] > 128))
            .collect();
        assert!(cols.iter().all(|c| (13..=14).contains(c)), "{cols:?}");
        assert_eq!(p.pixels.iter().copied().max(), Some(255));
    }

    #[test]
    fn uneven_light_is_not_ink() {
        // Paper from 235 (left) down to 150 (right), darker still by up to 40 towards the
        // bottom-right corner (a soft shadow), and a bar of ink 160 below the paper beside it:
        // only the bar is ink. With one paper level for the page (its border's median, as
        // before) the page's darker fifth was ink too: the box ran from the bar to the right
        // edge, top to bottom.
        let img = GrayImage::from_fn(200, 150, |x, y| {
            let shadow = 40.0
                * ((x as f32 - 120.0) / 80.0).clamp(0.0, 1.0)
                * ((y as f32 - 80.0) / 70.0).clamp(0.0, 1.0);
            let paper = 235.0 - 85.0 * x as f32 / 199.0 - shadow;
            let v = if (40..46).contains(&x) && (30..120).contains(&y) {
                paper - 160.0
            } else {
                paper
            };
            Luma([v.max(0.0) as u8])
        });
        let p = mnist_style(&img).unwrap();
        assert!(p.inverted);
        assert_eq!(p.bbox, (40, 30, 6, 90));
    }

    /// A PNG of `w` x `h` grey pixels as far as its header goes (IHDR, an empty IDAT, IEND).
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let chunk = |kind: &[u8], data: &[u8]| {
            let body = [kind, data].concat();
            let crc = device_infer::model::crc32(&body);
            [
                &(data.len() as u32).to_be_bytes()[..],
                &body,
                &crc.to_be_bytes(),
            ]
            .concat()
        };
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 0, 0, 0, 0]].concat();
        [
            &b"\x89PNG\r\n\x1a\n"[..],
            &chunk(b"IHDR", &ihdr),
            &chunk(b"IDAT", &[]),
            &chunk(b"IEND", &[]),
        ]
        .concat()
    }

    #[test]
    fn declared_sizes_past_the_limits_are_errors_before_any_allocation() {
        let e = format!("{:#}", decode(&png_header(65_535, 65_535)).unwrap_err());
        assert!(e.contains("image too large"), "{e}");
        // A real 8x8 JPEG whose frame header (SOF0) is patched to declare 65,535 x 65,535.
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&GrayImage::from_pixel(8, 8, Luma([128])))
            .unwrap();
        let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        let e = format!("{:#}", decode(&jpeg).unwrap_err());
        assert!(e.contains("image too large"), "{e}");
        let e = format!("{:#}", decode(b"P5 9000 10 255\n").unwrap_err());
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn a_large_photo_is_scaled_down_first() {
        // 3000 x 2000, a bar 30 px wide and 1000 tall: found, and its box in input pixels.
        let img = GrayImage::from_fn(3000, 2000, |x, y| {
            Luma([if (1500..1530).contains(&x) && (500..1500).contains(&y) {
                20
            } else {
                230
            }])
        });
        let p = mnist_style(&img).unwrap();
        let (x, y, w, h) = p.bbox;
        assert!(
            x.abs_diff(1500) <= 6 && y.abs_diff(500) <= 6,
            "{:?}",
            p.bbox
        );
        assert!(w.abs_diff(30) <= 9 && h.abs_diff(1000) <= 9, "{:?}", p.bbox);
    }

    #[test]
    fn a_flat_image_has_no_digit() {
        let e = mnist_style(&GrayImage::from_pixel(40, 40, Luma([200])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no digit found"), "{e}");
    }
}
