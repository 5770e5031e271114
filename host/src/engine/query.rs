//! The queries around deployments: the history, one report, the audit log,
//! and the learned model (status, retrain, reset). The CLI's `list`,
//! `report`, `audit` and `model` commands are these calls.
//!
//! The history is opened once per engine, on first use ([`Engine::history`]):
//! the embedded redb file in the state directory, or the shared PostgreSQL
//! database that `history.url` / `ADEPLOY_HISTORY_URL` names. Reads that
//! find no embedded history yet answer "nothing yet" without creating one,
//! so a query never leaves a trace in a fresh state directory.

use serde_json::json;

use crate::history::{
    AuditEntry, DeploymentDetail, DeploymentRecord, DeploymentStatus, HistoryBackend, HistoryStore,
};
use crate::ml::ModelMeta;
use crate::monitor::Snapshot;
use crate::report::{Decision, DecisionEntry, Report, ReportInput};

use super::Engine;
use super::error::EngineError;
use super::learn::{self, LearnError, ModelStatus, Past};
use super::log::audit;

impl Engine {
    /// The history this engine records to and reads from, opened on first
    /// use and shared by every later call: the embedded database (created in
    /// the state directory if missing), or the PostgreSQL history (connected,
    /// its schema checked or migrated, the local journal replayed). A
    /// PostgreSQL history that cannot be reached is
    /// [`HistoryError::Unreachable`](crate::history::HistoryError), naming
    /// the URL with its password redacted.
    pub async fn history(&self) -> Result<&HistoryStore, EngineError> {
        Ok(self
            .history
            .get_or_try_init(|| HistoryStore::open(&self.config.history, &self.state_dir))
            .await?)
    }

    /// The history if there is one to read: `None` while the embedded
    /// database does not exist (reading must not create it).
    pub async fn existing_history(&self) -> Result<Option<&HistoryStore>, EngineError> {
        if self.history.get().is_none()
            && self.config.history.effective_url().is_none()
            && !crate::history::database_path(&self.state_dir).exists()
        {
            return Ok(None);
        }
        self.history().await.map(Some)
    }

