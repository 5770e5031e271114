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

pub use render::{Document, Format, RenderError, history_page, render};

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Environment;
use crate::history::{DeploymentRecord, DeploymentStatus};
pub use crate::history::{StepRecord, StepStatus, step_label};
use crate::ml::{DurationEstimate, FailurePattern};
use crate::monitor::Snapshot;
use crate::plugin::Rollout;
pub use decision::{Approval, CandidateScore, Decision, DecisionEntry};

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
            rollback_scope: format!("{:?}", r.failure.rollback_scope).to_lowercase(),
            notes: r.notes.clone(),
            warnings: Vec::new(),
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
}

/// `performance_analysis`: this deployment against the median of earlier
/// successful ones with the same strategy and environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// good (within 10% of the benchmark or faster), acceptable (within 50%),
    /// poor, or no_baseline.
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

/// `system_impact`: peak load during the deployment against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    pub cpu_impact_percent: f64,
    pub memory_impact_percent: f64,
    /// low (< 10 points), medium (< 30), high.
    pub overall_impact: String,
    pub baseline_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    pub baseline_memory_percent: f64,
    pub peak_memory_percent: f64,
    pub samples: usize,
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
        let worst = cpu_impact.max(mem_impact);
        let impact = Impact {
            cpu_impact_percent: round2(cpu_impact),
            memory_impact_percent: round2(mem_impact),
            overall_impact: if worst < 10.0 {
                "low"
            } else if worst < 30.0 {
                "medium"
            } else {
                "high"
            }
            .into(),
            baseline_cpu_percent: round2(base_cpu),
            peak_cpu_percent: round2(peak_cpu),
            baseline_memory_percent: round2(base_mem),
            peak_memory_percent: round2(peak_mem),
            samples: i.samples.len(),
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
            },
            decision_process: i.decisions.to_vec(),
            plan: i.plan.cloned(),
            steps: i.steps.to_vec(),
            performance_analysis: performance,
            system_impact: impact,
            lessons_learned: lessons,
            recommendations,
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
                format!("{:?}", st.status).to_lowercase(),
                safe(&st.message)
            ));
        }
        let p = &self.performance_analysis;
        out.push_str(&format!(
            "  performance: {}{}{}\n  system impact: {} (CPU +{:.1}, memory +{:.1} points)\n",
            p.duration_performance,
            p.benchmark_duration
                .map(|b| format!(" (benchmark {b:.2} min)"))
                .unwrap_or_default(),
            p.predicted_duration
                .map(|d| format!(", predicted {d:.2} min"))
                .unwrap_or_default(),
            self.system_impact.overall_impact,
            self.system_impact.cpu_impact_percent,
            self.system_impact.memory_impact_percent
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
            st.service,
            st.rollback_message.as_deref().unwrap_or("unknown")
        ));
        recs.push(format!("give {} a working rollback command", st.service));
    }
    if i.steps.iter().any(|s| s.status == StepStatus::Cancelled) {
        lessons.push("the deployment ran out of time (--max-time) and was rolled back".into());
        recs.push("raise --max-time, or use a faster strategy for this set of services".into());
    }
    if p.duration_performance == "poor" {
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
    if i.success && lessons.is_empty() && !i.dry_run {
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
