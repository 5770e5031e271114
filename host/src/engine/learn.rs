//! What the engine learns from its history: the outcomes of past deployments,
//! the feature context of a new one, the stored strategy model and when to
//! retrain it.
//!
//! Why it is shaped this way: the `ml` module knows nothing of the history's
//! storage or of the engine; this file is the one place that turns history
//! records into [`Outcome`]s and [`TrainingRow`]s and decides when a model is
//! stale. The model lives in the history database as one blob, so it survives
//! restarts, moves with the state directory, and can never disagree with the
//! deployments it was trained on about where they live. A blob that cannot be
//! read (damaged, or written by another format version) is *discarded*, not
//! fatal: rules decide until the retraining this triggers has finished.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Local, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Environment, MlConfig};
use crate::history::{
    DeploymentRecord, HistoryBackend, HistoryError, HistoryStore, RetrainLock, StepStatus,
};
use crate::ml::{
    FeatureContext, ForestParams, MlError, ModelMeta, Outcome, StrategyModel, TrainingRow,
};
use crate::monitor::Snapshot;

pub use super::past::Past;
use super::types::DeploymentSize;

/// Name of the history blob that holds the strategy model.
pub const MODEL_BLOB: &str = "strategy_model";

/// How many of the newest deployments count as "recent" for the
/// `recent_failures` feature.
const RECENT: usize = 10;

/// The stored model, as far as it could be read.
#[derive(Debug, Clone)]
pub enum ModelState {
    /// Never trained (or reset).
    Missing,
    Ready(Box<StrategyModel>),
    /// A blob exists but cannot be used; the reason says why.
    Discarded(String),
}

impl ModelState {
    pub fn model(&self) -> Option<&StrategyModel> {
        match self {
            ModelState::Ready(m) => Some(m),
            _ => None,
        }
    }
}

/// Errors of training and of the `model` commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("training the strategy model failed: {0}")]
    Ml(#[from] MlError),
    /// Fewer recorded deployments than training needs.
    #[error(
        "only {have} deployment(s) with recorded features; the model needs at least {need} (ml_config.min_training_samples)"
    )]
    TooFewSamples { have: usize, need: usize },
    /// The background task that trained ended without a result.
    #[error("the training task failed: {reason}")]
    Task { reason: String },
    /// Another process (on this machine or, with a shared history, another
    /// runner) kept retraining the model for longer than the wait.
    #[error(
        "another adeploy process is retraining the strategy model of {location} (waited {:.0} s); its model is stored when it finishes: run `adeploy model status` then, or retry",
        waited.as_secs_f64()
    )]
    RetrainBusy { location: String, waited: Duration },
}

/// A history record as a learning [`Outcome`]; `None` for dry runs and for
/// deployments that did not finish with a known result (running,
/// interrupted).
pub fn outcome_of(r: &DeploymentRecord) -> Option<Outcome> {
    if r.dry_run || !r.status.is_finished() {
        return None;
    }
    let success = r.success?;
    let environment: Environment =
        serde_json::from_value(serde_json::Value::String(r.environment.clone())).ok()?;
    let mut failed_services: Vec<String> = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Cancelled))
        .map(|s| s.service.clone())
        .collect();
    failed_services.dedup();
    Some(Outcome {
        id: r.id.clone(),
        started_at: r.started_at,
        strategy: r.strategy.clone(),
        environment,
        size: r.deployment_size.clone(),
        services: r.services.clone(),
        failed_services,
        success,
        duration_min: r.duration_s.unwrap_or(0.0) / 60.0,
        features: r.features.clone(),
    })
}

/// The outcomes of `records`, in the records' order.
pub fn outcomes(records: &[DeploymentRecord]) -> Vec<Outcome> {
    records.iter().filter_map(outcome_of).collect()
}

/// Training rows: outcomes with recorded features.
pub fn training_rows(outcomes: &[Outcome]) -> Vec<TrainingRow> {
    outcomes
        .iter()
        .filter_map(|o| {
            o.features.as_ref().map(|f| TrainingRow {
                context: f.clone(),
                strategy: o.strategy.clone(),
                success: o.success,
                duration_min: o.duration_min,
            })
        })
        .collect()
}

fn size_ordinal(size: DeploymentSize) -> f64 {
    match size {
        DeploymentSize::Small => 0.0,
        DeploymentSize::Medium => 1.0,
        DeploymentSize::Large => 2.0,
    }
}

/// The feature context of a deployment about to start: the machine's load,
/// the request, the time, and what the history says (rates and the mean
/// duration over the whole history, recent failures from the newest
/// outcomes). `success_rate_strategy` is for `strategy`; see [`for_strategy`].
pub fn feature_context(
    metrics: &Snapshot,
    environment: Environment,
    size: DeploymentSize,
    service_count: usize,
    past: &Past,
    strategy: &str,
) -> FeatureContext {
    let now = Local::now();
    let ctx = FeatureContext {
        cpu_percent: metrics.cpu_percent,
        memory_percent: metrics.memory_percent,
        disk_percent: metrics.disk_percent,
        load_per_core: metrics.load_per_core,
        network_latency_ms: metrics.network_latency_ms,
        environment,
        size_ordinal: size_ordinal(size),
        service_count: service_count as f64,
        hour: f64::from(now.hour()),
        weekday: f64::from(now.weekday().num_days_from_monday()),
        // No evidence either way: 0.5.
        success_rate_overall: past.success_rate().unwrap_or(0.5),
        success_rate_strategy: 0.5,
        recent_failures: past.iter().take(RECENT).filter(|o| !o.success).count() as f64,
        mean_duration_min: past.mean_duration_min().unwrap_or(0.0),
    };
    for_strategy(&ctx, past, strategy)
}

