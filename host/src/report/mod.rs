//! Deployment reports: the seed's sections (`deployment_summary`,
//! `decision_process`, `performance_analysis`, `system_impact`,
//! `lessons_learned`, `recommendations`) plus the plan and every step.
//!
//! Why a report is computed once and stored as a file: it is the deployment's
//! record for people (and for CI artifacts); `adeploy report ID` reads it back
//! rather than recomputing from a history that may have moved on. Files are
//! written to a temporary name and renamed, so a crash never leaves half a
//! report.

pub mod decision;
pub mod render;
mod summary;

pub use render::{Document, Format, RenderError, history_page, render};

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{MetricVerdict, Verdict};
use crate::config::Environment;
use crate::history::{DeploymentRecord, DeploymentStatus};
pub use crate::history::{StepRecord, StepStatus, step_label};
use crate::ml::{DurationEstimate, FailurePattern};
use crate::monitor::{ProcessSample, Snapshot, TrackingMode};
use crate::plugin::Rollout;
pub use decision::{
    Approval, CandidateScore, Decision, DecisionEntry, DriftDetection, Exploration,
};

/// Per-host results of fleet steps, for `adeploy list` and the summary:
/// `web-1:ok web-2:failed+rolled-back web-3:skipped` (a host's worst step;
/// `+rolled-back` when a step on it was rolled back, `+rollback-failed`
/// when that failed). `None` when no step has a host.
pub fn host_results(steps: &[StepRecord]) -> Option<String> {
    let mut hosts: Vec<(&str, u8, Option<bool>)> = Vec::new();
    for st in steps {
        let Some(h) = st.host.as_deref() else {
            continue;
        };
        let rank = match st.status {
            StepStatus::Succeeded => 0,
            StepStatus::Pending => 1,
            StepStatus::Skipped => 2,
            StepStatus::Cancelled => 3,
            StepStatus::Failed => 4,
        };
        match hosts.iter_mut().find(|(name, _, _)| *name == h) {
            Some(entry) => {
                entry.1 = entry.1.max(rank);
                entry.2 = match (entry.2, st.rolled_back) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    _ => None,
                };
            }
            None => hosts.push((h, rank, st.rolled_back)),
        }
    }
    if hosts.is_empty() {
        return None;
    }
    let words = ["ok", "pending", "skipped", "cancelled", "failed"];
    Some(
        hosts
            .iter()
            .map(|(h, rank, rb)| {
                format!(
                    "{h}:{}{}",
                    words[usize::from(*rank)],
                    match rb {
                        Some(true) => "+rolled-back",
                        Some(false) => "+rollback-failed",
                        None => "",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The plan as people read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    pub strategy: String,
    /// Service names per wave (`service@host` for fleet steps).
    pub waves: Vec<Vec<String>>,
    pub concurrency: u32,
    pub health_checks: bool,
    pub samples: u32,
    pub interval_ms: u32,
    pub soak_s: u32,
    pub max_failures: u32,
    pub rollback_scope: String,
    pub notes: Vec<String>,
    /// What the operator should weigh before confirming (predicted
    /// failure probability, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The metric analysis of each service that has one: what is queried,
    /// how it is judged, and what the provider said of each query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<AnalysisPlanView>,
}

/// A service's analysis as the plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisPlanView {
    pub service: String,
    pub interval_s: u64,
    pub samples: u32,
    /// What an inconclusive verdict means here (`fail`, `ask`, `pass`).
    pub inconclusive: String,
    pub metrics: Vec<MetricPlanView>,
}

/// One metric of an [`AnalysisPlanView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPlanView {
    pub name: String,
    pub provider: String,
    /// The query as it will be sent (placeholders filled in).
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The rule in words.
    pub rule: String,
    /// What the provider's check said: `ok (…)`, `unavailable: …`, or why
    /// it was not checked.
    pub check: String,
}

impl AnalysisPlanView {
    /// Lines for the terminal: the service, then one line per metric.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "  analysis of {}: {} sample(s) {} s apart after health, inconclusive → {}\n",
            self.service, self.samples, self.interval_s, self.inconclusive
        );
        for m in &self.metrics {
            s.push_str(&format!(
                "    {} ({}): {} — {}\n      query: {}\n",
                m.name, m.provider, m.rule, m.check, m.query
            ));
            if let Some(b) = &m.baseline {
                s.push_str(&format!("      baseline: {b}\n"));
            }
        }
        s
    }
}

