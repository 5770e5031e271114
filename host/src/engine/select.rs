//! Choosing a strategy for `--strategy adaptive`.
//!
//! Why a trait: an embedding tool can bring its own policy. The default,
//! [`AdaptiveSelector`], lets the learned model decide once there is enough
//! history and falls back to [`RuleSelector`] (the seed tool's transparent
//! rules) before that; both explain themselves line by line, because an
//! operator has to be able to read why production got `aggressive`.
//!
//! How evidence becomes a choice and a confidence (docs/LEARNING.md):
//!
//! - **Unseen is unknown.** A strategy the model was never trained on gets
//!   the uninformed prior Beta(1, 1) (50%), never the forest's guess for
//!   "none of the known strategies".
//! - **Exploration is a decision, not an accident.** Trying a little-known
//!   strategy happens only when this deployment's draw is below the rate in
//!   effect, is recorded as an `exploration` decision with that rate, and
//!   never happens in production.
//! - **Changes are acted on.** After a detected drop in production, the
//!   safest candidate by current evidence decides until the new regime is
//!   learned; after a change elsewhere, the candidates are re-checked at
//!   `ml_config.drift_exploration_rate`.
//! - **Confidence comes from evidence.** The model's confidence is the
//!   chosen candidate's expected success; the rules' is the recency-weighted
//!   success rate of the chosen strategy in this environment, smoothed
//!   ((successes + 1) / (deployments + 2): 0.5 without history).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};
use crate::ml::{DriftDirection, DriftEvent, DurationEstimate, FeatureContext, Outcome};
use crate::monitor::Snapshot;

pub use crate::report::{CandidateScore, Exploration};

use super::learn::{self, Evidence, ModelState};
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
    /// How much each of `outcomes` counts, and the detected changes.
    pub evidence: &'a Evidence,
    /// Deployments with recorded features (what the model can train on).
    pub training_samples: usize,
    /// This deployment's features (before a strategy is chosen).
    pub features: &'a FeatureContext,
    /// Expected duration per candidate, from similar past deployments.
    pub durations: &'a BTreeMap<String, DurationEstimate>,
    /// A uniform draw in [0, 1) made for this deployment: whether it explores.
    pub roll: f64,
}

/// A selector's answer. (`Default` lets a selector name only what it
/// decides: `Selection { strategy, confidence, method, reasons,
/// ..Default::default() }`.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub strategy: String,
    /// 0..1: the expected chance of success of the choice, from the evidence
    /// the method used.
    pub confidence: f64,
    /// `rules`, `model`, `exploration` or `drift_fallback`.
    pub method: String,
    /// Why, one line per consideration, for the decision log.
    pub reasons: Vec<String>,
    /// Every candidate's score, when the model or the fallback decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<CandidateScore>,
    /// Set when this deployment explores (logged as an `exploration`
    /// decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<Exploration>,
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
/// assert_eq!(choice.confidence, 0.5); // no history: no evidence either way
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct RuleSelector;

const LADDER: [&str; 3] = ["aggressive", "balanced", "conservative"];

/// The prior of a strategy without evidence: Beta(1, 1), 50% worth two
/// deployments.
pub const UNINFORMED: f64 = 0.5;
const UNINFORMED_WEIGHT: f64 = 2.0;

