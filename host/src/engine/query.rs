//! The queries around deployments: the history, one report, the audit log,
//! and the learned model (status, retrain, reset). The CLI's `list`,
//! `report`, `audit` and `model` commands are these calls.

use std::time::Duration;

use serde_json::json;

use crate::history::{AuditEntry, DeploymentRecord, History, RunLock};
use crate::ml::ModelMeta;
use crate::report::Report;

use super::Engine;
use super::error::EngineError;
use super::learn::{self, LearnError, ModelStatus};
use super::log::audit;

impl Engine {
    /// The history store of this state directory.
    pub fn history(&self) -> Result<History, EngineError> {
        Ok(History::open(&self.state_dir)?)
    }

    /// Recent deployments, newest first. Deployments cut off by a crash show
    /// as interrupted once no run holds the state directory.
    pub fn list(&self, limit: usize) -> Result<Vec<DeploymentRecord>, EngineError> {
        let history = History::open(&self.state_dir)?;
        if let Ok(lock) = RunLock::acquire(&self.state_dir, Duration::ZERO) {
            history.recover_interrupted(&lock)?;
        }
        Ok(history.list_deployments(limit)?)
    }

    /// The report of a finished deployment.
    pub fn report(&self, id: &str) -> Result<Report, EngineError> {
        let path = self
            .state_dir
            .join("deployment_reports")
            .join(format!("deployment_report_{id}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::InvalidReport {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let history = History::open(&self.state_dir)?;
                match history.get_deployment(id)? {
                    Some(d) => Err(EngineError::NoReport {
                        id: id.to_string(),
                        status: d.status,
                        log: d.log_path,
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
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        if !crate::history::database_path(&self.state_dir).exists() {
            return Ok(Vec::new());
        }
        Ok(History::open(&self.state_dir)?.audit(limit)?)
    }

    /// The model, its training data and the failure patterns of the history.
    pub fn model_status(&self) -> Result<ModelStatus, EngineError> {
        Ok(learn::status(&self.state_dir, &self.config.ml_config)?)
    }

    /// Trains the strategy model now on the whole history (blocking the
    /// caller's task for the training; seconds at 10,000 deployments).
    pub async fn retrain_model(&self) -> Result<ModelMeta, EngineError> {
        let state_dir = self.state_dir.clone();
        let ml = self.config.ml_config.clone();
        let meta = tokio::task::spawn_blocking(move || learn::retrain(&state_dir, &ml))
            .await
            .map_err(|e| LearnError::Task {
                reason: e.to_string(),
            })?
            .map_err(|e| match e {
                LearnError::History(h) => EngineError::History(h),
                other => EngineError::Learn { source: other },
            })?;
        audit(
            &self.state_dir,
            "model_retrain",
            json!({
                "trained_at": meta.trained_at,
                "samples": meta.samples,
                "oob_accuracy": meta.oob_accuracy,
                "trigger": "command",
            }),
        );
        Ok(meta)
    }

    /// Deletes the stored model; `false` when there was none. The next
    /// deployment with enough history trains a new one.
    pub fn reset_model(&self) -> Result<bool, EngineError> {
        let removed = learn::reset(&self.state_dir)?;
        if removed {
            audit(&self.state_dir, "model_reset", json!({}));
        }
        Ok(removed)
    }
}
