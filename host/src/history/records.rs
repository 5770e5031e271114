//! The records the history stores.
//!
//! Every record is a plain serde struct stored as JSON bytes. JSON (not a
//! fixed binary layout) is what lets a newer adeploy add a field without a
//! migration: an older binary ignores fields it does not know, and a newer one
//! reads an old record because every field added later has a default. Keys are
//! not part of the records: the store derives them (see `store.rs`).

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Environment;

/// Where a deployment stands.
///
/// `Running` is the only non-final status. A `Running` record whose process
/// no longer holds the run lock was cut off by a crash; see
/// [`History::recover_interrupted`](super::History::recover_interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentStatus {
    /// In progress (or cut off by a crash, until recovered).
    Running,
    /// Every service deployed and passed validation.
    Succeeded,
    /// A failure the strategy did not roll back.
    Failed,
    /// A failure, rolled back.
    RolledBack,
    /// A failure whose rollback failed for at least one step: something is
    /// left deployed (the report says what). A failure to the learning.
    RollbackFailed,
    /// Stopped on purpose: validation refused it, the operator declined, or `--max-time`.
    Aborted,
    /// The adeploy process stopped (crash, kill, power loss) before the deployment finished.
    Interrupted,
}

impl DeploymentStatus {
    /// Whether the deployment is over (every status but `Running`).
    pub fn is_finished(self) -> bool {
        !matches!(self, DeploymentStatus::Running)
    }

    /// The stable snake_case name, as stored and as printed by `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
            DeploymentStatus::RollbackFailed => "rollback_failed",
            DeploymentStatus::Aborted => "aborted",
            DeploymentStatus::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deployment: what was asked, how it went, and where its log and report are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RecordWire")]
pub struct DeploymentRecord {
    /// Unique id (also the key in the store).
    pub id: String,
    /// When the deployment started.
    pub started_at: DateTime<Utc>,
    /// When it finished; `None` while running.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// Detected or requested environment (`production`, `staging`, ...).
    pub environment: String,
    /// Strategy used (`conservative`, `balanced`, `aggressive`, or a custom plugin's name).
    pub strategy: String,
    /// Services deployed, in request order.
    pub services: Vec<String>,
    /// `small`, `medium` or `large`.
    pub deployment_size: String,
    /// A dry run plans and validates but changes nothing.
    pub dry_run: bool,
    /// Outcome; `None` while running or when unknown (interrupted).
    pub success: Option<bool>,
    /// Wall-clock duration in seconds, once finished.
    pub duration_s: Option<f64>,
    /// The deployment log (`deployment_logs/deploy_*.log`).
    pub log_path: Option<PathBuf>,
    /// The JSON report (`deployment_reports/deployment_report_ID.json`).
    pub report_path: Option<PathBuf>,
    /// Process id of the adeploy run that wrote the record.
    pub pid: u32,
    /// One line for `adeploy list`; crash recovery appends its note here.
    pub summary: Option<String>,
    /// Every step and how it went (empty while running).
    pub steps: Vec<StepRecord>,
    /// The context the strategy was chosen in: what the learning trains on.
    /// `None` for records without it (dry runs, older versions).
    pub features: Option<FeatureContext>,
}

impl DeploymentRecord {
    /// A record for a deployment that starts now-ish: status `Running`, this
    /// process's pid, every other field empty. Fill the rest with struct update
    /// syntax.
    pub fn running(id: impl Into<String>, started_at: DateTime<Utc>) -> Self {
        DeploymentRecord {
            id: id.into(),
            started_at,
            finished_at: None,
            status: DeploymentStatus::Running,
            environment: String::new(),
            strategy: String::new(),
            services: Vec::new(),
            deployment_size: String::new(),
            dry_run: false,
            success: None,
            duration_s: None,
            log_path: None,
            report_path: None,
            pid: std::process::id(),
            summary: None,
            steps: Vec::new(),
            features: None,
        }
    }

    /// Marks the deployment finished at `at` with `status`: sets `finished_at`,
    /// `duration_s`, and `success` (true only for `Succeeded`).
    pub fn finish(&mut self, status: DeploymentStatus, at: DateTime<Utc>) {
        self.status = status;
        self.finished_at = Some(at);
        // A clock that stepped back gives a negative span: report zero, not a negative duration.
        let elapsed = (at - self.started_at).to_std().unwrap_or_default();
        self.duration_s = Some(elapsed.as_secs_f64());
        self.success = Some(status == DeploymentStatus::Succeeded);
    }
}

/// How a [`DeploymentRecord`] is read: every field added after the first
/// version has a default, and records of versions before 0.1 typed `steps`
/// and `features` kept them in a free-form `extra` object (with waves
/// numbered from 0), which is read into the typed fields.
#[derive(Deserialize)]
struct RecordWire {
    id: String,
    started_at: DateTime<Utc>,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    status: DeploymentStatus,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    strategy: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    deployment_size: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    log_path: Option<PathBuf>,
    #[serde(default)]
    report_path: Option<PathBuf>,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default, deserialize_with = "steps_of_any_version")]
    steps: Vec<StepRecord>,
    #[serde(default)]
    features: Option<FeatureContext>,
    /// Before typed `steps` and `features`: `{"steps": [...], "features": {...}}`.
    #[serde(default)]
    extra: LegacyExtra,
}

