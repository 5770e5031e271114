//! The feature vector: one function for training and prediction.
//!
//! [`extract`] is the only way a [`FeatureContext`] becomes numbers. Training
//! and prediction both go through it, with the same weights (the trained model
//! keeps the weights it was trained with), so a change here changes both sides
//! at once and a model can never be fed columns in another order or scale.
//!
//! Weights come from `ml_config.feature_weights`. A tree only compares a
//! feature with thresholds, so a positive weight does not change what a forest
//! learns; a weight of `0` switches a feature off (it becomes constant), and
//! the weighted vector is what a similarity measure over past deployments (the
//! duration estimate) should use, where scale does matter. The seed config's
//! keys are coarse aliases (`system_cpu`, `historical_success_rate`,
//! `environment_type`); every [`FEATURE_NAMES`] entry is accepted too and wins
//! over an alias. Unknown keys are ignored here rather than failing a
//! deployment; [`unknown_weight_keys`] lets the caller warn about typos.

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
];

/// Seed-config weight keys and the features they scale.
const ALIASES: &[(&str, &[&str])] = &[
    ("system_cpu", &["cpu_percent"]),
    (
        "historical_success_rate",
        &["success_rate_overall", "success_rate_strategy"],
    ),
    ("environment_type", &["environment"]),
];

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
fn weight_of(name: &str, weights: &BTreeMap<String, f64>) -> f64 {
    if let Some(w) = weights.get(name) {
        return *w;
    }
    ALIASES
        .iter()
        .filter(|(_, covered)| covered.contains(&name))
        .find_map(|(alias, _)| weights.get(*alias).copied())
        .unwrap_or(1.0)
}

/// The weighted feature vector of `ctx`, in [`FEATURE_NAMES`] order.
pub fn extract(ctx: &FeatureContext, weights: &BTreeMap<String, f64>) -> Vec<f64> {
    let raw = [
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
    ];
    raw.iter()
        .zip(FEATURE_NAMES)
        .map(|(v, name)| v * weight_of(name, weights))
        .collect()
}

/// Weight keys that are neither a feature name nor a known alias, sorted.
pub fn unknown_weight_keys(weights: &BTreeMap<String, f64>) -> Vec<String> {
    weights
        .keys()
        .filter(|k| !FEATURE_NAMES.contains(&k.as_str()) && !ALIASES.iter().any(|(a, _)| a == k))
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
        }
    }

    #[test]
    fn extract_is_deterministic_and_ordered() {
        let c = ctx(Environment::Staging, 55.0);
        let w = BTreeMap::new();
        let a = extract(&c, &w);
        assert_eq!(a, extract(&c, &w));
        assert_eq!(a.len(), FEATURE_NAMES.len());
        assert_eq!(a[0], 55.0);
        assert_eq!(a[4], -1.0, "missing latency encodes as -1");
        assert_eq!(a[5], 2.0, "staging is ordinal 2");
    }

    #[test]
    fn extract_applies_aliases_and_names() {
        let c = ctx(Environment::Production, 50.0);
        let w: BTreeMap<String, f64> = [
            ("system_cpu".to_string(), 2.0),
            ("historical_success_rate".to_string(), 0.5),
            ("environment_type".to_string(), 10.0),
            // A feature name wins over the alias that covers it.
            ("success_rate_strategy".to_string(), 0.0),
            ("memory_percent".to_string(), 0.25),
        ]
        .into_iter()
        .collect();
        let v = extract(&c, &w);
        assert_eq!(v[0], 100.0);
        assert_eq!(v[1], 10.0);
        assert_eq!(v[5], 30.0);
        assert_eq!(v[10], 0.45);
        assert_eq!(v[11], 0.0);
        assert_eq!(v[2], 30.0, "unweighted features are unchanged");
    }

    #[test]
    fn unknown_keys_are_listed_not_applied() {
        let w: BTreeMap<String, f64> = [
            ("system_cpu".to_string(), 1.0),
            ("cpu_percent".to_string(), 1.0),
            ("sytem_memory".to_string(), 3.0),
            ("zzz".to_string(), 0.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(unknown_weight_keys(&w), vec!["sytem_memory", "zzz"]);
        let c = ctx(Environment::Local, 10.0);
        assert_eq!(extract(&c, &w), extract(&c, &BTreeMap::new()));
    }
}
