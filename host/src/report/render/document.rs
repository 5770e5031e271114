//! The report as the renderers read it: a tolerant view of the JSON report
//! document.
//!
//! Why a view and not [`Report`] itself: the renderers must keep working
//! while the report grows (typed decisions that serialise to
//! `{timestamp, decision_type, details}`, a top-level `analysis` list, the
//! deployment's own process-tree usage, per-step phases) and must render
//! reports written by older and newer versions of adeploy. So they read the
//! *serialised* shape: every field here has a default, optional sections are
//! parsed leniently (a section of an unexpected shape is dropped with a
//! warning, never fatal), and statuses stay strings so a new status renders
//! instead of failing.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::history::MetricSample;

use super::RenderError;
use crate::report::Report;

/// A deployment report as the renderers read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Document {
    pub deployment_summary: SummaryView,
    #[serde(deserialize_with = "lenient_list")]
    pub decision_process: Vec<DecisionView>,
    #[serde(deserialize_with = "lenient")]
    pub plan: Option<PlanSummary>,
    #[serde(deserialize_with = "lenient_list")]
    pub steps: Vec<StepView>,
    #[serde(deserialize_with = "lenient")]
    pub performance_analysis: Option<PerformanceView>,
    #[serde(deserialize_with = "lenient")]
    pub system_impact: Option<ImpactView>,
    #[serde(deserialize_with = "lenient_list")]
    pub lessons_learned: Vec<String>,
    #[serde(deserialize_with = "lenient_list")]
    pub recommendations: Vec<String>,
    /// Metric verdicts (phase 2 of the metric analysis adds this list).
    #[serde(deserialize_with = "lenient_list")]
    pub analysis: Vec<AnalysisView>,
    /// The machine's load over the deployment. Not in today's report file:
    /// the history holds the samples ([`Document::with_resource_samples`]).
    #[serde(deserialize_with = "lenient_list")]
    pub resource_samples: Vec<ResourcePoint>,
    /// The deployment's own processes (what adeploy started and their
    /// descendants), when measured.
    #[serde(deserialize_with = "lenient")]
    pub process_usage: Option<ProcessUsage>,
}

/// `deployment_summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryView {
    pub id: String,
    pub success: bool,
    pub status: String,
    pub duration_minutes: f64,
    pub strategy_used: String,
    pub environment: String,
    pub services: Vec<String>,
    pub dry_run: bool,
    #[serde(deserialize_with = "lenient")]
    pub started_at: Option<DateTime<Utc>>,
}

/// One decision of the log, in its serialised shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionView {
    #[serde(deserialize_with = "lenient")]
    pub timestamp: Option<DateTime<Utc>>,
    pub decision_type: String,
    pub details: Value,
}

impl DecisionView {
    /// The decision as one readable line ([`Decision::summary`](crate::report::Decision::summary)):
    /// the same sentence `run` and `report` print. A type or shape this
    /// version does not know reads generically.
    pub fn summary(&self) -> String {
        crate::report::Decision::from_parts(&self.decision_type, self.details.clone()).summary()
    }
}

/// The plan, as much of it as the pages show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSummary {
    pub strategy: String,
    pub waves: Vec<Vec<String>>,
    pub concurrency: u32,
    pub health_checks: bool,
    pub samples: u32,
    pub interval_ms: u32,
    pub soak_s: u32,
    pub max_failures: u32,
    pub rollback_scope: String,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// One step (a service, or a service on one host).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepView {
    pub service: String,
    pub host: Option<String>,
    /// As written: zero-based in reports of this version, one-based later;
    /// [`Document::wave_base`] tells which.
    pub wave: u32,
    pub status: String,
    #[serde(deserialize_with = "lenient")]
    pub started_at: Option<DateTime<Utc>>,
    pub seconds: f64,
    pub message: String,
    pub rolled_back: Option<bool>,
    pub rollback_message: Option<String>,
    /// The version that went out and the one it was rolled back to, when
    /// services declare versions.
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// Deploy, health, soak, analysis, rollback as timed parts of the step
    /// (not in today's report: the step is one bar then).
    #[serde(deserialize_with = "lenient_list")]
    pub phases: Vec<PhaseView>,
}

impl StepView {
    /// `service@host`, or the service alone.
    pub fn name(&self) -> String {
        match &self.host {
            Some(h) => format!("{}@{h}", self.service),
            None => self.service.clone(),
        }
    }

    /// What the step's status means for the pages.
    pub fn outcome(&self) -> Outcome {
        Outcome::of(&self.status)
    }
}

