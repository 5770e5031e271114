//! {{name}}: an adeploy strategy. It gets the deployment (`plan`) and shapes
//! it into waves; during execution it hears about every step (`on_progress`)
//! and decides what happens next. Start from here.

wit_bindgen::generate!({
    path: "wit",
    world: "adeploy:plugin/strategy-plugin",
    generate_all,
});

use adeploy::plugin::host::{LogLevel, log};
use adeploy::plugin::types::{DeploymentContext, PluginInfo};
use exports::adeploy::plugin::strategy::{
    Decision, FailurePolicy, Guest, Progress, ProgressKind, RollbackScope, Rollout, Step,
    ValidationPolicy, Wave,
};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: "0.1.0".to_string(),
            description: "{{description}}".to_string(),
        }
    }

    /// Two waves: the first service alone, then everything else. The host
    /// honours `depends-on` inside a wave, so the order within a wave is free.
    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        let steps: Vec<Step> = ctx
            .services
            .iter()
            .flat_map(|s| {
                if s.hosts.is_empty() {
                    vec![Step { service: s.name.clone(), host: None }]
                } else {
                    s.hosts
                        .iter()
                        .map(|h| Step { service: s.name.clone(), host: Some(h.clone()) })
                        .collect()
                }
            })
            .collect();
        if steps.is_empty() {
            return Err("no services to deploy".to_string());
        }
        log(LogLevel::Info, &format!("{{name}}: {} step(s)", steps.len()));
        let mut steps = steps.into_iter();
        let mut waves = vec![Wave { steps: steps.by_ref().take(1).collect(), pause_after_s: 0 }];
        let rest: Vec<Step> = steps.collect();
        if !rest.is_empty() {
            waves.push(Wave { steps: rest, pause_after_s: 0 });
        }
        Ok(Rollout {
            waves,
            concurrency: ctx.limits.concurrency.max(1),
            validation: ValidationPolicy { health_checks: true, samples: 1, interval_ms: 1000, soak_s: 0 },
            failure: FailurePolicy { max_failures: 0, rollback_scope: RollbackScope::All },
            notes: vec!["the first service alone, then the rest".to_string()],
        })
    }

    fn on_progress(_ctx: DeploymentContext, event: Progress) -> Decision {
        match event.kind {
            ProgressKind::StepFailed => Decision::Rollback(event.message),
            ProgressKind::OverBudget => Decision::Pause(10),
            _ => Decision::Continue,
        }
    }
}

export!(Plugin);
