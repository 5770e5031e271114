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
pub struct DeploymentRecord {
    /// Unique id (also the key in the store).
    pub id: String,
    /// When the deployment started.
    pub started_at: DateTime<Utc>,
    /// When it finished; `None` while running.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// Detected or requested environment (`production`, `staging`, ...).
    #[serde(default)]
    pub environment: String,
    /// Strategy used (`conservative`, `balanced`, `aggressive`, or a custom plugin's name).
    #[serde(default)]
    pub strategy: String,
    /// Services deployed, in request order.
    #[serde(default)]
    pub services: Vec<String>,
    /// `small`, `medium` or `large`.
    #[serde(default)]
    pub deployment_size: String,
    /// A dry run plans and validates but changes nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Outcome; `None` while running or when unknown (interrupted).
    #[serde(default)]
    pub success: Option<bool>,
    /// Wall-clock duration in seconds, once finished.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// The deployment log (`deployment_logs/deploy_*.log`).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The JSON report (`deployment_reports/deployment_report_ID.json`).
    #[serde(default)]
    pub report_path: Option<PathBuf>,
    /// Process id of the adeploy run that wrote the record.
    #[serde(default)]
    pub pid: u32,
    /// One line for `adeploy list`; crash recovery appends its note here.
    #[serde(default)]
    pub summary: Option<String>,
    /// Free-form data for fields not worth a schema change (default `null`).
    #[serde(default)]
    pub extra: serde_json::Value,
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
            extra: serde_json::Value::Null,
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

/// One entry of a deployment's decision log ("every arrow is recorded as a
/// decision"). The store numbers them in append order.
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