/// (successes + 1) / (deployments + 2) of `strategy` in `environment`,
/// recency-weighted, and the sentence saying so.
fn history_support(ctx: &SelectionContext<'_>, strategy: &str) -> (f64, String) {
    let env = ctx.environment;
    let Some(l) = ctx.learning else {
        return (
            UNINFORMED,
            format!(
                "confidence {UNINFORMED:.2}: no history of {strategy} in {env} (no evidence either way)"
            ),
        );
    };
    let pick = |o: &Outcome| o.strategy == strategy && o.environment == env;
    let (ok, n) = l.evidence.count(l.outcomes, pick);
    let plain = l.outcomes.iter().filter(|o| pick(o)).count();
    let plain_ok = l.outcomes.iter().filter(|o| pick(o) && o.success).count();
    let p = (ok + UNINFORMED * UNINFORMED_WEIGHT) / (n + UNINFORMED_WEIGHT);
    (
        p,
        format!(
            "confidence {p:.2}: {plain_ok} of {plain} {strategy} deployments in {env} succeeded ({ok:.1} of {n:.1} weighted by recency; (successes + 1) / (deployments + 2))"
        ),
    )
}

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
        let (confidence, why) = history_support(ctx, &chosen);
        reasons.push(why);
        Selection {
            strategy: chosen,
            confidence,
            method: "rules".to_string(),
            reasons,
            scores: Vec::new(),
            exploration: None,
        }
    }
}

/// The default selector: after a drop in production, the safest candidate
/// by current evidence; outside production, exploration at the rate in
/// effect; then the learned model once it has
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
/// observed in the exact context (strategy, environment, size, services).
pub const CONTEXT_PRIOR: f64 = 3.0;

/// The largest utility difference speed can make.
pub const DURATION_WEIGHT: f64 = 0.05;
/// The utility lost by a candidate expected to overrun `--max-time`.
const OVERRUN_PENALTY: f64 = 0.5;

/// The care ladder's rank of a strategy (custom strategies in the middle).
fn care(s: &str) -> usize {
    LADDER.iter().position(|l| *l == s).unwrap_or(1)
}

fn same_services(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

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
        let unsettled = l.evidence.unsettled(l.outcomes, ctx.environment, ml);

        // A drop in production: the safest candidate until it is learned.
        if ctx.environment == Environment::Production
            && let Some((e, since)) = unsettled
            && e.direction == DriftDirection::Dropped
        {
            return safest(ctx, l, e, since);
        }

        if let Some(s) = explore(ctx, l, unsettled) {
            return s;
        }

        let need = ml.min_training_samples.max(1) as usize;
        let model = match (l.model.model(), l.model) {
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

        let samples = learn::samples_per_strategy(l.outcomes);
        let count = |c: &str| samples.get(c).copied().unwrap_or(0);
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
                let prediction =
                    model.predict_one(&learn::for_strategy(l.features, l.outcomes, c), c);
                // A strategy the forest never saw has no estimate: the
                // uninformed prior, worth two deployments.
                let known = prediction.known && count(c) > 0;
                let (p_model, prior) = if known {
                    (prediction.p_success, CONTEXT_PRIOR)
                } else {
                    (UNINFORMED, UNINFORMED_WEIGHT)
                };
                // The forest generalises across contexts; where this exact
                // context has history, its recency-weighted outcomes refine
                // the prior (a Beta posterior).
                let exact = |o: &Outcome| {
                    o.strategy == *c
                        && o.environment == ctx.environment
                        && o.size == ctx.size.as_str()
                        && same_services(&o.services, ctx.services)
                };
                let (ok_w, seen_w) = l.evidence.count(l.outcomes, exact);
                let (seen, ok) = l
                    .outcomes
                    .iter()
                    .filter(|o| exact(o))
                    .fold((0usize, 0usize), |(n, k), o| {
                        (n + 1, k + usize::from(o.success))
                    });
                let p = (prior * p_model + ok_w) / (prior + seen_w);
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
                    known,
                    context_samples: seen,
                    context_successes: ok,
                    context_weight: seen_w,
                    context_weighted_successes: ok_w,
                    samples: count(c),
                    expected_minutes: expected,
                    fits_max_time: fits,
                    utility,
                }
            })
            .collect();
        // Highest utility first; on a tie, the more careful strategy.
        scores.sort_by(|a, b| {
            b.utility
                .total_cmp(&a.utility)
                .then_with(|| care(&b.strategy).cmp(&care(&a.strategy)))
                .then_with(|| a.strategy.cmp(&b.strategy))
        });
        let Some(best) = scores.first().cloned() else {
            return RuleSelector.select(ctx);
        };
        if let Some(s) = explore_alternative(ctx, l, &scores) {
            return s;
        }
        let meta = model.meta();
        let mut reasons = vec![format!(
            "model trained on {} deployments{} decides",
            meta.samples,
            meta.oob_accuracy
                .map(|a| format!(" (out-of-bag accuracy {a:.2})"))
                .unwrap_or_default()
        )];
        if let Some((e, since)) = unsettled {
            reasons.push(format!(
                "a change here is being learned ({since} deployment(s) since): {}",
                e.summary()
            ));
        }
        for s in &scores {
            let prior = if s.known {
                format!("forest {:.0}%", s.p_model * 100.0)
            } else {
                "never deployed: uninformed prior 50%".to_string()
            };
            reasons.push(format!(
                "{}: {:.0}% expected success ({prior}, {} of {} here succeeded, {:.1} of {:.1} weighted by recency; {} deployments in all){}{}",
                s.strategy,
                s.p_success * 100.0,
                s.context_successes,
                s.context_samples,
                s.context_weighted_successes,
                s.context_weight,
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
            exploration: None,
        }
    }
}

