//! Analytics across deployments: success rate per strategy × environment
//! over time, duration trends per service, the model's accuracy across
//! retrainings, and failure patterns — as one HTML page.
//!
//! Why aggregate first: a history of 100k deployments must give a page of
//! the same size as one of 100. [`HistoryAnalytics::compute`] makes one
//! pass over the records into time buckets (at most
//! [`HistoryOptions::max_buckets`], on round widths: minutes, hours, days,
//! weeks, ...), keeps the largest groups and services, and the page plots
//! only those aggregates. The aggregates serialise, so a `--json` of the
//! same analytics is one `serde_json::to_string` away.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::DeploymentRecord;
use crate::ml::FailurePattern;

use super::html::page;
use super::svg::{self, LineChart, Scale, Series, num};

/// What the page shows besides the records.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Page title.
    pub title: String,
    /// At most this many time buckets (default 24).
    pub max_buckets: usize,
    /// Groups (strategy × environment) and services shown (default 20).
    pub max_series: usize,
    /// The model's accuracy at each retraining ([`ModelPoint::from_log`]).
    pub model: Vec<ModelPoint>,
    /// The failure patterns the learning found
    /// (`ml::failure_patterns(&engine::learn::outcomes(records))`).
    pub patterns: Vec<FailurePattern>,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            title: "adeploy history".into(),
            max_buckets: 24,
            max_series: 20,
            model: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// The strategy model after one (re)training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPoint {
    pub trained_at: DateTime<Utc>,
    /// Training rows.
    pub samples: usize,
    /// Out-of-bag accuracy, 0..1.
    pub oob_accuracy: Option<f64>,
}

impl ModelPoint {
    /// The model points found in decision-log or audit entries (any type
    /// that serialises to `{decision_type|action, details, timestamp}`):
    /// `history_loaded` decisions name the model in use, `model_retrain`
    /// audit entries the model just trained. One point per training time,
    /// oldest first.
    pub fn from_log<T: Serialize>(entries: &[T]) -> Vec<ModelPoint> {
        let mut out: Vec<ModelPoint> = Vec::new();
        for e in entries {
            let Ok(v) = serde_json::to_value(e) else {
                continue;
            };
            let kind = v
                .get("decision_type")
                .or_else(|| v.get("action"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let details = &v["details"];
            let (m, at) = match kind {
                "history_loaded" => (&details["model"], details["model"].get("trained_at")),
                "model_retrain" | "model_retrained" => (
                    details,
                    details.get("trained_at").or_else(|| v.get("timestamp")),
                ),
                _ => continue,
            };
            let Some(at) = at
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            else {
                continue;
            };
            let Some(samples) = m.get("samples").and_then(Value::as_u64) else {
                continue;
            };
            if out.iter().any(|p| p.trained_at == at) {
                continue;
            }
            out.push(ModelPoint {
                trained_at: at,
                samples: samples as usize,
                oob_accuracy: m.get("oob_accuracy").and_then(Value::as_f64),
            });
        }
        out.sort_by_key(|p| p.trained_at);
        out
    }
}

/// The aggregates the history page plots.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryAnalytics {
    /// Records read, and how many of them were dry runs or unfinished.
    pub records: usize,
    pub dry_runs: usize,
    pub unfinished: usize,
    /// Finished real deployments with a known outcome, and their successes.
    pub deployments: usize,
    pub succeeded: usize,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Bucket width in seconds, and each bucket's start.
    pub bucket_s: i64,
    pub buckets: Vec<DateTime<Utc>>,
    /// Deployments and failures per bucket.
    pub volume: Vec<(usize, usize)>,
    /// Count per final status (`succeeded`, `rolled_back`, ...).
    pub statuses: Vec<(String, usize)>,
    /// Success per strategy × environment, largest groups first.
    pub groups: Vec<GroupSeries>,
    /// Step durations per service (succeeded steps), busiest first.
    pub services: Vec<ServiceSeries>,
    pub model: Vec<ModelPoint>,
    /// Failed steps per service: (service, failed, ran).
    pub failures_by_service: Vec<(String, usize, usize)>,
    /// Failed and all deployments per hour of day (UTC).
    pub failures_by_hour: Vec<(usize, usize)>,
    /// Most frequent failure messages (digits folded to `#`).
    pub failure_messages: Vec<(String, usize)>,
    pub patterns: Vec<FailurePattern>,
}

/// One strategy × environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupSeries {
    pub strategy: String,
    pub environment: String,
    pub total: usize,
    pub succeeded: usize,
    /// (deployments, successes) per bucket.
    pub buckets: Vec<(usize, usize)>,
}

