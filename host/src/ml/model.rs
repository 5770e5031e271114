//! The strategy model: P(success | context, strategy), persisted as bytes.
//!
//! One forest covers every strategy: a row is [`extract`]`(context)` followed
//! by a one-hot encoding of the strategy over the strategies seen in training,
//! then the same one-hot multiplied by `environment + 1`, then by `size + 1`.
//! Sharing one model lets sparse per-strategy histories borrow what the
//! context teaches from the others. The strategy × environment and strategy
//! × size columns are there because those interactions are the ones the
//! engine cares most about ("aggressive is fine in development, not in
//! production"; "not for a large deployment") and a greedy tree cannot find
//! a pure interaction on its own: with balanced data, neither the environment
//! nor the strategy alone reduces impurity, so trees split on noise instead.
//! With the product column, "A in production" is one threshold away. (Format
//! version 1 had no size product; its models are retrained.)
//!
//! A strategy never seen in training is still scored (all strategy columns 0,
//! i.e. "none of the known ones") but flagged `known: false`, so the engine
//! can treat it as exploration.
//!
//! The model keeps the feature weights it was trained with (they decide
//! which columns each tree saw, see [`features`](super::features)): changing
//! `feature_weights` in the config takes effect at the next retraining, never
//! half-way through a model's life. Each training row carries a weight (its
//! recency, see [`recency`](super::recency)): older deployments count less in
//! every split and leaf.
//!
//! Format version 3 added the per-service features and weighted rows;
//! models of versions 1 and 2 are retrained.
//!
//! Persistence is JSON in a small envelope (`format`, `version`, `model`) so
//! the history database can keep it as a blob and a build can tell "not a
//! model" ([`MlError::Corrupt`]) from "a model of another format"
//! ([`MlError::Incompatible`]: retrain from history rather than fail).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::MlError;
use super::features::{FEATURE_NAMES, FeatureContext, column_weights, extract};
use super::forest::{FitWeights, ForestParams, RandomForest};

/// Version of the byte format written by [`StrategyModel::to_bytes`].
pub const FORMAT_VERSION: u32 = 3;
const FORMAT_TAG: &str = "adeploy-strategy-model";

/// One past deployment, as the model learns from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRow {
    pub context: FeatureContext,
    pub strategy: String,
    pub success: bool,
    pub duration_min: f64,
    /// How much the row counts, ≥ 0 (1 for a fresh outcome; older ones less,
    /// see [`recency`](super::recency)).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// The model's estimate for one candidate strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub strategy: String,
    /// Probability of success, 0–1 (mean leaf share of success over trees).
    /// For a strategy the model never saw (`known: false`) this is what the
    /// forest says of "none of the known strategies": not evidence about
    /// the strategy, and the engine does not use it as such.
    pub p_success: f64,
    /// Whether the strategy appeared in the training rows.
    pub known: bool,
    /// Mean duration of this strategy's successful training rows, minutes.
    pub expected_duration_min: Option<f64>,
}

/// What the model is, for reports and `model` commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Byte-format version the model follows ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Training rows.
    pub samples: usize,
    /// Their summed weights: how many fresh deployments' worth of evidence
    /// the model was trained on (older deployments count less).
    #[serde(default)]
    pub effective_samples: f64,
    pub trained_at: DateTime<Utc>,
    /// Out-of-bag accuracy: the confidence to report in the model.
    pub oob_accuracy: Option<f64>,
    /// `(column name, importance)`, columns as in the rows, summing to 1.
    pub feature_importances: Vec<(String, f64)>,
    /// Strategies seen in training, sorted (the one-hot column order).
    pub strategies: Vec<String>,
}

/// A trained strategy-success model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrategyModel {
    meta: ModelMeta,
    weights: BTreeMap<String, f64>,
    mean_success_duration: BTreeMap<String, f64>,
    forest: RandomForest,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: &'a str,
    version: u32,
    model: &'a StrategyModel,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    model: StrategyModel,
}

