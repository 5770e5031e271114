//! `conservative`: the careful rollout strategy, for production and anything
//! that must not break.
//!
//! One step at a time in dependency order (a fleet service goes one host at a
//! time), three healthy samples per step and a soak period (15 s in
//! production, 5 s elsewhere). The first failed step rolls back everything
//! deployed so far; while the machine is over budget, nothing new starts for
//! 30 s.
//!
//! Plugin config (JSON, every key optional): `samples`, `interval_ms` and
//! `soak_s` override the validation policy. Any other key is an error.

use adeploy_sdk::config::ValidationSettings;
use adeploy_sdk::strategy::{
    self, Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Strategy,
    step_label,
};
use adeploy_sdk::types::{DeploymentContext, Environment, PluginInfo};

/// The strategy; see the crate docs.
#[derive(Debug)]
pub struct Conservative;

/// The validation policy: the defaults, with the plugin config's
/// `samples`, `interval_ms` and `soak_s` over them (any other key is an error).
fn settings(ctx: &DeploymentContext) -> Result<ValidationSettings, String> {
    let production = ctx.environment == Environment::Production;
    ValidationSettings {
        samples: 3,
        interval_ms: 1000,
        soak_s: if production { 15 } else { 5 },
    }
    .with_config(ctx)
}

impl Strategy for Conservative {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "conservative",
            "0.1.0",
            "one step at a time in dependency order, soak after each, roll back everything on the first failure",
        )
    }

    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        if ctx.services.is_empty() {
            return Err("no services to deploy".to_string());
        }
        let s = settings(&ctx)?;
        let waves = strategy::waves(&ctx.services, 1)?;
        let notes = vec![
            format!(
                "{} waves of 1 step each, in dependency order; fleet services go one host at a time",
                waves.len()
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
            ProgressKind::OverBudget => Decision::Pause(30),
            _ => Decision::Continue,
        }
    }
}

adeploy_sdk::export_strategy!(Conservative);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::strategy::Step;
    use adeploy_sdk::testing::{context as ctx, progress, service as svc};

    #[test]
    fn one_step_per_wave_in_dependency_order() {
        let services = vec![svc("api", &["db"], &["h1", "h2"]), svc("db", &[], &[])];
        let mut c = ctx(Environment::Staging, services, "{}");
        // A concurrency limit of 0 still lets one step run at a time.
        c.limits.concurrency = 0;
        let plan = Conservative::plan(c).unwrap();
        let steps: Vec<(String, Option<String>)> = plan
            .waves
            .iter()
            .map(|w| {
                assert_eq!(w.steps.len(), 1);
                (w.steps[0].service.clone(), w.steps[0].host.clone())
            })
            .collect();
        assert_eq!(
            steps,
            vec![
                ("db".to_string(), None),
                ("api".to_string(), Some("h1".to_string())),
                ("api".to_string(), Some("h2".to_string())),
            ]
        );
        assert_eq!(plan.concurrency, 1);
        assert_eq!(plan.failure.max_failures, 0);
        assert_eq!(plan.failure.rollback_scope, RollbackScope::All);
        assert!(plan.notes[0].starts_with("3 waves of 1 step"));
    }

    #[test]
    fn soak_is_longer_in_production() {
        let prod =
            Conservative::plan(ctx(Environment::Production, vec![svc("a", &[], &[])], "")).unwrap();
        let dev = Conservative::plan(ctx(Environment::Development, vec![svc("a", &[], &[])], ""))
            .unwrap();
        assert_eq!(prod.validation.soak_s, 15);
        assert_eq!(dev.validation.soak_s, 5);
        assert_eq!(dev.validation.samples, 3);
        assert_eq!(dev.validation.interval_ms, 1000);
        assert!(dev.validation.health_checks);
    }

    #[test]
    fn config_overrides_validation() {
        let c = ctx(
            Environment::Production,
            vec![svc("a", &[], &[])],
            r#"{"samples": 5, "interval_ms": 250, "soak_s": 60}"#,
        );
        let v = Conservative::plan(c).unwrap().validation;
        assert_eq!((v.samples, v.interval_ms, v.soak_s), (5, 250, 60));
    }

    #[test]
    fn bad_config_names_the_key() {
        let plan = |config: &str| {
            Conservative::plan(ctx(Environment::Staging, vec![svc("a", &[], &[])], config))
        };
        assert!(plan(r#"{"sample": 5}"#).unwrap_err().contains("`sample`"));
        assert!(
            plan(r#"{"soak_s": "long"}"#)
                .unwrap_err()
                .contains("`soak_s`")
        );
        assert!(
            plan(r#"{"interval_ms": -1}"#)
                .unwrap_err()
                .contains("`interval_ms`")
        );
        assert!(plan(r#"{"samples": 0}"#).unwrap_err().contains("`samples`"));
        assert!(plan("[1]").is_err());
        assert!(plan("{").is_err());
    }

    #[test]
    fn refuses_empty_deployments_and_cycles() {
        assert_eq!(
            Conservative::plan(ctx(Environment::Local, vec![], "{}")).unwrap_err(),
            "no services to deploy"
        );
        let cycle = vec![svc("a", &["b"], &[]), svc("b", &["a"], &[])];
        let err = Conservative::plan(ctx(Environment::Local, cycle, "{}")).unwrap_err();
        assert!(err.contains("dependency cycle"), "{err}");
    }

    #[test]
    fn first_failure_rolls_back_and_over_budget_pauses() {
        let c = || {
            ctx(
                Environment::Production,
                vec![svc("api", &[], &["h1"])],
                "{}",
            )
        };
        let step = Step {
            service: "api".into(),
            host: Some("h1".into()),
        };
        match Conservative::on_progress(c(), progress(ProgressKind::StepFailed, Some(step))) {
            Decision::Rollback(reason) => {
                assert_eq!(reason, "api on h1 failed: health check failed: 503")
            }
            other => panic!("expected rollback, got {other:?}"),
        }
        assert!(matches!(
            Conservative::on_progress(c(), progress(ProgressKind::OverBudget, None)),
            Decision::Pause(30)
        ));
        for kind in [
            ProgressKind::WaveStarted,
            ProgressKind::StepSucceeded,
            ProgressKind::WaveFinished,
        ] {
            assert!(matches!(
                Conservative::on_progress(c(), progress(kind, None)),
                Decision::Continue
            ));
        }
    }
}