/// `ctx` with `success_rate_strategy` set for `strategy`.
pub fn for_strategy(ctx: &FeatureContext, past: &Past, strategy: &str) -> FeatureContext {
    FeatureContext {
        success_rate_strategy: past.success_rate_of(strategy).unwrap_or(0.5),
        ..ctx.clone()
    }
}

/// Deployments recorded per strategy.
pub fn samples_per_strategy(past: &Past) -> BTreeMap<String, usize> {
    past.per_strategy()
}

/// Reads the stored model. A damaged or foreign blob is [`ModelState::Discarded`]
/// (and logged), never an error.
pub async fn load_model(history: &HistoryStore) -> Result<ModelState, HistoryError> {
    let Some(bytes) = history.get_blob(MODEL_BLOB).await? else {
        return Ok(ModelState::Missing);
    };
    Ok(match StrategyModel::from_bytes(&bytes) {
        Ok(m) => ModelState::Ready(Box::new(m)),
        Err(e) => {
            let reason = format!(
                "the stored strategy model in {} cannot be used ({e}); it is discarded and retrained",
                history.location()
            );
            tracing::warn!("{reason}");
            ModelState::Discarded(reason)
        }
    })
}

/// Why the model should be retrained now, if it should: `rows` is the
/// number of deployments with recorded features.
pub fn retrain_due(rows: usize, state: &ModelState, ml: &MlConfig) -> Option<String> {
    let need = ml.min_training_samples.max(1) as usize;
    if rows < need {
        return None;
    }
    match state {
        ModelState::Missing => Some(format!(
            "{rows} deployments recorded, no model yet (ml_config.min_training_samples = {need})"
        )),
        ModelState::Discarded(_) => Some("the stored model could not be read".to_string()),
        ModelState::Ready(m) => {
            let every = ml.retrain_frequency.max(1) as usize;
            let new = rows.saturating_sub(m.meta().samples);
            (new >= every).then(|| {
                format!(
                    "{new} deployments since the model was trained on {} (ml_config.retrain_frequency = {every})",
                    m.meta().samples
                )
            })
        }
    }
}

/// Trains a model on every finished deployment of `history` and stores it.
/// Reading every record is what training needs; the training itself (seconds
/// at 10,000 deployments) runs on tokio's blocking pool. The caller holds
/// the retraining lock (see [`retrain_exclusive`], [`retrain_if_due`]).
pub async fn retrain(history: &HistoryStore, ml: &MlConfig) -> Result<ModelMeta, LearnError> {
    let rows = training_rows(&outcomes(&history.all_deployments().await?));
    let need = ml.min_training_samples.max(1) as usize;
    if rows.len() < need {
        return Err(LearnError::TooFewSamples {
            have: rows.len(),
            need,
        });
    }
    let weights = ml.feature_weights.clone();
    let model = tokio::task::spawn_blocking(move || {
        StrategyModel::train(&rows, &weights, &ForestParams::default())
    })
    .await
    .map_err(|e| LearnError::Task {
        reason: e.to_string(),
    })??;
    history.put_blob(MODEL_BLOB, &model.to_bytes()?).await?;
    Ok(model.meta().clone())
}

/// [`retrain`] holding the history's retraining lock, waiting up to `wait`
/// for another process's retraining to finish (`adeploy model retrain`).
pub async fn retrain_exclusive(
    history: &HistoryStore,
    ml: &MlConfig,
    wait: Duration,
) -> Result<ModelMeta, LearnError> {
    let _lock = retrain_lock(history, wait).await?;
    retrain(history, ml).await
}

async fn retrain_lock(history: &HistoryStore, wait: Duration) -> Result<RetrainLock, LearnError> {
    let start = Instant::now();
    loop {
        if let Some(lock) = history.try_lock_retrain().await? {
            return Ok(lock);
        }
        let waited = start.elapsed();
        if waited >= wait {
            return Err(LearnError::RetrainBusy {
                location: history.location().to_string(),
                waited,
            });
        }
        tokio::time::sleep(Duration::from_millis(200).min(wait - waited)).await;
    }
}

/// Deletes the stored model (the seed's "delete the model files to
/// retrain"); the next deployment with enough history retrains.
pub async fn reset(history: &HistoryStore) -> Result<bool, HistoryError> {
    history.delete_blob(MODEL_BLOB).await
}

/// A retraining started in the background after a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retrained {
    /// The deployment whose recording triggered it.
    pub after: String,
    pub reason: String,
    /// The new model, or why training failed.
    pub result: Result<ModelMeta, String>,
    pub seconds: f64,
}

