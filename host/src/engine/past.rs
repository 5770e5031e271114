//! What a deployment knows of the history when it starts: [`Past`].
//!
//! Why it is shaped this way: the start of every deployment used to decode
//! every record of the history, which grows without bound (100,000
//! deployments are a few hundred megabytes of JSON) and, with a shared
//! PostgreSQL history, crosses the network. The store maintains aggregates
//! as it records (per strategy and environment: deployments, successes,
//! summed durations, training rows), so a deployment reads the newest
//! `history.window` records in full plus those counters:
//!
//! - numbers that summarise the whole history — success rates overall and
//!   per strategy, the mean duration, deployments per strategy, the count of
//!   training rows — come from the totals, so they are exactly what reading
//!   every record would give;
//! - analyses of individual outcomes — the context's own record (the Beta
//!   posterior), duration medians, failure patterns, streaks, the rules'
//!   "last five" — read the window (newest first), which [`Past`] derefs to.
//!
//! A [`Past`] made from a complete list of outcomes ([`Past::from_outcomes`])
//! is the same thing with totals counted from the list.

use std::collections::BTreeMap;
use std::ops::Deref;

use crate::config::Environment;
use crate::history::HistoryWindow;
use crate::ml::{Outcome, SuccessRate};

/// The outcomes of the newest deployments (newest first: what `Past`
/// derefs to) and totals over the whole history.
#[derive(Debug, Clone, Default)]
pub struct Past {
    recent: Vec<Outcome>,
    totals: BTreeMap<(String, Environment), Count>,
}

/// Outcomes of one strategy in one environment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Count {
    deployments: usize,
    successes: usize,
    /// Summed minutes of the deployments with a finite duration…
    duration_min: f64,
    /// …and how many those are.
    timed: usize,
    /// Deployments with recorded features (training rows).
    with_features: usize,
}

impl Count {
    fn add(&mut self, o: &Outcome) {
        self.deployments += 1;
        self.successes += usize::from(o.success);
        if o.duration_min.is_finite() {
            self.duration_min += o.duration_min;
            self.timed += 1;
        }
        self.with_features += usize::from(o.features.is_some());
    }
}

impl Deref for Past {
    type Target = [Outcome];

    fn deref(&self) -> &[Outcome] {
        &self.recent
    }
}

impl From<Vec<Outcome>> for Past {
    fn from(newest_first: Vec<Outcome>) -> Past {
        Past::from_outcomes(newest_first)
    }
}

impl Past {
    /// The whole history as a list of outcomes, newest first: totals are
    /// counted from the list.
    pub fn from_outcomes(newest_first: Vec<Outcome>) -> Past {
        let mut totals: BTreeMap<(String, Environment), Count> = BTreeMap::new();
        for o in &newest_first {
            totals
                .entry((o.strategy.clone(), o.environment))
                .or_default()
                .add(o);
        }
        Past {
            recent: newest_first,
            totals,
        }
    }

    /// The window a store reads at the start of a deployment: its records'
    /// outcomes, and totals from its aggregates. Aggregates of an
    /// environment this build does not know are left out, as their records'
    /// outcomes are.
    pub fn from_window(window: &HistoryWindow) -> Past {
        let totals = window
            .aggregates
            .by_strategy
            .iter()
            .filter_map(|s| {
                let environment = environment(&s.environment)?;
                let count = Count {
                    deployments: usize::try_from(s.deployments).unwrap_or(usize::MAX),
                    successes: usize::try_from(s.successes).unwrap_or(usize::MAX),
                    duration_min: s.duration_s_total / 60.0,
                    timed: usize::try_from(s.deployments).unwrap_or(usize::MAX),
                    with_features: usize::try_from(s.with_features).unwrap_or(usize::MAX),
                };
                Some(((s.strategy.clone(), environment), count))
            })
            .collect();
        Past {
            recent: super::learn::outcomes(&window.recent),
            totals,
        }
    }

    /// Adds the outcome of a deployment that just finished (it becomes the
    /// newest).
    pub fn push_newest(&mut self, outcome: Outcome) {
        self.totals
            .entry((outcome.strategy.clone(), outcome.environment))
            .or_default()
            .add(&outcome);
        self.recent.insert(0, outcome);
    }

    /// The window's outcomes, newest first.
    pub fn recent(&self) -> &[Outcome] {
        &self.recent
    }

    fn sum(&self, keep: impl Fn(&str, Environment) -> bool) -> Count {
        self.totals
            .iter()
            .filter(|((s, e), _)| keep(s, *e))
            .fold(Count::default(), |a, (_, c)| Count {
                deployments: a.deployments + c.deployments,
                successes: a.successes + c.successes,
                duration_min: a.duration_min + c.duration_min,
                timed: a.timed + c.timed,
                with_features: a.with_features + c.with_features,
            })
    }

    /// Deployments with an outcome in the whole history.
    pub fn deployments(&self) -> usize {
        self.sum(|_, _| true).deployments
    }

    /// Of which those with recorded features: what the model trains on.
    pub fn training_samples(&self) -> usize {
        self.sum(|_, _| true).with_features
    }

    /// Share of successes in the whole history; `None` without deployments.
    pub fn success_rate(&self) -> Option<f64> {
        rate(self.sum(|_, _| true))
    }

    /// Share of successes of `strategy` (every environment).
    pub fn success_rate_of(&self, strategy: &str) -> Option<f64> {
        rate(self.sum(|s, _| s == strategy))
    }

