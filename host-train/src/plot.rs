//! Accuracy-against-iterations plots as self-contained SVG (no plotting dependency, no fonts to
//! install): the seed's figure of test accuracy over training, for one run or several side by
//! side.

use std::fmt::Write as _;

use crate::train::MetricsRow;

/// One curve: a label and its metrics rows.
pub struct Series<'a> {
    /// Legend text.
    pub label: String,
    /// The rows to draw (test accuracy against iteration).
    pub rows: &'a [MetricsRow],
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// "Nice" tick step for a span: 1, 2 or 5 times a power of ten, about `n` ticks.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Test accuracy (%) against iterations for each series; with `train`, each series' training
/// accuracy dashed in the same colour. The y axis spans the data (not 0-100), so the last
/// tenths of a percent are visible.
pub fn accuracy_svg(title: &str, series: &[Series], train: bool) -> String {
    let (w, h) = (760.0, 440.0);
    let (left, right, top, bottom) = (70.0, 190.0, 40.0, 55.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let points = |r: &MetricsRow, train_acc: bool| {
        (
            r.iteration as f64,
            100.0 * if train_acc { r.train_acc } else { r.test_acc },
        )
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            s.rows.iter().flat_map(move |r| {
                std::iter::once(points(r, false)).chain(train.then(|| points(r, true)))
            })
        })
        .filter(|p| p.1.is_finite())
        .collect();
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let mut y_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut y_max = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 100.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(0.05);
    let (y_lo, y_hi) = ((y_min - pad).max(0.0), (y_max + pad).min(100.0));
    let sx = |x: f64| left + pw * x / x_max;
    let sy = |y: f64| top + ph * (1.0 - (y - y_lo) / (y_hi - y_lo).max(1e-9));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let ys = tick_step(y_hi - y_lo, 6.0);
    let mut y = (y_lo / ys).ceil() * ys;
    while y <= y_hi + 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let digits = if ys < 0.1 {
            2
        } else if ys < 1.0 {
            1
        } else {
            0
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{y:.digits$}</text>"#,
            left - 6.0,
            py + 4.0
        );
        y += ys;
    }
    let xs = tick_step(x_max, 6.0);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{x}</text>"#,
            top + ph + 18.0
        );
        x += xs;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">iteration</text>"#,
        left + pw / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">accuracy (%)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    // Curves and legend.
    for (i, se) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for (train_acc, dash) in [(false, ""), (true, r#" stroke-dasharray="5 4""#)] {
            if train_acc && !train {
                continue;
            }
            let pts: Vec<String> = se
                .rows
                .iter()
                .map(|r| points(r, train_acc))
                .filter(|p| p.1.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                pts.join(" ")
            );
        }
        let ly = top + 10.0 + 34.0 * i as f64;
        let last = se
            .rows
            .last()
            .map(|r| 100.0 * r.test_acc)
            .unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/>"#,
            left + pw + 12.0,
            left + pw + 32.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 38.0,
            ly + 4.0,
            escape(&se.label)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#555">test {last:.2}%</text>"##,
            left + pw + 38.0,
            ly + 18.0
        );
    }
    if train {
        let ly = top + 10.0 + 34.0 * series.len() as f64;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{ly:.1}" fill="#555">dashed: train accuracy</text>"##,
            left + pw + 12.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(iteration: usize, test_acc: f64) -> MetricsRow {
        MetricsRow {
            iteration,
            epoch: iteration as f64 / 100.0,
            lr: 1e-3,
            train_loss: 0.1,
            train_acc: test_acc - 0.01,
            test_acc,
            images_per_s: 1000.0,
        }
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(9380.0, 6.0), 2000.0);
        assert!((tick_step(1.2, 6.0) - 0.2).abs() < 1e-12);
        assert_eq!(tick_step(0.0, 6.0), tick_step(f64::MIN_POSITIVE * 6.0, 6.0));
    }

    #[test]
    fn svg_has_a_curve_per_series_and_a_legend() {
        let a = [row(100, 0.9), row(200, 0.95)];
        let b = [row(100, 0.8), row(200, 0.97)];
        let svg = accuracy_svg(
            "runs <compared>",
            &[
                Series {
                    label: "adam".into(),
                    rows: &a,
                },
                Series {
                    label: "sgd".into(),
                    rows: &b,
                },
            ],
            true,
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("runs &lt;compared&gt;") && svg.contains("test 97.00%"));
        // Points lie inside the plot area.
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for p in pts.split(' ') {
            let (x, y) = p.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (70.0..=570.0).contains(&x) && (40.0..=385.0).contains(&y),
                "{p}"
            );
        }
    }
}
