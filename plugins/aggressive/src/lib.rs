//! `aggressive`: the fast rollout strategy, for local and development
//! environments where speed matters more than caution.
//!
//! Every step goes into one wave (the host still starts a step only after the
//! services it depends on are done), one healthy sample per step, no soak.
//! A failed step does not stop the others: only the failed services are rolled
//! back, and the whole deployment is rolled back early only once more than
//! half of all steps have failed. Being over budget does not slow it down.
//!
//! Plugin config (JSON, every key optional): `samples`, `interval_ms` and
//! `soak_s` override the validation policy. Any other key is an error.

use adeploy_sdk::config::ValidationSettings;
use adeploy_sdk::strategy::{
    self, Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Strategy,
};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};

/// The strategy; see the crate docs.
#[derive(Debug)]
pub struct Aggressive;

/// The validation policy: the defaults, with the plugin config's
/// `samples`, `interval_ms` and `soak_s` over them (any other key is an error).
fn settings(ctx: &DeploymentContext) -> Result<ValidationSettings, String> {
    ValidationSettings {
        samples: 1,
        interval_ms: 500,
        soak_s: 0,
    }
    .with_config(ctx)
}

impl Strategy for Aggressive {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "aggressive",
            "0.1.0",
            "everything in one wave, roll back only what failed",
        )
    }

    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        if ctx.services.is_empty() {
            return Err("no services to deploy".to_string());
        }
        let s = settings(&ctx)?;
        let waves = strategy::single_wave(&ctx.services)?;
        let concurrency = ctx.limits.concurrency.max(1);
        let steps = strategy::step_count(&ctx.services);
        // Up to half the steps may fail before the deployment stops.
        let max_failures = u32::try_from(steps / 2).unwrap_or(u32::MAX);
        let notes = vec![
            format!(
                "1 wave of all {steps} steps, {concurrency} at a time; each step still waits for its dependencies"
            ),
            format!(
                "failed services are rolled back alone; more than {max_failures} failures stop the deployment"
            ),
        ];
        Ok(Rollout {
            waves,
            concurrency,
            validation: s.policy(),
            failure: FailurePolicy {
                max_failures,
                rollback_scope: RollbackScope::Failed,
            },
            notes,
        })
    }

    fn on_progress(ctx: DeploymentContext, event: Progress) -> Decision {
        if event.kind != ProgressKind::StepFailed {
            return Decision::Continue;
        }
        // Steps in flight are in none of the counters, so prefer the plan's total.
        let counted = event
            .succeeded
            .saturating_add(event.failed)
            .saturating_add(event.remaining);
        let total = u32::try_from(strategy::step_count(&ctx.services))
            .unwrap_or(u32::MAX)
            .max(counted);
        if u64::from(event.failed) * 2 > u64::from(total) {
            Decision::Rollback(format!(
                "{} of {total} steps failed, more than half (last: {})",
                event.failed, event.message
            ))
        } else {
            Decision::Continue
        }
    }
}

adeploy_sdk::export_strategy!(Aggressive);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::strategy::Step;
    use adeploy_sdk::testing::{context as ctx, progress, service as svc};
    use adeploy_sdk::types::{Environment, Service};

    /// A failure of `s0` with these counters.
    fn failed(failed: u32, succeeded: u32, remaining: u32) -> Progress {
        let step = Step {
            service: "s0".into(),
            host: None,
        };
        Progress {
            waves_total: 1,
            message: "timed out".into(),
            succeeded,
            failed,
            remaining,
            ..progress(ProgressKind::StepFailed, Some(step))
        }
    }

    fn independent(n: usize) -> Vec<Service> {
        (0..n).map(|i| svc(&format!("s{i}"), &[], &[])).collect()
    }

    #[test]
    fn one_wave_in_dependency_order() {
        let services = vec![
            svc("web", &["api"], &[]),
            svc("api", &[], &["h1", "h2"]),
            svc("docs", &[], &[]),
        ];
        let mut c = ctx(Environment::Development, services, "{}");
        c.limits.concurrency = 8;
        let plan = Aggressive::plan(c).unwrap();
        assert_eq!(plan.waves.len(), 1);
        let order: Vec<&str> = plan.waves[0]
            .steps
            .iter()
            .map(|s| s.service.as_str())
            .collect();
        assert_eq!(order, ["api", "api", "docs", "web"]);
        assert_eq!(plan.concurrency, 8);
        assert_eq!(plan.failure.rollback_scope, RollbackScope::Failed);
        assert_eq!(plan.failure.max_failures, 2, "half of 4 steps");
        let v = plan.validation;
        assert_eq!(
            (v.health_checks, v.samples, v.interval_ms, v.soak_s),
            (true, 1, 500, 0)
        );
        assert!(plan.notes[0].starts_with("1 wave of all 4 steps"));
    }

    #[test]
    fn config_overrides_and_errors() {
        let plan_with =
            |config: &str| Aggressive::plan(ctx(Environment::Development, independent(1), config));
        let plan = plan_with(r#"{"soak_s": 3}"#).unwrap();
        assert_eq!(plan.validation.soak_s, 3);
        let err = plan_with(r#"{"waves": 3}"#).unwrap_err();
        assert!(err.contains("`waves`"), "{err}");
        let err = plan_with(r#"{"interval_ms": true}"#).unwrap_err();
        assert!(err.contains("`interval_ms`"), "{err}");
    }

    #[test]
    fn refuses_empty_deployments_and_cycles() {
        assert_eq!(
            Aggressive::plan(ctx(Environment::Development, vec![], "{}")).unwrap_err(),
            "no services to deploy"
        );
        let cycle = vec![svc("a", &["b"], &[]), svc("b", &["a"], &[])];
        assert!(
            Aggressive::plan(ctx(Environment::Development, cycle, "{}"))
                .unwrap_err()
                .contains("dependency cycle")
        );
    }

    #[test]
    fn rolls_back_only_past_half_failed() {
        let c = || ctx(Environment::Development, independent(4), "{}");
        assert!(matches!(
            Aggressive::on_progress(c(), failed(1, 1, 2)),
            Decision::Continue
        ));
        assert!(matches!(
            Aggressive::on_progress(c(), failed(2, 2, 0)),
            Decision::Continue
        ));
        match Aggressive::on_progress(c(), failed(3, 0, 0)) {
            Decision::Rollback(reason) => {
                assert_eq!(
                    reason,
                    "3 of 4 steps failed, more than half (last: timed out)"
                )
            }
            other => panic!("expected rollback, got {other:?}"),
        }
        let mut over = failed(0, 0, 4);
        over.kind = ProgressKind::OverBudget;
        assert!(matches!(
            Aggressive::on_progress(c(), over),
            Decision::Continue
        ));
    }
}