    /// Deployments in `environment`, and the share of them that succeeded.
    pub fn in_environment(&self, environment: Environment) -> (usize, Option<f64>) {
        let c = self.sum(|_, e| e == environment);
        (c.deployments, rate(c))
    }

    /// Share of successes of `strategy` in `environment`.
    pub fn success_rate_of_in(&self, strategy: &str, environment: Environment) -> Option<f64> {
        rate(self.sum(|s, e| s == strategy && e == environment))
    }

    /// Mean duration in minutes of the deployments in `environment`.
    pub fn mean_duration_in(&self, environment: Environment) -> Option<f64> {
        let c = self.sum(|_, e| e == environment);
        (c.timed > 0).then(|| c.duration_min / c.timed as f64)
    }

    /// Mean duration in minutes; `None` without deployments.
    pub fn mean_duration_min(&self) -> Option<f64> {
        let c = self.sum(|_, _| true);
        (c.timed > 0).then(|| c.duration_min / c.timed as f64)
    }

    /// Deployments per strategy (every environment).
    pub fn per_strategy(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for ((strategy, _), c) in &self.totals {
            *m.entry(strategy.clone()).or_insert(0) += c.deployments;
        }
        m.retain(|_, n| *n > 0);
        m
    }

    /// The success rate of every (strategy, environment) pair, sorted by
    /// strategy, then environment from least to most careful.
    pub fn success_rates(&self) -> Vec<SuccessRate> {
        self.totals
            .iter()
            .filter(|(_, c)| c.deployments > 0)
            .map(|((strategy, environment), c)| SuccessRate {
                strategy: strategy.clone(),
                environment: *environment,
                deployments: c.deployments,
                successes: c.successes,
                rate: c.successes as f64 / c.deployments as f64,
            })
            .collect()
    }
}

fn rate(c: Count) -> Option<f64> {
    (c.deployments > 0).then(|| c.successes as f64 / c.deployments as f64)
}

fn environment(name: &str) -> Option<Environment> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Aggregates, DeploymentRecord, DeploymentStatus, StrategyStats};
    use chrono::{TimeZone, Utc};

    fn record(i: i64, strategy: &str, success: bool) -> DeploymentRecord {
        let mut r = DeploymentRecord {
            environment: "staging".into(),
            strategy: strategy.into(),
            services: vec!["api".into()],
            deployment_size: "medium".into(),
            ..DeploymentRecord::running(
                format!("d{i}"),
                Utc.timestamp_opt(1_700_000_000 + i * 100, 0).unwrap(),
            )
        };
        r.finish(
            if success {
                DeploymentStatus::Succeeded
            } else {
                DeploymentStatus::RolledBack
            },
            Utc.timestamp_opt(1_700_000_000 + i * 100 + 60 * (i % 4 + 1), 0)
                .unwrap(),
        );
        r
    }

    /// The totals of a window equal those of the whole list, whatever the
    /// window's size: the start of a deployment sees the same numbers as if
    /// it had read every record.
    #[test]
    fn a_window_with_aggregates_knows_what_the_whole_history_knows() {
        let records: Vec<DeploymentRecord> = (0..40)
            .rev()
            .map(|i| record(i, ["balanced", "aggressive"][(i % 2) as usize], i % 3 != 0))
            .collect();
        let whole = Past::from_outcomes(super::super::learn::outcomes(&records));
        let mut by_strategy: BTreeMap<String, StrategyStats> = BTreeMap::new();
        for r in &records {
            let s = by_strategy
                .entry(r.strategy.clone())
                .or_insert_with(|| StrategyStats {
                    strategy: r.strategy.clone(),
                    environment: r.environment.clone(),
                    deployments: 0,
                    successes: 0,
                    duration_s_total: 0.0,
                    last_started_at: None,
                    with_features: 0,
                });
            s.deployments += 1;
            s.successes += u64::from(r.success == Some(true));
            s.duration_s_total += r.duration_s.unwrap_or(0.0);
        }
        let window = HistoryWindow {
            recent: records[..5].to_vec(),
            aggregates: Aggregates {
                by_strategy: by_strategy.into_values().collect(),
                by_service: Vec::new(),
            },
        };
        let part = Past::from_window(&window);
        assert_eq!(part.len(), 5);
        assert_eq!(part[0].id, "d39");
        assert_eq!(part.deployments(), 40);
        assert_eq!(part.deployments(), whole.deployments());
        assert_eq!(part.success_rate(), whole.success_rate());
        assert_eq!(
            part.success_rate_of("aggressive"),
            whole.success_rate_of("aggressive")
        );
        assert_eq!(part.per_strategy(), whole.per_strategy());
        assert_eq!(
            part.in_environment(Environment::Staging),
            whole.in_environment(Environment::Staging)
        );
        let (a, b) = (
            part.mean_duration_min().unwrap(),
            whole.mean_duration_min().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        assert_eq!(part.success_rates(), whole.success_rates());
        assert_eq!(part.in_environment(Environment::Production), (0, None));
    }

    #[test]
    fn the_newest_outcome_joins_window_and_totals() {
        let records: Vec<DeploymentRecord> =
            (0..3).rev().map(|i| record(i, "balanced", true)).collect();
        let mut past = Past::from_outcomes(super::super::learn::outcomes(&records));
        let newest = super::super::learn::outcome_of(&record(9, "balanced", false)).unwrap();
        past.push_newest(newest);
        assert_eq!(past[0].id, "d9");
        assert_eq!(past.deployments(), 4);
        assert_eq!(past.success_rate(), Some(0.75));
    }
}
