//! SVG charts of the bench's own figures (docs/measurements.md links
//! them): each section hands its numbers to `bars` or `lines`, and `save`
//! writes every chart drawn to `UFORGE_BENCH_PLOTS` (scripts/bench sets
//! `docs/plots` on a full run; `target/bench/plots` otherwise). No number
//! is typed in by hand: a chart is only ever drawn from what was measured.

use std::fmt::Write as _;
use std::sync::Mutex;

static CHARTS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

const WIDTH: f64 = 640.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round upper bound for an axis whose largest value is `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn header(out: &mut String, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
}

fn legend(out: &mut String, names: &[&str], y: f64) {
    for (i, name) in names.iter().enumerate() {
        let x = 70.0 + 150.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y - 10.0,
            COLOURS[i % COLOURS.len()],
            x + 16.0,
            y,
            escape(name)
        );
    }
}

/// Horizontal bars: for each group (a label), one bar per series, with
/// its value written at its end.
pub fn bars(name: &str, title: &str, unit: &str, series: &[&str], groups: &[(String, Vec<f64>)]) {
    let row = 18.0 * series.len() as f64 + 14.0;
    let height = 70.0 + row * groups.len() as f64 + 30.0;
    let max = nice_max(
        groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    let (left, plot) = (170.0, WIDTH - 170.0 - 80.0);
    let mut out = String::new();
    header(&mut out, height, title);
    legend(&mut out, series, 42.0);
    for (g, (label, values)) in groups.iter().enumerate() {
        let top = 60.0 + row * g as f64;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            top + row / 2.0,
            escape(label)
        );
        for (i, v) in values.iter().enumerate() {
            let y = top + 4.0 + 18.0 * i as f64;
            let w = (v / max * plot).max(1.0);
            let _ = write!(
                out,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="14" fill="{}"/><text x="{:.1}" y="{}">{} {}</text>"#,
                COLOURS[i % COLOURS.len()],
                left + w + 4.0,
                y + 11.0,
                fmt(*v),
                escape(unit)
            );
        }
    }
    out.push_str("</svg>\n");
    CHARTS.lock().unwrap().push((name.to_owned(), out));
}

/// Lines through (x, y) points, one per series, on linear axes from 0.
pub fn lines(
    name: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) {
    let height = 400.0;
    let (left, right, top, bottom) = (70.0, WIDTH - 20.0, 60.0, height - 50.0);
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = nice_max(all.clone().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_max(all.map(|p| p.1).fold(0.0, f64::max));
    let px = |x: f64| left + x / x_max * (right - left);
    let py = |y: f64| bottom - y / y_max * (bottom - top);
    let mut out = String::new();
    header(&mut out, height, title);
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    legend(&mut out, &names, 42.0);
    for i in 0..=4 {
        let (xv, yv) = (x_max * i as f64 / 4.0, y_max * i as f64 / 4.0);
        let _ = write!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            left - 6.0,
            py(yv) + 4.0,
            fmt(yv),
            bottom + 16.0,
            fmt(xv),
            y = py(yv),
            x = px(xv),
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"black\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        (left + right) / 2.0,
        height - 12.0,
        escape(x_label),
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        escape(y_label)
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(*x),
                py(*y)
            );
        }
    }
    out.push_str("</svg>\n");
    CHARTS.lock().unwrap().push((name.to_owned(), out));
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The quantiles q of sorted `values`, as (q in %, value) points.
pub fn quantiles(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Vec::new();
    }
    [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0]
        .iter()
        .map(|q| {
            let i = ((q / 100.0) * (v.len() - 1) as f64).round() as usize;
            (*q, v[i])
        })
        .collect()
}

/// Writes every chart drawn; returns where.
pub fn save() -> Option<String> {
    let charts = std::mem::take(&mut *CHARTS.lock().unwrap());
    if charts.is_empty() {
        return None;
    }
    let dir = std::env::var("UFORGE_BENCH_PLOTS").unwrap_or_else(|_| "target/bench/plots".into());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir).ok()?;
    for (name, svg) in &charts {
        std::fs::write(dir.join(format!("{name}.svg")), svg).ok()?;
    }
    Some(format!("{} chart(s) in {}", charts.len(), dir.display()))
}