/// A timed part of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseView {
    /// `deploy`, `health`, `soak`, `analysis`, `rollback`, `hook`, ...
    pub kind: String,
    #[serde(deserialize_with = "lenient")]
    pub started_at: Option<DateTime<Utc>>,
    pub seconds: f64,
    /// `succeeded`, `failed`, ... (free text: rendered as given).
    pub status: String,
    pub message: Option<String>,
    /// Individual health probes or metric queries within the phase.
    #[serde(deserialize_with = "lenient_list")]
    pub samples: Vec<ProbeView>,
}

/// One probe within a phase: when, and whether it passed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeView {
    #[serde(deserialize_with = "lenient")]
    pub timestamp: Option<DateTime<Utc>>,
    pub ok: bool,
    pub message: Option<String>,
}

/// `performance_analysis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerformanceView {
    pub duration_performance: String,
    pub benchmark_duration: Option<f64>,
    pub actual_duration: f64,
    pub duration_variance: Option<f64>,
    pub benchmark_samples: usize,
    pub predicted_duration: Option<f64>,
    pub prediction_basis: Option<String>,
    pub prediction_error: Option<f64>,
}

/// `system_impact`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImpactView {
    pub cpu_impact_percent: f64,
    pub memory_impact_percent: f64,
    pub overall_impact: String,
    pub baseline_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    pub baseline_memory_percent: f64,
    pub peak_memory_percent: f64,
    pub samples: usize,
}

/// One metric verdict: samples against a threshold or a baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisView {
    pub service: String,
    pub host: Option<String>,
    #[serde(alias = "name")]
    pub metric: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// `threshold` or `comparison` (inferred from the fields when absent).
    pub mode: Option<String>,
    #[serde(deserialize_with = "lenient_list")]
    pub samples: Vec<SampleView>,
    #[serde(alias = "baseline", deserialize_with = "lenient_list")]
    pub baseline_samples: Vec<SampleView>,
    #[serde(deserialize_with = "lenient")]
    pub max: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub min: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub statistic: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub p_value: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub effect_size: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub tolerance: Option<f64>,
    #[serde(alias = "reason", deserialize_with = "lenient")]
    pub message: Option<String>,
}

impl AnalysisView {
    /// `service@host · metric`.
    pub fn label(&self) -> String {
        let who = match &self.host {
            Some(h) => format!("{}@{h}", self.service),
            None => self.service.clone(),
        };
        if who.is_empty() {
            self.metric.clone()
        } else {
            format!("{who} · {}", self.metric)
        }
    }
}

/// A metric sample: a bare number, `[timestamp_ms, value]`, or an object
/// with `value` and a timestamp (RFC 3339 or milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SampleView {
    pub timestamp: Option<DateTime<Utc>>,
    pub value: f64,
}

impl<'de> Deserialize<'de> for SampleView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let ms = |v: &Value| {
            v.as_i64()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        };
        let sample = match &v {
            Value::Number(n) => n.as_f64().map(|value| SampleView {
                timestamp: None,
                value,
            }),
            Value::Array(a) if a.len() == 2 => a[1].as_f64().map(|value| SampleView {
                timestamp: ms(&a[0]),
                value,
            }),
            Value::Object(o) => o.get("value").and_then(Value::as_f64).map(|value| {
                let ts = ["timestamp", "timestamp_ms", "t"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(ms));
                SampleView {
                    timestamp: ts,
                    value,
                }
            }),
            _ => None,
        };
        sample.ok_or_else(|| serde::de::Error::custom("not a metric sample"))
    }
}

/// One reading of the machine over the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourcePoint {
    pub timestamp: DateTime<Utc>,
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

/// The deployment's own processes over time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessUsage {
    /// How it was measured (`cgroup`, `process-groups`, ...).
    pub method: Option<String>,
    #[serde(deserialize_with = "lenient_list")]
    pub samples: Vec<ProcessPoint>,
}

/// One reading of the deployment's process trees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessPoint {
    pub timestamp: DateTime<Utc>,
    /// Percent of one core (may exceed 100 on several cores).
    #[serde(default)]
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    #[serde(default, alias = "rss_bytes")]
    pub memory_bytes: f64,
}

/// What a status means for colours, counts and JUnit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Never ran (skipped, pending).
    NotRun,
    /// A status this version does not know.
    Other,
}

impl Outcome {
    pub fn of(status: &str) -> Outcome {
        match status {
            "succeeded" | "success" | "ok" | "pass" | "passed" => Outcome::Ok,
            "failed" | "cancelled" | "fail" | "error" | "rollback_failed" => Outcome::Failed,
            "skipped" | "pending" | "not_started" => Outcome::NotRun,
            _ => Outcome::Other,
        }
    }