    /// Recent deployments, newest first. Deployments whose run is provably
    /// gone (a crash, a SIGKILL, a lost machine) show as interrupted.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeploymentRecord>, EngineError> {
        let Some(history) = self.existing_history().await? else {
            return Ok(Vec::new());
        };
        match history.recover_abandoned().await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(deployments = ?ids, "marked deployments whose run is gone as interrupted");
            }
            Ok(_) => {}
            // Listing goes on: a role that may only read still lists.
            Err(e) => tracing::warn!("cannot check for interrupted deployments: {e}"),
        }
        Ok(history.list_deployments(limit).await?)
    }

    /// The report of a finished deployment: its report file, or, when the
    /// file is not on this machine (another runner of a shared history ran
    /// it, or the file was removed), the report rebuilt from the history's
    /// record, decision log and metric samples.
    pub async fn report(&self, id: &str) -> Result<Report, EngineError> {
        let path = self.report_path(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::InvalidReport {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let detail = match self.existing_history().await? {
                    Some(history) => history.detail(id).await?,
                    None => None,
                };
                match detail {
                    Some(d) if d.record.status.is_finished() => {
                        let window = match self.existing_history().await? {
                            Some(h) => h.window(self.config.history.window.max(1) as usize).await?,
                            None => Default::default(),
                        };
                        Ok(rebuild_report(&d, &window.recent))
                    }
                    Some(d) => Err(EngineError::NoReport {
                        id: id.to_string(),
                        status: d.record.status,
                        log: d.record.log_path,
                    }),
                    None => Err(EngineError::UnknownDeployment {
                        id: id.to_string(),
                        state_dir: self.state_dir.clone(),
                    }),
                }
            }
            Err(source) => Err(EngineError::Io {
                what: format!("cannot read {}", path.display()),
                source,
            }),
        }
    }

    /// The audit log, newest first (approvals, model changes).
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        match self.existing_history().await? {
            Some(history) => Ok(history.audit(limit).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The model, its training data and the failure patterns of the
    /// history, and where the history lives.
    pub async fn model_status(&self) -> Result<ModelStatus, EngineError> {
        let history = self.existing_history().await?;
        let window = self.config.history.window.max(1) as usize;
        let mut status = learn::status(history, window, &self.config.ml_config).await?;
        if status.history.is_none() {
            status.history = Some(crate::history::HistoryLocation::Redb {
                path: crate::history::database_path(&self.state_dir),
            });
        }
        Ok(status)
    }

    /// Trains the strategy model now on the whole history (seconds at
    /// 10,000 deployments). Holds the history's retraining lock, waiting up
    /// to the engine's lock wait for another process's retraining.
    pub async fn retrain_model(&self) -> Result<ModelMeta, EngineError> {
        let history = self.history().await?;
        let meta = learn::retrain_exclusive(history, &self.config.ml_config, self.lock_wait)
            .await
            .map_err(|e| match e {
                LearnError::History(h) => EngineError::History(h),
                other => EngineError::Learn { source: other },
            })?;
        audit(
            history,
            "model_retrain",
            json!({
                "trained_at": meta.trained_at,
                "samples": meta.samples,
                "oob_accuracy": meta.oob_accuracy,
                "trigger": "command",
            }),
        )
        .await;
        Ok(meta)
    }

    /// Deletes the stored model; `false` when there was none. The next
    /// deployment with enough history trains a new one.
    pub async fn reset_model(&self) -> Result<bool, EngineError> {
        let Some(history) = self.existing_history().await? else {
            return Ok(false);
        };
        let removed = learn::reset(history).await?;
        if removed {
            audit(history, "model_reset", json!({})).await;
        }
        Ok(removed)
    }
}

/// The report of a recorded deployment from what the history keeps: the
/// record (steps, outcome), the decision log (plan, alerts) and the metric
/// samples; compared with `window` (newest deployments of the history).
fn rebuild_report(d: &DeploymentDetail, window: &[DeploymentRecord]) -> Report {
    let r = &d.record;
    let decisions: Vec<DecisionEntry> =
        d.decisions.iter().map(DecisionEntry::from_record).collect();
    let plan = decisions.iter().find_map(|e| match &e.decision {
        Decision::Plan(view) => Some(view.clone()),
        _ => None,
    });
    let alerts: Vec<String> = decisions
        .iter()
        .filter_map(|e| match &e.decision {
            Decision::Alert { alerts, .. } => Some(alerts.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let samples: Vec<Snapshot> = d.samples.iter().map(Snapshot::from).collect();
    let environment = serde_json::from_value(serde_json::Value::String(r.environment.clone()))
        .unwrap_or(crate::config::Environment::Development);
    let earlier: Vec<DeploymentRecord> = window
        .iter()
        .filter(|w| w.started_at < r.started_at)
        .cloned()
        .collect();
    let outcomes = Past::from(learn::outcomes(&earlier));
    let patterns: Vec<crate::ml::FailurePattern> = {
        let all = crate::ml::failure_patterns(&outcomes);
        let hour = chrono::Timelike::hour(&r.started_at.with_timezone(&chrono::Local));
        crate::ml::relevant(
            &all,
            &r.strategy,
            environment,
            &r.services,
            samples.first().map(|s| s.cpu_percent),
            hour,
        )
        .into_iter()
        .cloned()
        .collect()
    };
    let status = r.status;
    Report::build(ReportInput {
        id: &r.id,
        started_at: r.started_at,
        duration: std::time::Duration::from_secs_f64(
            r.duration_s
                .filter(|d| d.is_finite() && *d >= 0.0)
                .unwrap_or(0.0),
        ),
        success: r.success.unwrap_or(status == DeploymentStatus::Succeeded),
        status,
        strategy: &r.strategy,
        environment,
        services: &r.services,
        dry_run: r.dry_run,
        decisions: &decisions,
        plan: plan.as_ref(),
        steps: &r.steps,
        samples: &samples,
        past: &earlier,
        prediction: None,
        patterns: &patterns,
        alerts: &alerts,
        // The judged metrics' windows and samples and the own-process
        // figures live in the report file only; the verdicts are in the
        // decision log above.
        analysis: &[],
        processes: None,
    })
}
