//! Choosing a strategy for `--strategy adaptive`.
//!
//! Why a trait: an embedding tool can bring its own policy. The default,
//! [`AdaptiveSelector`], lets the learned model decide once there is enough
//! history and falls back to [`RuleSelector`] (the seed tool's transparent
//! rules) before that; both explain themselves line by line, because an
//! operator has to be able to read why production got `aggressive`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};
use crate::ml::{DurationEstimate, FeatureContext};
use crate::monitor::Snapshot;

pub use crate::report::CandidateScore;

use super::learn::{self, ModelState};
use super::types::DeploymentSize;

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
    /// What the history teaches; `None` without history.
    pub learning: Option<&'a LearningContext<'a>>,
    /// `--max-time`.
    pub max_time: Option<Duration>,
}

/// The history's side of a selection.
#[derive(Debug, Clone)]
pub struct LearningContext<'a> {
    pub model: &'a ModelState,
    /// Finished deployments: the newest in full (newest first; it derefs to
    /// them) and totals over the whole history.
    pub outcomes: &'a learn::Past,
    /// Deployments with recorded features (what the model can train on).
    pub training_samples: usize,
    /// This deployment's features (before a strategy is chosen).
    pub features: &'a FeatureContext,
    /// Expected duration per candidate, from similar past deployments.
    pub durations: &'a BTreeMap<String, DurationEstimate>,
    /// A uniform draw in [0, 1) made for this deployment: whether it explores.
    pub roll: f64,
}

/// A selector's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub strategy: String,
    /// 0..1.
    pub confidence: f64,
    /// `rules`, `model` or `exploration`.
    pub method: String,
    /// Why, one line per consideration, for the decision log.
    pub reasons: Vec<String>,
    /// Every candidate's score, when the model decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<CandidateScore>,
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
///     learning: None,
///     max_time: None,
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
            scores: Vec::new(),
        }
    }
}

/// The default selector: exploration of little-known strategies (never in
/// production), then the learned model once it has
/// `ml_config.min_training_samples` deployments, else [`RuleSelector`].
///
/// The model's choice maximises expected utility: the probability of success
/// first, then the expected duration. A candidate expected to overrun
/// `--max-time` loses half a point, so it is only chosen when nothing else
/// has a chance; among candidates within a few points of each other the
/// faster one wins (at most [`DURATION_WEIGHT`] of utility).
#[derive(Debug, Default, Clone, Copy)]
pub struct AdaptiveSelector;

/// How many deployments the forest's estimate weighs against the outcomes
/// observed in the exact context (strategy, environment, size).
pub const CONTEXT_PRIOR: f64 = 3.0;

/// The largest utility difference speed can make.
pub const DURATION_WEIGHT: f64 = 0.05;
/// The utility lost by a candidate expected to overrun `--max-time`.
const OVERRUN_PENALTY: f64 = 0.5;