/// One service's step durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceSeries {
    pub service: String,
    pub steps: usize,
    pub median_s: f64,
    /// (steps, median, 90th percentile) per bucket; `None` when empty.
    pub buckets: Vec<Option<(usize, f64, f64)>>,
}

/// The part of a recorded step the analytics read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StepLite {
    service: String,
    status: String,
    started_at: Option<Value>,
    seconds: f64,
    message: String,
}

/// A record's steps, in the lite shape the analytics read (the typed
/// record's steps pass through serde, as a report's do).
fn steps_of(r: &DeploymentRecord) -> Vec<StepLite> {
    serde_json::to_value(&r.steps)
        .ok()
        .and_then(|v| Vec::<StepLite>::deserialize(v).ok())
        .unwrap_or_default()
}

/// Round bucket widths, seconds.
const WIDTHS: [i64; 16] = [
    1,
    5,
    15,
    60,
    300,
    900,
    3_600,
    3 * 3_600,
    6 * 3_600,
    12 * 3_600,
    86_400,
    7 * 86_400,
    14 * 86_400,
    30 * 86_400,
    91 * 86_400,
    365 * 86_400,
];

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Folds digits (ids, ports, counts) so equal failures count together.
fn fold_message(m: &str) -> String {
    let mut out = String::new();
    let mut last_digit = false;
    for c in m.chars().take(160) {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    out
}

impl HistoryAnalytics {
    /// One pass over `records` (any order).
    pub fn compute(records: &[DeploymentRecord], options: &HistoryOptions) -> HistoryAnalytics {
        let mut a = HistoryAnalytics {
            records: records.len(),
            model: options.model.clone(),
            patterns: options.patterns.clone(),
            failures_by_hour: vec![(0, 0); 24],
            ..HistoryAnalytics::default()
        };
        let real: Vec<&DeploymentRecord> = records
            .iter()
            .filter(|r| {
                if r.dry_run {
                    a.dry_runs += 1;
                    false
                } else if !r.status.is_finished() || r.success.is_none() {
                    a.unfinished += 1;
                    false
                } else {
                    true
                }
            })
            .collect();
        let Some(first) = real.iter().map(|r| r.started_at).min() else {
            return a;
        };
        let last = real.iter().map(|r| r.started_at).max().unwrap_or(first);
        let span = (last - first).num_seconds().max(1);
        let max_buckets = options.max_buckets.max(1) as i64;
        let width = WIDTHS
            .iter()
            .copied()
            .find(|w| span / w < max_buckets)
            .unwrap_or_else(|| (span / max_buckets + 1).max(1));
        let origin = first.timestamp().div_euclid(width) * width;
        let nb = ((last.timestamp() - origin) / width + 1) as usize;
        a.first = Some(first);
        a.last = Some(last);
        a.bucket_s = width;
        a.buckets = (0..nb)
            .filter_map(|i| DateTime::from_timestamp(origin + i as i64 * width, 0))
            .collect();
        a.volume = vec![(0, 0); nb];
        let bucket = |t: DateTime<Utc>| {
            (((t.timestamp() - origin) / width).max(0) as usize).min(nb.saturating_sub(1))
        };

        let mut groups: HashMap<(&str, &str), GroupSeries> = HashMap::new();
        let mut durations: HashMap<String, Vec<Vec<f64>>> = HashMap::new();
        let mut failures: HashMap<String, (usize, usize)> = HashMap::new();
        let mut messages: HashMap<String, usize> = HashMap::new();
        let mut statuses: HashMap<&'static str, usize> = HashMap::new();
        for r in &real {
            let ok = r.success == Some(true);
            let b = bucket(r.started_at);
            a.deployments += 1;
            a.succeeded += usize::from(ok);
            a.volume[b].0 += 1;
            a.volume[b].1 += usize::from(!ok);
            *statuses.entry(r.status.as_str()).or_default() += 1;
            let hour = &mut a.failures_by_hour[r.started_at.hour() as usize];
            hour.1 += 1;
            hour.0 += usize::from(!ok);
            let g = groups
                .entry((r.strategy.as_str(), r.environment.as_str()))
                .or_insert_with(|| GroupSeries {
                    strategy: r.strategy.clone(),
                    environment: r.environment.clone(),
                    buckets: vec![(0, 0); nb],
                    ..GroupSeries::default()
                });
            g.total += 1;
            g.succeeded += usize::from(ok);
            g.buckets[b].0 += 1;
            g.buckets[b].1 += usize::from(ok);
            for st in steps_of(r) {
                let ran = st.started_at.as_ref().is_some_and(|v| !v.is_null())
                    || matches!(st.status.as_str(), "succeeded" | "failed" | "cancelled");
                if !ran {
                    continue;
                }
                let f = failures.entry(st.service.clone()).or_default();
                f.1 += 1;
                match st.status.as_str() {
                    "succeeded" if st.seconds.is_finite() => {
                        durations
                            .entry(st.service)
                            .or_insert_with(|| vec![Vec::new(); nb])[b]
                            .push(st.seconds);
                    }
                    "failed" | "cancelled" => {
                        f.0 += 1;
                        *messages.entry(fold_message(&st.message)).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }

        let mut groups: Vec<GroupSeries> = groups.into_values().collect();
        groups.sort_by(|x, y| {
            y.total
                .cmp(&x.total)
                .then_with(|| (&x.strategy, &x.environment).cmp(&(&y.strategy, &y.environment)))
        });
        groups.truncate(options.max_series);
        a.groups = groups;

        let mut services: Vec<ServiceSeries> = durations
            .into_iter()
            .map(|(service, mut per)| {
                let mut all: Vec<f64> = per.iter().flatten().copied().collect();
                all.sort_by(f64::total_cmp);
                let buckets = per
                    .iter_mut()
                    .map(|v| {
                        if v.is_empty() {
                            return None;
                        }
                        v.sort_by(f64::total_cmp);
                        Some((v.len(), quantile(v, 0.5), quantile(v, 0.9)))
                    })
                    .collect();
                ServiceSeries {
                    service,
                    steps: all.len(),
                    median_s: quantile(&all, 0.5),
                    buckets,
                }
            })
            .collect();
        services.sort_by(|x, y| {
            y.steps
                .cmp(&x.steps)
                .then_with(|| x.service.cmp(&y.service))
        });
        services.truncate(options.max_series);
        a.services = services;

        let mut fs: Vec<(String, usize, usize)> =
            failures.into_iter().map(|(s, (f, n))| (s, f, n)).collect();
        fs.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        fs.truncate(options.max_series);
        a.failures_by_service = fs;
        let mut ms: Vec<(String, usize)> = messages.into_iter().collect();
        ms.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        ms.truncate(10);
        a.failure_messages = ms;
        let mut st: Vec<(String, usize)> = statuses
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        st.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        a.statuses = st;
        a
    }

    /// A bucket's label, as precise as the width needs.
    pub fn bucket_label(&self, i: usize) -> String {
        let Some(t) = self.buckets.get(i) else {
            return String::new();
        };
        let fmt = if self.bucket_s >= 86_400 {
            "%Y-%m-%d"
        } else if self.bucket_s >= 3_600 {
            "%m-%d %H:00"
        } else if self.bucket_s >= 60 {
            "%m-%d %H:%M"
        } else {
            "%H:%M:%S"
        };
        t.format(fmt).to_string()
    }
}

/// The analytics page over `records`.
pub fn history_page(records: &[DeploymentRecord], options: &HistoryOptions) -> String {
    history_page_of(&HistoryAnalytics::compute(records, options), options)
}

/// The analytics page of already computed aggregates.
pub fn history_page_of(a: &HistoryAnalytics, options: &HistoryOptions) -> String {
    let rate = |ok: usize, n: usize| {
        if n == 0 {
            "—".to_string()
        } else {
            format!("{}%", num(ok as f64 * 100.0 / n as f64, 1))
        }
    };
    let body = html! {
        header {
            h1 { (options.title) }
            p class="sub" {
                (a.deployments) " deployments"
                @if let (Some(f), Some(l)) = (a.first, a.last) {
                    " from " (f.format("%Y-%m-%d %H:%M")) " to " (l.format("%Y-%m-%d %H:%M UTC"))
                }
                " (" (a.dry_runs) " dry runs and " (a.unfinished) " unfinished not counted), in buckets of "
                (svg::duration(a.bucket_s as f64)) "."
            }
        }
        section id="overview" aria-labelledby="h-overview" {
            h2 id="h-overview" { "Overview" }
            dl class="facts" {
                div { dt { "Deployments" } dd { (a.deployments) } }
                div { dt { "Success rate" } dd { (rate(a.succeeded, a.deployments)) } }
                @for (s, n) in &a.statuses { div { dt { (s.replace('_', " ")) } dd { (n) } } }
                @if let Some(m) = a.model.last() {
                    div { dt { "Model" } dd { (m.samples) " samples"
                        @if let Some(acc) = m.oob_accuracy { ", accuracy " (num(acc * 100.0, 1)) "%" } } }
                }
            }
            @if !a.volume.is_empty() { (volume_chart(a)) }
        }
        section id="success" aria-labelledby="h-success" {
            h2 id="h-success" { "Success rate per strategy × environment" }
            @if a.groups.is_empty() { p class="empty" { "No finished deployments." } }
            @else {
                (heatmap(a))
                table id="groups" {
                    caption { "Success per strategy and environment (the data behind the chart; newest bucket last)" }
                    thead { tr { th { "Strategy" } th { "Environment" } th { "Deployments" } th { "Success" } th { "First bucket" } th { "Last bucket" } } }
                    tbody {
                        @for g in &a.groups {
                            @let first = g.buckets.iter().find(|b| b.0 > 0).copied().unwrap_or((0, 0));
                            @let last = g.buckets.iter().rev().find(|b| b.0 > 0).copied().unwrap_or((0, 0));
                            tr { td { (g.strategy) } td { (g.environment) } td class="num" { (g.total) }
                                td class="num" { (rate(g.succeeded, g.total)) }
                                td class="num" { (rate(first.1, first.0)) " of " (first.0) }
                                td class="num" { (rate(last.1, last.0)) " of " (last.0) } }
                        }
                    }
                }
            }
        }
        section id="durations" aria-labelledby="h-durations" {
            h2 id="h-durations" { "Step duration per service" }
            @if a.services.is_empty() { p class="empty" { "No successful steps recorded." } }
            @else {
                @for (i, s) in a.services.iter().enumerate() { (duration_chart(a, i, s)) }
                table id="service-durations" {
                    caption { "Successful step durations per service" }
                    thead { tr { th { "Service" } th { "Steps" } th { "Median" } th { "First bucket median" } th { "Last bucket median" } } }
                    tbody {
                        @for s in &a.services {
                            @let first = s.buckets.iter().flatten().next();
                            @let last = s.buckets.iter().flatten().last();
                            tr { td { (s.service) } td class="num" { (s.steps) } td class="num" { (svg::duration(s.median_s)) }
                                td class="num" { (first.map(|b| svg::duration(b.1)).unwrap_or_default()) }
                                td class="num" { (last.map(|b| svg::duration(b.1)).unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
        section id="model" aria-labelledby="h-model" {
            h2 id="h-model" { "Model accuracy across retrainings" }
            @if a.model.is_empty() { p class="empty" { "The strategy model has not been trained in this history." } }
            @else {
                (model_chart(a))
                table id="model-table" {
                    caption { "Each training of the strategy model" }
                    thead { tr { th { "Trained" } th { "Samples" } th { "Out-of-bag accuracy" } } }
                    tbody {
                        @for m in &a.model {
                            tr { td { (m.trained_at.format("%Y-%m-%d %H:%M:%S")) } td class="num" { (m.samples) }
                                td class="num" { (m.oob_accuracy.map(|x| format!("{}%", num(x * 100.0, 1))).unwrap_or_else(|| "—".into())) } }
                        }
                    }
                }
            }
        }
        section id="failures" aria-labelledby="h-failures" {
            h2 id="h-failures" { "Failure patterns" }
            @if a.failures_by_service.iter().all(|f| f.1 == 0) && a.patterns.is_empty() {
                p class="empty" { "No failed steps." }
            } @else {
                (failure_chart(a))
                table id="failures-by-service" {
                    caption { "Failed steps per service" }
                    thead { tr { th { "Service" } th { "Failed" } th { "Ran" } th { "Failure rate" } } }
                    tbody { @for (s, f, n) in &a.failures_by_service {
                        tr { td { (s) } td class="num" { (f) } td class="num" { (n) } td class="num" { (rate(*f, *n)) } } } }
                }
                @if !a.patterns.is_empty() {
                    h3 { "What the learning found" }
                    ul class="notes" { @for p in &a.patterns { li { (p.lesson()) " — " (p.recommendation()) } } }
                }
                @if !a.failure_messages.is_empty() {
                    table id="failure-messages" {
                        caption { "Most frequent failure messages (digits folded)" }
                        thead { tr { th { "Message" } th { "Count" } } }
                        tbody { @for (m, n) in &a.failure_messages { tr { td { (m) } td class="num" { (n) } } } }
                    }
                }
                table id="failures-by-hour" {
                    caption { "Failed deployments by hour of day (UTC)" }
                    thead { tr { th { "Hour" } @for h in 0..24 { th { (h) } } } }
                    tbody {
                        tr { th { "failed" } @for (f, _) in &a.failures_by_hour { td class="num" { (f) } } }
                        tr { th { "all" } @for (_, n) in &a.failures_by_hour { td class="num" { (n) } } }
                    }
                }
            }
        }
        footer { "Written by adeploy " (env!("CARGO_PKG_VERSION")) " from " (a.records) " history records." }
    };
    page(&options.title, body)
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;

fn bucket_axis(a: &HistoryAnalytics) -> Scale {
    Scale::new(0.0, a.buckets.len().max(1) as f64, LEFT, WIDTH - 12.0)
}

fn bucket_ticks(a: &HistoryAnalytics, x: &Scale, y: f64) -> Markup {
    let n = a.buckets.len();
    let every = n.div_ceil(6).max(1);
    html! {
        @for i in (0..n).step_by(every) {
            text class="tick" x=(num(x.at(i as f64 + 0.5), 1)) y=(num(y, 1)) text-anchor="middle" { (a.bucket_label(i)) }
        }
    }
}

fn volume_chart(a: &HistoryAnalytics) -> Markup {
    let h = 120.0;
    let x = bucket_axis(a);
    let max = a.volume.iter().map(|v| v.0).max().unwrap_or(1).max(1) as f64;
    let y = Scale::new(0.0, max, h - 24.0, 10.0);
    let bw = ((x.at(1.0) - x.at(0.0)) - 2.0).max(1.0);
    let body = html! {
        text class="tick" x=(num(LEFT - 4.0, 1)) y="14" text-anchor="end" { (max) }
        text class="tick" x=(num(LEFT - 4.0, 1)) y=(num(h - 24.0, 1)) text-anchor="end" { "0" }
        @for (i, (n, f)) in a.volume.iter().enumerate() {
            @let x0 = x.at(i as f64) + 1.0;
            rect class="step-bar s-ok" x=(num(x0, 1)) y=(num(y.at((n - f) as f64), 1)) width=(num(bw, 1))
                height=(num(y.at(0.0) - y.at((n - f) as f64), 1)) {
                title { (a.bucket_label(i)) ": " (n) " deployments, " (f) " failed" }
            }
            rect class="step-bar s-failed" x=(num(x0, 1)) y=(num(y.at(*n as f64), 1)) width=(num(bw, 1))
                height=(num(y.at((n - f) as f64) - y.at(*n as f64), 1)) {}
        }
        (bucket_ticks(a, &x, h - 8.0))
    };
    let desc = format!(
        "Deployments per bucket of {}: {} in all, {} failed; green succeeded, red failed.",
        svg::duration(a.bucket_s as f64),
        a.deployments,
        a.deployments - a.succeeded
    );
    svg::frame(
        "volume-chart",
        "Deployments over time",
        &desc,
        WIDTH,
        h,
        body,
    )
}

/// One row per strategy × environment, one cell per bucket, coloured by
/// the success rate (red 0% → green 100%), empty buckets blank.
fn heatmap(a: &HistoryAnalytics) -> Markup {
    let row = 20.0;
    let h = 16.0 + row * a.groups.len() as f64 + 20.0;
    let x = bucket_axis(a);
    let cw = (x.at(1.0) - x.at(0.0)).max(1.0);
    let body = html! {
        @for (r, g) in a.groups.iter().enumerate() {
            @let y = 10.0 + r as f64 * row;
            text class="row-label" x="4" y=(num(y + 14.0, 1)) { (g.strategy) " · " (g.environment) }
            @for (i, (n, ok)) in g.buckets.iter().enumerate() {
                @if *n > 0 {
                    @let rate = *ok as f64 / *n as f64;
                    rect class="cell" data-rate=(num(rate, 3)) x=(num(x.at(i as f64), 1)) y=(num(y, 1))
                        width=(num(cw, 1)) height=(num(row - 2.0, 1)) fill=(rate_colour(rate)) {
                        title { (g.strategy) " in " (g.environment) ", " (a.bucket_label(i)) ": "
                            (ok) " of " (n) " succeeded (" (num(rate * 100.0, 0)) "%)" }
                    }
                }
            }
        }
        (bucket_ticks(a, &x, h - 6.0))
    };
    let desc = format!(
        "{} strategy and environment groups over {} buckets; each cell's colour is the success rate, from red (0%) to green (100%). The table below has the figures.",
        a.groups.len(),
        a.buckets.len()
    );
    svg::frame(
        "success-heatmap",
        "Success rate per strategy and environment over time",
        &desc,
        WIDTH,
        h,
        body,
    )
}

/// Red → amber → green; a presentation attribute, not CSS, so the page's
/// Content-Security-Policy (no inline styles) allows it.
fn rate_colour(rate: f64) -> String {
    let r = rate.clamp(0.0, 1.0);
    let (c0, c1, t) = if r < 0.5 {
        ((207.0, 34.0, 46.0), (191.0, 135.0, 0.0), r * 2.0)
    } else {
        ((191.0, 135.0, 0.0), (26.0, 127.0, 55.0), (r - 0.5) * 2.0)
    };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(c0.0, c1.0),
        mix(c0.1, c1.1),
        mix(c0.2, c1.2)
    )
}

fn bucket_label_fn(v: f64) -> String {
    // The x axis of bucket charts is labelled by the table and the volume
    // chart above; here the tick is the bucket's ordinal.
    format!("#{}", num(v, 0))
}

fn secs_label(v: f64) -> String {
    svg::duration(v)
}

fn duration_chart(a: &HistoryAnalytics, i: usize, s: &ServiceSeries) -> Markup {
    let med: Vec<(f64, f64)> = s
        .buckets
        .iter()
        .enumerate()
        .map(|(k, b)| (k as f64 + 1.0, b.map_or(f64::NAN, |b| b.1)))
        .collect();
    let p90: Vec<(f64, f64)> = s
        .buckets
        .iter()
        .enumerate()
        .map(|(k, b)| (k as f64 + 1.0, b.map_or(f64::NAN, |b| b.2)))
        .collect();
    let series = vec![
        Series {
            name: "median".into(),
            class: "cpu",
            points: med,
            dots: true,
        },
        Series {
            name: "90th percentile".into(),
            class: "p90",
            points: p90,
            dots: false,
        },
    ];
    LineChart {
        id: format!("duration-chart-{i}"),
        title: format!("{}: step duration over time", s.service),
        desc: format!(
            "{} successful steps of {}, median {}; one point per bucket ({} buckets of {}).",
            s.steps,
            s.service,
            svg::duration(s.median_s),
            a.buckets.len(),
            svg::duration(a.bucket_s as f64)
        ),
        width: WIDTH,
        height: 110.0,
        left: LEFT,
        x_domain: (1.0, a.buckets.len().max(2) as f64),
        y_domain: svg::y_domain(&series, &[]),
        x_label: bucket_label_fn,
        y_label: secs_label,
        series,
        marks: Vec::new(),
        label: Some(s.service.clone()),
    }
    .render()
}

fn accuracy_label(v: f64) -> String {
    format!("{}%", num(v * 100.0, 0))
}

fn model_chart(a: &HistoryAnalytics) -> Markup {
    let pts: Vec<(f64, f64)> = a
        .model
        .iter()
        .map(|m| (m.samples as f64, m.oob_accuracy.unwrap_or(f64::NAN)))
        .collect();
    let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    let x_min = pts.iter().map(|p| p.0).fold(x_max, f64::min);
    LineChart {
        id: "model-chart".into(),
        title: "Out-of-bag accuracy of the strategy model at each retraining".into(),
        desc: format!(
            "{} trainings, from {} to {} samples; latest accuracy {}.",
            a.model.len(),
            num(x_min, 0),
            num(x_max, 0),
            a.model
                .last()
                .and_then(|m| m.oob_accuracy)
                .map(|x| format!("{}%", num(x * 100.0, 1)))
                .unwrap_or_else(|| "unknown".into())
        ),
        width: WIDTH,
        height: 150.0,
        left: LEFT,
        x_domain: (x_min, x_max),
        y_domain: (0.0, 1.0),
        x_label: |v| format!("{} samples", num(v, 0)),
        y_label: accuracy_label,
        series: vec![Series {
            name: "out-of-bag accuracy".into(),
            class: "cpu",
            points: pts,
            dots: true,
        }],
        marks: Vec::new(),
        label: None,
    }
    .render()
}

fn failure_chart(a: &HistoryAnalytics) -> Markup {
    let rows: Vec<&(String, usize, usize)> =
        a.failures_by_service.iter().filter(|f| f.1 > 0).collect();
    let row = 18.0;
    let h = 10.0 + row * rows.len().max(1) as f64 + 8.0;
    let max = rows.iter().map(|f| f.1).max().unwrap_or(1).max(1) as f64;
    let x = Scale::new(0.0, max, LEFT, WIDTH - 80.0);
    let body = html! {
        @for (i, (s, f, n)) in rows.iter().map(|r| (&r.0, r.1, r.2)).enumerate() {
            @let y = 8.0 + i as f64 * row;
            text class="row-label" x="4" y=(num(y + 12.0, 1)) { (s) }
            rect class="hbar" x=(num(LEFT, 1)) y=(num(y, 1)) width=(num((x.at(f as f64) - LEFT).max(1.0), 1)) height=(num(row - 4.0, 1)) {
                title { (s) ": " (f) " of " (n) " steps failed" }
            }
            text class="hbar-label" x=(num(x.at(f as f64) + 4.0, 1)) y=(num(y + 12.0, 1)) { (f) " / " (n) }
        }
    };
    svg::frame(
        "failure-chart",
        "Failed steps per service",
        &format!(
            "{} services with failed steps; the table below lists every service.",
            rows.len()
        ),
        WIDTH,
        h,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(i: i64, strategy: &str, ok: bool) -> DeploymentRecord {
        let at = DateTime::from_timestamp(1_767_225_600 + i * 3_600, 0).unwrap_or_default();
        DeploymentRecord {
            status: if ok {
                crate::history::DeploymentStatus::Succeeded
            } else {
                crate::history::DeploymentStatus::RolledBack
            },
            environment: "staging".into(),
            strategy: strategy.into(),
            success: Some(ok),
            duration_s: Some(10.0),
            steps: serde_json::from_value(json!([
                {"service": "api", "wave": 1, "status": if ok { "succeeded" } else { "failed" }, "started_at": at,
                 "seconds": 2.0 + (i % 3) as f64, "message": format!("exit status {}", i % 7)}
            ]))
            .unwrap(),
            ..DeploymentRecord::running(format!("d{i}"), at)
        }
    }

    /// However many deployments, the page has at most `max_buckets`
    /// buckets and `max_series` groups, on a round bucket width.
    #[test]
    fn aggregates_stay_bounded() {
        let records: Vec<DeploymentRecord> = (0..5_000)
            .map(|i| record(i, &format!("s{}", i % 40), i % 5 != 0))
            .collect();
        let a = HistoryAnalytics::compute(&records, &HistoryOptions::default());
        assert!(a.buckets.len() <= 24, "{}", a.buckets.len());
        assert!(WIDTHS.contains(&a.bucket_s));
        assert_eq!(a.groups.len(), 20);
        assert_eq!(a.deployments, 5_000);
        assert_eq!(a.succeeded, 4_000);
        assert_eq!(a.volume.iter().map(|v| v.0).sum::<usize>(), 5_000);
        assert_eq!(
            a.failure_messages.len(),
            1,
            "digits folded: {:?}",
            a.failure_messages
        );
        assert_eq!(a.failure_messages[0], ("exit status #".to_string(), 1_000));
        let api = &a.services[0];
        assert_eq!(api.steps, 4_000);
        assert!((api.median_s - 3.0).abs() < 1e-9);
    }

    /// Dry runs and unfinished deployments are counted apart.
    #[test]
    fn dry_runs_and_unfinished_are_not_outcomes() {
        let mut dry = record(1, "a", true);
        dry.dry_run = true;
        let running = DeploymentRecord::running("r", dry.started_at);
        let a = HistoryAnalytics::compute(
            &[dry, running, record(2, "a", false)],
            &HistoryOptions::default(),
        );
        assert_eq!(
            (a.dry_runs, a.unfinished, a.deployments, a.succeeded),
            (1, 1, 1, 0)
        );
    }

    /// Model points from decision logs and audit entries, one per training.
    #[test]
    fn model_points_come_from_either_log() {
        let entries = vec![
            json!({"decision_type": "history_loaded", "details": {"model": {"samples": 20, "trained_at": "2026-01-02T00:00:00Z", "oob_accuracy": 0.7}}}),
            json!({"decision_type": "history_loaded", "details": {"model": {"samples": 20, "trained_at": "2026-01-02T00:00:00Z", "oob_accuracy": 0.7}}}),
            json!({"decision_type": "history_loaded", "details": {"model": null}}),
            json!({"action": "model_retrain", "timestamp": "2026-01-01T00:00:00Z", "details": {"samples": 10, "oob_accuracy": 0.6}}),
        ];
        let m = ModelPoint::from_log(&entries);
        assert_eq!(m.iter().map(|p| p.samples).collect::<Vec<_>>(), [10, 20]);
    }
}
