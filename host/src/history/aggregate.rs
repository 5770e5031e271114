//! Aggregates the store maintains as deployments are recorded, so that the
//! start of a deployment reads a bounded window of recent records plus these
//! counters instead of decoding the whole history.
//!
//! Why these two: the learning features need success rates overall, per
//! strategy and per environment, and mean durations
//! ([`StrategyStats`]); alerts and lessons need failure streaks per service
//! and environment ([`ServiceStats`]). Anything finer (load bands, hours)
//! comes from the window of recent records.
//!
//! A deployment counts once it has an outcome: finished, not a dry run, with
//! `success` known (the same rule as the learning's outcomes). Replacing a
//! record replaces its contribution, so a journal replay or an import of a
//! record already counted changes nothing. Streaks are exact when records
//! arrive in start order (the normal case); a record older than the newest
//! counted one updates the counts but not the streak.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::DeploymentRecord;

/// Outcomes of one strategy in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyStats {
    /// Strategy name.
    pub strategy: String,
    /// Environment name.
    pub environment: String,
    /// Deployments with an outcome.
    pub deployments: u64,
    /// Those that succeeded.
    pub successes: u64,
    /// Sum of their durations, in seconds.
    pub duration_s_total: f64,
    /// Start of the newest of them.
    pub last_started_at: Option<DateTime<Utc>>,
    /// Those whose record holds the feature context they were chosen in:
    /// the rows the strategy model can train on.
    #[serde(default)]
    pub with_features: u64,
}

impl StrategyStats {
    /// Share of successes, `None` without deployments.
    pub fn success_rate(&self) -> Option<f64> {
        (self.deployments > 0).then(|| self.successes as f64 / self.deployments as f64)
    }

    /// Mean duration in seconds, `None` without deployments.
    pub fn mean_duration_s(&self) -> Option<f64> {
        (self.deployments > 0).then(|| self.duration_s_total / self.deployments as f64)
    }
}

/// Outcomes of the deployments that included one service, per environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Service name.
    pub service: String,
    /// Environment name.
    pub environment: String,
    /// Deployments with an outcome that included the service.
    pub deployments: u64,
    /// Those that succeeded.
    pub successes: u64,
    /// Failures in a row, up to the newest deployment.
    pub consecutive_failures: u64,
    /// Start of the newest of them.
    pub last_started_at: Option<DateTime<Utc>>,
    /// Whether the newest succeeded.
    pub last_success: Option<bool>,
}

/// Every aggregate of a history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Per (strategy, environment), sorted by strategy then environment.
    pub by_strategy: Vec<StrategyStats>,
    /// Per (service, environment), sorted by service then environment.
    pub by_service: Vec<ServiceStats>,
}

impl Aggregates {
    /// Deployments with an outcome, over every strategy and environment.
    pub fn deployments(&self) -> u64 {
        self.by_strategy.iter().map(|s| s.deployments).sum()
    }

    /// Successes over every strategy and environment.
    pub fn successes(&self) -> u64 {
        self.by_strategy.iter().map(|s| s.successes).sum()
    }

    /// Deployments with recorded features (the model's training rows).
    pub fn with_features(&self) -> u64 {
        self.by_strategy.iter().map(|s| s.with_features).sum()
    }
}

/// What the start of a deployment reads: the newest records and the aggregates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryWindow {
    /// Up to the requested number of deployments, newest first.
    pub recent: Vec<DeploymentRecord>,
    /// The aggregates over the whole history.
    pub aggregates: Aggregates,
}

/// What one record adds to the aggregates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contribution {
    pub(crate) strategy: String,
    pub(crate) environment: String,
    pub(crate) services: Vec<String>,
    pub(crate) success: bool,
    pub(crate) duration_s: f64,
    pub(crate) started_ms: i64,
    pub(crate) has_features: bool,
}

impl Contribution {
    /// `None` for a record without an outcome (running, interrupted, dry run).
    pub(crate) fn of(record: &DeploymentRecord) -> Option<Contribution> {
        if record.dry_run || !record.status.is_finished() {
            return None;
        }
        let success = record.success?;
        let mut services = record.services.clone();
        services.sort();
        services.dedup();
        Some(Contribution {
            strategy: record.strategy.clone(),
            environment: record.environment.clone(),
            services,
            success,
            duration_s: record.duration_s.filter(|d| d.is_finite()).unwrap_or(0.0),
            started_ms: record.started_at.timestamp_millis(),
            has_features: record.features.is_some(),
        })
    }
}

