//! {{name}}: an adeploy strategy. It gets the deployment (`plan`) and shapes
//! it into waves; during execution it hears about every step (`on_progress`)
//! and decides what happens next. Start from here.
//!
//! It is written with adeploy-sdk (vendored in `adeploy-sdk/`): the traits,
//! the export macro, helpers for dependency order and steps, and typed
//! config. Its config (`plugins.{{name}}.config` in the adeploy config)
//! takes `first_wave` (steps in the first wave, default 1) and the
//! validation keys every strategy shares: `samples`, `interval_ms`,
//! `soak_s`. Any other key refuses the deployment, naming it.

use adeploy_sdk::config::{ValidationSettings, strategy_config};
use adeploy_sdk::strategy::{
    self, Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Step, Strategy,
    Wave,
};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};
use serde::Deserialize;

struct Plugin;

/// This strategy's own config keys (every one optional).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Own {
    first_wave: u32,
}

impl Default for Own {
    fn default() -> Self {
        Own { first_wave: 1 }
    }
}

impl Strategy for Plugin {
    fn describe() -> PluginInfo {
        adeploy_sdk::info("{{name}}", "0.1.0", "{{description}}")
    }

    /// Two waves: the first `first_wave` steps, then everything else, in
    /// dependency order (the host also honours `depends-on` inside a wave).
    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        let defaults = ValidationSettings { samples: 1, interval_ms: 1000, soak_s: 0 };
        let (own, validation) = strategy_config::<Own>(&ctx, defaults)?;
        let steps: Vec<Step> = strategy::dependency_order(&ctx.services)?
            .into_iter()
            .flat_map(strategy::steps_of)
            .collect();
        if steps.is_empty() {
            return Err("no services to deploy".to_string());
        }
        // Host imports (`adeploy_sdk::host`, `log_info`) exist only in the
        // component: keep them out of what the native unit tests call.
        let mut steps = steps.into_iter();
        let first: Vec<Step> = steps.by_ref().take(own.first_wave.max(1) as usize).collect();
        let mut waves = vec![Wave { steps: first, pause_after_s: 0 }];
        let rest: Vec<Step> = steps.collect();
        if !rest.is_empty() {
            waves.push(Wave { steps: rest, pause_after_s: 0 });
        }
        Ok(Rollout {
            waves,
            concurrency: ctx.limits.concurrency.max(1),
            validation: validation.policy(),
            failure: FailurePolicy { max_failures: 0, rollback_scope: RollbackScope::All },
            notes: vec![format!("the first {} step(s), then the rest", own.first_wave.max(1))],
        })
    }

    /// Rolls back on the first failed step (the plan's failure policy would
    /// too: the host enforces it whatever this answers) and waits while the
    /// machine is over budget.
    fn on_progress(_ctx: DeploymentContext, event: Progress) -> Decision {
        match event.kind {
            ProgressKind::StepFailed => Decision::Rollback(format!(
                "{} failed: {}",
                strategy::step_label(event.step.as_ref()),
                event.message
            )),
            ProgressKind::OverBudget => Decision::Pause(10),
            _ => Decision::Continue,
        }
    }
}

adeploy_sdk::export_strategy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::testing::{context, service};
    use adeploy_sdk::types::Environment;

    #[test]
    fn the_first_service_goes_alone() {
        let services = vec![service("a", &[], &[]), service("b", &[], &[]), service("c", &[], &[])];
        let plan = Plugin::plan(context(Environment::Staging, services, "")).unwrap();
        let sizes: Vec<usize> = plan.waves.iter().map(|w| w.steps.len()).collect();
        assert_eq!(sizes, [1, 2]);
    }

    #[test]
    fn a_misspelt_key_is_refused() {
        let ctx = context(Environment::Staging, vec![service("a", &[], &[])], r#"{"first": 2}"#);
        assert_eq!(
            Plugin::plan(ctx).err().unwrap(),
            "unknown config key `first` (accepted: first_wave, samples, interval_ms, soak_s)"
        );
    }
}
