//! Draws the handwritten-digit test images of `classify/testdata/drawn/`: digits no training set
//! contains, as a person would hand them to `lenet-classify`.
//!
//! They are drawn, not photographed: each digit is a pen path written out below by hand (three
//! styles per class, e.g. a 1 with and without its flag and base, an open and a closed 4, a 7
//! with a crossbar), traced with a pen of varying pressure, slant, size and position onto a page,
//! and the page is then made to look like one of four things:
//!
//! - `scan`: white paper, black ink, PNG, the digit well lit;
//! - `photo`: off-white paper under uneven light with a shadow, blue ballpoint, sensor noise,
//!   camera blur, JPEG at quality 70, the digit a third of a 640x480 frame, rotated a little;
//! - `pencil`: grey graphite with grain on textured paper, low contrast, JPEG;
//! - `notebook`: a photo of ruled paper (faint blue lines every 24 px) with black ink.
//!
//! Four images per class (styles a, b, c and a again), 40 in all, deterministic (a fixed seed).
//! What they are not: photographs of real paper. Rendering stands in for a camera here; real
//! photos belong beside them.
//!
//!     cargo run --release -p lenet-classify --example draw_digits -- classify/testdata/drawn

use std::f32::consts::PI;
use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

type Pt = (f32, f32);

/// One pen stroke: straight segments between the points, or a smooth curve through them.
enum Stroke {
    Poly(Vec<Pt>),
    Smooth(Vec<Pt>),
}
use Stroke::{Poly, Smooth};