impl PlanView {
    pub fn new(strategy: &str, r: &Rollout) -> PlanView {
        PlanView {
            strategy: strategy.to_string(),
            waves: r
                .waves
                .iter()
                .map(|w| {
                    w.steps
                        .iter()
                        .map(|s| step_label(&s.service, s.host.as_deref()))
                        .collect()
                })
                .collect(),
            concurrency: r.concurrency,
            health_checks: r.validation.health_checks,
            samples: r.validation.samples,
            interval_ms: r.validation.interval_ms,
            soak_s: r.validation.soak_s,
            max_failures: r.failure.max_failures,
            rollback_scope: r.failure.rollback_scope.to_string(),
            notes: r.notes.clone(),
            warnings: Vec::new(),
            analysis: Vec::new(),
        }
    }
}

/// `deployment_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub success: bool,
    pub status: DeploymentStatus,
    pub duration_minutes: f64,
    pub strategy_used: String,
    pub environment: Environment,
    pub services: Vec<String>,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    /// What went out and what each step runs now (steps of services with a
    /// version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionChange>,
    /// Steps whose rollback failed: what is left deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_deployed: Vec<LeftDeployed>,
}

/// A step whose rollback failed, so its deploy's effects are still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftDeployed {
    /// `service` or `service@host`.
    pub step: String,
    pub service: String,
    pub host: Option<String>,
    /// The version that stayed out, when the service has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why the rollback failed.
    pub message: String,
}

