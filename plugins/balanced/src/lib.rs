//! `balanced`: the everyday rollout strategy, for staging and routine
//! production changes.
//!
//! The steps go out in about four waves (`ceil(steps / 4)` steps per wave,
//! dependencies always in earlier waves), two healthy samples per step and a
//! short soak in production. The first failed step rolls back everything
//! deployed so far; while the machine is over budget, nothing new starts for
//! 15 s.
//!
//! Plugin config (JSON, every key optional): `waves` (the number of waves to
//! aim for, default 4), and `samples`, `interval_ms`, `soak_s` to override the
//! validation policy. Any other key is an error.

use adeploy_sdk::config::{ValidationSettings, strategy_config};
use adeploy_sdk::strategy::{
    self, Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Strategy,
    step_label,
};
use adeploy_sdk::types::{DeploymentContext, Environment, PluginInfo};
use serde::Deserialize;

/// The strategy; see the crate docs.
#[derive(Debug)]
pub struct Balanced;

/// The plugin config's own key; `samples`, `interval_ms` and `soak_s` are
/// the SDK's [`ValidationSettings`].
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Own {
    /// The number of waves to aim for.
    waves: u32,
}

impl Default for Own {
    fn default() -> Self {
        Own { waves: 4 }
    }
}

/// The defaults for `ctx`'s environment, overridden by the plugin config.
fn settings(ctx: &DeploymentContext) -> Result<(Own, ValidationSettings), String> {
    let production = ctx.environment == Environment::Production;
    let defaults = ValidationSettings {
        samples: 2,
        interval_ms: 1000,
        soak_s: if production { 5 } else { 0 },
    };
    let (own, validation) = strategy_config::<Own>(ctx, defaults)?;
    if own.waves == 0 {
        return Err("config key `waves` must be at least 1".to_string());
    }
    Ok((own, validation))
}

impl Strategy for Balanced {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "balanced",
            "0.1.0",
            "about four dependency-ordered waves, roll back everything on the first failure",
        )
    }

    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        if ctx.services.is_empty() {
            return Err("no services to deploy".to_string());
        }
        let (own, s) = settings(&ctx)?;
        let wave_size = strategy::step_count(&ctx.services).div_ceil(own.waves as usize);
        let waves = strategy::waves(&ctx.services, wave_size)?;
        let notes = vec![
            format!(
                "{} waves of up to {wave_size} steps (aiming for {}); dependencies in earlier waves",
                waves.len(),
                own.waves
            ),
            format!(
                "each step needs {} healthy samples {} ms apart, then a {} s soak ({})",
                s.samples,
                s.interval_ms,
                s.soak_s,
                ctx.environment.as_str()
            ),
        ];
        Ok(Rollout {
            waves,
            concurrency: ctx.limits.concurrency.max(1),
            validation: s.policy(),
            failure: FailurePolicy {
                max_failures: 0,
                rollback_scope: RollbackScope::All,
            },
            notes,
        })
    }

    fn on_progress(_ctx: DeploymentContext, event: Progress) -> Decision {
        match event.kind {
            ProgressKind::StepFailed => Decision::Rollback(format!(
                "{} failed: {}",
                step_label(event.step.as_ref()),
                event.message
            )),
            ProgressKind::OverBudget => Decision::Pause(15),
            _ => Decision::Continue,
        }
    }
}