/// Points on an ellipse arc; angles in degrees, 0 to the right, growing clockwise (y is down).
fn arc(cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32) -> Vec<Pt> {
    let n = 24;
    (0..=n)
        .map(|i| {
            let a = (from + (to - from) * i as f32 / n as f32) * PI / 180.0;
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// The pen paths: `styles(d)[s]` for digit d, style s, in a unit box (x right, y down).
fn styles(d: u8) -> Vec<Vec<Stroke>> {
    match d {
        0 => vec![
            vec![Smooth(arc(0.5, 0.5, 0.28, 0.42, -100.0, 265.0))],
            vec![Smooth(arc(0.5, 0.5, 0.21, 0.44, -80.0, 278.0))],
            vec![Smooth(arc(0.5, 0.52, 0.31, 0.4, -120.0, 228.0))],
        ],
        1 => vec![
            vec![Poly(vec![(0.53, 0.07), (0.47, 0.93)])],
            vec![Poly(vec![(0.33, 0.27), (0.56, 0.07), (0.55, 0.93)])],
            vec![
                Poly(vec![(0.36, 0.24), (0.55, 0.07), (0.55, 0.92)]),
                Poly(vec![(0.34, 0.92), (0.74, 0.92)]),
            ],
        ],
        2 => vec![
            vec![
                Smooth(vec![
                    (0.25, 0.28),
                    (0.4, 0.1),
                    (0.62, 0.1),
                    (0.74, 0.28),
                    (0.68, 0.48),
                    (0.45, 0.7),
                    (0.22, 0.92),
                ]),
                Poly(vec![(0.22, 0.92), (0.8, 0.9)]),
            ],
            vec![Smooth(vec![
                (0.22, 0.35),
                (0.3, 0.15),
                (0.5, 0.07),
                (0.7, 0.15),
                (0.75, 0.35),
                (0.6, 0.55),
                (0.3, 0.8),
                (0.2, 0.92),
                (0.45, 0.88),
                (0.8, 0.9),
            ])],
            vec![
                Smooth(vec![(0.25, 0.22), (0.5, 0.07), (0.72, 0.22), (0.68, 0.42)]),
                Poly(vec![(0.68, 0.42), (0.24, 0.9), (0.78, 0.9)]),
            ],
        ],
        3 => vec![
            vec![
                Smooth(vec![
                    (0.25, 0.15),
                    (0.5, 0.06),
                    (0.72, 0.18),
                    (0.65, 0.38),
                    (0.45, 0.47),
                ]),
                Smooth(vec![
                    (0.45, 0.47),
                    (0.7, 0.55),
                    (0.75, 0.75),
                    (0.55, 0.92),
                    (0.25, 0.85),
                ]),
            ],
            vec![
                Poly(vec![(0.25, 0.1), (0.72, 0.1), (0.45, 0.42)]),
                Smooth(vec![
                    (0.45, 0.42),
                    (0.7, 0.52),
                    (0.74, 0.74),
                    (0.52, 0.92),
                    (0.24, 0.84),
                ]),
            ],
            vec![Smooth(vec![
                (0.22, 0.2),
                (0.45, 0.06),
                (0.7, 0.16),
                (0.66, 0.36),
                (0.42, 0.48),
                (0.68, 0.56),
                (0.74, 0.78),
                (0.5, 0.93),
                (0.22, 0.82),
            ])],
        ],
        4 => vec![
            vec![
                Poly(vec![(0.6, 0.08), (0.22, 0.62), (0.8, 0.62)]),
                Poly(vec![(0.62, 0.3), (0.62, 0.93)]),
            ],
            vec![
                Poly(vec![(0.28, 0.08), (0.24, 0.55), (0.78, 0.55)]),
                Poly(vec![(0.65, 0.1), (0.65, 0.93)]),
            ],
            vec![
                Poly(vec![(0.5, 0.1), (0.2, 0.6), (0.82, 0.6)]),
                Poly(vec![(0.66, 0.08), (0.64, 0.94)]),
            ],
        ],
        5 => vec![
            vec![
                Poly(vec![(0.72, 0.08), (0.32, 0.08), (0.28, 0.42)]),
                Smooth(vec![
                    (0.28, 0.42),
                    (0.5, 0.36),
                    (0.72, 0.5),
                    (0.72, 0.75),
                    (0.5, 0.92),
                    (0.24, 0.84),
                ]),
            ],
            vec![
                Poly(vec![(0.32, 0.1), (0.28, 0.44)]),
                Smooth(vec![
                    (0.28, 0.44),
                    (0.55, 0.38),
                    (0.74, 0.55),
                    (0.7, 0.8),
                    (0.45, 0.93),
                    (0.24, 0.85),
                ]),
                Poly(vec![(0.32, 0.1), (0.75, 0.08)]),
            ],
            vec![Smooth(vec![
                (0.7, 0.1),
                (0.35, 0.12),
                (0.3, 0.45),
                (0.62, 0.42),
                (0.76, 0.66),
                (0.6, 0.9),
                (0.3, 0.88),
            ])],
        ],
        6 => vec![
            vec![Smooth(vec![
                (0.68, 0.08),
                (0.45, 0.2),
                (0.28, 0.5),
                (0.3, 0.8),
                (0.5, 0.93),
                (0.7, 0.8),
                (0.7, 0.6),
                (0.5, 0.5),
                (0.3, 0.62),
            ])],
            vec![Smooth(vec![
                (0.62, 0.06),
                (0.38, 0.35),
                (0.28, 0.7),
                (0.42, 0.92),
                (0.66, 0.86),
                (0.7, 0.64),
                (0.5, 0.52),
                (0.3, 0.66),
            ])],
            vec![Smooth(vec![
                (0.7, 0.12),
                (0.5, 0.06),
                (0.3, 0.3),
                (0.25, 0.7),
                (0.45, 0.93),
                (0.72, 0.78),
                (0.65, 0.52),
                (0.4, 0.52),
                (0.27, 0.68),
            ])],
        ],
        7 => vec![
            vec![Poly(vec![(0.22, 0.1), (0.78, 0.1), (0.42, 0.93)])],
            vec![
                Poly(vec![(0.2, 0.12), (0.8, 0.1), (0.45, 0.92)]),
                Poly(vec![(0.38, 0.5), (0.74, 0.5)]),
            ],
            vec![
                Poly(vec![(0.22, 0.1), (0.78, 0.08)]),
                Smooth(vec![(0.78, 0.08), (0.62, 0.4), (0.52, 0.7), (0.5, 0.93)]),
            ],
        ],
        8 => vec![
            vec![Smooth(vec![
                (0.62, 0.14),
                (0.5, 0.07),
                (0.32, 0.17),
                (0.38, 0.36),
                (0.62, 0.56),
                (0.7, 0.78),
                (0.5, 0.93),
                (0.3, 0.8),
                (0.36, 0.58),
                (0.62, 0.38),
                (0.68, 0.2),
                (0.56, 0.08),
            ])],
            vec![
                Smooth(arc(0.5, 0.28, 0.18, 0.2, -90.0, 275.0)),
                Smooth(arc(0.5, 0.7, 0.23, 0.23, -90.0, 275.0)),
            ],
            vec![Smooth(vec![
                (0.66, 0.16),
                (0.52, 0.06),
                (0.34, 0.14),
                (0.36, 0.34),
                (0.56, 0.5),
                (0.72, 0.72),
                (0.56, 0.93),
                (0.32, 0.86),
                (0.3, 0.64),
                (0.52, 0.46),
                (0.7, 0.28),
                (0.62, 0.1),
            ])],
        ],
        _ => vec![
            vec![
                Smooth(arc(0.48, 0.3, 0.22, 0.21, 0.0, 360.0)),
                Poly(vec![(0.7, 0.3), (0.66, 0.93)]),
            ],
            vec![
                Smooth(arc(0.48, 0.3, 0.21, 0.2, 0.0, 360.0)),
                Smooth(vec![(0.69, 0.3), (0.68, 0.65), (0.55, 0.9), (0.35, 0.88)]),
            ],
            vec![
                Smooth(arc(0.5, 0.28, 0.2, 0.2, 0.0, 360.0)),
                Poly(vec![(0.7, 0.28), (0.55, 0.94)]),
            ],
        ],
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal (sum of four uniforms), mean 0, sd `sd`.
    fn normal(&mut self, sd: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform(-1.0, 1.0)).sum();
        s * sd * (3.0f32 / 4.0).sqrt()
    }
}

/// Catmull-Rom through the points, `per` samples per span.
fn smooth(p: &[Pt], per: usize) -> Vec<Pt> {
    if p.len() < 3 {
        return p.to_vec();
    }
    let at = |i: isize| p[i.clamp(0, p.len() as isize - 1) as usize];
    let mut out = Vec::new();
    for i in 0..p.len() as isize - 1 {
        let (p0, p1, p2, p3) = (at(i - 1), at(i), at(i + 1), at(i + 2));
        for k in 0..per {
            let t = k as f32 / per as f32;
            let (t2, t3) = (t * t, t * t * t);
            let f = |a: f32, b: f32, c: f32, d: f32| {
                0.5 * (2.0 * b
                    + (c - a) * t
                    + (2.0 * a - 5.0 * b + 4.0 * c - d) * t2
                    + (3.0 * b - a - 3.0 * c + d) * t3)
            };
            out.push((f(p0.0, p1.0, p2.0, p3.0), f(p0.1, p1.1, p2.1, p3.1)));
        }
    }
    out.push(p[p.len() - 1]);
    out
}

/// How the page looks.
#[derive(Clone, Copy)]
enum Look {
    Scan,
    Photo,
    Pencil,
    Notebook,
}

impl Look {
    fn name(self) -> &'static str {
        match self {
            Look::Scan => "scan",
            Look::Photo => "photo",
            Look::Pencil => "pencil",
            Look::Notebook => "notebook",
        }
    }
}

/// Draws digit `d` in style `s` on a page that looks like `look`.
fn draw(d: u8, s: usize, look: Look, rng: &mut Rng) -> RgbImage {
    let (w, h) = match look {
        Look::Scan => (300, 360),
        _ => (640, 480),
    };
    // Where the digit goes and how it is written.
    let size = h as f32 * rng.uniform(0.35, 0.6);
    let aspect = rng.uniform(0.7, 0.95);
    let (bw, bh) = (size * aspect, size);
    let x0 = rng.uniform(0.1 * w as f32, w as f32 - bw - 0.1 * w as f32);
    let y0 = rng.uniform(0.08 * h as f32, h as f32 - bh - 0.08 * h as f32);
    let slant = rng.uniform(-0.12, 0.22); // most hands lean right
    let rot = match look {
        Look::Scan => 0.0,
        _ => rng.uniform(-8.0, 8.0) * PI / 180.0,
    };
    let pen = size * rng.uniform(0.035, 0.07);
    let (cx, cy) = (x0 + bw / 2.0, y0 + bh / 2.0);
    let place = |(u, v): Pt| -> Pt {
        let x = x0 + (u + (0.5 - v) * slant) * bw;
        let y = y0 + v * bh;
        let (dx, dy) = (x - cx, y - cy);
        (
            cx + dx * rot.cos() - dy * rot.sin(),
            cy + dx * rot.sin() + dy * rot.cos(),
        )
    };
    // Ink coverage per pixel, from each stroke's segments.
    let mut ink = vec![0f32; (w * h) as usize];
    for stroke in styles(d).swap_remove(s) {
        let (pts, smoothed) = match stroke {
            Poly(p) => (p, false),
            Smooth(p) => (p, true),
        };
        // A hand never draws the same path twice: the stroke lands a little off, and each
        // control point wanders (less where there are many, as on an arc).
        let (ou, ov) = (rng.normal(0.01), rng.normal(0.01));
        let sd = 0.012 * (6.0 / pts.len() as f32).min(1.0);
        let jittered: Vec<Pt> = pts
            .iter()
            .map(|&(u, v)| (u + ou + rng.normal(sd), v + ov + rng.normal(sd)))
            .collect();
        let path = if smoothed {
            smooth(&jittered, 8)
        } else {
            jittered
        };
        let path: Vec<Pt> = path.into_iter().map(place).collect();
        let phase = rng.uniform(0.0, 2.0 * PI);
        let n = path.len().max(2) as f32;
        for (i, seg) in path.windows(2).enumerate() {
            // Pressure: the pen presses harder mid-stroke than where it lands and lifts.
            let t = i as f32 / n;
            let r = 0.5 * pen * (0.8 + 0.25 * (PI * t).sin() + 0.08 * (6.0 * t + phase).sin());
            let ((ax, ay), (bx, by)) = (seg[0], seg[1]);
            let (lx, ly) = (bx - ax, by - ay);
            let len2 = (lx * lx + ly * ly).max(1e-6);
            let xmin = (ax.min(bx) - r - 1.0).max(0.0) as u32;
            let xmax = ((ax.max(bx) + r + 1.0) as u32).min(w - 1);
            let ymin = (ay.min(by) - r - 1.0).max(0.0) as u32;
            let ymax = ((ay.max(by) + r + 1.0) as u32).min(h - 1);
            for y in ymin..=ymax {
                for x in xmin..=xmax {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let t = (((px - ax) * lx + (py - ay) * ly) / len2).clamp(0.0, 1.0);
                    let (qx, qy) = (ax + t * lx - px, ay + t * ly - py);
                    let c = (r + 0.5 - (qx * qx + qy * qy).sqrt()).clamp(0.0, 1.0);
                    let cell = &mut ink[(y * w + x) as usize];
                    *cell = cell.max(c);
                }
            }
        }
    }
    // The page.
    let (paper, ink_rgb, noise, grain): ([f32; 3], [f32; 3], f32, f32) = match look {
        Look::Scan => ([250.0, 250.0, 248.0], [25.0, 25.0, 30.0], 1.5, 0.0),
        Look::Photo => ([228.0, 222.0, 208.0], [35.0, 55.0, 150.0], 5.0, 0.0),
        Look::Pencil => ([238.0, 236.0, 228.0], [105.0, 105.0, 112.0], 4.0, 0.45),
        Look::Notebook => ([240.0, 240.0, 236.0], [30.0, 30.0, 34.0], 4.0, 0.0),
    };
    let light = match look {
        Look::Scan => 0.0,
        _ => rng.uniform(0.08, 0.2),
    };
    let light_dir = rng.uniform(0.0, 2.0 * PI);
    let mut img = RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
            // Uneven light: a gradient across the page and darker corners.
            let shade = 1.0
                - light * (u * light_dir.cos() + v * light_dir.sin() + 0.5)
                - 0.6 * light * (u * u + v * v);
            let mut c = ink[(y * w + x) as usize];
            if grain > 0.0 {
                c *= 1.0 - grain * rng.uniform(0.0, 1.0);
            }
            let line = matches!(look, Look::Notebook) && (y % 24 == 12);
            let mut px = [0u8; 3];
            for k in 0..3 {
                let base = if line {
                    [200.0, 212.0, 236.0][k]
                } else {
                    paper[k]
                };
                let v = (base * (1.0 - c) + ink_rgb[k] * c) * shade + rng.normal(noise);
                px[k] = v.round().clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(x, y, Rgb(px));
        }
    }
    if !matches!(look, Look::Scan) {
        img = image::imageops::blur(&img, rng.uniform(0.6, 1.3));
    }
    img
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "classify/testdata/drawn".into()),
    );
    std::fs::create_dir_all(&out).unwrap();
    let mut rng = Rng(0x5EED_D161_7500);
    let looks = [Look::Scan, Look::Photo, Look::Pencil, Look::Notebook];
    for d in 0..10u8 {
        for (i, look) in looks.iter().enumerate() {
            let s = i % 3;
            let img = draw(d, s, *look, &mut rng);
            let style = [b'a', b'b', b'c'][s] as char;
            let stem = format!("{d}-{style}-{}", look.name());
            let path = if matches!(look, Look::Scan) {
                let p = out.join(format!("{stem}.png"));
                img.save(&p).unwrap();
                p
            } else {
                let p = out.join(format!("{stem}.jpg"));
                let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
                JpegEncoder::new_with_quality(&mut f, 70)
                    .encode_image(&img)
                    .unwrap();
                p
            };
            println!("{}", path.display());
        }
    }
}
