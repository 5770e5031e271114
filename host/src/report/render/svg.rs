//! A small SVG chart writer on top of maud.
//!
//! Why not plotters: its SVG backend lays text out with font metrics (a
//! font stack as a dependency), emits presentation attributes we cannot
//! annotate (no `<title>`/`<desc>`, `role`, per-bar `data-*` attributes for
//! tests and assistive technology), and its output is not meant to be
//! styled by the page's CSS (print, dark/light). The charts adeploy needs —
//! bars on a time axis, lines with reference lines, a heat strip — are a
//! few hundred lines here, escaped by maud like the rest of the page, and
//! deterministic (golden files stay stable).

use std::fmt::Write as _;

use maud::{Markup, html};

/// A linear map from a data domain to a pixel range.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        let (d0, d1) = if (d1 - d0).abs() < f64::EPSILON || !(d1 - d0).is_finite() {
            (d0, d0 + 1.0)
        } else {
            (d0, d1)
        };
        Scale { d0, d1, r0, r1 }
    }

    pub fn at(&self, v: f64) -> f64 {
        let t = (v - self.d0) / (self.d1 - self.d0);
        self.r0 + t.clamp(-0.05, 1.05) * (self.r1 - self.r0)
    }
}

/// About `count` round tick values covering `lo..=hi`.
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo || count == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / count as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A number with at most `digits` decimals and no trailing zeros.
pub fn num(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Seconds as people read them: `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "–".into();
    }
    if s < 1.0 {
        format!("{} ms", (s * 1000.0).round())
    } else if s < 60.0 {
        format!("{} s", num(s, 1))
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0).floor(),
            ((s % 3600.0) / 60.0).floor()
        )
    }
}

/// Bytes as people read them.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", num(v, 1), UNITS[u])
}

/// At most `max` points: the mean of each run of consecutive points (by
/// position), so a long series keeps its shape and the page its size.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .filter_map(|c| {
            let finite: Vec<&(f64, f64)> = c.iter().filter(|p| p.1.is_finite()).collect();
            if finite.is_empty() {
                return None;
            }
            let n = finite.len() as f64;
            Some((
                finite.iter().map(|p| p.0).sum::<f64>() / n,
                finite.iter().map(|p| p.1).sum::<f64>() / n,
            ))
        })
        .collect()
}

/// `points` attribute values of polylines; a non-finite value breaks the
/// line (one polyline per finite run).
pub fn polylines(points: &[(f64, f64)], x: &Scale, y: &Scale) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for &(px, py) in points {
        if !px.is_finite() || !py.is_finite() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        let _ = write!(cur, "{:.1},{:.1}", x.at(px), y.at(py));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// An accessible SVG: `role="img"`, a `<title>` and `<desc>` it is
/// labelled by, a viewBox that scales to the page width.
pub fn frame(id: &str, title: &str, desc: &str, width: f64, height: f64, body: Markup) -> Markup {
    let t = format!("{id}-title");
    let d = format!("{id}-desc");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" id=(id) role="img"
            aria-labelledby={(t) " " (d)}
            viewBox={"0 0 " (num(width, 0)) " " (num(height, 0))}
            preserveAspectRatio="xMinYMin meet" {
            title id=(t) { (title) }
            desc id=(d) { (desc) }
            (body)
        }
    }
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// CSS class (colour, dash).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot per point (few points) instead of a bare line.
    pub dots: bool,
}

/// A horizontal reference line (threshold) or a vertical band (rollback).
#[derive(Debug, Clone)]
pub enum Mark {
    HLine {
        y: f64,
        label: String,
        class: &'static str,
    },
    VBand {
        x0: f64,
        x1: f64,
        label: String,
        class: &'static str,
    },
}

/// A line chart on a numeric x axis.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub id: String,
    pub title: String,
    pub desc: String,
    pub width: f64,
    pub height: f64,
    /// Left margin (room for y labels); the timeline and the resource
    /// charts share it so their time axes line up.
    pub left: f64,
    pub x_domain: (f64, f64),
    pub y_domain: (f64, f64),
    pub x_label: fn(f64) -> String,
    pub y_label: fn(f64) -> String,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// A name shown in the left margin (small multiples).
    pub label: Option<String>,
}

impl LineChart {
    pub fn render(&self) -> Markup {
        let (top, bottom, right) = (14.0, 26.0, 12.0);
        let x = Scale::new(
            self.x_domain.0,
            self.x_domain.1,
            self.left,
            self.width - right,
        );
        let y = Scale::new(self.y_domain.0, self.y_domain.1, self.height - bottom, top);
        let xt = nice_ticks(self.x_domain.0, self.x_domain.1, 6);
        let yt = nice_ticks(self.y_domain.0, self.y_domain.1, 4);
        let body = html! {
            g class="grid" {
                @for v in &yt {
                    line x1=(num(self.left, 1)) x2=(num(self.width - right, 1))
                        y1=(num(y.at(*v), 1)) y2=(num(y.at(*v), 1)) {}
                    text class="tick" x=(num(self.left - 4.0, 1)) y=(num(y.at(*v) + 3.5, 1))
                        text-anchor="end" { ((self.y_label)(*v)) }
                }
                @for v in &xt {
                    text class="tick" x=(num(x.at(*v), 1)) y=(num(self.height - 8.0, 1))
                        text-anchor="middle" { ((self.x_label)(*v)) }
                }
            }
            @for m in &self.marks {
                @match m {
                    Mark::VBand { x0, x1, label, class } => {
                        rect class=(class) x=(num(x.at(*x0), 1)) y=(num(top, 1))
                            width=(num((x.at(*x1) - x.at(*x0)).max(1.0), 1))
                            height=(num(self.height - bottom - top, 1)) {
                            title { (label) }
                        }
                    }
                    Mark::HLine { y: v, label, class } => {
                        line class=(class) x1=(num(self.left, 1)) x2=(num(self.width - right, 1))
                            y1=(num(y.at(*v), 1)) y2=(num(y.at(*v), 1)) {
                            title { (label) }
                        }
                        text class={"mark-label " (class)} x=(num(self.width - right - 2.0, 1))
                            y=(num(y.at(*v) - 3.0, 1)) text-anchor="end" { (label) }
                    }
                }
            }
            @for s in &self.series {
                g class={"series " (s.class)} {
                    title { (s.name) }
                    @for pts in polylines(&s.points, &x, &y) {
                        polyline points=(pts) {}
                    }
                    @if s.dots {
                        @for (px, py) in s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
                            circle cx=(num(x.at(*px), 1)) cy=(num(y.at(*py), 1)) r="2.5" {}
                        }
                    }
                }
            }
            @if let Some(l) = &self.label {
                text class="row-label" x="4" y=(num((self.height - bottom + top) / 2.0 + 4.0, 1)) { (l) }
            }
            g class="legend" {
                @for (i, s) in self.series.iter().enumerate() {
                    g class={"series " (s.class)} {
                        line x1=(num(self.left + 8.0 + i as f64 * 150.0, 1))
                            x2=(num(self.left + 26.0 + i as f64 * 150.0, 1))
                            y1="7" y2="7" {}
                        text x=(num(self.left + 30.0 + i as f64 * 150.0, 1)) y="10" { (s.name) }
                    }
                }
            }
        };
        frame(
            &self.id,
            &self.title,
            &self.desc,
            self.width,
            self.height,
            body,
        )
    }
}

/// The y domain of `series` (and reference lines), padded, starting at 0
/// for non-negative data.
pub fn y_domain(series: &[Series], extra: &[f64]) -> (f64, f64) {
    let vals = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(extra.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let lo = if lo >= 0.0 { 0.0 } else { lo };
    let pad = ((hi - lo) * 0.1).max(f64::EPSILON);
    (lo, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 100.0, 4),
            vec![0.0, 25.0, 50.0, 75.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 7.3, 6), vec![0.0, 2.0, 4.0, 6.0]);
        assert_eq!(nice_ticks(5.0, 5.0, 4), vec![5.0]);
    }

    #[test]
    fn a_missing_value_breaks_the_line() {
        let x = Scale::new(0.0, 2.0, 0.0, 2.0);
        let y = Scale::new(0.0, 2.0, 0.0, 2.0);
        let lines = polylines(&[(0.0, 0.0), (1.0, f64::NAN), (2.0, 2.0)], &x, &y);
        assert_eq!(lines, vec!["0.0,0.0", "2.0,2.0"]);
    }

    #[test]
    fn downsampling_keeps_the_mean_and_the_bound() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 1.0)).collect();
        let d = downsample(&pts, 100);
        assert!(d.len() <= 100);
        assert!(d.iter().all(|p| (p.1 - 1.0).abs() < 1e-9));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
    }
}