/// Applies `new` in place of `old` to a strategy row (`None` = no such row yet).
pub(crate) fn apply_strategy(
    row: Option<StrategyStats>,
    strategy: &str,
    environment: &str,
    old: Option<&Contribution>,
    new: Option<&Contribution>,
) -> StrategyStats {
    let mut row = row.unwrap_or_else(|| StrategyStats {
        strategy: strategy.to_string(),
        environment: environment.to_string(),
        deployments: 0,
        successes: 0,
        duration_s_total: 0.0,
        last_started_at: None,
        with_features: 0,
    });
    if let Some(old) = old {
        row.deployments = row.deployments.saturating_sub(1);
        row.successes = row.successes.saturating_sub(u64::from(old.success));
        row.duration_s_total = (row.duration_s_total - old.duration_s).max(0.0);
        row.with_features = row
            .with_features
            .saturating_sub(u64::from(old.has_features));
    }
    if let Some(new) = new {
        row.deployments += 1;
        row.successes += u64::from(new.success);
        row.duration_s_total += new.duration_s;
        row.with_features += u64::from(new.has_features);
        row.last_started_at = newest(row.last_started_at, new.started_ms);
    }
    row
}

/// Applies `new` in place of `old` to a service row. The streak moves only
/// when a record is counted for the first time and is not older than the
/// newest one counted.
pub(crate) fn apply_service(
    row: Option<ServiceStats>,
    service: &str,
    environment: &str,
    old: Option<&Contribution>,
    new: Option<&Contribution>,
) -> ServiceStats {
    let mut row = row.unwrap_or_else(|| ServiceStats {
        service: service.to_string(),
        environment: environment.to_string(),
        deployments: 0,
        successes: 0,
        consecutive_failures: 0,
        last_started_at: None,
        last_success: None,
    });
    if let Some(old) = old {
        row.deployments = row.deployments.saturating_sub(1);
        row.successes = row.successes.saturating_sub(u64::from(old.success));
    }
    if let Some(new) = new {
        row.deployments += 1;
        row.successes += u64::from(new.success);
        let last_ms = row.last_started_at.map(|t| t.timestamp_millis());
        if last_ms.is_none_or(|last| new.started_ms >= last) {
            if old.is_none() {
                row.consecutive_failures = if new.success {
                    0
                } else {
                    row.consecutive_failures + 1
                };
            } else if old.is_some_and(|o| o.success != new.success) {
                // The newest outcome changed: the streak follows it.
                row.consecutive_failures = if new.success {
                    0
                } else {
                    row.consecutive_failures + 1
                };
            }
            row.last_success = Some(new.success);
            row.last_started_at = newest(row.last_started_at, new.started_ms);
        }
    }
    row
}

/// (name, environment) keys of the aggregates.
pub(crate) type Keys = Vec<(String, String)>;

/// The (strategy, environment) and (service, environment) keys a change touches.
pub(crate) fn touched_keys(old: Option<&Contribution>, new: Option<&Contribution>) -> (Keys, Keys) {
    let mut strategies = Vec::new();
    let mut services = Vec::new();
    for c in [old, new].into_iter().flatten() {
        strategies.push((c.strategy.clone(), c.environment.clone()));
        for s in &c.services {
            services.push((s.clone(), c.environment.clone()));
        }
    }
    strategies.sort();
    strategies.dedup();
    services.sort();
    services.dedup();
    (strategies, services)
}

/// The part of `c` that concerns one (service, environment) key.
pub(crate) fn for_service<'a>(
    c: Option<&'a Contribution>,
    service: &str,
    environment: &str,
) -> Option<&'a Contribution> {
    c.filter(|c| c.environment == environment && c.services.iter().any(|s| s == service))
}

/// The part of `c` that concerns one (strategy, environment) key.
pub(crate) fn for_strategy<'a>(
    c: Option<&'a Contribution>,
    strategy: &str,
    environment: &str,
) -> Option<&'a Contribution> {
    c.filter(|c| c.strategy == strategy && c.environment == environment)
}

fn newest(current: Option<DateTime<Utc>>, ms: i64) -> Option<DateTime<Utc>> {
    let candidate = Utc.timestamp_millis_opt(ms).single();
    match (current, candidate) {
        (Some(c), Some(n)) => Some(c.max(n)),
        (c, n) => n.or(c),
    }
}
