//! Choosing the strategy, and the checks that may move or refuse the
//! choice: the operator's `--strategy` or the selector's pick, whether
//! `--max-time` fits it, the high-CPU safety override, and the predicted
//! failure probability (experimental).

use std::collections::BTreeMap;

use crate::config::{Config, Environment};
use crate::ml::DurationEstimate;
use crate::monitor::Snapshot;
use crate::report::Decision;
use crate::report::decision::MaxTimeCheck;

use super::super::Engine;
use super::super::error::{EngineError, failure_numbers};
use super::super::learn;
use super::super::log::DecisionLog;
use super::super::select::{LearningContext, Selection, SelectionContext};
use super::super::types::DeploymentRequest;

impl Engine {
    /// The operator's strategy, or the selector's choice among the
    /// installed ones (with the selection, for the max-time check).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select_strategy(
        &self,
        req: &DeploymentRequest,
        config: &Config,
        environment: Environment,
        metrics: &Snapshot,
        recent: &[bool],
        learning: Option<&LearningContext<'_>>,
        log: &mut DecisionLog,
    ) -> (String, Option<Selection>) {
        match req.strategy.as_deref() {
            Some(name) if name != "adaptive" => {
                log.record(Decision::StrategySelected {
                    strategy: name.to_string(),
                    source: "operator".into(),
                });
                (name.to_string(), None)
            }
            _ => {
                let candidates = self.offered(config);
                let sel = self.selector.select(&SelectionContext {
                    environment,
                    size: req.size,
                    metrics,
                    services: &req.services,
                    candidates: &candidates,
                    recent_outcomes: recent,
                    config,
                    learning,
                    max_time: req.max_time,
                });
                if let Some(e) = &sel.exploration {
                    log.record(Decision::Exploration(e.clone()));
                }
                log.record(Decision::StrategyPredicted {
                    strategy: sel.strategy.clone(),
                    confidence: sel.confidence,
                    method: sel.method.clone(),
                    reasons: sel.reasons.clone(),
                    candidates: sel.scores.clone(),
                });
                (sel.strategy.clone(), Some(sel))
            }
        }
    }

    /// Is `--max-time` feasible with `strategy`, judged by similar past
    /// deployments? If not, an adaptive choice moves to the best candidate
    /// that fits; an operator's choice (or no candidate fitting) is refused
    /// with the numbers, unless `--force`.
    pub(super) fn check_max_time(
        &self,
        req: &DeploymentRequest,
        config: &Config,
        strategy: String,
        selection: Option<&Selection>,
        durations: &BTreeMap<String, DurationEstimate>,
        log: &mut DecisionLog,
    ) -> Result<String, EngineError> {
        let Some(limit) = req.max_time else {
            return Ok(strategy);
        };
        let limit_min = limit.as_secs_f64() / 60.0;
        let judged = |s: &str| {
            durations
                .get(s)
                .filter(|e| e.samples >= crate::ml::duration::MIN_SAMPLES)
        };
        let check = |feasible: Option<bool>| MaxTimeCheck {
            strategy: strategy.clone(),
            max_time_minutes: limit_min,
            feasible,
            reason: None,
            estimate: None,
            switched_to: None,
            switched_estimate: None,
            forced: None,
        };
        let Some(estimate) = judged(&strategy) else {
            log.record(Decision::MaxTimeCheck(MaxTimeCheck {
                reason: Some(format!(
                    "fewer than {} similar successful deployments: nothing to judge by",
                    crate::ml::duration::MIN_SAMPLES
                )),
                ..check(None)
            }));
            return Ok(strategy);
        };
        if estimate.minutes <= limit_min {
            log.record(Decision::MaxTimeCheck(MaxTimeCheck {
                estimate: Some(estimate.clone()),
                ..check(Some(true))
            }));
            return Ok(strategy);
        }
        // Candidates in the selector's order of preference (else fastest first).
        let mut order: Vec<String> = match selection {
            Some(sel) if !sel.scores.is_empty() => {
                sel.scores.iter().map(|c| c.strategy.clone()).collect()
            }
            _ => {
                let mut c = self.offered(config);
                c.sort_by(|a, b| {
                    let m = |s: &str| durations.get(s).map_or(f64::INFINITY, |e| e.minutes);
                    m(a).total_cmp(&m(b))
                });
                c
            }
        };
        order.retain(|c| judged(c).is_some_and(|e| e.minutes <= limit_min));
        let faster = order.first().cloned();
        if selection.is_some()
            && let Some(to) = &faster
        {
            log.record(Decision::MaxTimeCheck(MaxTimeCheck {
                estimate: Some(estimate.clone()),
                switched_to: Some(to.clone()),
                switched_estimate: durations.get(to).cloned(),
                ..check(Some(false))
            }));
            return Ok(to.clone());
        }
        log.record(Decision::MaxTimeCheck(MaxTimeCheck {
            estimate: Some(estimate.clone()),
            forced: Some(req.force),
            ..check(Some(false))
        }));
        if req.force {
            return Ok(strategy);
        }
        Err(EngineError::MaxTimeTooShort {
            max_time_minutes: limit_min,
            estimate: estimate.clone(),
            faster: faster.map(|f| {
                let minutes = durations.get(&f).map_or(0.0, |e| e.minutes);
                (f, minutes)
            }),
            strategy,
        })
    }

    /// `experimental.enable_rollback_prediction`: the chosen plan's predicted
    /// failure probability over `ml_config.rollback_prediction_threshold`
    /// needs confirmation. Returns the warning to show at the prompt; refuses
    /// without one (non-interactive), unless `--force` or a dry run.
    pub(super) fn predict_rollback(
        &self,
        req: &DeploymentRequest,
        environment: Environment,
        strategy: &str,
        learning: Option<&LearningContext<'_>>,
        will_confirm: bool,
        log: &mut DecisionLog,
    ) -> Result<Option<String>, EngineError> {
        const MIN_HISTORY: usize = 5;
        let threshold = self.config.ml_config.rollback_prediction_threshold;
        let need = self.config.ml_config.min_training_samples.max(1) as usize;
        let predicted = learning.and_then(|l| match l.model.model() {
            Some(m) if l.training_samples >= need => {
                let p = m
                    .predict_one(
                        &learn::for_strategy(l.features, l.outcomes, strategy),
                        strategy,
                    )
                    .p_success;
                Some((
                    1.0 - p,
                    format!("model trained on {} deployments", m.meta().samples),
                ))
            }
            _ => {
                let same: Vec<_> = l
                    .outcomes
                    .iter()
                    .filter(|o| o.strategy == strategy && o.environment == environment)
                    .collect();
                (same.len() >= MIN_HISTORY).then(|| {
                    let failed = same.iter().filter(|o| !o.success).count();
                    (
                        failed as f64 / same.len() as f64,
                        format!(
                            "{failed} of {} past {strategy} deployments in {environment} failed",
                            same.len()
                        ),
                    )
                })
            }
        });
        let Some((p_fail, basis)) = predicted else {
            log.record(Decision::RollbackPrediction {
                strategy: strategy.to_string(),
                predicted: Some(false),
                reason: Some("too little history to predict from".into()),
                p_failure: None,
                threshold: None,
                basis: None,
                action: None,
            });
            return Ok(None);
        };
        let over = p_fail > threshold;
        let action = match (over, req.dry_run, will_confirm, req.force) {
            (false, ..) => "none",
            (true, true, ..) => "reported (dry run)",
            (true, false, true, _) => "confirmation asked",
            (true, false, false, true) => "forced",
            (true, false, false, false) => "refused",
        };
        log.record(Decision::RollbackPrediction {
            strategy: strategy.to_string(),
            predicted: None,
            reason: None,
            p_failure: Some(p_fail),
            threshold: Some(threshold),
            basis: Some(basis.clone()),
            action: Some(action.to_string()),
        });
        match action {
            "refused" => Err(EngineError::PredictedFailure {
                strategy: strategy.to_string(),
                environment,
                p_failure: p_fail,
                threshold,
                basis,
            }),
            "none" => Ok(None),
            _ => Ok(Some(failure_numbers(
                strategy,
                environment,
                p_fail,
                threshold,
                &basis,
            ))),
        }
    }

    /// CPU over `thresholds.high_cpu` moves aggressive to balanced outside
    /// local and development.
    pub(super) fn safety_override(
        &self,
        config: &Config,
        environment: Environment,
        metrics: &Snapshot,
        strategy: String,
        log: &mut DecisionLog,
    ) -> String {
        let careful_env = matches!(environment, Environment::Staging | Environment::Production);
        if strategy == "aggressive"
            && careful_env
            && metrics.cpu_percent > config.thresholds.high_cpu
            && self.plugins.get("balanced").is_ok()
        {
            log.record(Decision::SafetyOverride {
                applied: None,
                from: Some("aggressive".into()),
                to: Some("balanced".into()),
                reason: Some(format!(
                    "CPU {:.1}% is over thresholds.high_cpu {:.1}% in {environment}",
                    metrics.cpu_percent, config.thresholds.high_cpu
                )),
            });
            return "balanced".to_string();
        }
        log.record(Decision::SafetyOverride {
            applied: Some(false),
            from: None,
            to: None,
            reason: None,
        });
        strategy
    }
}