impl LeftDeployed {
    /// The steps of `steps` whose rollback failed.
    pub fn of(steps: &[StepRecord]) -> Vec<LeftDeployed> {
        steps
            .iter()
            .filter(|s| s.rolled_back == Some(false))
            .map(|s| LeftDeployed {
                step: s.label(),
                service: s.service.clone(),
                host: s.host.clone(),
                version: s.version.clone(),
                message: s.rollback_message.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// A step's version: what went out, what it replaced, and what runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    /// `service` or `service@host`.
    pub step: String,
    /// What this deployment put out.
    pub version: Option<String>,
    /// The last version deployed successfully before it.
    pub previous_version: Option<String>,
    /// `deployed`, `rolled_back`, `rollback_failed`, `failed` (not rolled
    /// back) or `not_deployed`.
    pub outcome: String,
    /// What the step runs now, as far as adeploy knows: the new version, or
    /// the previous one after a rollback (none when unknown).
    pub running: Option<String>,
    /// A container step: the image that went out (`image:version`) and its
    /// digest, and after a rollback the digest serving again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to_digest: Option<String>,
}

impl VersionChange {
    /// The versions of `steps` (those with a version or a previous one).
    pub fn of(steps: &[StepRecord]) -> Vec<VersionChange> {
        steps
            .iter()
            .filter(|s| s.version.is_some() || s.previous_version.is_some())
            .map(|s| {
                let (outcome, running) = match (s.rolled_back, s.deployed(), s.status) {
                    (Some(true), _, _) => ("rolled_back", s.previous_version.clone()),
                    (Some(false), _, _) => ("rollback_failed", s.version.clone()),
                    (None, _, StepStatus::Succeeded) => ("deployed", s.version.clone()),
                    (None, true, _) => ("failed", s.version.clone()),
                    (None, false, _) => ("not_deployed", s.previous_version.clone()),
                };
                let container = s.container.as_ref();
                VersionChange {
                    step: s.label(),
                    version: s.version.clone(),
                    previous_version: s.previous_version.clone(),
                    outcome: outcome.to_string(),
                    running,
                    image: container.map(|c| c.image.clone()),
                    digest: container.and_then(|c| c.digest.clone()),
                    rolled_back_to_digest: container.and_then(|c| c.rolled_back_to.clone()),
                }
            })
            .collect()
    }

    /// `api 1.1.0 (was 1.0.0): rolled back to 1.0.0`.
    pub fn describe(&self) -> String {
        let v = self.version.as_deref().unwrap_or("(no version)");
        let was = self
            .previous_version
            .as_deref()
            .map(|p| format!(" (was {p})"))
            .unwrap_or_default();
        let what = match self.outcome.as_str() {
            "rolled_back" => match &self.previous_version {
                Some(p) => format!("rolled back to {p}"),
                None => "rolled back (no earlier version known)".to_string(),
            },
            "rollback_failed" => format!("rollback failed: {v} is left deployed"),
            "deployed" => "deployed".to_string(),
            "failed" => "failed, not rolled back".to_string(),
            _ => "not deployed".to_string(),
        };
        let mut line = format!("{} {v}{was}: {what}", self.step);
        if let Some(image) = &self.image {
            line.push_str(&format!("; image {image}"));
            if let Some(d) = &self.digest {
                line.push_str(&format!(" {}", short_digest(d)));
            }
            if let Some(d) = &self.rolled_back_to_digest {
                line.push_str(&format!(", {} serves again", short_digest(d)));
            }
        }
        line
    }
}

/// `sha256:0123456789ab` of a full image digest or id.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.get(..12).unwrap_or(hex)),
        None => d.get(..12).unwrap_or(d).to_string(),
    }
}

/// `performance_analysis`: this deployment against the median of earlier
/// successful ones with the same strategy and environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// good (within 10% of the benchmark or faster), acceptable (within 50%),
    /// poor, or no_baseline; `failed` for a deployment that failed (its
    /// duration is not graded against successful ones: a deployment that
    /// stopped at its first failure is fast, not good).
    pub duration_performance: String,
    /// Minutes; none without earlier deployments to compare with.
    pub benchmark_duration: Option<f64>,
    pub actual_duration: f64,
    /// actual − benchmark, minutes.
    pub duration_variance: Option<f64>,
    /// How many earlier deployments the benchmark is the median of.
    pub benchmark_samples: usize,
    /// What similar past deployments predicted before this one started
    /// (minutes); none without any.
    #[serde(default)]
    pub predicted_duration: Option<f64>,
    /// Which deployments the prediction is the median of.
    #[serde(default)]
    pub prediction_basis: Option<String>,
    /// actual − predicted, minutes.
    #[serde(default)]
    pub prediction_error: Option<f64>,
}

/// `system_impact`: the deployment's own processes, and the machine's peak
/// load during the deployment against the baseline.
///
/// The machine's figures include whatever else ran meanwhile (a build next
/// door), so `overall_impact` is judged by the deployment's own processes
/// when they were measured (`impact_basis: own_processes`), by the machine
/// only otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// The machine: peak − baseline, points.
    pub cpu_impact_percent: f64,
    pub memory_impact_percent: f64,
    /// low (< 10 points), medium (< 30), high.
    pub overall_impact: String,
    pub baseline_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    pub baseline_memory_percent: f64,
    pub peak_memory_percent: f64,
    pub samples: usize,
    /// What adeploy started and everything that started, on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_processes: Option<OwnImpact>,
    /// What `overall_impact` was judged by: `own_processes` or `machine`.
    #[serde(default = "machine_basis")]
    pub impact_basis: String,
}

fn machine_basis() -> String {
    "machine".to_string()
}

/// The deployment's own processes in `system_impact`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnImpact {
    /// `cgroup` or `process_tree` (see `monitor::TrackingMode`).
    pub tracking: String,
    pub samples: usize,
    /// Shares of the whole machine's CPU (all cores), 0..100.
    pub mean_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// The peak resident memory as a share of the machine's, 0..100.
    pub peak_memory_percent: f64,
    pub peak_processes: usize,
}

/// The deployment's own processes over time (`process_usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// `cgroup` or `process_tree`.
    pub method: String,
    pub samples: Vec<ProcessSample>,
}

