//! {{name}}: an adeploy hook. The host calls `run` at every phase of a
//! deployment; an error before the deployment aborts it, an error for a
//! service fails that step (see wit/hook.wit).
//!
//! It is written with adeploy-sdk (vendored in `adeploy-sdk/`): the trait,
//! the export macro, the host imports and typed config.

use adeploy_sdk::hook::{Hook, HookContext, HookReport, Phase};
use adeploy_sdk::types::{Detail, PluginInfo};

struct Plugin;

impl Hook for Plugin {
    fn describe() -> PluginInfo {
        adeploy_sdk::info("{{name}}", "0.1.0", "{{description}}")
    }

    fn run(phase: Phase, ctx: HookContext) -> Result<HookReport, String> {
        // No settings yet: refuse any, so a typo in the operator's config is
        // an error rather than ignored.
        let adeploy_sdk::config::NoKeys {} = adeploy_sdk::config::config(&ctx.deployment)?;
        let what = format!("{phase:?} of {} with {}", ctx.deployment.deployment_id, ctx.strategy);
        adeploy_sdk::log_info(&format!("{{name}}: {what}"));
        Ok(HookReport {
            message: what,
            details: vec![Detail {
                key: "services".to_string(),
                value: ctx.deployment.services.len().to_string(),
            }],
        })
    }
}

adeploy_sdk::export_hook!(Plugin);
