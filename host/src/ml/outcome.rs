//! One finished deployment as the learning code sees it.
//!
//! The engine turns its history records into [`Outcome`]s once per run; every
//! analysis in this module (training rows, duration estimates, failure
//! patterns, alert streaks) reads this one shape, so none of them depends on
//! how the history stores a deployment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::features::FeatureContext;
use crate::config::Environment;

/// A finished, real (not dry-run) deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub strategy: String,
    pub environment: Environment,
    /// `small`, `medium` or `large`.
    pub size: String,
    /// Services in the deployment, in request order.
    pub services: Vec<String>,
    /// Services whose step failed or was cancelled by the deadline.
    pub failed_services: Vec<String>,
    pub success: bool,
    /// Wall-clock minutes.
    pub duration_min: f64,
    /// The context the strategy was chosen in; `None` for deployments
    /// recorded before features were kept (they still count for durations,
    /// patterns and streaks, but not for training).
    pub features: Option<FeatureContext>,
    /// Container images it put out (`image:version`) and whether a step
    /// with that image failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<(String, bool)>,
}
