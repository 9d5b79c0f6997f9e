//! Multi-panel line figures, drawn with plotters into PNG and SVG from one description: the
//! figures of `host-train compare` (test accuracy against iterations, one panel per optimizer
//! or per model, optionally a mean with a band).
//!
//! PNG text uses an embedded DejaVu Sans subset (`assets/`), so figures look the same on every
//! machine and need no system fonts; SVG text names `sans-serif` for the viewer to render.

use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::train::MetricsRow;

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// (x, y) points, in order of x.
    pub points: Vec<(f64, f64)>,
    /// A shaded band around the line: (x, low, high) per point.
    pub band: Option<Vec<(f64, f64, f64)>>,
    /// Index into the palette, so that the same setting has the same colour in every panel.
    pub color: usize,
    /// Mark the last point with a cross (the run stopped there: it diverged).
    pub stopped: bool,
    /// Draw dashed (e.g. training accuracy beside the solid test accuracy).
    pub dashed: bool,
}

/// One chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// Its lines.
    pub curves: Vec<Curve>,
    /// Its own y range, instead of the figure's.
    pub y_range: Option<(f64, f64)>,
}

/// A figure: a title over a grid of panels sharing axis labels and y range.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The figure's title.
    pub title: String,
    /// A second, smaller line under the title (setting, data, how bands are made).
    pub subtitle: String,
    /// The charts, laid out left to right, top to bottom.
    pub panels: Vec<Panel>,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The y axis range, shared by all panels.
    pub y_range: (f64, f64),
    /// Where the legends go.
    pub legend: Legend,
}

/// Where a panel's legend sits inside the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    /// Lower right: for curves that rise to the top (a zoomed y axis).
    LowerRight,
    /// Middle right: for a 0-100 axis where failed runs lie along the bottom.
    MiddleRight,
}

/// Colours of the lines: matplotlib's "tab10", which readers of the seed's figures know.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

const PANEL_W: u32 = 520;
const PANEL_H: u32 = 380;
/// A figure of one panel is drawn larger.
const SINGLE_W: u32 = 760;
const SINGLE_H: u32 = 440;
const HEADER_H: u32 = 64;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are this crate's own asset, checked by a unit test.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

impl Figure {
    /// Columns and rows of the panel grid.
    pub fn layout(&self) -> (u32, u32) {
        let n = self.panels.len().max(1) as u32;
        let cols = n.min(3);
        (cols, n.div_ceil(cols))
    }

    /// Pixel size of the figure.
    pub fn size(&self) -> (u32, u32) {
        let (cols, rows) = self.layout();
        if cols * rows == 1 {
            return (SINGLE_W, HEADER_H + SINGLE_H);
        }
        (cols * PANEL_W, HEADER_H + rows * PANEL_H)
    }