#[derive(Default, Deserialize)]
struct LegacyExtra {
    #[serde(default, deserialize_with = "steps_of_any_version")]
    steps: Vec<StepRecord>,
    #[serde(default)]
    features: Option<FeatureContext>,
}

impl From<RecordWire> for DeploymentRecord {
    fn from(w: RecordWire) -> Self {
        DeploymentRecord {
            id: w.id,
            started_at: w.started_at,
            finished_at: w.finished_at,
            status: w.status,
            environment: w.environment,
            strategy: w.strategy,
            services: w.services,
            deployment_size: w.deployment_size,
            dry_run: w.dry_run,
            success: w.success,
            duration_s: w.duration_s,
            log_path: w.log_path,
            report_path: w.report_path,
            pid: w.pid,
            summary: w.summary,
            steps: if w.steps.is_empty() {
                w.extra.steps
            } else {
                w.steps
            },
            features: w.features.or(w.extra.features),
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Never started.
    Pending,
    Succeeded,
    Failed,
    /// Not started because a service it depends on did not succeed.
    Skipped,
    /// Stopped by the deadline.
    Cancelled,
}

/// One step's record (a service, or a service on one fleet host), in the
/// report and the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub service: String,
    pub host: Option<String>,
    /// The wave, numbered from 1 (as everywhere in adeploy's output).
    pub wave: u32,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub seconds: f64,
    pub message: String,
    /// Whether it was rolled back (none: not attempted).
    pub rolled_back: Option<bool>,
    pub rollback_message: Option<String>,
    /// The version this step put out (`services.<name>.version` or the
    /// request's override), when the service declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version the history says was last deployed successfully: what a
    /// rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// The step's timed parts (deploy, health, soak, analysis, rollback), in
    /// the order they ran; empty in records of versions before phases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<StepPhase>,
    /// A `target: container` step: the container that went out, the one it
    /// replaced, and what serves after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerStep>,
}

/// What a container step did (`StepRecord::container`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStep {
    /// `podman` or `docker`.
    pub runtime: String,
    /// The container adeploy started (`adeploy-<service>-<version>`).
    pub name: String,
    /// `image:version`.
    pub image: String,
    /// The started container's id (none if it never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The image that went out: its content digest, the image id
    /// (`sha256:…`), as the runtime reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Blue-green: the slot (`blue`, `green`) and its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The container it replaces (stopped, or for blue-green still serving
    /// until the switch), kept until the deployment is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ContainerRef>,
    /// Blue-green: the switch ran (traffic went to the new container).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switched: bool,
    /// After a rollback: the digest of the image serving again (the
    /// previous container's), none if nothing was there before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
}

/// A container adeploy found or left (`ContainerStep::previous`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub name: String,
    pub id: String,
    /// The image reference it was started from.
    pub image: String,
    /// Its image's id (`sha256:…`).
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A timed part of a step: the report's timeline draws one bar per phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPhase {
    pub kind: PhaseKind,
    pub started_at: DateTime<Utc>,
    pub seconds: f64,
    pub status: PhaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Health probes (or metric reads) within the phase: when, and whether
    /// each passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<ProbeMark>,
}

/// What a [`StepPhase`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// The deploy command.
    Deploy,
    /// Health samples until enough consecutive ones were healthy.
    Health,
    /// The health soak: every sample must stay healthy.
    Soak,
    /// Metric analysis during the soak.
    Analysis,
    /// The rollback command.
    Rollback,
    /// Blue-green containers: the `switch` command and stopping the old one.
    Switch,
    /// A kind a newer version wrote.
    #[serde(other)]
    Other,
}

/// How a [`StepPhase`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Succeeded,
    Failed,
    /// Stopped by the deadline.
    Cancelled,
    /// An analysis without enough data to tell.
    Inconclusive,
    RolledBack,
    RollbackFailed,
    /// A status a newer version wrote.
    #[serde(other)]
    Other,
}

/// One probe within a [`StepPhase`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeMark {
    pub timestamp: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepRecord {
    /// A step that has not started.
    pub fn pending(service: impl Into<String>, host: Option<String>, wave: u32) -> StepRecord {
        StepRecord {
            service: service.into(),
            host,
            wave,
            status: StepStatus::Pending,
            started_at: None,
            seconds: 0.0,
            message: String::new(),
            rolled_back: None,
            rollback_message: None,
            version: None,
            previous_version: None,
            phases: Vec::new(),
            container: None,
        }
    }

    /// The deploy command ran (fully or partly): rollback may be needed.
    pub fn deployed(&self) -> bool {
        matches!(
            self.status,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Cancelled
        )
    }

    /// `api@web-1` for a fleet step, `api` for a local one.
    pub fn label(&self) -> String {
        step_label(&self.service, self.host.as_deref())
    }
}

