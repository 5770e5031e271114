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
use std::path::Path;

use chrono::{Datelike, Local, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Environment, MlConfig};
use crate::history::{DeploymentRecord, History, HistoryError, StepStatus};
use crate::ml::{
    FeatureContext, ForestParams, MlError, ModelMeta, Outcome, StrategyModel, TrainingRow,
};
use crate::monitor::Snapshot;

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

fn rate(outcomes: &[&Outcome]) -> f64 {
    if outcomes.is_empty() {
        // No evidence either way.
        0.5
    } else {
        outcomes.iter().filter(|o| o.success).count() as f64 / outcomes.len() as f64
    }
}

/// The feature context of a deployment about to start: the machine's load,
/// the request, the time, and what the history says (`past` newest first).
/// `success_rate_strategy` is for `strategy`; see [`for_strategy`].
pub fn feature_context(
    metrics: &Snapshot,
    environment: Environment,
    size: DeploymentSize,
    service_count: usize,
    past: &[Outcome],
    strategy: &str,
) -> FeatureContext {
    let now = Local::now();
    let all: Vec<&Outcome> = past.iter().collect();
    let durations: Vec<f64> = past
        .iter()
        .map(|o| o.duration_min)
        .filter(|d| d.is_finite())
        .collect();
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
        success_rate_overall: rate(&all),
        success_rate_strategy: 0.5,
        recent_failures: past.iter().take(RECENT).filter(|o| !o.success).count() as f64,
        mean_duration_min: if durations.is_empty() {
            0.0
        } else {
            durations.iter().sum::<f64>() / durations.len() as f64
        },
    };
    for_strategy(&ctx, past, strategy)
}

/// `ctx` with `success_rate_strategy` set for `strategy`.
pub fn for_strategy(ctx: &FeatureContext, past: &[Outcome], strategy: &str) -> FeatureContext {
    let mine: Vec<&Outcome> = past.iter().filter(|o| o.strategy == strategy).collect();
    FeatureContext {
        success_rate_strategy: rate(&mine),
        ..ctx.clone()
    }
}

/// Deployments recorded per strategy.
pub fn samples_per_strategy(past: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in past {
        *m.entry(o.strategy.clone()).or_insert(0) += 1;
    }
    m
}

/// Reads the stored model. A damaged or foreign blob is [`ModelState::Discarded`]
/// (and logged), never an error.
pub fn load_model(history: &History) -> Result<ModelState, HistoryError> {
    let Some(bytes) = history.get_blob(MODEL_BLOB)? else {
        return Ok(ModelState::Missing);
    };
    Ok(match StrategyModel::from_bytes(&bytes) {
        Ok(m) => ModelState::Ready(Box::new(m)),
        Err(e) => {
            let reason = format!(
                "the stored strategy model in {} cannot be used ({e}); it is discarded and retrained",
                history.path().display()
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

/// Trains a model on every finished deployment of `state_dir` and stores it.
/// Blocking (seconds at 10,000 deployments): run it with `spawn_blocking`.
pub fn retrain(state_dir: &Path, ml: &MlConfig) -> Result<ModelMeta, LearnError> {
    let history = History::open(state_dir)?;
    let rows = training_rows(&outcomes(&history.all_deployments()?));
    let need = ml.min_training_samples.max(1) as usize;
    if rows.len() < need {
        return Err(LearnError::TooFewSamples {
            have: rows.len(),
            need,
        });
    }
    let model = StrategyModel::train(&rows, &ml.feature_weights, &ForestParams::default())?;
    history.put_blob(MODEL_BLOB, &model.to_bytes()?)?;
    Ok(model.meta().clone())
}

/// Deletes the stored model (the seed's "delete the model files to
/// retrain"); the next deployment with enough history retrains.
pub fn reset(state_dir: &Path) -> Result<bool, HistoryError> {
    if !crate::history::database_path(state_dir).exists() {
        return Ok(false);
    }
    History::open(state_dir)?.delete_blob(MODEL_BLOB)
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

/// Runs [`retrain`] and describes the result; logs it either way.
pub fn retrain_logged(state_dir: &Path, ml: &MlConfig, after: String, reason: String) -> Retrained {
    let t = std::time::Instant::now();
    let result = retrain(state_dir, ml).map_err(|e| e.to_string());
    match &result {
        Ok(m) => tracing::info!(
            samples = m.samples,
            oob_accuracy = ?m.oob_accuracy,
            "strategy model retrained"
        ),
        Err(e) => tracing::warn!("retraining the strategy model failed: {e}"),
    }
    Retrained {
        after,
        reason,
        result,
        seconds: t.elapsed().as_secs_f64(),
    }
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
}

/// The model and what the history says, for `adeploy model status`.
pub fn status(state_dir: &Path, ml: &MlConfig) -> Result<ModelStatus, HistoryError> {
    let (past, state) = if crate::history::database_path(state_dir).exists() {
        let history = History::open(state_dir)?;
        (outcomes(&history.all_deployments()?), load_model(&history)?)
    } else {
        (Vec::new(), ModelState::Missing)
    };
    let training_samples = past.iter().filter(|o| o.features.is_some()).count();
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
    // Newest first, as the analyses expect.
    let newest_first: Vec<Outcome> = past.iter().rev().cloned().collect();
    let failure_patterns = crate::ml::failure_patterns(&newest_first);
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
        deployments: past.len(),
        training_samples,
        min_training_samples: ml.min_training_samples,
        retrain_frequency: ml.retrain_frequency,
        next_retrain_in,
        model: state.model().map(|m| m.meta().clone()),
        success_rates: crate::ml::success_rates(&newest_first),
        lessons: failure_patterns.iter().map(|p| p.lesson()).collect(),
        recommendations: failure_patterns
            .iter()
            .map(|p| p.recommendation())
            .collect(),
        failure_patterns,
    })
}