    /// The CSS class suffix.
    pub fn class(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::NotRun => "notrun",
            Outcome::Other => "other",
        }
    }
}

impl Document {
    /// The document of a report as built by this version.
    pub fn from_report(report: &Report) -> Result<Document, RenderError> {
        let value =
            serde_json::to_value(report).map_err(|source| RenderError::Serialise { source })?;
        Document::from_value(value)
    }

    /// The document of a report file's JSON (any adeploy version).
    pub fn from_value(value: Value) -> Result<Document, RenderError> {
        if value.get("deployment_summary").is_none() {
            return Err(RenderError::NotAReport {
                missing: "deployment_summary",
            });
        }
        serde_json::from_value(value).map_err(|source| RenderError::Malformed { source })
    }

    /// Reads a report file's text.
    pub fn from_json(text: &str) -> Result<Document, RenderError> {
        let value: Value =
            serde_json::from_str(text).map_err(|source| RenderError::Malformed { source })?;
        Document::from_value(value)
    }

    /// Adds the machine's load over the deployment (the history keeps the
    /// samples: `History::samples(id)`), unless the report carries its own.
    pub fn with_resource_samples(mut self, samples: &[MetricSample]) -> Document {
        if self.resource_samples.is_empty() {
            self.resource_samples = samples
                .iter()
                .map(|s| ResourcePoint {
                    timestamp: s.timestamp,
                    cpu_percent: s.cpu_percent,
                    memory_percent: s.memory_percent,
                })
                .collect();
            self.resource_samples.sort_by_key(|p| p.timestamp);
        }
        self
    }

    /// The smallest wave number written (0 in reports that count from 0).
    pub fn wave_base(&self) -> u32 {
        self.steps.iter().map(|s| s.wave).min().unwrap_or(0)
    }

    /// A step's wave, counted from 1.
    pub fn wave_of(&self, step: &StepView) -> u32 {
        step.wave.saturating_sub(self.wave_base()) + 1
    }

    /// Steps per outcome: (ok, failed, not run, other).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in &self.steps {
            match s.outcome() {
                Outcome::Ok => c.0 += 1,
                Outcome::Failed => c.1 += 1,
                Outcome::NotRun => c.2 += 1,
                Outcome::Other => c.3 += 1,
            }
        }
        c
    }

    /// The deployment's time span: the summary's start and duration,
    /// widened to anything recorded outside it.
    pub fn span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        let start = self.deployment_summary.started_at;
        if let Some(s) = start {
            times.push(s);
            let ms = (self.deployment_summary.duration_minutes * 60_000.0).round();
            if ms.is_finite() && ms >= 0.0 {
                times.push(s + chrono::Duration::milliseconds(ms as i64));
            }
        }
        for st in &self.steps {
            if let Some(t) = st.started_at {
                times.push(t);
                times.push(t + secs(st.seconds));
            }
        }
        times.extend(self.decision_process.iter().filter_map(|d| d.timestamp));
        let first = times.iter().min().copied()?;
        let last = times.iter().max().copied()?;
        Some((start.unwrap_or(first).min(first), last))
    }

    /// The timeline: one row per step, in wave order, with its bars.
    pub fn timeline(&self) -> Timeline {
        let Some((start, end)) = self.span() else {
            return Timeline::default();
        };
        let at = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by_key(|&i| (self.steps[i].wave, self.steps[i].started_at.is_none()));
        let rollbacks = self.rollback_spans();
        let mut rows: Vec<TimelineRow> = Vec::new();
        for i in order {
            let st = &self.steps[i];
            let mut bars = Vec::new();
            let mut probes = Vec::new();
            let step_bar = match st.started_at {
                Some(t) => Bar {
                    kind: "step".into(),
                    start_s: at(t),
                    end_s: at(t) + st.seconds.max(0.0),
                    status: st.status.clone(),
                    label: st.message.clone(),
                },
                None => {
                    // Never started: a mark where its wave stopped.
                    let stop = self
                        .steps
                        .iter()
                        .filter(|o| o.wave <= st.wave)
                        .filter_map(|o| o.started_at.map(|t| at(t) + o.seconds))
                        .fold(0.0, f64::max);
                    Bar {
                        kind: "step".into(),
                        start_s: stop,
                        end_s: stop,
                        status: st.status.clone(),
                        label: st.message.clone(),
                    }
                }
            };
            bars.push(step_bar);
            let mut has_rollback_phase = false;
            for p in &st.phases {
                let Some(t) = p.started_at else { continue };
                has_rollback_phase |= p.kind == "rollback";
                bars.push(Bar {
                    kind: p.kind.clone(),
                    start_s: at(t),
                    end_s: at(t) + p.seconds.max(0.0),
                    status: p.status.clone(),
                    label: p.message.clone().unwrap_or_default(),
                });
                for s in &p.samples {
                    if let Some(ts) = s.timestamp {
                        probes.push(Probe {
                            at_s: at(ts),
                            ok: s.ok,
                            kind: p.kind.clone(),
                        });
                    }
                }
            }
            if !has_rollback_phase && let Some(rb) = rollbacks.iter().find(|r| r.name == st.name())
            {
                bars.push(Bar {
                    kind: "rollback".into(),
                    start_s: at(rb.start),
                    end_s: at(rb.end),
                    status: if rb.ok {
                        "rolled_back"
                    } else {
                        "rollback_failed"
                    }
                    .into(),
                    label: rb.message.clone(),
                });
            }
            rows.push(TimelineRow {
                wave: self.wave_of(st),
                label: st.name(),
                status: st.status.clone(),
                bars,
                probes,
            });
        }
        let total_s = rows
            .iter()
            .flat_map(|r| r.bars.iter().map(|b| b.end_s))
            .fold(at(end), f64::max);
        Timeline {
            start: Some(start),
            total_s,
            rows,
        }
    }

    /// Rollbacks as the decision log records them: `rollback_started`, then
    /// one `step_rolled_back` per target, in order (rollbacks run one at a
    /// time, so each starts where the previous one ended).
    fn rollback_spans(&self) -> Vec<RollbackSpan> {
        let mut out = Vec::new();
        let mut cursor: Option<DateTime<Utc>> = None;
        for d in &self.decision_process {
            match d.decision_type.as_str() {
                "rollback_started" => cursor = d.timestamp,
                "step_rolled_back" => {
                    let (Some(start), Some(end)) = (cursor, d.timestamp) else {
                        continue;
                    };
                    let service = d.details["service"].as_str().unwrap_or_default();
                    let name = match d.details["host"].as_str() {
                        Some(h) => format!("{service}@{h}"),
                        None => service.to_string(),
                    };
                    out.push(RollbackSpan {
                        name,
                        start,
                        end,
                        ok: d.details["ok"].as_bool().unwrap_or(false),
                        message: d.details["message"].as_str().unwrap_or_default().into(),
                    });
                    cursor = Some(end);
                }
                _ => {}
            }
        }
        out
    }
}

