//! The feature vector: one function for training and prediction, and what
//! `ml_config.feature_weights` means.
//!
//! [`extract`] is the only way a [`FeatureContext`] becomes numbers. Training
//! and prediction both go through it, so a change here changes both sides at
//! once and a model can never be fed columns in another order.
//!
//! # Feature weights
//!
//! A tree only compares a feature with thresholds, so multiplying a feature
//! by a positive number changes nothing a forest learns (adeploy used to do
//! that, and the weights had an effect only at 0). A weight is therefore the
//! feature's *share of attention*: each tree of the forest sees a random
//! subset of the columns (`feature_fraction` of them), drawn without
//! replacement with probability proportional to the column's weight
//! ([`column_weights`]; the strategy columns weigh 1). A feature weighted 2
//! is in more trees than one weighted 1, so more of the forest's splits can
//! use it and its importance rises; a weight of 0 keeps the feature out of
//! every tree. The trained model keeps the weights it was trained with, so a
//! change takes effect at the next retraining.
//!
//! The seed config's keys are coarse aliases (`system_cpu`,
//! `historical_success_rate`, `environment_type`; adeploy adds
//! `service_history`); every [`FEATURE_NAMES`] entry is accepted too and wins
//! over an alias. Any other key is refused by config validation
//! ([`unknown_weight_keys`], [`KNOWN_WEIGHT_KEYS`]): a misspelt key would
//! otherwise silently do nothing.
//!
//! # Isolation
//!
//! The history features (`success_rate_*`, `recent_failures`,
//! `mean_duration_min`, `service_success_*`) are computed over the
//! deployment's own environment only (see `engine::learn`), so a burst of
//! failures in production does not move what the model predicts for
//! development.

use std::collections::BTreeMap;

use crate::config::Environment;

// Every deployment record stores the context it was chosen in, so the type
// lives with the records (the history is below the ml module).
pub use crate::history::FeatureContext;

/// Column names of [`extract`]'s output, in order.
pub const FEATURE_NAMES: &[&str] = &[
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load_per_core",
    "network_latency_ms",
    "environment",
    "size_ordinal",
    "service_count",
    "hour",
    "weekday",
    "success_rate_overall",
    "success_rate_strategy",
    "recent_failures",
    "mean_duration_min",
    "service_success_min",
    "service_success_product",
    "image_bucket",
    "image_success_min",
];

/// How many buckets container images are hashed into (`image_bucket`).
pub const IMAGE_BUCKETS: u32 = 16;

/// The bucket of an image (without its tag): a stable hash, so a model
/// trained yesterday reads today's bucket the same way.
pub fn image_bucket(image: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(image.as_bytes());
    f64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % IMAGE_BUCKETS)
}

/// Weight keys that stand for groups of features, and the features they
/// cover.
pub const ALIASES: &[(&str, &[&str])] = &[
    ("system_cpu", &["cpu_percent"]),
    (
        "historical_success_rate",
        &["success_rate_overall", "success_rate_strategy"],
    ),
    ("environment_type", &["environment"]),
    (
        "service_history",
        &["service_success_min", "service_success_product"],
    ),
    ("image_history", &["image_bucket", "image_success_min"]),
];

/// Every key `ml_config.feature_weights` accepts: the aliases, then the
/// feature names.
pub const KNOWN_WEIGHT_KEYS: &[&str] = &[
    "system_cpu",
    "historical_success_rate",
    "environment_type",
    "service_history",
    "image_history",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load_per_core",
    "network_latency_ms",
    "environment",
    "size_ordinal",
    "service_count",
    "hour",
    "weekday",
    "success_rate_overall",
    "success_rate_strategy",
    "recent_failures",
    "mean_duration_min",
    "service_success_min",
    "service_success_product",
    "image_bucket",
    "image_success_min",
];

/// What a service (or a request) without history scores: no evidence either
/// way.
pub const NO_EVIDENCE: f64 = 0.5;

/// Environment as an ordinal, least to most careful.
fn environment_ordinal(env: Environment) -> f64 {
    match env {
        Environment::Local => 0.0,
        Environment::Development => 1.0,
        Environment::Staging => 2.0,
        Environment::Production => 3.0,
    }
}

/// The weight of one feature: its own key, else an alias covering it, else 1.
pub fn weight_of(name: &str, weights: &BTreeMap<String, f64>) -> f64 {
    if let Some(w) = weights.get(name) {
        return *w;
    }
    ALIASES
        .iter()
        .filter(|(_, covered)| covered.contains(&name))
        .find_map(|(alias, _)| weights.get(*alias).copied())
        .unwrap_or(1.0)
}

