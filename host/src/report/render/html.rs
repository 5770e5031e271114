//! The HTML report: one self-contained file, readable without JavaScript,
//! printable, with text alternatives for every chart.
//!
//! Why maud: templates are Rust expressions checked at compile time, every
//! interpolation is escaped unless wrapped in `PreEscaped` (used here only
//! for the page's own CSS), and it has no runtime template files to ship or
//! lose. askama escapes by default too, but puts the page's logic in a
//! second language in separate files; the charts here are mostly
//! computation, which reads better as Rust.

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::document::{AnalysisView, Document, Outcome, Timeline};
use super::svg::{self, LineChart, Mark, Scale, Series, num};

const CSS: &str = include_str!("style.css");

/// Width of every chart's viewBox and the room for labels on the left; the
/// timeline and the resource charts share both so their time axes line up.
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;
const ROW: f64 = 22.0;
/// Longest series drawn point by point; longer ones are averaged down.
const MAX_POINTS: usize = 400;

/// The Content-Security-Policy of every page: nothing but the page's own
/// stylesheet (by hash) and inline images; no script, no network.
fn csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; form-action 'none'"
    )
}

/// A whole page around `body`.
pub fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp());
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={"adeploy " (env!("CARGO_PKG_VERSION"))};
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

fn seconds_label(v: f64) -> String {
    format!("{}s", num(v, 1))
}

fn percent_label(v: f64) -> String {
    format!("{}%", num(v, 0))
}

fn plain_label(v: f64) -> String {
    num(v, 3)
}

fn mib_label(v: f64) -> String {
    format!("{} MiB", num(v, 0))
}

