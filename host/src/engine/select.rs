//! Choosing a strategy for `--strategy adaptive`.
//!
//! Why a trait: the transparent rules below are the seed tool's behaviour and
//! the cold-start fallback; the learned model (the ML issue) implements the
//! same [`StrategySelector`] and takes over once there is enough history.

use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};
use crate::monitor::Snapshot;

use super::DeploymentSize;

/// What a selector knows when it chooses.
#[derive(Debug, Clone)]
pub struct SelectionContext<'a> {
    pub environment: Environment,
    pub size: DeploymentSize,
    pub metrics: &'a Snapshot,
    pub services: &'a [String],
    /// Installed strategy plugins.
    pub candidates: &'a [String],
    /// Outcomes (true = success) of the latest deployments in this
    /// environment, newest first.
    pub recent_outcomes: &'a [bool],
    pub config: &'a Config,
}

/// A selector's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub strategy: String,
    /// 0..1.
    pub confidence: f64,
    /// `rules` or `model`.
    pub method: String,
    /// Why, one line per consideration, for the decision log.
    pub reasons: Vec<String>,
}

/// Chooses a strategy for an adaptive deployment.
pub trait StrategySelector: Send + Sync {
    fn select(&self, ctx: &SelectionContext<'_>) -> Selection;
}

/// The seed's transparent rules: the environment sets a starting point, and
/// load, size and recent failures each move one step towards caution.
///
/// ```
/// use adeploy::config::{Config, Environment};
/// use adeploy::engine::{DeploymentSize, RuleSelector, SelectionContext, StrategySelector};
/// use adeploy::monitor::Snapshot;
///
/// let config = Config::embedded().unwrap();
/// let metrics = Snapshot {
///     timestamp: chrono::Utc::now(),
///     cpu_percent: 20.0,
///     memory_percent: 40.0,
///     disk_percent: 50.0,
///     load_per_core: 0.3,
///     network_latency_ms: None,
/// };
/// let candidates = ["conservative", "balanced", "aggressive"].map(String::from);
/// let choice = RuleSelector.select(&SelectionContext {
///     environment: Environment::Staging,
///     size: DeploymentSize::Large,
///     metrics: &metrics,
///     services: &[],
///     candidates: &candidates,
///     recent_outcomes: &[],
///     config: &config,
/// });
/// assert_eq!(choice.strategy, "conservative"); // staging starts at balanced; large adds caution
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct RuleSelector;

const LADDER: [&str; 3] = ["aggressive", "balanced", "conservative"];

impl StrategySelector for RuleSelector {
    fn select(&self, ctx: &SelectionContext<'_>) -> Selection {
        let mut reasons = Vec::new();
        let mut level = match ctx.environment {
            Environment::Production => 2,
            Environment::Staging => 1,
            Environment::Development | Environment::Local => 0,
        };
        reasons.push(format!("{} starts at {}", ctx.environment, LADDER[level]));
        let t = &ctx.config.thresholds;
        if ctx.metrics.cpu_percent > t.high_cpu
            || ctx.metrics.memory_percent > t.critical_memory * 0.9
        {
            level = (level + 1).min(2);
            reasons.push(format!(
                "machine under load (CPU {:.0}%, memory {:.0}%): one step more careful",
                ctx.metrics.cpu_percent, ctx.metrics.memory_percent
            ));
        }
        if ctx.size == DeploymentSize::Large && level < 2 {
            level += 1;
            reasons.push("large deployment: one step more careful".to_string());
        }
        let failures = ctx
            .recent_outcomes
            .iter()
            .take(5)
            .filter(|ok| !**ok)
            .count();
        if failures >= 2 && level < 2 {
            level += 1;
            reasons.push(format!(
                "{failures} of the last 5 deployments here failed: one step more careful"
            ));
        }
        // The nearest installed strategy, preferring more caution.
        let installed = |name: &str| ctx.candidates.iter().any(|c| c == name);
        let chosen = (level..3)
            .chain((0..level).rev())
            .map(|l| LADDER[l])
            .find(|n| installed(n))
            .map(str::to_string)
            .or_else(|| ctx.candidates.first().cloned())
            .unwrap_or_else(|| LADDER[level].to_string());
        if chosen != LADDER[level] {
            reasons.push(format!(
                "{} is not installed; using {chosen}",
                LADDER[level]
            ));
        }
        Selection {
            strategy: chosen,
            confidence: 0.6,
            method: "rules".to_string(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(cpu: f64) -> Snapshot {
        Snapshot {
            timestamp: chrono::Utc::now(),
            cpu_percent: cpu,
            memory_percent: 30.0,
            disk_percent: 40.0,
            load_per_core: 0.2,
            network_latency_ms: None,
        }
    }

    fn select(env: Environment, size: DeploymentSize, cpu: f64, recent: &[bool]) -> String {
        let config = Config::embedded().unwrap();
        let m = snapshot(cpu);
        let candidates: Vec<String> = LADDER.iter().map(|s| s.to_string()).collect();
        RuleSelector
            .select(&SelectionContext {
                environment: env,
                size,
                metrics: &m,
                services: &[],
                candidates: &candidates,
                recent_outcomes: recent,
                config: &config,
            })
            .strategy
    }

    #[test]
    fn environment_sets_the_starting_point() {
        assert_eq!(
            select(Environment::Production, DeploymentSize::Medium, 5.0, &[]),
            "conservative"
        );
        assert_eq!(
            select(Environment::Staging, DeploymentSize::Medium, 5.0, &[]),
            "balanced"
        );
        assert_eq!(
            select(Environment::Development, DeploymentSize::Medium, 5.0, &[]),
            "aggressive"
        );
    }

    #[test]
    fn load_size_and_failures_each_add_caution() {
        assert_eq!(
            select(Environment::Development, DeploymentSize::Medium, 95.0, &[]),
            "balanced"
        );
        assert_eq!(
            select(Environment::Development, DeploymentSize::Large, 5.0, &[]),
            "balanced"
        );
        assert_eq!(
            select(Environment::Development, DeploymentSize::Large, 95.0, &[]),
            "conservative"
        );
        assert_eq!(
            select(
                Environment::Staging,
                DeploymentSize::Medium,
                5.0,
                &[false, true, false]
            ),
            "conservative"
        );
    }
}