/// The deployment's own processes, as [`Report::build`] gets them.
#[derive(Debug, Clone, Copy)]
pub struct OwnProcesses<'a> {
    pub tracking: &'a TrackingMode,
    pub samples: &'a [ProcessSample],
    /// The machine's memory (what the peak memory share is of).
    pub memory_total_bytes: u64,
}

/// `cgroup` or `process_tree`.
fn tracking_name(t: &TrackingMode) -> String {
    match t {
        TrackingMode::Cgroup { .. } => "cgroup",
        _ => "process_tree",
    }
    .to_string()
}

/// low (< 10 points), medium (< 30), high.
fn impact_level(worst: f64) -> String {
    if worst < 10.0 {
        "low"
    } else if worst < 30.0 {
        "medium"
    } else {
        "high"
    }
    .to_string()
}

/// A deployment report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub deployment_summary: Summary,
    pub decision_process: Vec<DecisionEntry>,
    pub plan: Option<PlanView>,
    #[serde(deserialize_with = "crate::history::steps_of_any_version")]
    pub steps: Vec<StepRecord>,
    pub performance_analysis: Performance,
    pub system_impact: Impact,
    pub lessons_learned: Vec<String>,
    pub recommendations: Vec<String>,
    /// Every metric verdict of the steps' analyses (service, host, metric,
    /// verdict, samples, and for comparisons the statistic, p-value and
    /// effect size); empty without analysis.
    #[serde(default)]
    pub analysis: Vec<MetricVerdict>,
    /// The machine's load over the deployment, the baseline first.
    #[serde(default)]
    pub resource_samples: Vec<Snapshot>,
    /// The deployment's own processes over the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_usage: Option<ProcessUsage>,
}