impl StrategyModel {
    /// Train on past deployments with the config's feature weights.
    pub fn train(
        rows: &[TrainingRow],
        weights: &BTreeMap<String, f64>,
        params: &ForestParams,
    ) -> Result<Self, MlError> {
        if rows.is_empty() {
            return Err(MlError::EmptyData);
        }
        let strategies: Vec<String> = rows
            .iter()
            .map(|r| r.strategy.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let width = row_width(strategies.len());
        let mut data = Vec::with_capacity(rows.len() * width);
        for r in rows {
            let hot = strategies.binary_search(&r.strategy).ok();
            encode(&extract(&r.context), hot, strategies.len(), &mut data);
        }
        let x = Array2::from_shape_vec((rows.len(), width), data)
            .map_err(|e| MlError::Train(e.to_string()))?;
        let y: Vec<bool> = rows.iter().map(|r| r.success).collect();
        let row_weights: Vec<f64> = rows.iter().map(|r| r.weight).collect();
        // The strategy columns weigh 1: the weights are about the context.
        let mut columns = column_weights(weights);
        columns.resize(width, 1.0);
        let forest = RandomForest::fit_weighted(
            &x,
            &y,
            FitWeights {
                rows: Some(&row_weights),
                columns: Some(&columns),
            },
            params,
        )?;

        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.success && r.duration_min.is_finite())
        {
            let e = sums.entry(r.strategy.clone()).or_default();
            e.0 += r.duration_min.max(0.0);
            e.1 += 1;
        }
        let mean_success_duration = sums
            .into_iter()
            .map(|(s, (sum, n))| (s, sum / n as f64))
            .collect();

        let names = FEATURE_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(strategies.iter().map(|s| format!("strategy:{s}")))
            .chain(
                strategies
                    .iter()
                    .map(|s| format!("strategy:{s}*environment")),
            )
            .chain(strategies.iter().map(|s| format!("strategy:{s}*size")));
        let feature_importances = names.zip(forest.feature_importances()).collect();
        Ok(StrategyModel {
            meta: ModelMeta {
                version: FORMAT_VERSION,
                samples: rows.len(),
                effective_samples: row_weights.iter().sum(),
                trained_at: Utc::now(),
                oob_accuracy: forest.oob_accuracy(),
                feature_importances,
                strategies,
            },
            weights: weights.clone(),
            mean_success_duration,
            forest,
        })
    }

    /// Estimates for each candidate in `ctx`, in the candidates' order.
    ///
    /// `ctx.success_rate_strategy` is used as given for every candidate; when
    /// it differs per strategy, call [`predict_one`](Self::predict_one) with
    /// a context per candidate.
    pub fn predict(&self, ctx: &FeatureContext, candidates: &[String]) -> Vec<Prediction> {
        let base = extract(ctx);
        candidates.iter().map(|c| self.score(&base, c)).collect()
    }

    /// The estimate for one strategy in `ctx`.
    pub fn predict_one(&self, ctx: &FeatureContext, strategy: &str) -> Prediction {
        self.score(&extract(ctx), strategy)
    }

    fn score(&self, base: &[f64], strategy: &str) -> Prediction {
        let strategies = &self.meta.strategies;
        let hot = strategies
            .binary_search_by(|s| s.as_str().cmp(strategy))
            .ok();
        let mut row = Vec::with_capacity(row_width(strategies.len()));
        encode(base, hot, strategies.len(), &mut row);
        Prediction {
            strategy: strategy.to_string(),
            p_success: self.forest.predict_proba(&row),
            known: hot.is_some(),
            expected_duration_min: self.mean_success_duration.get(strategy).copied(),
        }
    }

    /// What the model is: size, age, confidence, importances, strategies.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The feature weights the model was trained with.
    pub fn weights(&self) -> &BTreeMap<String, f64> {
        &self.weights
    }

