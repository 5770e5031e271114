//! `canary`: one step first, then a quarter of the rest (at least one), then
//! the rest, pausing between waves and rolling back once too many steps
//! failed.
//!
//! The same strategy is written in JavaScript (`../canary-js`) and Python
//! (`../canary-py`); the three give the same plans, notes and decisions, and
//! the integration tests hold them to that. This one is also the built-in
//! `canary` behind `experimental.enable_canary_deployments`.
//!
//! Plugin config (JSON, every key optional, whole numbers):
//!
//! - `pause_s` (default 30): seconds to wait after the canary wave and after
//!   the quarter wave before the next one starts;
//! - `max_failed_percent` (default 0, at most 100): the share of the steps
//!   settled so far that may fail. Past it (checked after every failed step
//!   and at the end of every wave) the canary rolls everything back. The
//!   plan's `max-failures` is the same share of all steps, so the host
//!   enforces it too;
//! - `samples` (default 2), `interval_ms` (default 1000), `soak_s` (default
//!   0): the validation policy of each step.
//!
//! Any other key, or a value that is not a whole number, refuses the plan
//! (`adeploy_sdk::config::strategy_config` reads and checks them).

use adeploy_sdk::config::{ValidationSettings, strategy_config};
use adeploy_sdk::strategy::{
    self, Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Step, Strategy,
    Wave,
};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};
use serde::Deserialize;

/// The strategy; see the crate docs.
#[derive(Debug)]
pub struct Canary;

/// The plugin config's own keys; `samples`, `interval_ms` and `soak_s` are
/// the SDK's [`ValidationSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct Own {
    pause_s: u32,
    max_failed_percent: u32,
}

impl Default for Own {
    fn default() -> Self {
        Own {
            pause_s: 30,
            max_failed_percent: 0,
        }
    }
}

fn settings(ctx: &DeploymentContext) -> Result<(Own, ValidationSettings), String> {
    let defaults = ValidationSettings {
        samples: 2,
        interval_ms: 1000,
        soak_s: 0,
    };
    let (own, validation) = strategy_config::<Own>(ctx, defaults)?;
    if own.max_failed_percent > 100 {
        return Err(format!(
            "config key `max_failed_percent` must be at most 100, got {}",
            own.max_failed_percent
        ));
    }
    Ok((own, validation))
}

/// Sizes of the canary waves for `n` steps: 1, a quarter of the rest
/// (rounded up), the rest; empty waves are left out.
pub fn wave_sizes(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let rest = n - 1;
    let quarter = rest.div_ceil(4);
    [1, quarter, rest - quarter]
        .into_iter()
        .filter(|&k| k > 0)
        .collect()
}

impl Strategy for Canary {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "canary",
            "0.1.0",
            "one step, a quarter of the rest, then the rest; pauses between waves, rolls back past a failure threshold",
        )
    }

    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        if ctx.services.is_empty() {
            return Err("no services to deploy".to_string());
        }
        let (s, validation) = settings(&ctx)?;
        // Dependency order, so a step's dependencies are in its wave or an
        // earlier one (the host honours depends-on inside a wave).
        let steps: Vec<Step> = strategy::dependency_order(&ctx.services)?
            .into_iter()
            .flat_map(strategy::steps_of)
            .collect();
        let sizes = wave_sizes(steps.len());
        let mut rest = steps.into_iter();
        let last = sizes.len() - 1;
        let waves: Vec<Wave> = sizes
            .iter()
            .enumerate()
            .map(|(i, &k)| Wave {
                steps: rest.by_ref().take(k).collect(),
                pause_after_s: if i < last { s.pause_s } else { 0 },
            })
            .collect();
        let total: usize = sizes.iter().sum();
        let max_failures = total * s.max_failed_percent as usize / 100;
        let shown: Vec<String> = sizes.iter().map(usize::to_string).collect();
        let notes = vec![
            format!(
                "canary waves of {} step(s), {} s pause between waves",
                shown.join(", "),
                s.pause_s
            ),
            format!(
                "roll back when more than {}% of the settled steps failed (at most {max_failures} of {total})",
                s.max_failed_percent
            ),
        ];
        Ok(Rollout {
            waves,
            concurrency: ctx.limits.concurrency.max(1),
            validation: validation.policy(),
            failure: FailurePolicy {
                max_failures: u32::try_from(max_failures).unwrap_or(u32::MAX),
                rollback_scope: RollbackScope::All,
            },
            notes,
        })
    }

    fn on_progress(ctx: DeploymentContext, event: Progress) -> Decision {
        let s = match settings(&ctx) {
            Ok((s, _)) => s,
            Err(e) => return Decision::Abort(e),
        };
        match event.kind {
            ProgressKind::StepFailed | ProgressKind::WaveFinished => {
                let settled = u64::from(event.succeeded) + u64::from(event.failed);
                let failed = u64::from(event.failed);
                if failed > 0 && failed * 100 > u64::from(s.max_failed_percent) * settled {
                    Decision::Rollback(format!(
                        "wave {}: {failed} of {settled} settled step(s) failed, more than max_failed_percent {}",
                        event.wave + 1,
                        s.max_failed_percent
                    ))
                } else {
                    Decision::Continue
                }
            }
            ProgressKind::OverBudget => Decision::Pause(10),
            _ => Decision::Continue,
        }
    }
}

