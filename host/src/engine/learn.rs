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
//!
//! What the history teaches is read once per run into an [`Evidence`]: the
//! regimes (detected changes, `ml::drift`) and every outcome's weight
//! (`ml::recency`). Training, the selector's posterior, the service features
//! and `model status` all read that one value, so they agree on what counts.
//!
//! Isolation: every history feature of a [`FeatureContext`] is computed over
//! the deployment's own environment, so failures in production do not move
//! what is predicted for development.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Local, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Environment, MlConfig};
use crate::history::{
    DeploymentRecord, HistoryBackend, HistoryError, HistoryStore, RetrainLock, StepStatus,
};
use crate::ml::{
    DriftDirection, DriftEvent, DriftParams, FeatureContext, ForestParams, MlError, ModelMeta,
    Outcome, Recency, Regimes, StrategyModel, TrainingRow,
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
    let mut images: Vec<(String, bool)> = Vec::new();
    for s in &r.steps {
        let Some(c) = &s.container else { continue };
        let failed = matches!(s.status, StepStatus::Failed | StepStatus::Cancelled);
        match images.iter_mut().find(|(i, _)| *i == c.image) {
            Some(entry) => entry.1 |= failed,
            None => images.push((c.image.clone(), failed)),
        }
    }
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
        images,
    })
}

/// The outcomes of `records`, in the records' order.
pub fn outcomes(records: &[DeploymentRecord]) -> Vec<Outcome> {
    records.iter().filter_map(outcome_of).collect()
}

/// What the history says, read once per run: the detected changes and how
/// much each outcome counts.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Changes of success rate per strategy × environment.
    pub regimes: Regimes,
    /// The weight of each outcome (aligned with the outcomes it was built
    /// from, newest first): recency × (a left regime's [`crate::ml::STALE_WEIGHT`]).
    pub weights: Vec<f64>,
    pub recency: Recency,
}

/// The change-detection parameters of `ml`.
pub fn drift_params(ml: &MlConfig) -> DriftParams {
    DriftParams {
        p_value: ml.drift_p_value,
        ..DriftParams::default()
    }
}

impl Evidence {
    /// The evidence of `outcomes` (newest first) as of `now`.
    pub fn new(outcomes: &[Outcome], ml: &MlConfig, now: DateTime<Utc>) -> Evidence {
        let regimes = Regimes::new(outcomes, &drift_params(ml));
        let recency = Recency::from_config(ml);
        let weights = recency.weights(outcomes, &regimes, now);
        Evidence {
            regimes,
            weights,
            recency,
        }
    }

    /// The weight of outcome `i` (1 when unknown).
    pub fn weight(&self, i: usize) -> f64 {
        self.weights.get(i).copied().unwrap_or(1.0)
    }

    /// Weighted `(successes, deployments)` of the outcomes `pick` selects
    /// (`outcomes` as this evidence was built from).
    pub fn count(&self, outcomes: &[Outcome], pick: impl Fn(&Outcome) -> bool) -> (f64, f64) {
        let mut weights = self.weights.clone();
        weights.resize(outcomes.len(), 1.0);
        crate::ml::weighted_count(outcomes, &weights, pick)
    }

    /// The change in `environment` the engine still acts on: the latest
    /// one, while fewer than `ml_config.min_strategy_samples` deployments
    /// there have been recorded since it was detected (the new regime is
    /// being learned). With the deployments since.
    pub fn unsettled<'a>(
        &'a self,
        outcomes: &[Outcome],
        environment: Environment,
        ml: &MlConfig,
    ) -> Option<(&'a DriftEvent, usize)> {
        let e = self.regimes.latest_in(environment)?;
        let since = deployments_since(outcomes, e);
        (since < settle(ml)).then_some((e, since))
    }
}

/// Deployments an environment needs after a change before it is considered
/// learned.
fn settle(ml: &MlConfig) -> usize {
    ml.min_strategy_samples.max(1) as usize
}

/// Deployments in the event's environment recorded after the one that
/// detected it.
fn deployments_since(outcomes: &[Outcome], e: &DriftEvent) -> usize {
    outcomes
        .iter()
        .filter(|o| {
            o.environment == e.environment
                && (o.started_at, o.id.as_str()) > (e.detected_at, e.detected_by.as_str())
        })
        .count()
}