impl StrategySelector for AdaptiveSelector {
    fn select(&self, ctx: &SelectionContext<'_>) -> Selection {
        let Some(l) = ctx.learning else {
            let mut s = RuleSelector.select(ctx);
            s.reasons.insert(
                0,
                "no deployment history yet: transparent rules decide".into(),
            );
            return s;
        };
        let ml = &ctx.config.ml_config;
        let samples = learn::samples_per_strategy(l.outcomes);
        let count = |c: &str| samples.get(c).copied().unwrap_or(0);
        let model = l.model.model();

        // Exploration: never in production, at the configured rate.
        let few: Vec<&String> = ctx
            .candidates
            .iter()
            .filter(|c| count(c) < ml.min_strategy_samples as usize)
            .collect();
        if ctx.environment != Environment::Production
            && !few.is_empty()
            && l.roll < ml.exploration_rate
            && let Some(pick) = few.iter().min_by_key(|c| (count(c), c.as_str()))
        {
            let p = model.map_or(0.5, |m| {
                m.predict_one(&learn::for_strategy(l.features, l.outcomes, pick), pick)
                    .p_success
            });
            return Selection {
                strategy: pick.to_string(),
                confidence: p,
                method: "exploration".into(),
                reasons: vec![format!(
                    "exploring {pick}: {} deployment(s) so far, fewer than ml_config.min_strategy_samples = {} (draw {:.2} < exploration_rate {}; never in production)",
                    count(pick),
                    ml.min_strategy_samples,
                    l.roll,
                    ml.exploration_rate
                )],
                scores: Vec::new(),
            };
        }

        let need = ml.min_training_samples.max(1) as usize;
        let model = match (model, l.model) {
            (Some(m), _) if l.training_samples >= need => m,
            (_, state) => {
                let why = match state {
                    ModelState::Discarded(reason) => format!("{reason}; rules decide meanwhile"),
                    _ if l.training_samples < need => format!(
                        "cold start: {} of the {need} deployments the model needs (ml_config.min_training_samples); transparent rules decide",
                        l.training_samples
                    ),
                    _ => "the model is not trained yet (it trains after this deployment); transparent rules decide".to_string(),
                };
                let mut s = RuleSelector.select(ctx);
                s.reasons.insert(0, why);
                return s;
            }
        };

        let limit_min = ctx.max_time.map(|d| d.as_secs_f64() / 60.0);
        let slowest = ctx
            .candidates
            .iter()
            .filter_map(|c| l.durations.get(c).map(|d| d.minutes))
            .fold(0.0_f64, f64::max);
        let mut scores: Vec<CandidateScore> = ctx
            .candidates
            .iter()
            .map(|c| {
                let p_model = model
                    .predict_one(&learn::for_strategy(l.features, l.outcomes, c), c)
                    .p_success;
                // The forest generalises across contexts; where this exact
                // context has history, its observed rate refines the
                // forest's estimate (a Beta posterior with the forest as
                // prior, worth CONTEXT_PRIOR deployments).
                let (seen, ok) = l
                    .outcomes
                    .iter()
                    .filter(|o| {
                        o.strategy == *c
                            && o.environment == ctx.environment
                            && o.size == ctx.size.as_str()
                    })
                    .fold((0usize, 0usize), |(n, k), o| {
                        (n + 1, k + usize::from(o.success))
                    });
                let p = (CONTEXT_PRIOR * p_model + ok as f64) / (CONTEXT_PRIOR + seen as f64);
                let expected = l.durations.get(c).map(|d| d.minutes);
                let fits = match (limit_min, expected) {
                    (Some(limit), Some(e)) => Some(e <= limit),
                    _ => None,
                };
                let mut utility = p;
                if fits == Some(false) {
                    utility -= OVERRUN_PENALTY;
                }
                if let Some(e) = expected
                    && slowest > 0.0
                {
                    utility -= DURATION_WEIGHT * e / slowest;
                }
                CandidateScore {
                    strategy: c.clone(),
                    p_success: p,
                    p_model,
                    context_samples: seen,
                    context_successes: ok,
                    samples: count(c),
                    expected_minutes: expected,
                    fits_max_time: fits,
                    utility,
                }
            })
            .collect();
        // Highest utility first; on a tie, the more careful strategy.
        let care = |s: &str| LADDER.iter().position(|l| *l == s).unwrap_or(1);
        scores.sort_by(|a, b| {
            b.utility
                .total_cmp(&a.utility)
                .then_with(|| care(&b.strategy).cmp(&care(&a.strategy)))
                .then_with(|| a.strategy.cmp(&b.strategy))
        });
        let Some(best) = scores.first().cloned() else {
            return RuleSelector.select(ctx);
        };
        let meta = model.meta();
        let mut reasons = vec![format!(
            "model trained on {} deployments{} decides",
            meta.samples,
            meta.oob_accuracy
                .map(|a| format!(" (out-of-bag accuracy {a:.2})"))
                .unwrap_or_default()
        )];
        for s in &scores {
            reasons.push(format!(
                "{}: {:.0}% expected success (forest {:.0}%, {} of {} here succeeded; {} deployments in all){}{}",
                s.strategy,
                s.p_success * 100.0,
                s.p_model * 100.0,
                s.context_successes,
                s.context_samples,
                s.samples,
                s.expected_minutes
                    .map(|m| format!(", about {m:.1} min"))
                    .unwrap_or_default(),
                match s.fits_max_time {
                    Some(false) => " (over --max-time)",
                    _ => "",
                }
            ));
        }
        if let Some(second) = scores.get(1)
            && second.p_success > best.p_success
        {
            reasons.push(format!(
                "{} is faster at nearly the same chance of success than {}",
                best.strategy, second.strategy
            ));
        }
        Selection {
            strategy: best.strategy.clone(),
            confidence: best.p_success,
            method: "model".into(),
            reasons,
            scores,
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
                learning: None,
                max_time: None,
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