/// Exploration outside production: after a change here, every candidate is
/// re-checked at `drift_exploration_rate` (fewest deployments since the
/// change first); otherwise candidates with fewer than
/// `min_strategy_samples` deployments are tried at `exploration_rate`.
fn explore(
    ctx: &SelectionContext<'_>,
    l: &LearningContext<'_>,
    unsettled: Option<(&DriftEvent, usize)>,
) -> Option<Selection> {
    if ctx.environment == Environment::Production || ctx.candidates.is_empty() {
        return None;
    }
    let ml = &ctx.config.ml_config;
    let samples = learn::samples_per_strategy(l.outcomes);
    let count = |c: &str| samples.get(c).copied().unwrap_or(0);
    let (rate, source, pick, deployments, why) = match unsettled {
        Some((e, _)) if ml.drift_exploration_rate > ml.exploration_rate => {
            let since = |c: &str| {
                l.outcomes
                    .iter()
                    .filter(|o| {
                        o.strategy == c
                            && o.environment == ctx.environment
                            && (o.started_at, o.id.as_str()) >= (e.since_at, e.since.as_str())
                    })
                    .count()
            };
            let pick = ctx
                .candidates
                .iter()
                .min_by_key(|c| (since(c), care(c), c.as_str()))?;
            let n = since(pick);
            (
                ml.drift_exploration_rate,
                "ml_config.drift_exploration_rate",
                pick,
                n,
                format!(
                    "re-checking {pick} after a change in {} ({}): {n} deployment(s) of it here since",
                    ctx.environment,
                    e.summary()
                ),
            )
        }
        _ => {
            let pick = ctx
                .candidates
                .iter()
                .filter(|c| count(c) < ml.min_strategy_samples as usize)
                .min_by_key(|c| (count(c), c.as_str()))?;
            (
                ml.exploration_rate,
                "ml_config.exploration_rate",
                pick,
                count(pick),
                format!(
                    "exploring {pick}: {} deployment(s) so far, fewer than ml_config.min_strategy_samples = {}",
                    count(pick),
                    ml.min_strategy_samples
                ),
            )
        }
    };
    if l.roll >= rate {
        return None;
    }
    let (confidence, support) = history_support(ctx, pick);
    let exploration = Exploration {
        strategy: pick.clone(),
        environment: ctx.environment,
        rate,
        rate_source: source.to_string(),
        draw: l.roll,
        deployments,
        reason: why.clone(),
    };
    Some(Selection {
        strategy: pick.clone(),
        confidence,
        method: "exploration".into(),
        reasons: vec![
            format!(
                "{why} (draw {:.2} < {source} {rate}; never in production)",
                l.roll
            ),
            support,
        ],
        scores: Vec::new(),
        exploration: Some(exploration),
    })
}