/// What a report is built from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    pub id: &'a str,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub success: bool,
    pub status: DeploymentStatus,
    pub strategy: &'a str,
    pub environment: Environment,
    pub services: &'a [String],
    pub dry_run: bool,
    pub decisions: &'a [DecisionEntry],
    pub plan: Option<&'a PlanView>,
    pub steps: &'a [StepRecord],
    /// Metric samples, the first one being the baseline.
    pub samples: &'a [Snapshot],
    /// Earlier deployments (any order).
    pub past: &'a [DeploymentRecord],
    /// The duration predicted before the deployment started.
    pub prediction: Option<&'a DurationEstimate>,
    /// Failure patterns of the history that match this deployment.
    pub patterns: &'a [FailurePattern],
    /// Alerts raised by this deployment (consecutive failures).
    pub alerts: &'a [String],
    /// The steps' metric verdicts.
    pub analysis: &'a [MetricVerdict],
    /// The deployment's own processes, when measured.
    pub processes: Option<OwnProcesses<'a>>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    pub fn build(i: ReportInput<'_>) -> Report {
        let actual = i.duration.as_secs_f64() / 60.0;
        let comparable: Vec<f64> = i
            .past
            .iter()
            .filter(|d| {
                d.success == Some(true)
                    && !d.dry_run
                    && d.strategy == i.strategy
                    && d.environment == i.environment.as_str()
                    && d.id != i.id
            })
            .filter_map(|d| d.duration_s.map(|s| s / 60.0))
            .collect();
        let samples_n = comparable.len();
        let benchmark = median(comparable);
        let performance = Performance {
            duration_performance: match benchmark {
                _ if !i.success => "failed".into(),
                None => "no_baseline".into(),
                Some(b) if actual <= b * 1.1 => "good".into(),
                Some(b) if actual <= b * 1.5 => "acceptable".into(),
                Some(_) => "poor".into(),
            },
            benchmark_duration: benchmark.map(round2),
            actual_duration: round2(actual),
            duration_variance: benchmark.map(|b| round2(actual - b)),
            benchmark_samples: samples_n,
            predicted_duration: i.prediction.map(|p| round2(p.minutes)),
            prediction_basis: i
                .prediction
                .map(|p| format!("median of {} deployment(s): {}", p.samples, p.basis)),
            prediction_error: i.prediction.map(|p| round2(actual - p.minutes)),
        };

        let base = i.samples.first();
        let peak_cpu = i.samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max);
        let peak_mem = i
            .samples
            .iter()
            .map(|s| s.memory_percent)
            .fold(0.0, f64::max);
        let (base_cpu, base_mem) = base.map_or((0.0, 0.0), |b| (b.cpu_percent, b.memory_percent));
        let cpu_impact = (peak_cpu - base_cpu).max(0.0);
        let mem_impact = (peak_mem - base_mem).max(0.0);
        let own = i.processes.filter(|p| !p.samples.is_empty()).map(|p| {
            let u = crate::monitor::summarize(p.samples);
            let memory = if p.memory_total_bytes > 0 {
                u.peak_rss_bytes as f64 / p.memory_total_bytes as f64 * 100.0
            } else {
                0.0
            };
            OwnImpact {
                tracking: tracking_name(p.tracking),
                samples: u.samples,
                mean_cpu_percent: round2(u.mean_cpu_percent),
                peak_cpu_percent: round2(u.peak_cpu_percent),
                cpu_seconds: round2(u.cpu_seconds),
                peak_rss_bytes: u.peak_rss_bytes,
                peak_memory_percent: round2(memory),
                peak_processes: u.peak_processes,
            }
        });
        let (worst, basis) = match &own {
            Some(o) => (
                o.peak_cpu_percent.max(o.peak_memory_percent),
                "own_processes",
            ),
            None => (cpu_impact.max(mem_impact), "machine"),
        };
        let impact = Impact {
            cpu_impact_percent: round2(cpu_impact),
            memory_impact_percent: round2(mem_impact),
            overall_impact: impact_level(worst),
            baseline_cpu_percent: round2(base_cpu),
            peak_cpu_percent: round2(peak_cpu),
            baseline_memory_percent: round2(base_mem),
            peak_memory_percent: round2(peak_mem),
            samples: i.samples.len(),
            own_processes: own,
            impact_basis: basis.to_string(),
        };

        let (lessons, recommendations) = lessons(&i, &performance, &impact);
        Report {
            deployment_summary: Summary {
                id: i.id.to_string(),
                success: i.success,
                status: i.status,
                duration_minutes: round2(actual),
                strategy_used: i.strategy.to_string(),
                environment: i.environment,
                services: i.services.to_vec(),
                dry_run: i.dry_run,
                started_at: i.started_at,
                versions: VersionChange::of(i.steps),
                left_deployed: LeftDeployed::of(i.steps),
            },
            decision_process: i.decisions.to_vec(),
            plan: i.plan.cloned(),
            steps: i.steps.to_vec(),
            performance_analysis: performance,
            system_impact: impact,
            lessons_learned: lessons,
            recommendations,
            analysis: i.analysis.to_vec(),
            resource_samples: i.samples.to_vec(),
            process_usage: i.processes.map(|p| ProcessUsage {
                method: tracking_name(p.tracking),
                samples: p.samples.to_vec(),
            }),
        }
    }

    /// A few lines for the terminal.
    pub fn human_summary(&self) -> String {
        use crate::terminal::safe;
        let s = &self.deployment_summary;
        let services: Vec<_> = s.services.iter().map(|x| safe(x)).collect();
        let mut out = format!(
            "{} {}: {} in {} with {} ({:.2} min){}\n",
            safe(&s.id),
            if s.success { "succeeded" } else { "FAILED" },
            services.join(", "),
            s.environment,
            safe(&s.strategy_used),
            s.duration_minutes,
            if s.dry_run { " [dry run]" } else { "" },
        );
        for st in &self.steps {
            let rb = match (st.rolled_back, &st.rollback_message) {
                (Some(true), _) => " → rolled back".to_string(),
                (Some(false), Some(m)) => format!(" → rollback: {}", safe(m)),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  wave {} {:<20} {:<10} {}{rb}\n",
                st.wave,
                safe(&st.label()),
                serde_json::to_value(st.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                safe(&st.message)
            ));
        }
        for v in &s.versions {
            out.push_str(&format!("  version: {}\n", safe(&v.describe())));
        }
        for l in &s.left_deployed {
            out.push_str(&format!(
                "  LEFT DEPLOYED: {}{} (rollback failed: {})\n",
                safe(&l.step),
                safe(
                    &l.version
                        .as_deref()
                        .map(|v| format!(" {v}"))
                        .unwrap_or_default()
                ),
                safe(&l.message)
            ));
        }
        for v in &self.analysis {
            out.push_str(&format!(
                "  analysis {} {}: {} — {}\n",
                safe(&step_label(&v.service, v.host.as_deref())),
                safe(&v.metric),
                v.verdict,
                safe(&v.reason)
            ));
        }
        let p = &self.performance_analysis;
        let im = &self.system_impact;
        let own = match &im.own_processes {
            Some(o) => format!(
                "its own processes: CPU peak {:.1}%, mean {:.1}%, memory peak {:.1} MB; ",
                o.peak_cpu_percent,
                o.mean_cpu_percent,
                o.peak_rss_bytes as f64 / 1e6
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "  performance: {}{}{}\n  system impact: {} ({own}machine: CPU +{:.1}, memory +{:.1} points)\n",
            p.duration_performance,
            p.benchmark_duration
                .map(|b| format!(" (benchmark {b:.2} min)"))
                .unwrap_or_default(),
            p.predicted_duration
                .map(|d| format!(", predicted {d:.2} min"))
                .unwrap_or_default(),
            im.overall_impact,
            im.cpu_impact_percent,
            im.memory_impact_percent
        ));
        for l in &self.lessons_learned {
            out.push_str(&format!("  lesson: {}\n", safe(l)));
        }
        for r in &self.recommendations {
            out.push_str(&format!("  recommendation: {}\n", safe(r)));
        }
        out
    }
}