    /// The figure as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        let (w, h) = self.size();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("cannot draw the figure: {e}"))?;
        }
        use image::ImageEncoder as _;
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
            .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
            .context("cannot encode the figure as PNG")?;
        Ok(out)
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String> {
        let (w, h) = self.size();
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("cannot draw the figure: {e}"))?;
        }
        Ok(s)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        // SVG needs the font too: plotters lays text out with it.
        register_font();
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the figure: {e}");
        root.fill(&WHITE).map_err(err)?;
        let (header, body) = root.split_vertically(HEADER_H);
        let (w, _) = header.dim_in_pixel();
        let centre = |size| {
            TextStyle::from(("sans-serif", size).into_font())
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ))
                .color(&BLACK)
        };
        header
            .draw_text(&self.title, &centre(20), (w as i32 / 2, 8))
            .map_err(err)?;
        header
            .draw_text(
                &self.subtitle,
                &centre(14).color(&RGBColor(0x44, 0x44, 0x44)),
                (w as i32 / 2, 36),
            )
            .map_err(err)?;
        let (cols, rows) = self.layout();
        let areas = body.split_evenly((rows as usize, cols as usize));
        let x_max = self
            .panels
            .iter()
            .flat_map(|p| &p.curves)
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        for (panel, area) in self.panels.iter().zip(areas) {
            let (y_lo, y_hi) = panel.y_range.unwrap_or(self.y_range);
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..x_max, y_lo..y_hi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(6)
                .y_labels(8)
                .x_label_formatter(&|x| format_tick(*x))
                .y_label_formatter(&|y| format_tick(*y))
                .light_line_style(RGBColor(0xee, 0xee, 0xee))
                .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for c in &panel.curves {
                let color = PALETTE[c.color % PALETTE.len()];
                if let Some(band) = &c.band {
                    let y = |v: f64| v.clamp(y_lo, y_hi);
                    let mut poly: Vec<(f64, f64)> = band.iter().map(|b| (b.0, y(b.2))).collect();
                    poly.extend(band.iter().rev().map(|b| (b.0, y(b.1))));
                    chart
                        .draw_series(std::iter::once(Polygon::new(
                            poly,
                            color.mix(0.18).filled(),
                        )))
                        .map_err(err)?;
                }
                let clamp = |(x, y): (f64, f64)| (x, y.clamp(y_lo, y_hi));
                let inside = |p: &(f64, f64)| (y_lo..=y_hi).contains(&p.1);
                let style = color.stroke_width(2);
                for piece in clip(&c.points, y_lo, y_hi) {
                    if c.dashed {
                        chart
                            .draw_series(DashedLineSeries::new(piece, 6, 4, style))
                            .map_err(err)?;
                    } else {
                        chart
                            .draw_series(LineSeries::new(piece, style))
                            .map_err(err)?;
                    }
                }
                // The legend entry, drawn once however many pieces the clipping made.
                chart
                    .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                    .map_err(err)?
                    .label(&c.label)
                    .legend(move |(x, y): (i32, i32)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], style)
                    });
                if let [only] = c.points.as_slice()
                    && inside(only)
                {
                    // A single evaluation: a line of one point would not show.
                    chart
                        .draw_series(std::iter::once(Circle::new(*only, 4, color.filled())))
                        .map_err(err)?;
                }
                if c.stopped
                    && let Some(&last) = c.points.last()
                {
                    chart
                        .draw_series(std::iter::once(Cross::new(clamp(last), 6, style)))
                        .map_err(err)?;
                }
            }
            chart
                .configure_series_labels()
                .position(match self.legend {
                    Legend::LowerRight => SeriesLabelPosition::LowerRight,
                    Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
                })
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0xbb, 0xbb, 0xbb))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The parts of a polyline inside `lo..=hi` in y: a segment that crosses a bound ends (or
/// starts) where it crosses it, so a curve leaves a zoomed chart at its edge instead of being
/// flattened along it.
fn clip(points: &[(f64, f64)], lo: f64, hi: f64) -> Vec<Vec<(f64, f64)>> {
    let inside = |y: f64| (lo..=hi).contains(&y);
    // Where the segment a-b crosses y = bound.
    let cross = |a: (f64, f64), b: (f64, f64), bound: f64| {
        let t = (bound - a.1) / (b.1 - a.1);
        (a.0 + t * (b.0 - a.0), bound)
    };
    let mut pieces: Vec<Vec<(f64, f64)>> = vec![];
    let mut cur: Vec<(f64, f64)> = vec![];
    for (i, &p) in points.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| points[j]);
        match (prev, inside(p.1)) {
            (_, true) if !cur.is_empty() => cur.push(p),
            (Some(q), true) if !inside(q.1) => {
                // Entering: from the bound it crossed.
                let bound = if q.1 < lo { lo } else { hi };
                let entry = cross(q, p, bound);
                if entry != p {
                    cur.push(entry);
                }
                cur.push(p);
            }
            (_, true) => cur.push(p),
            (Some(q), false) if inside(q.1) => {
                let bound = if p.1 < lo { lo } else { hi };
                cur.push(cross(q, p, bound));
                pieces.push(std::mem::take(&mut cur));
            }
            (Some(q), false) if (q.1 < lo && p.1 > hi) || (q.1 > hi && p.1 < lo) => {
                // Straight through the chart.
                let (b0, b1) = if q.1 < lo { (lo, hi) } else { (hi, lo) };
                pieces.push(vec![cross(q, p, b0), cross(q, p, b1)]);
            }
            _ => {}
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

/// Axis tick text: integers without a fraction, thousands as `k`.
fn format_tick(x: f64) -> String {
    if x >= 1000.0 && (x / 1000.0).fract().abs() < 1e-9 {
        format!("{}k", x / 1000.0)
    } else if x.fract().abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A y range that shows `values` (percent) with a margin, within 0..100: on multiples of 5, or
/// of 1 when the values span less than 10 points (so the last tenths of a percent show).
pub fn percent_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 100.0);
    }
    let (step, margin) = if hi - lo < 10.0 {
        (1.0, 0.2)
    } else {
        (5.0, 1.0)
    };
    let lo = (((lo - margin) / step).floor() * step).max(0.0);
    let hi = (((hi + margin) / step).ceil() * step).min(100.0);
    (lo, hi.max(lo + step))
}