/// The posterior standard deviation of a candidate's expected success (a
/// Beta with the prior's weight plus the context's weighted deployments).
fn posterior_sd(s: &CandidateScore) -> f64 {
    let prior = if s.known {
        CONTEXT_PRIOR
    } else {
        UNINFORMED_WEIGHT
    };
    (s.p_success * (1.0 - s.p_success) / (prior + s.context_weight + 1.0)).sqrt()
}

/// Outside production, at `ml_config.exploration_rate`: a candidate that
/// could be better than the model's choice (its expected success plus one
/// posterior standard deviation above the choice's) is tried, so a world
/// that changed in an unused strategy's favour can be noticed, and an early
/// unlucky record does not exclude a strategy for ever.
fn explore_alternative(
    ctx: &SelectionContext<'_>,
    l: &LearningContext<'_>,
    scores: &[CandidateScore],
) -> Option<Selection> {
    let ml = &ctx.config.ml_config;
    if ctx.environment == Environment::Production || l.roll >= ml.exploration_rate {
        return None;
    }
    let best = scores.first()?;
    let (pick, upper) = scores
        .iter()
        .skip(1)
        .map(|s| (s, s.p_success + posterior_sd(s)))
        .filter(|(_, upper)| *upper > best.p_success)
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| b.0.context_weight.total_cmp(&a.0.context_weight))
        })?;
    let why = format!(
        "trying {}: it could be better than {} here ({:.0}% expected, up to {:.0}% within one standard deviation, against {:.0}%)",
        pick.strategy,
        best.strategy,
        pick.p_success * 100.0,
        upper * 100.0,
        best.p_success * 100.0
    );
    Some(Selection {
        strategy: pick.strategy.clone(),
        confidence: pick.p_success,
        method: "exploration".into(),
        reasons: vec![format!(
            "{why} (draw {:.2} < ml_config.exploration_rate {}; never in production)",
            l.roll, ml.exploration_rate
        )],
        scores: scores.to_vec(),
        exploration: Some(Exploration {
            strategy: pick.strategy.clone(),
            environment: ctx.environment,
            rate: ml.exploration_rate,
            rate_source: "ml_config.exploration_rate".into(),
            draw: l.roll,
            deployments: pick.context_samples,
            reason: why,
        }),
    })
}