/// `service@host` for a fleet step, `service` for a local one: how every
/// message, plan and listing names a step.
pub fn step_label(service: &str, host: Option<&str>) -> String {
    match host {
        Some(h) => format!("{service}@{h}"),
        None => service.to_string(),
    }
}

/// Steps as written by any version: before waves were numbered from 1
/// everywhere, records and reports numbered them from 0. Every plan's first
/// wave has a step, so a list with a wave 0 is such a list.
pub fn steps_of_any_version<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<StepRecord>, D::Error> {
    let mut steps = Vec::<StepRecord>::deserialize(deserializer)?;
    if steps.iter().any(|s| s.wave == 0) {
        for s in &mut steps {
            s.wave = s.wave.saturating_add(1);
        }
    }
    Ok(steps)
}

/// What is known about a deployment when a strategy is chosen: the input of
/// the ml module's features (`ml::extract`), kept in every deployment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContext {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub disk_percent: f64,
    pub load_per_core: f64,
    /// `None` when no probe answered (encoded as `-1`).
    pub network_latency_ms: Option<f64>,
    pub environment: Environment,
    /// 0 small, 1 medium, 2 large.
    pub size_ordinal: f64,
    pub service_count: f64,
    /// Hour of day, 0–23.
    pub hour: f64,
    /// Day of week, 0 (Monday) – 6.
    pub weekday: f64,
    /// Share of past deployments in this environment that succeeded, 0–1.
    /// (Records written before adeploy 0.1.x kept every environment's.)
    pub success_rate_overall: f64,
    /// Share of past deployments with this strategy in this environment
    /// that succeeded, 0–1.
    pub success_rate_strategy: f64,
    /// Failures among the most recent deployments in this environment.
    pub recent_failures: f64,
    /// Mean duration of past deployments in this environment, minutes.
    pub mean_duration_min: f64,
    /// The requested services' own records in this environment: the lowest
    /// of their recency-weighted success rates, (successes + 1) /
    /// (deployments + 2), so 0.5 without history. `None` in records written
    /// before it was kept (read as 0.5: no evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_success_min: Option<f64>,
    /// The product of the same rates: the chance that every requested
    /// service succeeds, if they fail independently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_success_product: Option<f64>,
    /// Container services: the first requested one's image (without tag)
    /// hashed into one of `ml::IMAGE_BUCKETS` buckets, so the forest can
    /// tell images apart. `None`: no container service (encoded `-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bucket: Option<f64>,
    /// Container services: the lowest recency-weighted success rate,
    /// (ok + 1) / (n + 2), of the exact images (`image:version`) about to go
    /// out, over past deployments in this environment that put them out
    /// (0.5 without history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_success_min: Option<f64>,
}

/// One entry of a deployment's decision log ("every arrow is recorded as a
/// decision"), as stored: the store numbers them in append order. The typed
/// form, with one variant per `decision_type`, is
/// [`DecisionEntry`](crate::report::DecisionEntry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When the decision was made.
    pub timestamp: DateTime<Utc>,
    /// What kind (`environment_detected`, `strategy_selected`, `safety_override`, ...).
    pub decision_type: String,
    /// Whatever explains it.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// One sample of the machine's load taken during a deployment.
///
/// A non-finite value (a monitor dividing by zero cores, say) is stored as
/// JSON `null` by serde_json and read back as NaN, so one bad reading never
/// makes the whole sample unreadable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// When the sample was taken.
    pub timestamp: DateTime<Utc>,
    /// CPU use, 0–100.
    #[serde(deserialize_with = "f64_or_nan")]
    pub cpu_percent: f64,
    /// Memory use, 0–100.
    #[serde(deserialize_with = "f64_or_nan")]
    pub memory_percent: f64,
    /// Disk use, 0–100.
    #[serde(deserialize_with = "f64_or_nan")]
    pub disk_percent: f64,
    /// One-minute load average divided by the number of cores.
    #[serde(deserialize_with = "f64_or_nan")]
    pub load_per_core: f64,
    /// Round trip to the configured probe target, when measured.
    #[serde(default)]
    pub network_latency_ms: Option<f64>,
}

/// One line of the audit log: who did what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The OS user that ran adeploy.
    pub user: String,
    /// What they did (`deploy`, `rollback`, `model_retrain`, ...).
    pub action: String,
    /// Anything else worth keeping.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A summary of the history database, for `adeploy diagnostics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStats {
    /// Number of deployment records (decodable or not).
    pub deployments: u64,
    /// The most recently started deployment that decodes.
    pub last: Option<DeploymentRecord>,
    /// Size of the database file.
    pub db_bytes: u64,
    /// The database file.
    pub path: PathBuf,
}

fn f64_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}