fn secs(s: f64) -> chrono::Duration {
    let ms = (s * 1000.0).round();
    if ms.is_finite() && ms >= 0.0 {
        chrono::Duration::milliseconds(ms as i64)
    } else {
        chrono::Duration::zero()
    }
}

#[derive(Debug)]
struct RollbackSpan {
    name: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    ok: bool,
    message: String,
}

/// The timeline of a deployment, in seconds from its start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub start: Option<DateTime<Utc>>,
    pub total_s: f64,
    pub rows: Vec<TimelineRow>,
}

/// One step's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    /// Counted from 1.
    pub wave: u32,
    pub label: String,
    pub status: String,
    /// The step's own bar first, then its phases and its rollback.
    pub bars: Vec<Bar>,
    /// Health probes and metric queries, when recorded.
    pub probes: Vec<Probe>,
}

/// A bar of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// `step` (the whole step), or a phase: `deploy`, `health`, `soak`,
    /// `analysis`, `rollback`, ...
    pub kind: String,
    pub start_s: f64,
    pub end_s: f64,
    pub status: String,
    pub label: String,
}

/// A probe's mark on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub at_s: f64,
    pub ok: bool,
    pub kind: String,
}

/// Deserialises `T`, or its default (with a warning) when the value has
/// another shape: one odd section never makes a report unreadable.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(T::default());
    }
    Ok(serde_json::from_value(v).unwrap_or_else(|e| {
        tracing::warn!("a report field has an unexpected shape and is not shown: {e}");
        T::default()
    }))
}