/// Lessons and recommendations from what happened, from the failure
/// patterns learned across deployments, and from alerts.
fn lessons(i: &ReportInput<'_>, p: &Performance, impact: &Impact) -> (Vec<String>, Vec<String>) {
    let mut lessons = Vec::new();
    let mut recs = Vec::new();
    for st in i.steps.iter().filter(|s| s.status == StepStatus::Failed) {
        lessons.push(format!(
            "{} failed under {}: {}",
            st.service, i.strategy, st.message
        ));
        if st.message.contains("health check") {
            recs.push(format!(
                "check {}'s health endpoint and startup time; a longer timeout_s or more samples may be needed",
                st.service
            ));
        }
    }
    for st in i.steps.iter().filter(|s| s.rolled_back == Some(false)) {
        lessons.push(format!(
            "{} could not be rolled back: {}",
            st.label(),
            st.rollback_message.as_deref().unwrap_or("unknown")
        ));
        recs.push(format!(
            "alert: {} is left deployed{}; restore it by hand, then give {} a working rollback command",
            st.label(),
            st.version
                .as_deref()
                .map(|v| format!(" at {v}"))
                .unwrap_or_default(),
            st.service
        ));
    }
    if i.steps.iter().any(|s| s.status == StepStatus::Cancelled) {
        lessons.push("the deployment ran out of time (--max-time) and was rolled back".into());
        recs.push("raise --max-time, or use a faster strategy for this set of services".into());
    }
    // What the machine and the clock say below does not make a successful
    // deployment any less clean.
    let mut about_the_machine = 0;
    if p.duration_performance == "poor" {
        about_the_machine += 1;
        lessons.push(format!(
            "took {:.2} min against a benchmark of {:.2} min",
            p.actual_duration,
            p.benchmark_duration.unwrap_or_default()
        ));
        recs.push("investigate what slowed this deployment down (see the log)".into());
    }
    if impact.overall_impact == "high" {
        recs.push("the deployment loaded the machine heavily; prefer a more conservative strategy or a quieter time".into());
    }
    if let Some(own) = &impact.own_processes {
        let machine = impact.cpu_impact_percent.max(impact.memory_impact_percent);
        if impact_level(machine) != "low" && impact.overall_impact == "low" {
            about_the_machine += 1;
            lessons.push(format!(
                "the machine's load rose (CPU +{:.1}, memory +{:.1} points), but the deployment's own processes used at most {:.1}% CPU: the load came from elsewhere",
                impact.cpu_impact_percent, impact.memory_impact_percent, own.peak_cpu_percent
            ));
        }
    }
    for v in i.analysis.iter().filter(|v| v.verdict == Verdict::Fail) {
        lessons.push(format!(
            "{} failed its analysis on {}: {}",
            step_label(&v.service, v.host.as_deref()),
            v.metric,
            v.reason
        ));
    }
    if i.success && i.environment == Environment::Production && i.strategy == "aggressive" {
        recs.push(
            "aggressive succeeded in production this time; keep conservative as the default there"
                .into(),
        );
    }
    for pattern in i.patterns {
        lessons.push(pattern.lesson());
        recs.push(pattern.recommendation());
    }
    for alert in i.alerts {
        recs.push(format!(
            "alert: {alert}; stop and investigate before deploying again (see `adeploy model status` for the failure patterns)"
        ));
    }
    if i.success && lessons.len() == about_the_machine && !i.dry_run {
        lessons.push(format!(
            "{} deployed cleanly with {}",
            i.services.join(", "),
            i.strategy
        ));
    }
    (lessons, recs)
}