/// The sampling weight of each [`FEATURE_NAMES`] column (negative and
/// non-finite values count as 0; config validation refuses them).
pub fn column_weights(weights: &BTreeMap<String, f64>) -> Vec<f64> {
    FEATURE_NAMES
        .iter()
        .map(|n| weight_of(n, weights))
        .map(|w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect()
}

/// The feature vector of `ctx`, in [`FEATURE_NAMES`] order.
pub fn extract(ctx: &FeatureContext) -> Vec<f64> {
    vec![
        ctx.cpu_percent,
        ctx.memory_percent,
        ctx.disk_percent,
        ctx.load_per_core,
        ctx.network_latency_ms.unwrap_or(-1.0),
        environment_ordinal(ctx.environment),
        ctx.size_ordinal,
        ctx.service_count,
        ctx.hour,
        ctx.weekday,
        ctx.success_rate_overall,
        ctx.success_rate_strategy,
        ctx.recent_failures,
        ctx.mean_duration_min,
        ctx.service_success_min.unwrap_or(NO_EVIDENCE),
        ctx.service_success_product.unwrap_or(NO_EVIDENCE),
        ctx.image_bucket.unwrap_or(-1.0),
        ctx.image_success_min.unwrap_or(NO_EVIDENCE),
    ]
}

/// Weight keys that are neither a feature name nor a known alias, sorted.
pub fn unknown_weight_keys(weights: &BTreeMap<String, f64>) -> Vec<String> {
    weights
        .keys()
        .filter(|k| !KNOWN_WEIGHT_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ctx(env: Environment, cpu: f64) -> FeatureContext {
        FeatureContext {
            cpu_percent: cpu,
            memory_percent: 40.0,
            disk_percent: 30.0,
            load_per_core: 0.5,
            network_latency_ms: None,
            environment: env,
            size_ordinal: 1.0,
            service_count: 4.0,
            hour: 14.0,
            weekday: 2.0,
            success_rate_overall: 0.9,
            success_rate_strategy: 0.8,
            recent_failures: 1.0,
            mean_duration_min: 3.5,
            service_success_min: Some(0.75),
            service_success_product: None,
            image_bucket: None,
            image_success_min: None,
        }
    }

    #[test]
    fn extract_is_deterministic_and_ordered() {
        let c = ctx(Environment::Staging, 55.0);
        let a = extract(&c);
        assert_eq!(a, extract(&c));
        assert_eq!(a.len(), FEATURE_NAMES.len());
        assert_eq!(a[0], 55.0);
        assert_eq!(a[4], -1.0, "missing latency encodes as -1");
        assert_eq!(a[5], 2.0, "staging is ordinal 2");
        assert_eq!(a[14], 0.75);
        assert_eq!(a[15], NO_EVIDENCE, "an older record has no evidence");
    }

    #[test]
    fn weights_are_column_sampling_weights_with_aliases() {
        let w: BTreeMap<String, f64> = [
            ("system_cpu".to_string(), 2.0),
            ("historical_success_rate".to_string(), 0.5),
            ("environment_type".to_string(), 10.0),
            // A feature name wins over the alias that covers it.
            ("success_rate_strategy".to_string(), 0.0),
            ("memory_percent".to_string(), 0.25),
            ("service_history".to_string(), 3.0),
            ("hour".to_string(), -1.0),
        ]
        .into_iter()
        .collect();
        let c = column_weights(&w);
        assert_eq!(c.len(), FEATURE_NAMES.len());
        assert_eq!(c[0], 2.0);
        assert_eq!(c[1], 0.25);
        assert_eq!(c[2], 1.0, "unweighted features weigh 1");
        assert_eq!(c[5], 10.0);
        assert_eq!(c[8], 0.0, "a negative weight counts as 0");
        assert_eq!(c[10], 0.5);
        assert_eq!(c[11], 0.0);
        assert_eq!(c[14], 3.0);
        assert_eq!(c[15], 3.0);
        // The values themselves are never scaled.
        let x = ctx(Environment::Production, 50.0);
        assert_eq!(extract(&x)[0], 50.0);
    }

    #[test]
    fn every_feature_and_alias_is_a_known_key() {
        for name in FEATURE_NAMES {
            assert!(KNOWN_WEIGHT_KEYS.contains(name), "{name}");
        }
        for (alias, covered) in ALIASES {
            assert!(KNOWN_WEIGHT_KEYS.contains(alias), "{alias}");
            for c in *covered {
                assert!(FEATURE_NAMES.contains(c), "{alias} covers unknown {c}");
            }
        }
        assert_eq!(KNOWN_WEIGHT_KEYS.len(), FEATURE_NAMES.len() + ALIASES.len());
    }

    #[test]
    fn unknown_keys_are_listed() {
        let w: BTreeMap<String, f64> = [
            ("system_cpu".to_string(), 1.0),
            ("cpu_percent".to_string(), 1.0),
            ("sytem_memory".to_string(), 3.0),
            ("zzz".to_string(), 0.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(unknown_weight_keys(&w), vec!["sytem_memory", "zzz"]);
    }
}