    /// The model as bytes for the history database.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        serde_json::to_vec(&EnvelopeOut {
            format: FORMAT_TAG,
            version: FORMAT_VERSION,
            model: self,
        })
        .map_err(|e| MlError::Encode(e.to_string()))
    }

    /// A model from [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlError> {
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| MlError::Corrupt(e.to_string()))?;
        if header.format != FORMAT_TAG {
            return Err(MlError::Corrupt(format!(
                "not a strategy model (format {:?})",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(MlError::Incompatible {
                found: header.version,
                expected: FORMAT_VERSION,
            });
        }
        let model = serde_json::from_slice::<EnvelopeIn>(bytes)
            .map_err(|e| MlError::Corrupt(e.to_string()))?
            .model;
        let width = row_width(model.meta.strategies.len());
        if model.forest.n_features() != width {
            return Err(MlError::Corrupt(format!(
                "forest has {} columns, expected {width}",
                model.forest.n_features()
            )));
        }
        if !model.meta.strategies.is_sorted_by(|a, b| a < b) {
            return Err(MlError::Corrupt("strategy list is not sorted".into()));
        }
        Ok(model)
    }
}

/// Index of the environment in [`FEATURE_NAMES`].
const ENVIRONMENT: usize = 5;
/// Index of the deployment size in [`FEATURE_NAMES`].
const SIZE: usize = 6;

/// Columns of a model row with `strategies` known strategies.
fn row_width(strategies: usize) -> usize {
    FEATURE_NAMES.len() + 3 * strategies
}

/// Append one model row: features, strategy one-hot, one-hot ×
/// (environment + 1), one-hot × (size + 1).
fn encode(base: &[f64], hot: Option<usize>, strategies: usize, out: &mut Vec<f64>) {
    out.extend_from_slice(base);
    let hot_value = |v: f64| move |i: usize| if Some(i) == hot { v } else { 0.0 };
    out.extend((0..strategies).map(hot_value(1.0)));
    let env = base.get(ENVIRONMENT).copied().unwrap_or(0.0) + 1.0;
    out.extend((0..strategies).map(hot_value(env)));
    let size = base.get(SIZE).copied().unwrap_or(0.0) + 1.0;
    out.extend((0..strategies).map(hot_value(size)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;
    use crate::ml::features::tests::ctx;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A succeeds in production and fails in development; B the opposite.
    fn rows(n: usize) -> Vec<TrainingRow> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n)
            .map(|i| {
                let prod = i % 2 == 0;
                let a = (i / 2) % 2 == 0;
                let env = if prod {
                    Environment::Production
                } else {
                    Environment::Development
                };
                let mut context = ctx(env, rng.gen_range(0.0..100.0));
                context.hour = rng.gen_range(0.0..24.0);
                TrainingRow {
                    context,
                    strategy: if a { "A" } else { "B" }.to_string(),
                    success: a == prod,
                    duration_min: if a { 2.0 } else { 5.0 },
                    weight: 1.0,
                }
            })
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn model() -> StrategyModel {
        StrategyModel::train(&rows(200), &BTreeMap::new(), &ForestParams::default()).unwrap()
    }

    #[test]
    fn ranks_strategies_per_environment() {
        let m = model();
        let cands = names(&["A", "B"]);
        let prod = m.predict(&ctx(Environment::Production, 30.0), &cands);
        assert!(prod[0].p_success > prod[1].p_success, "{prod:?}");
        assert!(prod[0].p_success - prod[1].p_success > 0.3, "{prod:?}");
        let dev = m.predict(&ctx(Environment::Development, 30.0), &cands);
        assert!(dev[1].p_success > dev[0].p_success, "{dev:?}");
        assert!(prod.iter().all(|p| p.known));
        assert_eq!(prod[0].expected_duration_min, Some(2.0));

        let meta = m.meta();
        assert_eq!(meta.samples, 200);
        assert_eq!(meta.strategies, cands);
        assert_eq!(meta.version, FORMAT_VERSION);
        assert!(meta.oob_accuracy.unwrap() > 0.9);
        assert_eq!(meta.feature_importances.len(), FEATURE_NAMES.len() + 6);
        let top = meta
            .feature_importances
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(
            top.0.starts_with("strategy:") || top.0 == "environment",
            "{top:?}"
        );
    }

    #[test]
    fn older_rows_count_less() {
        // A used to succeed in production and fails there now.
        let mut rows = rows(200);
        for (i, r) in rows.iter_mut().enumerate() {
            let old = i < 150;
            if r.strategy == "A" && r.context.environment == Environment::Production {
                r.success = old;
            }
            r.weight = if old { 0.02 } else { 1.0 };
        }
        let m = StrategyModel::train(&rows, &BTreeMap::new(), &ForestParams::default()).unwrap();
        let p = m
            .predict_one(&ctx(Environment::Production, 30.0), "A")
            .p_success;
        assert!(p < 0.3, "{p}");
        let effective = m.meta().effective_samples;
        assert!(
            (effective - (150.0 * 0.02 + 50.0)).abs() < 1e-9,
            "{effective}"
        );
    }

    #[test]
    fn feature_weights_decide_which_columns_the_trees_see() {
        let rows = rows(200);
        let importance = |weights: &[(&str, f64)]| {
            let w: BTreeMap<String, f64> =
                weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let m = StrategyModel::train(&rows, &w, &ForestParams::default()).unwrap();
            let of = |name: &str| {
                m.meta()
                    .feature_importances
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .unwrap()
            };
            (of("environment"), m.weights().clone())
        };
        let (off, kept) = importance(&[("environment_type", 0.0)]);
        assert_eq!(off, 0.0, "a weight of 0 keeps the feature out");
        assert_eq!(kept.get("environment_type"), Some(&0.0));
        let (low, _) = importance(&[("environment_type", 0.2)]);
        let (high, _) = importance(&[("environment_type", 5.0)]);
        assert!(high > low, "more weight, more attention: {low} → {high}");
    }

    #[test]
    fn unseen_strategy_is_not_known() {
        let m = model();
        let p = m.predict_one(&ctx(Environment::Staging, 10.0), "C");
        assert!(!p.known);
        assert_eq!(p.expected_duration_min, None);
        assert!((0.0..=1.0).contains(&p.p_success));
    }

    #[test]
    fn bytes_round_trip_predicts_identically() {
        let m = model();
        let back = StrategyModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.meta(), m.meta());
        let cands = names(&["A", "B", "C"]);
        for env in [
            Environment::Local,
            Environment::Development,
            Environment::Staging,
            Environment::Production,
        ] {
            let c = ctx(env, 42.0);
            assert_eq!(back.predict(&c, &cands), m.predict(&c, &cands));
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        for garbage in [
            &b""[..],
            b"\x00\xffnot json",
            b"{\"format\":\"other\",\"version\":1}",
        ] {
            assert!(
                matches!(StrategyModel::from_bytes(garbage), Err(MlError::Corrupt(_))),
                "{garbage:?}"
            );
        }
        let mut v: serde_json::Value =
            serde_json::from_slice(&model().to_bytes().unwrap()).unwrap();
        v["version"] = 999.into();
        let err = StrategyModel::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            MlError::Incompatible {
                found: 999,
                expected: FORMAT_VERSION
            }
        ));
        v["version"] = FORMAT_VERSION.into();
        v["model"]["forest"] = serde_json::json!({"nope": 1});
        assert!(matches!(
            StrategyModel::from_bytes(&serde_json::to_vec(&v).unwrap()),
            Err(MlError::Corrupt(_))
        ));
    }

    #[test]
    fn empty_rows_are_an_error() {
        assert!(matches!(
            StrategyModel::train(&[], &BTreeMap::new(), &ForestParams::default()),
            Err(MlError::EmptyData)
        ));
    }
}