adeploy_sdk::export_strategy!(Balanced);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::strategy::Step;
    use adeploy_sdk::testing::{context as ctx, progress, service as svc};
    use adeploy_sdk::types::Service;

    fn independent(n: usize) -> Vec<Service> {
        (0..n).map(|i| svc(&format!("s{i}"), &[], &[])).collect()
    }

    fn sizes(plan: &Rollout) -> Vec<usize> {
        plan.waves.iter().map(|w| w.steps.len()).collect()
    }

    #[test]
    fn about_four_waves() {
        let plan = Balanced::plan(ctx(Environment::Staging, independent(10), "{}")).unwrap();
        assert_eq!(sizes(&plan), vec![3, 3, 3, 1]);
        assert_eq!(
            plan.notes[0],
            "4 waves of up to 3 steps (aiming for 4); dependencies in earlier waves"
        );
        assert_eq!(plan.concurrency, 3);
        assert_eq!(plan.failure.rollback_scope, RollbackScope::All);
        assert_eq!(plan.failure.max_failures, 0);
        let small = Balanced::plan(ctx(Environment::Staging, independent(2), "{}")).unwrap();
        assert_eq!(sizes(&small), vec![1, 1]);
    }

    #[test]
    fn fleet_hosts_count_as_steps_and_dependencies_split_waves() {
        let services = vec![
            svc("db", &[], &[]),
            svc("api", &["db"], &["h1", "h2", "h3"]),
        ];
        let plan = Balanced::plan(ctx(Environment::Staging, services, "{}")).unwrap();
        // 4 steps, wave size 1
        assert_eq!(sizes(&plan), vec![1, 1, 1, 1]);
        assert_eq!(plan.waves[0].steps[0].service, "db");
    }

    #[test]
    fn waves_and_validation_come_from_config() {
        let c = ctx(
            Environment::Production,
            independent(10),
            r#"{"waves": 2, "samples": 4, "interval_ms": 100, "soak_s": 9}"#,
        );
        let plan = Balanced::plan(c).unwrap();
        assert_eq!(sizes(&plan), vec![5, 5]);
        let v = plan.validation;
        assert_eq!((v.samples, v.interval_ms, v.soak_s), (4, 100, 9));
    }

    #[test]
    fn defaults_depend_on_environment() {
        let prod = Balanced::plan(ctx(Environment::Production, independent(1), "")).unwrap();
        let stg = Balanced::plan(ctx(Environment::Staging, independent(1), "")).unwrap();
        assert_eq!(
            (prod.validation.samples, prod.validation.interval_ms),
            (2, 1000)
        );
        assert_eq!(prod.validation.soak_s, 5);
        assert_eq!(stg.validation.soak_s, 0);
        assert!(stg.validation.health_checks);
    }

    #[test]
    fn bad_config_names_the_key() {
        let plan = |config: &str| Balanced::plan(ctx(Environment::Staging, independent(3), config));
        assert!(plan(r#"{"waves": 0}"#).unwrap_err().contains("`waves`"));
        assert!(plan(r#"{"waves": 2.5}"#).unwrap_err().contains("`waves`"));
        assert!(
            plan(r#"{"speed": "fast"}"#)
                .unwrap_err()
                .contains("`speed`")
        );
        assert!(
            plan(r#"{"samples": null}"#)
                .unwrap_err()
                .contains("`samples`")
        );
    }

    #[test]
    fn refuses_empty_deployments_and_cycles() {
        let err = Balanced::plan(ctx(Environment::Local, vec![], "{}")).unwrap_err();
        assert_eq!(err, "no services to deploy");
        let cycle = vec![svc("a", &["b"], &[]), svc("b", &["a"], &[])];
        let err = Balanced::plan(ctx(Environment::Local, cycle, "{}")).unwrap_err();
        assert!(err.contains("dependency cycle"), "{err}");
    }

    #[test]
    fn failure_rolls_back_and_over_budget_pauses() {
        let c = || ctx(Environment::Staging, independent(2), "{}");
        let step = Step {
            service: "s1".into(),
            host: None,
        };
        let failed = Progress {
            message: "exit status 1".into(),
            ..progress(ProgressKind::StepFailed, Some(step))
        };
        match Balanced::on_progress(c(), failed) {
            Decision::Rollback(reason) => assert_eq!(reason, "s1 failed: exit status 1"),
            other => panic!("expected rollback, got {other:?}"),
        }
        assert!(matches!(
            Balanced::on_progress(c(), progress(ProgressKind::OverBudget, None)),
            Decision::Pause(15)
        ));
        assert!(matches!(
            Balanced::on_progress(c(), progress(ProgressKind::WaveFinished, None)),
            Decision::Continue
        ));
    }
}