/// Writes `value` as pretty JSON to `path` atomically (temp file + rename).
pub fn write_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::fs::private_dir(dir)?;
    // A named temporary file is created 0600, and the rename keeps that.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, value)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container step's version line names the image and its digest, and
    /// after a rollback the digest serving again.
    #[test]
    fn a_container_steps_version_names_its_digests() {
        let mut step = StepRecord::pending("web", None, 1);
        step.status = StepStatus::Failed;
        step.rolled_back = Some(true);
        step.version = Some("3".into());
        step.previous_version = Some("2".into());
        step.container = Some(crate::history::ContainerStep {
            runtime: "podman".into(),
            name: "adeploy-web-3".into(),
            image: "localhost/web:3".into(),
            id: None,
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            slot: None,
            port: None,
            previous: None,
            switched: false,
            rolled_back_to: Some(format!("sha256:{}", "cd".repeat(32))),
        });
        let v = VersionChange::of(std::slice::from_ref(&step));
        assert_eq!(
            v[0].describe(),
            "web 3 (was 2): rolled back to 2; image localhost/web:3 sha256:abababababab, sha256:cdcdcdcdcdcd serves again"
        );
        step.container = None;
        assert_eq!(
            VersionChange::of(&[step])[0].describe(),
            "web 3 (was 2): rolled back to 2"
        );
    }

    /// A slow but successful deployment is still a clean one: the lesson
    /// about its speed joins the "deployed cleanly" lesson, it does not
    /// replace it (nor would one about the machine's load).
    #[test]
    fn a_slow_success_is_still_clean() {
        let services = vec!["api".to_string()];
        let past: Vec<DeploymentRecord> = (0..3)
            .map(|n| DeploymentRecord {
                strategy: "balanced".into(),
                environment: "staging".into(),
                success: Some(true),
                duration_s: Some(60.0),
                ..DeploymentRecord::running(format!("deploy_{n}"), Utc::now())
            })
            .collect();
        let report = Report::build(ReportInput {
            id: "deploy_now",
            started_at: Utc::now(),
            duration: Duration::from_secs(600),
            success: true,
            status: DeploymentStatus::Succeeded,
            strategy: "balanced",
            environment: Environment::Staging,
            services: &services,
            dry_run: false,
            decisions: &[],
            plan: None,
            steps: &[],
            samples: &[],
            past: &past,
            prediction: None,
            patterns: &[],
            alerts: &[],
            analysis: &[],
            processes: None,
        });
        assert_eq!(report.performance_analysis.duration_performance, "poor");
        assert_eq!(
            report.lessons_learned,
            [
                "took 10.00 min against a benchmark of 1.00 min",
                "api deployed cleanly with balanced"
            ]
        );
    }
}