/// After a drop in production: the candidate whose recency-weighted record
/// here has the highest lower bound (posterior mean − one standard
/// deviation of Beta(1 + successes, 1 + failures)): demonstrated success,
/// not hope, until the new regime is learned.
fn safest(
    ctx: &SelectionContext<'_>,
    l: &LearningContext<'_>,
    e: &DriftEvent,
    since: usize,
) -> Selection {
    let ml = &ctx.config.ml_config;
    let samples = learn::samples_per_strategy(l.outcomes);
    let mut scored: Vec<(CandidateScore, f64)> = ctx
        .candidates
        .iter()
        .map(|c| {
            let pick = |o: &Outcome| o.strategy == *c && o.environment == ctx.environment;
            let (ok, n) = l.evidence.count(l.outcomes, pick);
            let (a, b) = (1.0 + ok, 1.0 + (n - ok).max(0.0));
            let mean = a / (a + b);
            let sd = (mean * (1.0 - mean) / (a + b + 1.0)).sqrt();
            let (seen, succeeded) = l
                .outcomes
                .iter()
                .filter(|o| pick(o))
                .fold((0usize, 0usize), |(n, k), o| {
                    (n + 1, k + usize::from(o.success))
                });
            let score = CandidateScore {
                strategy: c.clone(),
                p_success: mean,
                p_model: UNINFORMED,
                known: samples.get(c).is_some_and(|n| *n > 0),
                context_samples: seen,
                context_successes: succeeded,
                context_weight: n,
                context_weighted_successes: ok,
                samples: samples.get(c).copied().unwrap_or(0),
                expected_minutes: l.durations.get(c).map(|d| d.minutes),
                fits_max_time: None,
                utility: mean - sd,
            };
            (score, sd)
        })
        .collect();
    scored.sort_by(|(a, _), (b, _)| {
        b.utility
            .total_cmp(&a.utility)
            .then_with(|| care(&b.strategy).cmp(&care(&a.strategy)))
            .then_with(|| a.strategy.cmp(&b.strategy))
    });
    let mut reasons = vec![
        format!("a change in production: {}", e.summary()),
        format!(
            "until the new regime is learned ({since} of {} deployments here since; ml_config.min_strategy_samples), the safest candidate by current evidence decides: the highest lower bound (mean − 1 sd) of its recency-weighted success here, outcomes before the change counting {:.0}%",
            ml.min_strategy_samples.max(1),
            crate::ml::STALE_WEIGHT * 100.0
        ),
    ];
    for (s, sd) in &scored {
        reasons.push(format!(
            "{}: {:.0}% ± {:.0}% ({} of {} here succeeded, {:.1} of {:.1} weighted)",
            s.strategy,
            s.p_success * 100.0,
            sd * 100.0,
            s.context_successes,
            s.context_samples,
            s.context_weighted_successes,
            s.context_weight
        ));
    }
    let scores: Vec<CandidateScore> = scored.into_iter().map(|(s, _)| s).collect();
    let Some(best) = scores.first().cloned() else {
        return RuleSelector.select(ctx);
    };
    Selection {
        strategy: best.strategy.clone(),
        confidence: best.p_success,
        method: "drift_fallback".into(),
        reasons,
        scores,
        exploration: None,
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

    /// `n` outcomes of `strategy` in `env`, `ok` of them successes, newest first.
    fn outcomes(strategy: &str, env: Environment, n: usize, ok: usize) -> Vec<Outcome> {
        let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
        (0..n)
            .map(|i| Outcome {
                id: format!("d{i:03}"),
                started_at: t0 - chrono::Duration::minutes(i as i64),
                strategy: strategy.into(),
                environment: env,
                size: "medium".into(),
                services: vec!["app".into()],
                failed_services: Vec::new(),
                success: i < ok,
                duration_min: 1.0,
                features: None,
                images: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_rules_confidence_comes_from_the_history_it_has() {
        let mut config = Config::embedded().unwrap();
        config.ml_config.half_life_deployments = 0.0;
        let m = snapshot(5.0);
        let candidates: Vec<String> = LADDER.iter().map(|s| s.to_string()).collect();
        let past = learn::Past::from(outcomes("balanced", Environment::Staging, 10, 9));
        let evidence = Evidence::new(&past, &config.ml_config, chrono::Utc::now());
        let features = crate::ml::features::tests::ctx(Environment::Staging, 5.0);
        let durations = BTreeMap::new();
        let learning = LearningContext {
            model: &ModelState::Missing,
            outcomes: &past,
            evidence: &evidence,
            training_samples: 10,
            features: &features,
            durations: &durations,
            roll: 0.99,
        };
        let mut ctx = SelectionContext {
            environment: Environment::Staging,
            size: DeploymentSize::Medium,
            metrics: &m,
            services: &[],
            candidates: &candidates,
            recent_outcomes: &[],
            config: &config,
            learning: Some(&learning),
            max_time: None,
        };
        let with = RuleSelector.select(&ctx);
        assert_eq!(with.strategy, "balanced");
        assert!((with.confidence - 10.0 / 12.0).abs() < 1e-9, "{with:?}");
        assert!(
            with.reasons
                .last()
                .unwrap()
                .starts_with("confidence 0.83: 9 of 10 balanced deployments in staging succeeded"),
            "{:?}",
            with.reasons
        );
        // No history of the chosen strategy here: no evidence either way.
        ctx.environment = Environment::Production;
        let none = RuleSelector.select(&ctx);
        assert_eq!(none.strategy, "conservative");
        assert_eq!(none.confidence, 0.5);
        ctx.learning = None;
        assert_eq!(RuleSelector.select(&ctx).confidence, 0.5);
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