/// The retraining a deployment found due: only one process retrains at a
/// time (the history's retraining lock; with a shared history, one runner),
/// and only while the decision still stands once the lock is held: if the
/// stored model is no longer the one the deployment saw (`seen`: when that
/// one was trained, `None` without one), another process retrained
/// meanwhile and its model is used. `None` when skipped for either reason;
/// otherwise what training did, logged either way.
pub async fn retrain_if_due(
    history: &HistoryStore,
    ml: &MlConfig,
    after: String,
    reason: String,
    seen: Option<DateTime<Utc>>,
) -> Option<Retrained> {
    let t = Instant::now();
    let lock = match history.try_lock_retrain().await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::info!(
                "another adeploy process is retraining the strategy model; it is used once stored"
            );
            return None;
        }
        Err(e) => {
            return Some(Retrained {
                after,
                reason,
                result: Err(e.to_string()),
                seconds: t.elapsed().as_secs_f64(),
            });
        }
    };
    let stored = load_model(history)
        .await
        .map(|state| state.model().map(|m| m.meta().trained_at));
    let result = match stored {
        Ok(Some(trained_at)) if Some(trained_at) != seen => {
            tracing::info!("the strategy model was retrained by another process meanwhile");
            return None;
        }
        Ok(_) => retrain(history, ml).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    drop(lock);
    match &result {
        Ok(m) => tracing::info!(
            samples = m.samples,
            oob_accuracy = ?m.oob_accuracy,
            "strategy model retrained"
        ),
        Err(e) => tracing::warn!("retraining the strategy model failed: {e}"),
    }
    Some(Retrained {
        after,
        reason,
        result,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// When the model was trained, for messages.
pub fn age(meta: &ModelMeta) -> String {
    let mins = (Utc::now() - meta.trained_at).num_minutes();
    match mins {
        m if m < 1 => "just now".to_string(),
        m if m < 120 => format!("{m} min ago"),
        m if m < 48 * 60 => format!("{} h ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    }
}

/// What `adeploy model status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelStatus {
    /// `trained`, `not trained` or `discarded`.
    pub state: String,
    /// Why a stored model was discarded.
    pub detail: Option<String>,
    /// What decides an adaptive deployment now: `model` or `rules`.
    pub decides: String,
    /// Finished real deployments in the history.
    pub deployments: usize,
    /// Those with recorded features (the training data).
    pub training_samples: usize,
    pub min_training_samples: u32,
    pub retrain_frequency: u32,
    /// Deployments until the next retraining, counting the one that
    /// triggers it (1: the next deployment retrains).
    pub next_retrain_in: usize,
    /// Samples, training time, out-of-bag accuracy, feature importances.
    pub model: Option<ModelMeta>,
    pub success_rates: Vec<crate::ml::SuccessRate>,
    pub failure_patterns: Vec<crate::ml::FailurePattern>,
    pub lessons: Vec<String>,
    pub recommendations: Vec<String>,
    /// Where the history (and the model) lives; `None` before the first
    /// deployment creates the embedded one.
    #[serde(default)]
    pub history: Option<crate::history::HistoryLocation>,
}

/// The model and what the history says, for `adeploy model status`: counts
/// and success rates over the whole history (from its aggregates), failure
/// patterns over the newest `window` deployments. `None`: no history yet.
pub async fn status(
    history: Option<&HistoryStore>,
    window: usize,
    ml: &MlConfig,
) -> Result<ModelStatus, HistoryError> {
    let (past, state, location) = match history {
        Some(h) => (
            Past::from_window(&h.window(window).await?),
            load_model(h).await?,
            Some(h.location()),
        ),
        None => (Past::default(), ModelState::Missing, None),
    };
    let training_samples = past.training_samples();
    let need = ml.min_training_samples.max(1) as usize;
    let every = ml.retrain_frequency.max(1) as usize;
    // Counting the deployment that triggers it: 1 is the next one.
    let next_retrain_in = match &state {
        ModelState::Ready(m) => (m.meta().samples + every).saturating_sub(training_samples),
        _ => need.saturating_sub(training_samples),
    }
    .max(1);
    let decides = if state.model().is_some() && training_samples >= need {
        "model"
    } else {
        "rules"
    };
    let failure_patterns = crate::ml::failure_patterns(&past);
    Ok(ModelStatus {
        state: match &state {
            ModelState::Ready(_) => "trained",
            ModelState::Missing => "not trained",
            ModelState::Discarded(_) => "discarded",
        }
        .to_string(),
        detail: match &state {
            ModelState::Discarded(r) => Some(r.clone()),
            _ => None,
        },
        decides: decides.to_string(),
        deployments: past.deployments(),
        training_samples,
        min_training_samples: ml.min_training_samples,
        retrain_frequency: ml.retrain_frequency,
        next_retrain_in,
        model: state.model().map(|m| m.meta().clone()),
        success_rates: past.success_rates(),
        history: location,
        lessons: failure_patterns.iter().map(|p| p.lesson()).collect(),
        recommendations: failure_patterns
            .iter()
            .map(|p| p.recommendation())
            .collect(),
        failure_patterns,
    })
}
