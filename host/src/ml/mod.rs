//! Learned strategy selection: the core the engine's selector builds on.
//!
//! The engine asks one question of this module: *how likely is each candidate
//! strategy to succeed in the current context?* The answer comes from a random
//! forest trained on past deployments kept in the history database.
//!
//! Why it is shaped this way:
//!
//! - **One feature extractor** ([`features::extract`]) is used at training and
//!   at prediction time, so the two can never drift apart (the classic silent
//!   bug of ML in production). `ml_config.feature_weights` decide how often
//!   each feature is among the columns a tree sees ([`features`]).
//! - **The newest evidence counts most** ([`recency`]): every outcome has a
//!   weight that halves with each half-life of newer outcomes in its context
//!   (and optionally of days), used by the forest's rows and by the
//!   engine's per-context posterior; an abrupt change is detected
//!   ([`drift`]) and the outcomes before it count for little from then on.
//! - **Our own bagging over linfa-trees** ([`forest`]) instead of
//!   `linfa-ensemble`: the ensemble crate's forest has no `Serialize`, and the
//!   design keeps the model in the history database across restarts. Every
//!   `DecisionTree` serialises, so the forest is a list of trees plus the
//!   columns each tree saw; it also gives us out-of-bag accuracy for free,
//!   which is what the engine reports as confidence in the model.
//! - **One model for all strategies** ([`model::StrategyModel`]), with the
//!   strategy one-hot encoded, so strategies share what the context teaches
//!   (load, environment, hour) while still learning their own effects.
//! - **No dependency upward**: this module knows `config` and nothing of the
//!   engine or the CLI (engine → ml → config/history). Fallback rules below
//!   `min_training_samples`, exploration and utility are the engine's policy.
//! - **Plain statistics beside the forest**: the duration estimate
//!   ([`duration`], medians of similar past deployments) and the failure
//!   analysis ([`patterns`]: failure patterns, alert streaks, success rates)
//!   are counts over [`Outcome`]s, not learned, so people can check them
//!   against the history by hand and they work from the first deployment on,
//!   long before there is enough data to train.
//! - **Never panics on input**: bad training data, bad parameters and corrupt
//!   or foreign model bytes are [`MlError`]s; a model blob from another
//!   version is reported as [`MlError::Incompatible`] so the caller can
//!   retrain instead of failing the deployment.

pub mod drift;
pub mod duration;
pub mod features;
pub mod forest;
pub mod model;
pub mod outcome;
pub mod patterns;
pub mod recency;

pub use drift::{DriftDirection, DriftEvent, DriftParams, Regimes};
pub use duration::{DurationEstimate, estimate_all, estimate_duration};
pub use features::{
    FEATURE_NAMES, FeatureContext, KNOWN_WEIGHT_KEYS, column_weights, extract, unknown_weight_keys,
};
pub use forest::{FitWeights, ForestParams, RandomForest};
pub use model::{FORMAT_VERSION, ModelMeta, Prediction, StrategyModel, TrainingRow};
pub use outcome::Outcome;
pub use patterns::{
    Dimension, FailurePattern, Streaks, SuccessRate, failure_patterns, hour_band, load_band,
    relevant, streaks, success_rates,
};
pub use recency::{Recency, STALE_WEIGHT, weighted_count};

/// Errors of training, prediction and model persistence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// No rows, or rows without features.
    #[error("no training data")]
    EmptyData,
    /// The feature matrix and the labels disagree.
    #[error("shape mismatch: {rows} feature rows but {labels} labels")]
    Shape { rows: usize, labels: usize },
    /// A feature value is NaN or infinite.
    #[error("non-finite feature value at row {row}, column {column}")]
    NonFinite { row: usize, column: usize },
    /// Forest parameters out of range.
    #[error("invalid forest parameters: {0}")]
    InvalidParams(String),
    /// The decision-tree learner refused the data.
    #[error("training failed: {0}")]
    Train(String),
    /// The model could not be encoded.
    #[error("cannot encode model: {0}")]
    Encode(String),
    /// The bytes are not a strategy model (or are damaged).
    #[error("corrupt model data: {0}")]
    Corrupt(String),
    /// A strategy model written by a different format version.
    #[error("incompatible model format version {found} (this build reads {expected})")]
    Incompatible { found: u32, expected: u32 },
}