/// A list whose items are read one by one; items of another shape are
/// dropped (with a warning), the rest kept.
fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Array(items) = v else {
        if !v.is_null() {
            tracing::warn!("a report field is not a list and is not shown");
        }
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter_map(|item| match serde_json::from_value(item) {
            Ok(x) => Some(x),
            Err(e) => {
                tracing::warn!("a report list item has an unexpected shape and is not shown: {e}");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A report of another version: a decision type and a step status this
    /// build does not know, waves counted from 1, an `analysis` entry whose
    /// `baseline` is a query string, a malformed process-usage section.
    #[test]
    fn a_report_of_another_version_still_renders() {
        let v = json!({
            "deployment_summary": {"id": "d1", "success": false, "status": "rollback_failed",
                "started_at": "2026-01-01T00:00:00Z", "duration_minutes": 0.1, "future_field": 1},
            "decision_process": [
                {"timestamp": "2026-01-01T00:00:01Z", "decision_type": "quantum_override", "details": {"x": [1, 2]}},
                {"timestamp": "not a time", "decision_type": "rollback_started", "details": null},
            ],
            "steps": [
                {"service": "a", "wave": 1, "status": "succeeded", "started_at": "2026-01-01T00:00:01Z", "seconds": 1.0},
                {"service": "b", "wave": 2, "status": "analysis_failed", "started_at": "2026-01-01T00:00:02Z", "seconds": 2.0},
            ],
            "analysis": [{"service": "b", "metric": "m", "verdict": "fail", "baseline": "rate(x[1m])",
                "samples": [1.0, [1767225600000u64, 2.0], {"timestamp": "2026-01-01T00:00:03Z", "value": 3.0}, "junk"]}],
            "process_usage": "measured elsewhere",
        });
        let doc = Document::from_value(v).unwrap();
        assert_eq!(
            doc.wave_of(&doc.steps[0]),
            1,
            "waves counted from 1 stay so"
        );
        assert_eq!(doc.wave_of(&doc.steps[1]), 2);
        assert_eq!(doc.steps[1].outcome(), Outcome::Other);
        assert_eq!(doc.decision_process[1].timestamp, None);
        assert!(doc.process_usage.is_none());
        let a = &doc.analysis[0];
        assert!(
            a.baseline_samples.is_empty(),
            "a query string is not samples"
        );
        assert_eq!(
            a.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0]
        );
        assert!(a.samples[1].timestamp.is_some() && a.samples[2].timestamp.is_some());
        let t = doc.timeline();
        assert_eq!(t.rows.len(), 2);
        assert!((t.rows[1].bars[0].start_s - 2.0).abs() < 1e-9);
        for f in [
            super::super::Format::Html,
            super::super::Format::Junit,
            super::super::Format::Markdown,
        ] {
            let out = super::super::render_document(&doc, f);
            assert!(
                out.contains("quantum"),
                "{f}: the unknown decision is shown"
            );
        }
    }

    /// Zero-based waves (this version's reports) show as 1, 2, ...
    #[test]
    fn zero_based_waves_are_shown_from_one() {
        let doc = Document::from_value(json!({
            "deployment_summary": {"id": "d"},
            "steps": [{"service": "a", "wave": 0, "status": "succeeded"}, {"service": "b", "wave": 1, "status": "skipped"}],
        }))
        .unwrap();
        assert_eq!(doc.wave_of(&doc.steps[1]), 2);
    }

    /// Rollbacks are read from the decision log, one after another.
    #[test]
    fn rollback_bars_come_from_the_decision_log() {
        let doc = Document::from_value(json!({
            "deployment_summary": {"id": "d", "started_at": "2026-01-01T00:00:00Z", "duration_minutes": 0.2},
            "steps": [
                {"service": "a", "host": "h1", "wave": 0, "status": "succeeded", "started_at": "2026-01-01T00:00:00Z", "seconds": 1.0, "rolled_back": true},
                {"service": "b", "wave": 1, "status": "failed", "started_at": "2026-01-01T00:00:01Z", "seconds": 1.0, "rolled_back": false},
            ],
            "decision_process": [
                {"timestamp": "2026-01-01T00:00:02Z", "decision_type": "rollback_started", "details": {}},
                {"timestamp": "2026-01-01T00:00:03Z", "decision_type": "step_rolled_back", "details": {"service": "b", "host": null, "ok": false, "message": "boom"}},
                {"timestamp": "2026-01-01T00:00:05Z", "decision_type": "step_rolled_back", "details": {"service": "a", "host": "h1", "ok": true, "message": "rolled back"}},
            ],
        }))
        .unwrap();
        let t = doc.timeline();
        let rb = |row: usize| {
            t.rows[row]
                .bars
                .iter()
                .find(|b| b.kind == "rollback")
                .cloned()
                .unwrap()
        };
        assert_eq!(
            (rb(0).start_s, rb(0).end_s, rb(0).status.as_str()),
            (3.0, 5.0, "rolled_back")
        );
        assert_eq!(
            (rb(1).start_s, rb(1).end_s, rb(1).status.as_str()),
            (2.0, 3.0, "rollback_failed")
        );
    }
}