adeploy_sdk::export_strategy!(Canary);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::testing::{context as ctx, progress, service as svc};
    use adeploy_sdk::types::{Environment, Service};

    fn independent(n: usize) -> Vec<Service> {
        (0..n).map(|i| svc(&format!("s{i}"), &[], &[])).collect()
    }

    fn names(plan: &Rollout) -> Vec<Vec<String>> {
        plan.waves
            .iter()
            .map(|w| w.steps.iter().map(|s| s.service.clone()).collect())
            .collect()
    }

    #[test]
    fn one_then_a_quarter_then_the_rest() {
        assert_eq!(wave_sizes(1), vec![1]);
        assert_eq!(wave_sizes(2), vec![1, 1]);
        assert_eq!(wave_sizes(3), vec![1, 1, 1]);
        assert_eq!(wave_sizes(5), vec![1, 1, 3]);
        assert_eq!(wave_sizes(9), vec![1, 2, 6]);
        assert_eq!(wave_sizes(10), vec![1, 3, 6]);
        let plan = Canary::plan(ctx(Environment::Staging, independent(10), "{}")).unwrap();
        assert_eq!(
            plan.waves.iter().map(|w| w.steps.len()).collect::<Vec<_>>(),
            vec![1, 3, 6]
        );
        assert_eq!(
            plan.waves
                .iter()
                .map(|w| w.pause_after_s)
                .collect::<Vec<_>>(),
            vec![30, 30, 0]
        );
        assert_eq!(plan.failure.max_failures, 0);
        assert_eq!(plan.failure.rollback_scope, RollbackScope::All);
        assert_eq!(
            plan.notes,
            vec![
                "canary waves of 1, 3, 6 step(s), 30 s pause between waves",
                "roll back when more than 0% of the settled steps failed (at most 0 of 10)",
            ]
        );
    }

    #[test]
    fn dependencies_come_first_and_fleet_hosts_are_steps() {
        let services = vec![
            svc("web", &["db"], &["h1", "h2", "h3"]),
            svc("db", &[], &[]),
        ];
        let plan = Canary::plan(ctx(Environment::Production, services, "{}")).unwrap();
        assert_eq!(
            names(&plan),
            vec![vec!["db"], vec!["web"], vec!["web", "web"]]
        );
        assert_eq!(plan.waves[1].steps[0].host.as_deref(), Some("h1"));
    }

    #[test]
    fn pause_threshold_and_validation_come_from_config() {
        let c = ctx(
            Environment::Staging,
            independent(5),
            r#"{"pause_s": 2, "max_failed_percent": 40, "samples": 1, "interval_ms": 50, "soak_s": 3}"#,
        );
        let plan = Canary::plan(c).unwrap();
        assert_eq!(
            plan.waves
                .iter()
                .map(|w| w.pause_after_s)
                .collect::<Vec<_>>(),
            vec![2, 2, 0]
        );
        assert_eq!(plan.failure.max_failures, 2);
        let v = plan.validation;
        assert_eq!((v.samples, v.interval_ms, v.soak_s), (1, 50, 3));
    }

    #[test]
    fn bad_config_names_the_key() {
        let plan = |c: &str| Canary::plan(ctx(Environment::Staging, independent(3), c));
        assert_eq!(
            plan(r#"{"max_failed_percent": 101}"#).unwrap_err(),
            "config key `max_failed_percent` must be at most 100, got 101"
        );
        assert!(plan(r#"{"pause": 1}"#).unwrap_err().contains("`pause`"));
        assert!(
            plan(r#"{"pause_s": -1}"#)
                .unwrap_err()
                .contains("`pause_s`")
        );
        assert_eq!(
            Canary::plan(ctx(Environment::Local, vec![], "{}")).unwrap_err(),
            "no services to deploy"
        );
    }

    #[test]
    fn rolls_back_past_the_threshold_only() {
        let at = |kind, wave, succeeded, failed, config: &str| {
            let event = Progress {
                wave,
                succeeded,
                failed,
                ..progress(kind, None)
            };
            Canary::on_progress(ctx(Environment::Staging, independent(5), config), event)
        };
        match at(ProgressKind::StepFailed, 0, 0, 1, "{}") {
            Decision::Rollback(r) => assert_eq!(
                r,
                "wave 1: 1 of 1 settled step(s) failed, more than max_failed_percent 0"
            ),
            other => panic!("expected a rollback, got {other:?}"),
        }
        let half = r#"{"max_failed_percent": 50}"#;
        assert!(matches!(
            at(ProgressKind::StepFailed, 1, 1, 1, half),
            Decision::Continue
        ));
        assert!(matches!(
            at(ProgressKind::WaveFinished, 2, 2, 3, half),
            Decision::Rollback(_)
        ));
        assert!(matches!(
            at(ProgressKind::WaveFinished, 1, 2, 0, "{}"),
            Decision::Continue
        ));
        assert!(matches!(
            at(ProgressKind::OverBudget, 1, 2, 0, "{}"),
            Decision::Pause(10)
        ));
    }
}