/// Test accuracy (solid) against iterations for each run, and with `train` its training
/// accuracy (dashed, same colour): the figure of `host-train plot` and of each run's
/// `accuracy.svg`.
pub fn accuracy_figure(title: &str, runs: &[(String, &[MetricsRow])], train: bool) -> Figure {
    let mut curves = vec![];
    for (i, (label, rows)) in runs.iter().enumerate() {
        let last = rows.last().map_or(f64::NAN, |r| 100.0 * r.test_acc);
        let series = |acc: fn(&MetricsRow) -> f64| {
            rows.iter()
                .map(|r| (r.iteration as f64, 100.0 * acc(r)))
                .filter(|p| p.1.is_finite())
                .collect::<Vec<_>>()
        };
        curves.push(Curve {
            label: format!("{label}: test {last:.2}%"),
            points: series(|r| r.test_acc),
            band: None,
            color: i,
            stopped: false,
            dashed: false,
        });
        if train {
            curves.push(Curve {
                label: format!("{label}: train"),
                points: series(|r| r.train_acc),
                band: None,
                color: i,
                stopped: false,
                dashed: true,
            });
        }
    }
    let y_range = percent_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)));
    Figure {
        title: title.to_string(),
        subtitle: if train {
            "solid: test accuracy, dashed: training accuracy (mean since the previous evaluation)"
                .into()
        } else {
            "test accuracy".into()
        },
        panels: vec![Panel {
            title: String::new(),
            curves,
            y_range: None,
        }],
        x_label: "iteration".into(),
        y_label: "accuracy (%)".into(),
        y_range,
        legend: Legend::LowerRight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(panels: usize) -> Figure {
        Figure {
            title: "MNIST: lenet5".into(),
            subtitle: "batch 64".into(),
            panels: (0..panels)
                .map(|p| Panel {
                    y_range: None,
                    title: format!("panel {p}"),
                    curves: vec![
                        Curve {
                            label: "lr 0.01".into(),
                            points: vec![(0.0, 10.0), (100.0, 80.0), (200.0, 95.0)],
                            band: Some(vec![
                                (0.0, 9.0, 11.0),
                                (100.0, 75.0, 85.0),
                                (200.0, 94.0, 96.0),
                            ]),
                            color: 0,
                            stopped: false,
                            dashed: false,
                        },
                        Curve {
                            label: "lr 0.1 (diverged)".into(),
                            points: vec![(0.0, 10.0), (100.0, 9.8)],
                            band: None,
                            color: 1,
                            stopped: true,
                            dashed: false,
                        },
                    ],
                })
                .collect(),
            x_label: "iteration".into(),
            y_label: "test accuracy (%)".into(),
            y_range: (0.0, 100.0),
            legend: Legend::MiddleRight,
        }
    }

    #[test]
    fn the_embedded_font_parses() {
        assert!(plotters::style::register_font("test-font", FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn png_has_the_layout_size_and_text_pixels() {
        let f = figure(5);
        assert_eq!(f.layout(), (3, 2));
        let png = f.png().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (3 * PANEL_W, HEADER_H + 2 * PANEL_H));
        // The title is drawn: dark pixels in the header band (text needs the embedded font).
        let dark = (0..HEADER_H)
            .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 50, "only {dark} dark pixels in the title band");
        // The first line's colour is there.
        let c = PALETTE[0];
        assert!(img.pixels().any(|p| p.0 == [c.0, c.1, c.2]));
    }

    #[test]
    fn svg_names_every_series_and_panel() {
        let svg = figure(2).svg().unwrap();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("lr 0.1 (diverged)").count(), 2);
        assert!(svg.contains("panel 0") && svg.contains("panel 1"));
        assert!(svg.contains("test accuracy (%)"));
    }

    #[test]
    fn accuracy_figure_has_a_solid_and_a_dashed_curve_per_run() {
        let row = |iteration, test_acc| MetricsRow {
            iteration,
            epoch: 0.0,
            lr: 1e-3,
            train_loss: 0.1,
            train_acc: test_acc - 0.01,
            test_acc,
            images_per_s: 1000.0,
        };
        let a = [row(100, 0.9), row(200, 0.95)];
        let b = [row(100, 0.8), row(200, 0.97)];
        let f = accuracy_figure(
            "runs <compared>",
            &[("adam".into(), &a), ("sgd".into(), &b)],
            true,
        );
        let c = &f.panels[0].curves;
        assert_eq!(c.len(), 4);
        assert_eq!(
            (c[0].dashed, c[1].dashed, c[1].color, c[2].color),
            (false, true, 0, 1)
        );
        assert_eq!(c[2].label, "sgd: test 97.00%");
        assert_eq!(f.y_range, (75.0, 100.0));
        let svg = f.svg().unwrap();
        assert!(svg.contains("runs &lt;compared&gt;") && svg.contains("adam: train"));
        assert!(f.png().is_ok());
    }

    #[test]
    fn clipping_cuts_curves_at_the_bounds() {
        let pts = [(0.0, 10.0), (10.0, 90.0), (20.0, 96.0), (30.0, 99.0)];
        assert_eq!(
            clip(&pts, 90.0, 100.0),
            [vec![(10.0, 90.0), (20.0, 96.0), (30.0, 99.0)]]
        );
        let pts = [(0.0, 80.0), (10.0, 100.0)];
        assert_eq!(clip(&pts, 90.0, 100.0), [vec![(5.0, 90.0), (10.0, 100.0)]]);
        let pts = [(0.0, 95.0), (10.0, 85.0), (20.0, 95.0)];
        assert_eq!(
            clip(&pts, 90.0, 100.0),
            [
                vec![(0.0, 95.0), (5.0, 90.0)],
                vec![(15.0, 90.0), (20.0, 95.0)]
            ]
        );
        assert_eq!(
            clip(&[(0.0, 0.0), (10.0, 200.0)], 50.0, 100.0),
            [vec![(2.5, 50.0), (5.0, 100.0)]]
        );
        assert!(clip(&[(0.0, 1.0), (1.0, 2.0)], 50.0, 100.0).is_empty());
    }

    #[test]
    fn ranges_and_ticks() {
        assert_eq!(percent_range([97.2, 99.1]), (97.0, 100.0));
        assert_eq!(percent_range([91.0, 99.1]), (90.0, 100.0));
        assert_eq!(percent_range([11.0, 63.3]), (10.0, 65.0));
        assert_eq!(percent_range([f64::NAN]), (0.0, 100.0));
        assert_eq!(format_tick(2000.0), "2k");
        assert_eq!(format_tick(250.0), "250");
    }
}
