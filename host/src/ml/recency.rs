//! How much an older outcome still counts.
//!
//! The world a deployment meets changes, so the newest outcomes are the best
//! evidence. Each outcome gets a weight in (0, 1]:
//!
//! ```text
//! weight = ½^(newer / half_life_deployments) × ½^(age_days / half_life_days) × stale
//! ```
//!
//! - `newer` is the number of newer outcomes *of the same context*
//!   (strategy × environment): an outcome loses weight only when there is
//!   fresher evidence about the same thing, so a strategy that is rarely used
//!   keeps its record instead of fading into "unknown" while others are
//!   deployed. (A half-life in deployments of the whole history would forget
//!   the alternatives exactly when they are not being tried.)
//! - `age_days` is the outcome's age in days, for histories that sit still
//!   for months; off by default (the simulations that chose the defaults run
//!   in seconds and cannot measure it).
//! - `stale` is [`STALE_WEIGHT`] for an outcome of a regime its context has
//!   left (a detected change, see [`drift`](super::drift)), else 1.
//!
//! The same weights feed the forest's training rows and the per-context
//! Beta posterior the engine refines the forest with, and the per-service
//! success rates. A half-life of 0 (or less) turns that factor off.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::drift::Regimes;
use super::outcome::Outcome;
use crate::config::{Environment, MlConfig};

/// What an outcome from before a detected change in its context still
/// weighs (times its recency): little, so the new regime decides at once,
/// but not nothing, so a false alarm costs a few deployments of evidence,
/// not the whole record.
pub const STALE_WEIGHT: f64 = 0.05;

/// Half-lives of an outcome's weight (the default: no decay).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Recency {
    /// In newer outcomes of the same strategy × environment; ≤ 0: off.
    pub half_life_deployments: f64,
    /// In days; ≤ 0: off.
    pub half_life_days: f64,
}

impl Recency {
    /// No decay: every outcome weighs 1 (unless stale).
    pub const OFF: Recency = Recency {
        half_life_deployments: 0.0,
        half_life_days: 0.0,
    };

    /// `ml_config.half_life_deployments` and `ml_config.half_life_days`.
    pub fn from_config(ml: &MlConfig) -> Recency {
        Recency {
            half_life_deployments: ml.half_life_deployments,
            half_life_days: ml.half_life_days,
        }
    }

    /// ½^(`newer` / half-life in deployments).
    pub fn by_count(&self, newer: usize) -> f64 {
        halve(newer as f64, self.half_life_deployments)
    }

    /// ½^(age in days / half-life in days).
    pub fn by_age(&self, started_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
        let days = (now - started_at).num_seconds().max(0) as f64 / 86_400.0;
        halve(days, self.half_life_days)
    }

    /// The weight of each of `outcomes` (newest first, as the engine keeps
    /// them), aligned with them.
    pub fn weights(&self, outcomes: &[Outcome], regimes: &Regimes, now: DateTime<Utc>) -> Vec<f64> {
        let mut newer: BTreeMap<(&str, Environment), usize> = BTreeMap::new();
        outcomes
            .iter()
            .map(|o| {
                let n = newer
                    .entry((o.strategy.as_str(), o.environment))
                    .or_insert(0);
                let w = self.by_count(*n) * self.by_age(o.started_at, now);
                *n += 1;
                if regimes.is_stale(o) {
                    w * STALE_WEIGHT
                } else {
                    w
                }
            })
            .collect()
    }
}

fn halve(age: f64, half_life: f64) -> f64 {
    if half_life > 0.0 && age > 0.0 {
        0.5f64.powf(age / half_life)
    } else {
        1.0
    }
}

/// Weighted successes and deployments of the outcomes `pick` selects:
/// `(successes, deployments)`, each the sum of the weights.
pub fn weighted_count(
    outcomes: &[Outcome],
    weights: &[f64],
    pick: impl Fn(&Outcome) -> bool,
) -> (f64, f64) {
    outcomes
        .iter()
        .zip(weights)
        .filter(|(o, _)| pick(o))
        .fold((0.0, 0.0), |(ok, n), (o, w)| {
            (ok + if o.success { *w } else { 0.0 }, n + w)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::drift::DriftParams;
    use crate::ml::drift::tests::series;

    fn newest_first(mut v: Vec<Outcome>) -> Vec<Outcome> {
        v.reverse();
        v
    }

    #[test]
    fn weight_halves_per_half_life_of_newer_outcomes_in_the_context() {
        let r = Recency {
            half_life_deployments: 2.0,
            half_life_days: 0.0,
        };
        let mut all = series("a", Environment::Staging, &[true; 5]);
        // Another context's outcomes do not age these.
        all.extend(series("b", Environment::Staging, &[true; 3]));
        all.extend(series("a", Environment::Production, &[true; 2]));
        all.sort_by_key(|o| std::cmp::Reverse(o.started_at));
        let now = all[0].started_at;
        let w = r.weights(&all, &Regimes::default(), now);
        let of = |id: &str| {
            all.iter()
                .zip(&w)
                .find(|(o, _)| o.id == id)
                .map(|(_, w)| *w)
                .unwrap()
        };
        assert_eq!(of("a-staging-004"), 1.0);
        assert!((of("a-staging-002") - 0.5).abs() < 1e-12);
        assert!((of("a-staging-000") - 0.25).abs() < 1e-12);
        assert!((of("b-staging-000") - 0.5f64.powf(1.0)).abs() < 1e-12);
        assert!((of("a-production-000") - 0.5f64.powf(0.5)).abs() < 1e-12);
        assert_eq!(
            Recency::OFF.weights(&all, &Regimes::default(), now),
            vec![1.0; 10]
        );
    }

    #[test]
    fn age_in_days_halves_too() {
        let r = Recency {
            half_life_deployments: 0.0,
            half_life_days: 30.0,
        };
        let o = series("a", Environment::Staging, &[true]);
        let now = o[0].started_at + chrono::Duration::days(60);
        assert!((r.weights(&o, &Regimes::default(), now)[0] - 0.25).abs() < 1e-9);
    }

    #[test]
    fn a_left_regime_weighs_little() {
        let mut oks = vec![true; 12];
        oks.extend([false; 4]);
        let o = newest_first(series("a", Environment::Production, &oks));
        let regimes = Regimes::new(&o, &DriftParams::default());
        assert_eq!(regimes.events().len(), 1);
        let w = Recency::OFF.weights(&o, &regimes, o[0].started_at);
        // Newest first: the four failures, then the old successes.
        assert_eq!(&w[..4], &[1.0; 4]);
        assert!(w[4..].iter().all(|x| *x == STALE_WEIGHT), "{w:?}");
        let (ok, n) = weighted_count(&o, &w, |_| true);
        assert!((ok - 12.0 * STALE_WEIGHT).abs() < 1e-9);
        assert!((n - (4.0 + 12.0 * STALE_WEIGHT)).abs() < 1e-9);
    }
}