/// Training rows: outcomes with recorded features, each with its weight
/// (`weights` aligned with `outcomes`; missing weights count 1).
pub fn training_rows(outcomes: &[Outcome], weights: &[f64]) -> Vec<TrainingRow> {
    outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            o.features.as_ref().map(|f| TrainingRow {
                context: f.clone(),
                strategy: o.strategy.clone(),
                success: o.success,
                duration_min: o.duration_min,
                weight: weights.get(i).copied().unwrap_or(1.0),
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
/// the request, the time, and what the history of this environment says
/// (rates and the mean duration over its whole history, from the
/// aggregates; recent failures and each service's record from the newest
/// outcomes; other environments' outcomes are ignored).
/// `success_rate_strategy` is for `strategy`; see [`for_strategy`].
pub fn feature_context(
    metrics: &Snapshot,
    environment: Environment,
    size: DeploymentSize,
    services: &[String],
    past: &Past,
    recency: &Recency,
    strategy: &str,
) -> FeatureContext {
    let now = Local::now();
    let here: Vec<&Outcome> = past
        .iter()
        .filter(|o| o.environment == environment)
        .collect();
    let (service_min, service_product) = service_rates(services, &here, recency);
    let ctx = FeatureContext {
        cpu_percent: metrics.cpu_percent,
        memory_percent: metrics.memory_percent,
        disk_percent: metrics.disk_percent,
        load_per_core: metrics.load_per_core,
        network_latency_ms: metrics.network_latency_ms,
        environment,
        size_ordinal: size_ordinal(size),
        service_count: services.len() as f64,
        hour: f64::from(now.hour()),
        weekday: f64::from(now.weekday().num_days_from_monday()),
        // No evidence either way: 0.5.
        success_rate_overall: past.in_environment(environment).1.unwrap_or(0.5),
        success_rate_strategy: 0.5,
        recent_failures: here.iter().take(RECENT).filter(|o| !o.success).count() as f64,
        mean_duration_min: past.mean_duration_in(environment).unwrap_or(0.0),
        service_success_min: Some(service_min),
        service_success_product: Some(service_product),
        image_bucket: None,
        image_success_min: None,
    };
    for_strategy(&ctx, past, strategy)
}

/// Each requested service's own record in `here` (one environment's
/// outcomes, newest first): deployments that included it, weighted by
/// recency (the half-life counts that service's newer deployments), and
/// those in which its step did not fail; smoothed to (ok + 1) / (n + 2).
/// The lowest and the product over the request.
fn service_rates(services: &[String], here: &[&Outcome], recency: &Recency) -> (f64, f64) {
    if services.is_empty() {
        return (
            crate::ml::features::NO_EVIDENCE,
            crate::ml::features::NO_EVIDENCE,
        );
    }
    let rates: Vec<f64> = services
        .iter()
        .map(|s| {
            let (mut ok, mut n) = (0.0, 0.0);
            for (k, o) in here.iter().filter(|o| o.services.contains(s)).enumerate() {
                let w = recency.by_count(k);
                n += w;
                if !o.failed_services.contains(s) {
                    ok += w;
                }
            }
            (ok + 1.0) / (n + 2.0)
        })
        .collect();
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    (min, rates.iter().product())
}

/// `ctx` with the image features of the container images about to go out
/// (`image:version`, in request order; none: they stay `None`): the first
/// image's bucket, and the lowest recency-weighted success rate of each
/// exact image over this environment's past deployments that put it out.
pub fn with_images(
    mut ctx: FeatureContext,
    images: &[String],
    past: &Past,
    recency: &Recency,
) -> FeatureContext {
    let Some(first) = images.first() else {
        return ctx;
    };
    let repo = first.rsplit_once(':').map_or(first.as_str(), |(r, _)| r);
    ctx.image_bucket = Some(crate::ml::features::image_bucket(repo));
    let rate = |image: &String| {
        let (mut ok, mut n) = (0.0, 0.0);
        let with = past
            .iter()
            .filter(|o| o.environment == ctx.environment)
            .filter_map(|o| o.images.iter().find(|(i, _)| i == image));
        for (k, (_, failed)) in with.enumerate() {
            let w = recency.by_count(k);
            n += w;
            if !failed {
                ok += w;
            }
        }
        (ok + 1.0) / (n + 2.0)
    };
    ctx.image_success_min = images.iter().map(rate).reduce(f64::min);
    ctx
}

/// `ctx` with `success_rate_strategy` set for `strategy` (in `ctx`'s
/// environment).
pub fn for_strategy(ctx: &FeatureContext, past: &Past, strategy: &str) -> FeatureContext {
    FeatureContext {
        success_rate_strategy: past
            .success_rate_of_in(strategy, ctx.environment)
            .unwrap_or(0.5),
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

/// The changes the outcome of deployment `id` completed the evidence for
/// (`outcomes` newest first, that deployment's included).
pub fn drift_detected_by(outcomes: &[Outcome], id: &str, ml: &MlConfig) -> Vec<DriftEvent> {
    let Some(last) = outcomes.iter().find(|o| o.id == id) else {
        return Vec::new();
    };
    // Only the deployment's own context can have changed with its outcome.
    let context: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.strategy == last.strategy && o.environment == last.environment)
        .cloned()
        .collect();
    crate::ml::drift::detect(&context, &drift_params(ml))
        .into_iter()
        .filter(|e| e.detected_by == id)
        .collect()
}

/// Why the model should be retrained now, if it should: `rows` is the
/// number of deployments with recorded features; `drift` the changes this
/// deployment's outcome revealed (a change retrains at once, whatever the
/// cadence, once there is a model or enough data for one).
pub fn retrain_due(
    rows: usize,
    state: &ModelState,
    ml: &MlConfig,
    drift: &[DriftEvent],
) -> Option<String> {
    let need = ml.min_training_samples.max(1) as usize;
    if rows < need {
        return None;
    }
    if let Some(e) = drift.first() {
        return Some(format!(
            "a change was detected ({}): the model learns the new regime now",
            e.summary()
        ));
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
    // Newest first, as the evidence expects.
    let mut past = outcomes(&history.all_deployments().await?);
    past.reverse();
    let evidence = Evidence::new(&past, ml, Utc::now());
    let rows = training_rows(&past, &evidence.weights);
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
    /// `ml_config.half_life_deployments` and `half_life_days` (0: off).
    pub half_life_deployments: f64,
    pub half_life_days: f64,
    /// `ml_config.drift_p_value` (0: change detection off).
    pub drift_p_value: f64,
    /// The most recent changes detected, newest first (at most
    /// [`RECENT_DRIFT`]).
    pub drift_events: Vec<DriftStatus>,
}

/// How many drift events `model status` lists.
pub const RECENT_DRIFT: usize = 10;

/// A detected change as `model status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftStatus {
    #[serde(flatten)]
    pub event: DriftEvent,
    /// The evidence in one line.
    pub summary: String,
    /// Deployments in its environment since it was detected.
    pub deployments_since: usize,
    /// Whether the engine still acts on it: the latest change in its
    /// environment, and fewer than `ml_config.min_strategy_samples`
    /// deployments there since (production falls back to the safest
    /// strategy after a drop; elsewhere the candidates are re-checked).
    pub active: bool,
    /// What the engine does about it while active.
    pub response: String,
}

/// What the engine does while a change in `environment` is unsettled.
pub fn drift_response(e: &DriftEvent) -> String {
    match (e.environment, e.direction) {
        (Environment::Production, DriftDirection::Dropped) => {
            "production falls back to the safest strategy by current evidence".to_string()
        }
        (Environment::Production, DriftDirection::Rose) => {
            "the model decides with the new regime's outcomes (no exploration in production)"
                .to_string()
        }
        _ => format!(
            "adaptive deployments in {} re-check the candidates (ml_config.drift_exploration_rate)",
            e.environment
        ),
    }
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
    // Newest first, as the analyses expect.
    let newest_first: &[Outcome] = past.recent();
    let failure_patterns = crate::ml::failure_patterns(newest_first);
    let evidence = Evidence::new(newest_first, ml, Utc::now());
    let drift_events = evidence
        .regimes
        .events()
        .iter()
        .rev()
        .take(RECENT_DRIFT)
        .map(|e| {
            let deployments_since = deployments_since(newest_first, e);
            let latest = evidence.regimes.latest_in(e.environment) == Some(e);
            DriftStatus {
                event: e.clone(),
                summary: e.summary(),
                deployments_since,
                active: latest && deployments_since < settle(ml),
                response: drift_response(e),
            }
        })
        .collect();
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
        half_life_deployments: ml.half_life_deployments,
        half_life_days: ml.half_life_days,
        drift_p_value: ml.drift_p_value,
        drift_events,
    })
}

#[cfg(test)]
mod image_tests {
    use super::*;
    use crate::ml::features::{image_bucket, tests::ctx};
    use crate::ml::{ForestParams, StrategyModel, TrainingRow};

    fn outcome(i: usize, image: &str, failed: bool) -> Outcome {
        Outcome {
            id: format!("d{i}"),
            started_at: Utc::now() - chrono::Duration::minutes(i as i64),
            strategy: "balanced".into(),
            environment: Environment::Staging,
            size: "small".into(),
            services: vec!["web".into()],
            failed_services: if failed { vec!["web".into()] } else { vec![] },
            success: !failed,
            duration_min: 1.0,
            features: None,
            images: vec![(image.to_string(), failed)],
        }
    }

    #[test]
    fn an_image_that_failed_before_scores_low_an_unknown_one_neutral() {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(outcome(2 * i, "localhost/web:3", true));
            v.push(outcome(2 * i + 1, "localhost/web:2", false));
        }
        let past = Past::from(v);
        let base = ctx(Environment::Staging, 10.0);
        let score = |images: &[&str]| {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            with_images(base.clone(), &images, &past, &Recency::OFF)
        };
        assert_eq!(
            score(&["localhost/web:3"]).image_success_min,
            Some(1.0 / 8.0)
        );
        assert_eq!(
            score(&["localhost/web:2"]).image_success_min,
            Some(7.0 / 8.0)
        );
        assert_eq!(score(&["localhost/web:4"]).image_success_min, Some(0.5));
        // The lowest of several; the bucket is the first image's, tag ignored.
        let both = score(&["localhost/web:2", "localhost/web:3"]);
        assert_eq!(both.image_success_min, Some(1.0 / 8.0));
        assert_eq!(both.image_bucket, Some(image_bucket("localhost/web")));
        // Another environment's outcomes do not count.
        let mut other = base.clone();
        other.environment = Environment::Production;
        let prod = with_images(other, &["localhost/web:3".into()], &past, &Recency::OFF);
        assert_eq!(prod.image_success_min, Some(0.5));
        // No container service: no image features.
        assert_eq!(score(&[]).image_bucket, None);
    }

    #[test]
    fn the_model_learns_that_rollouts_fail_more_with_some_images() {
        let (good, bad) = ("localhost/web", "registry.example.com/web-nightly");
        assert_ne!(
            image_bucket(good),
            image_bucket(bad),
            "pick images in other buckets"
        );
        let rows: Vec<TrainingRow> = (0..160)
            .map(|i| {
                let failing = i % 2 == 0;
                let mut context = ctx(Environment::Staging, (i * 37 % 100) as f64);
                context.hour = (i % 24) as f64;
                context.image_bucket = Some(image_bucket(if failing { bad } else { good }));
                TrainingRow {
                    context,
                    strategy: "balanced".into(),
                    // Mostly: a few of each go the other way.
                    success: if i % 10 == 3 { failing } else { !failing },
                    duration_min: 1.0,
                    weight: 1.0,
                }
            })
            .collect();
        let m = StrategyModel::train(&rows, &BTreeMap::new(), &ForestParams::default()).unwrap();
        let p = |image: &str| {
            let mut c = ctx(Environment::Staging, 50.0);
            c.image_bucket = Some(image_bucket(image));
            m.predict_one(&c, "balanced").p_success
        };
        // Trees that do not see the column (feature_fraction) say little
        // either way; the ones that do separate the images.
        let (g, b) = (p(good), p(bad));
        assert!(g > 0.5 && b < 0.5 && g - b > 0.3, "good {g}, bad {b}");
    }
}