/// The report page of one deployment.
pub fn report_page(doc: &Document) -> String {
    let s = &doc.deployment_summary;
    let outcome = if s.success {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    let title = format!(
        "adeploy {} — {}",
        s.id,
        if s.success { "succeeded" } else { "failed" }
    );
    let timeline = doc.timeline();
    let body = html! {
        header {
            h1 { "Deployment " code { (s.id) } " "
                span class={"badge " (outcome.class())} { (status_word(&s.status, s.success)) } }
            p class="sub" {
                (s.services.join(", ")) " in " strong { (s.environment) }
                " with " strong { (s.strategy_used) }
                @if let Some(t) = s.started_at { ", started " (t.format("%Y-%m-%d %H:%M:%S UTC")) }
                @if s.dry_run { " (dry run)" }
            }
        }
        (summary(doc))
        (timeline_section(doc, &timeline))
        (resources_section(doc, &timeline))
        @if !doc.analysis.is_empty() { (analysis_section(doc)) }
        (decisions_section(doc))
        (lessons_section(doc))
        footer { "Written by adeploy " (env!("CARGO_PKG_VERSION")) " from the report of " (s.id) "." }
    };
    page(&title, body)
}

fn status_word(status: &str, success: bool) -> String {
    if status.is_empty() {
        if success { "succeeded" } else { "failed" }.to_string()
    } else {
        status.replace('_', " ")
    }
}

fn summary(doc: &Document) -> Markup {
    let s = &doc.deployment_summary;
    let (ok, failed, notrun, other) = doc.counts();
    html! {
        section id="summary" aria-labelledby="h-summary" {
            h2 id="h-summary" { "Summary" }
            dl class="facts" {
                div { dt { "Status" } dd { (status_word(&s.status, s.success)) } }
                div { dt { "Duration" } dd { (svg::duration(s.duration_minutes * 60.0)) } }
                div { dt { "Strategy" } dd { (s.strategy_used) } }
                div { dt { "Environment" } dd { (s.environment) } }
                div { dt { "Steps" } dd {
                    (ok) " succeeded, " (failed) " failed, " (notrun) " not run"
                    @if other > 0 { ", " (other) " other" }
                } }
                @if let Some(p) = &doc.performance_analysis {
                    div { dt { "Performance" } dd {
                        (p.duration_performance.replace('_', " "))
                        @if let Some(b) = p.benchmark_duration { " (benchmark " (num(b, 2)) " min)" }
                    } }
                    @if let Some(pred) = p.predicted_duration {
                        div { dt { "Predicted" } dd { (num(pred, 2)) " min"
                            @if let Some(e) = p.prediction_error { " (error " (num(e, 2)) ")" } } }
                    }
                }
                @if let Some(i) = &doc.system_impact {
                    div { dt { "Machine impact" } dd {
                        (i.overall_impact) " (CPU +" (num(i.cpu_impact_percent, 1))
                        ", memory +" (num(i.memory_impact_percent, 1)) " points)"
                    } }
                }
            }
            @if let Some(p) = &doc.plan {
                p {
                    "Plan: " (p.waves.len()) " wave(s), concurrency " (p.concurrency)
                    @if p.health_checks { ", " (p.samples) " health sample(s) every " (p.interval_ms) " ms" }
                    @if p.soak_s > 0 { ", soak " (p.soak_s) " s" }
                    ", at most " (p.max_failures) " failure(s), rollback scope " (crate::report::summary::legacy_words(&p.rollback_scope)) "."
                }
                @if !p.warnings.is_empty() {
                    ul class="notes" { @for w in &p.warnings { li { "⚠ " (w) } } }
                }
            }
        }
    }
}

fn timeline_section(doc: &Document, t: &Timeline) -> Markup {
    html! {
        section id="timeline" aria-labelledby="h-timeline" {
            h2 id="h-timeline" { "Timeline" }
            @if t.rows.is_empty() {
                p class="empty" { "No steps ran." }
            } @else {
                (timeline_chart(t))
                (steps_table(doc))
            }
        }
    }
}

fn timeline_chart(t: &Timeline) -> Markup {
    let top = 24.0;
    let mut y = top;
    let mut layout: Vec<(f64, Option<u32>, usize)> = Vec::new(); // (y, wave header, row)
    let mut last_wave = None;
    for (i, r) in t.rows.iter().enumerate() {
        if last_wave != Some(r.wave) {
            layout.push((y, Some(r.wave), i));
            y += ROW * 0.8;
            last_wave = Some(r.wave);
        }
        layout.push((y, None, i));
        y += ROW;
    }
    let legend_y = y + 36.0;
    let height = y + 44.0;
    let total = t.total_s.max(0.001);
    let x = Scale::new(0.0, total, LEFT, WIDTH - 12.0);
    let ticks = svg::nice_ticks(0.0, total, 8);
    let failed = t
        .rows
        .iter()
        .filter(|r| Outcome::of(&r.status) == Outcome::Failed)
        .count();
    let desc = format!(
        "{} step(s) over {}; {} failed; {} rolled back. The table below lists every step.",
        t.rows.len(),
        svg::duration(total),
        failed,
        t.rows
            .iter()
            .filter(|r| r.bars.iter().any(|b| b.kind == "rollback"))
            .count()
    );
    let body = html! {
        g class="grid" {
            @for v in &ticks {
                line x1=(num(x.at(*v), 1)) x2=(num(x.at(*v), 1)) y1=(num(top - 6.0, 1)) y2=(num(legend_y - 28.0, 1)) {}
                text class="tick" x=(num(x.at(*v), 1)) y="12" text-anchor="middle" { (seconds_label(*v)) }
                text class="tick" x=(num(x.at(*v), 1)) y=(num(legend_y - 16.0, 1)) text-anchor="middle" { (seconds_label(*v)) }
            }
        }
        g class="legend" aria-hidden="true" {
            @for (k, (cls, word)) in [("swatch ok", "succeeded"), ("swatch failed", "failed ✕"),
                ("swatch rollback", "rolled back"), ("swatch notrun", "not run"), ("swatch phase", "phase")].iter().enumerate() {
                @let lx = LEFT + k as f64 * 110.0;
                rect class=(cls) x=(num(lx, 1)) y=(num(legend_y - 9.0, 1)) width="14" height="10" {}
                text class="tick" x=(num(lx + 18.0, 1)) y=(num(legend_y, 1)) { (word) }
            }
        }
        @for (ry, wave, i) in &layout {
            @if let Some(w) = wave {
                text class="wave-label" x="4" y=(num(ry + 12.0, 1)) { "Wave " (w) }
            } @else {
                @let r = &t.rows[*i];
                g class="row" data-step=(r.label) data-wave=(r.wave) {
                    text class="row-label" x="14" y=(num(ry + 15.0, 1)) {
                        title { (r.label) }
                        (shorten(&r.label, 26))
                    }
                    @for b in &r.bars {
                        @let oc = Outcome::of(&b.status);
                        @let x0 = x.at(b.start_s);
                        @let w = (x.at(b.end_s) - x0).max(if b.kind == "step" { 5.0 } else { 2.0 });
                        @let tip = format!("{} {}: {} ({}, +{} → +{}){}",
                            r.label, b.kind, b.status.replace('_', " "),
                            svg::duration(b.end_s - b.start_s), num(b.start_s, 2), num(b.end_s, 2),
                            if b.label.is_empty() { String::new() } else { format!(" — {}", b.label) });
                        @if b.kind == "step" {
                            rect class={"bar step-bar s-" (oc.class())} data-status=(b.status)
                                data-step=(r.label) x=(num(x0, 1)) y=(num(ry + 3.0, 1))
                                width=(num(w, 1)) height=(num(ROW - 6.0, 1)) rx="2" {
                                title { (tip) }
                            }
                            @if oc == Outcome::Failed {
                                text class="fail-mark" aria-hidden="true" x=(num(x0 + w + 3.0, 1)) y=(num(ry + 15.0, 1)) { "✕" }
                            }
                        } @else if b.kind == "rollback" {
                            @let cls = if b.status == "rollback_failed" { "s-failed" } else { "s-ok" };
                            rect class={"bar rollback-bar " (cls)} data-phase="rollback" data-status=(b.status)
                                x=(num(x0, 1)) y=(num(ry + 6.0, 1)) width=(num(w, 1)) height=(num(ROW - 12.0, 1)) {
                                title { (tip) }
                            }
                        } @else {
                            rect class={"bar phase-bar s-" (oc.class())} data-phase=(b.kind) data-status=(b.status)
                                x=(num(x0, 1)) y=(num(ry + 7.0, 1)) width=(num(w, 1)) height=(num(ROW - 14.0, 1)) {
                                title { (tip) }
                            }
                        }
                    }
                    @for p in &r.probes {
                        circle class={"probe " (if p.ok { "ok" } else { "failed" })} data-probe=(p.kind)
                            cx=(num(x.at(p.at_s), 1)) cy=(num(ry + ROW / 2.0, 1)) r="2.5" {
                            title { (p.kind) " probe at +" (num(p.at_s, 2)) " s: " (if p.ok { "ok" } else { "failed" }) }
                        }
                    }
                }
            }
        }
    };
    svg::frame(
        "timeline-chart",
        "Timeline of every step per wave and host",
        &desc,
        WIDTH,
        height,
        body,
    )
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

fn steps_table(doc: &Document) -> Markup {
    let start = doc.span().map(|s| s.0);
    let mut steps: Vec<_> = doc.steps.iter().collect();
    steps.sort_by_key(|s| (s.wave, s.started_at.is_none(), s.started_at));
    html! {
        table id="steps" {
            caption { "Every step, in wave order (the data behind the timeline)" }
            thead { tr { th { "Wave" } th { "Step" } th { "Status" } th { "Started" } th { "Took" } th { "Message" } th { "Rollback" } } }
            tbody {
                @for st in steps {
                    tr class={"s-" (st.outcome().class())} data-status=(st.status) {
                        td class="num" { (doc.wave_of(st)) }
                        td class="nw" { (st.name())
                            @if let Some(v) = &st.version { " " small { "v" (v) } } }
                        td class="nw" { (st.status.replace('_', " ")) }
                        td class="num" {
                            @match (st.started_at, start) {
                                (Some(t), Some(s0)) => { "+" (num((t - s0).num_milliseconds() as f64 / 1000.0, 2)) " s" }
                                _ => { "—" }
                            }
                        }
                        td class="num" { @if st.started_at.is_some() { (svg::duration(st.seconds)) } @else { "—" } }
                        td { (st.message) }
                        td {
                            @match (st.rolled_back, &st.rollback_message) {
                                (Some(true), m) => { "rolled back"
                                    @if let Some(p) = &st.previous_version { " to v" (p) }
                                    @if let Some(m) = m { @if m != "rolled back" { ": " (m) } } }
                                (Some(false), m) => { strong { "rollback failed" } ": " (m.as_deref().unwrap_or("unknown")) }
                                (None, _) => { "—" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn resources_section(doc: &Document, t: &Timeline) -> Markup {
    let Some(start) = t.start.or_else(|| doc.span().map(|s| s.0)) else {
        return html! {};
    };
    let at = |ts: chrono::DateTime<chrono::Utc>| (ts - start).num_milliseconds() as f64 / 1000.0;
    let total = t.total_s.max(0.001);
    let bands: Vec<Mark> = t
        .rows
        .iter()
        .flat_map(|r| r.bars.iter().filter(|b| b.kind == "rollback"))
        .map(|b| Mark::VBand {
            x0: b.start_s,
            x1: b.end_s,
            label: "rollback".into(),
            class: "band-rollback",
        })
        .collect();
    let cpu: Vec<(f64, f64)> = doc
        .resource_samples
        .iter()
        .map(|p| (at(p.timestamp), p.cpu_percent))
        .collect();
    let mem: Vec<(f64, f64)> = doc
        .resource_samples
        .iter()
        .map(|p| (at(p.timestamp), p.memory_percent))
        .collect();
    let x_max = cpu.iter().map(|p| p.0).fold(total, f64::max);
    let stats = |v: &[(f64, f64)]| {
        let f: Vec<f64> = v.iter().map(|p| p.1).filter(|x| x.is_finite()).collect();
        let mean = f.iter().sum::<f64>() / f.len().max(1) as f64;
        (
            f.iter().copied().fold(f64::INFINITY, f64::min),
            mean,
            f.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let proc = doc.process_usage.as_ref().filter(|p| !p.samples.is_empty());
    html! {
        section id="resources" aria-labelledby="h-resources" {
            h2 id="h-resources" { "Machine load" }
            @if doc.resource_samples.is_empty() {
                p class="empty" { "No load samples were recorded for this deployment." }
            } @else {
                @let (c0, cm, c1) = stats(&cpu);
                @let (m0, mm, m1) = stats(&mem);
                (LineChart {
                    id: "resource-chart".into(),
                    title: "CPU and memory of the machine during the deployment".into(),
                    desc: format!("{} samples over {}. CPU from {}% to {}% (mean {}%); memory from {}% to {}% (mean {}%). Shaded: rollbacks.",
                        cpu.len(), svg::duration(x_max), num(c0, 1), num(c1, 1), num(cm, 1), num(m0, 1), num(m1, 1), num(mm, 1)),
                    width: WIDTH, height: 200.0, left: LEFT,
                    x_domain: (0.0, x_max), y_domain: (0.0, 100.0),
                    x_label: seconds_label, y_label: percent_label,
                    series: vec![
                        Series { name: "CPU %".into(), class: "cpu", points: svg::downsample(&cpu, MAX_POINTS), dots: cpu.len() <= 40 },
                        Series { name: "memory %".into(), class: "mem", points: svg::downsample(&mem, MAX_POINTS), dots: mem.len() <= 40 },
                    ],
                    marks: bands.clone(),
                    label: None,
                }.render())
                details {
                    summary { "Samples (" (cpu.len()) ")" }
                    table id="resource-samples" {
                        caption { "Machine load samples" }
                        thead { tr { th { "At" } th { "CPU %" } th { "Memory %" } } }
                        tbody {
                            @for p in svg::downsample(&cpu, 60).iter().zip(svg::downsample(&mem, 60)) {
                                tr { td class="num" { "+" (num(p.0.0, 2)) " s" } td class="num" { (num(p.0.1, 1)) } td class="num" { (num(p.1.1, 1)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(pu) = proc {
                @let pc: Vec<(f64, f64)> = pu.samples.iter().map(|p| (at(p.timestamp), p.cpu_percent)).collect();
                @let pm: Vec<(f64, f64)> = pu.samples.iter().map(|p| (at(p.timestamp), p.memory_bytes / 1_048_576.0)).collect();
                h3 { "The deployment's own processes"
                    @if let Some(m) = &pu.method { " " small { "(" (m) ")" } } }
                (LineChart {
                    id: "process-cpu-chart".into(),
                    title: "CPU of the deployment's own processes".into(),
                    desc: format!("{} samples; peak {}% of one core.", pc.len(),
                        num(pc.iter().map(|p| p.1).fold(0.0, f64::max), 1)),
                    width: WIDTH, height: 150.0, left: LEFT,
                    x_domain: (0.0, x_max), y_domain: svg::y_domain(&[Series { name: String::new(), class: "cpu", points: pc.clone(), dots: false }], &[100.0]),
                    x_label: seconds_label, y_label: percent_label,
                    series: vec![Series { name: "CPU % (of one core)".into(), class: "cpu", points: svg::downsample(&pc, MAX_POINTS), dots: pc.len() <= 40 }],
                    marks: bands.clone(),
                    label: None,
                }.render())
                (LineChart {
                    id: "process-memory-chart".into(),
                    title: "Memory of the deployment's own processes".into(),
                    desc: format!("{} samples; peak {}.", pm.len(),
                        svg::bytes(pu.samples.iter().map(|p| p.memory_bytes).fold(0.0, f64::max))),
                    width: WIDTH, height: 150.0, left: LEFT,
                    x_domain: (0.0, x_max), y_domain: svg::y_domain(&[Series { name: String::new(), class: "mem", points: pm.clone(), dots: false }], &[]),
                    x_label: seconds_label, y_label: mib_label,
                    series: vec![Series { name: "resident memory (MiB)".into(), class: "mem", points: svg::downsample(&pm, MAX_POINTS), dots: pm.len() <= 40 }],
                    marks: bands,
                    label: None,
                }.render())
                details {
                    summary { "Process samples (" (pu.samples.len()) ")" }
                    table id="process-samples" {
                        caption { "The deployment's own processes" }
                        thead { tr { th { "At" } th { "CPU %" } th { "Memory" } } }
                        tbody {
                            @for p in pu.samples.iter().take(200) {
                                tr { td class="num" { "+" (num(at(p.timestamp), 2)) " s" } td class="num" { (num(p.cpu_percent, 1)) } td class="num" { (svg::bytes(p.memory_bytes)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(i) = &doc.system_impact {
                p { "Baseline CPU " (num(i.baseline_cpu_percent, 1)) "%, peak " (num(i.peak_cpu_percent, 1))
                    "%; baseline memory " (num(i.baseline_memory_percent, 1)) "%, peak " (num(i.peak_memory_percent, 1))
                    "% (" (i.samples) " samples): " strong { (i.overall_impact) } " impact." }
            }
        }
    }
}

fn analysis_section(doc: &Document) -> Markup {
    html! {
        section id="analysis" aria-labelledby="h-analysis" {
            h2 id="h-analysis" { "Analysis" }
            table id="analysis-table" {
                caption { "Metric verdicts" }
                thead { tr { th { "Step · metric" } th { "Verdict" } th { "Samples" } th { "Median" } th { "Threshold" } th { "Baseline median" } th { "p-value" } th { "Effect" } th { "Note" } } }
                tbody {
                    @for a in &doc.analysis {
                        tr class={"s-" (Outcome::of(&a.verdict).class())} data-verdict=(a.verdict) {
                            td { (a.label()) }
                            td { strong { (a.verdict) } }
                            td class="num" { (a.samples.len()) }
                            td class="num" { (opt(median(&a.samples), 4)) }
                            td { (threshold_text(a)) }
                            td class="num" { (opt(median(&a.baseline_samples), 4)) }
                            td class="num" { (opt(a.p_value, 4)) }
                            td class="num" { (opt(a.effect_size, 3)) }
                            td { (a.message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @for (i, a) in doc.analysis.iter().enumerate() {
                div class="verdict" data-verdict=(a.verdict) {
                    h3 { (a.label()) " " span class={"badge " (Outcome::of(&a.verdict).class())} { (a.verdict) } }
                    @if a.samples.is_empty() && a.baseline_samples.is_empty() {
                        p class="empty" { "No samples" @if let Some(m) = &a.message { ": " (m) } "." }
                    } @else {
                        (analysis_chart(i, a))
                    }
                }
            }
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| num(v, digits)).unwrap_or_else(|| "—".into())
}

fn median(s: &[super::document::SampleView]) -> Option<f64> {
    let mut v: Vec<f64> = s
        .iter()
        .map(|x| x.value)
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn threshold_text(a: &AnalysisView) -> String {
    let mut parts = Vec::new();
    if let Some(m) = a.min {
        parts.push(format!("≥ {}", num(m, 4)));
    }
    if let Some(m) = a.max {
        parts.push(format!("≤ {}", num(m, 4)));
    }
    if let Some(t) = a.tolerance {
        parts.push(format!("±{}% of baseline", num(t * 100.0, 1)));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(", ")
    }
}

/// Samples against the threshold or the baseline. The x axis is seconds
/// since the first sample when every sample has a time, else the index.
fn analysis_chart(i: usize, a: &AnalysisView) -> Markup {
    let timed = |s: &[super::document::SampleView]| s.iter().all(|p| p.timestamp.is_some());
    let t0 = a
        .samples
        .iter()
        .chain(&a.baseline_samples)
        .filter_map(|p| p.timestamp)
        .min();
    let use_time = t0.is_some() && timed(&a.samples) && timed(&a.baseline_samples);
    let points = |s: &[super::document::SampleView]| -> Vec<(f64, f64)> {
        s.iter()
            .enumerate()
            .map(|(k, p)| {
                let x = match (use_time, p.timestamp, t0) {
                    (true, Some(t), Some(t0)) => (t - t0).num_milliseconds() as f64 / 1000.0,
                    _ => k as f64 + 1.0,
                };
                (x, p.value)
            })
            .collect()
    };
    let new = points(&a.samples);
    let base = points(&a.baseline_samples);
    let mut series = vec![Series {
        name: "samples".into(),
        class: "cpu",
        points: svg::downsample(&new, MAX_POINTS),
        dots: new.len() <= 60,
    }];
    if !base.is_empty() {
        series.push(Series {
            name: "baseline".into(),
            class: "base",
            points: svg::downsample(&base, MAX_POINTS),
            dots: base.len() <= 60,
        });
    }
    let mut marks = Vec::new();
    let mut refs = Vec::new();
    for (v, word) in [(a.max, "max"), (a.min, "min")] {
        if let Some(v) = v {
            refs.push(v);
            marks.push(Mark::HLine {
                y: v,
                label: format!("{word} {}", num(v, 4)),
                class: "threshold",
            });
        }
    }
    let x_max = new.iter().chain(&base).map(|p| p.0).fold(1.0, f64::max);
    let x_min = if use_time { 0.0 } else { 1.0 };
    let desc = format!(
        "{}: {} sample(s), median {}{}{}; verdict {}.",
        a.label(),
        a.samples.len(),
        opt(median(&a.samples), 4),
        if base.is_empty() {
            String::new()
        } else {
            format!(
                " against a baseline median of {} ({} samples)",
                opt(median(&a.baseline_samples), 4),
                base.len()
            )
        },
        if refs.is_empty() {
            String::new()
        } else {
            format!(", threshold {}", threshold_text(a))
        },
        a.verdict
    );
    LineChart {
        id: format!("analysis-chart-{i}"),
        title: format!(
            "{} against its {}",
            a.label(),
            if base.is_empty() {
                "threshold"
            } else {
                "baseline"
            }
        ),
        desc,
        width: WIDTH,
        height: 170.0,
        left: LEFT,
        x_domain: (x_min, x_max),
        y_domain: svg::y_domain(&series, &refs),
        x_label: if use_time { seconds_label } else { plain_label },
        y_label: plain_label,
        series,
        marks,
        label: None,
    }
    .render()
}

fn decisions_section(doc: &Document) -> Markup {
    let start = doc.span().map(|s| s.0);
    html! {
        section id="decisions" aria-labelledby="h-decisions" {
            h2 id="h-decisions" { "Decision flow" }
            @if doc.decision_process.is_empty() {
                p class="empty" { "No decisions were recorded." }
            } @else {
                ol class="chain" {
                    @for d in &doc.decision_process {
                        li class={"decision k-" (decision_kind(&d.decision_type, &d.details))} data-decision=(d.decision_type) {
                            span class="when" {
                                @match (d.timestamp, start) {
                                    (Some(t), Some(s0)) => { "+" (num((t - s0).num_milliseconds() as f64 / 1000.0, 3)) " s" }
                                    _ => { "" }
                                }
                            }
                            strong { (d.decision_type.replace('_', " ")) }
                            " "
                            span class="summary" { (d.summary()) }
                            @let rows = detail_rows(&d.details);
                            @if !rows.is_empty() {
                                dl { @for (k, v) in rows { dt { (k) } dd { (v) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `bad` for failures, rollbacks and refusals; `warn` for overrides,
/// pauses and alerts; `info` for the rest, and for a decision whose details
/// say nothing happened (`applied: false`) or that all went well (`ok: true`).
fn decision_kind(t: &str, details: &Value) -> &'static str {
    if details.get("applied") == Some(&Value::Bool(false))
        || details.get("ok") == Some(&Value::Bool(true))
    {
        return "info";
    }
    let bad = [
        "fail",
        "abort",
        "rollback",
        "rolled_back",
        "refus",
        "block",
        "cancel",
        "denied",
    ];
    let warn = [
        "override", "pause", "alert", "warn", "discard", "explor", "retrain",
    ];
    if bad.iter().any(|b| t.contains(b)) {
        "bad"
    } else if warn.iter().any(|w| t.contains(w)) {
        "warn"
    } else {
        "info"
    }
}

const MAX_DETAIL: usize = 800;

/// A decision's details as (key, text) rows; a value that is not an object
/// is one row.
fn detail_rows(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.replace('_', " "), detail_text(v)))
            .collect(),
        other => vec![("details".into(), detail_text(other))],
    }
}

fn detail_text(v: &Value) -> String {
    let s = match v {
        Value::Null => "—".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_f64()
            .map(|f| num(f, 4))
            .unwrap_or_else(|| n.to_string()),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) if a.is_empty() => "—".to_string(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    shorten(&s, MAX_DETAIL)
}

fn lessons_section(doc: &Document) -> Markup {
    html! {
        section id="lessons" aria-labelledby="h-lessons" {
            h2 id="h-lessons" { "Lessons and recommendations" }
            h3 { "Lessons learned" }
            @if doc.lessons_learned.is_empty() { p class="empty" { "None." } }
            @else { ul class="notes" { @for l in &doc.lessons_learned { li { (l) } } } }
            h3 { "Recommendations" }
            @if doc.recommendations.is_empty() { p class="empty" { "None." } }
            @else { ul class="notes" { @for r in &doc.recommendations { li { (r) } } } }
        }
    }
}
