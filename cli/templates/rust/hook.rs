//! {{name}}: an adeploy hook. The host calls `run` at every phase of a
//! deployment; an error before the deployment aborts it, an error for a
//! service fails that step (see wit/hook.wit).

wit_bindgen::generate!({
    path: "wit",
    world: "adeploy:plugin/hook-plugin",
    generate_all,
});

use adeploy::plugin::host::{LogLevel, log};
use adeploy::plugin::types::{Detail, PluginInfo};
use exports::adeploy::plugin::hook::{Guest, HookContext, HookReport, Phase};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: "0.1.0".to_string(),
            description: "{{description}}".to_string(),
        }
    }

    fn run(phase: Phase, ctx: HookContext) -> Result<HookReport, String> {
        let what = format!("{phase:?} of {} with {}", ctx.deployment.deployment_id, ctx.strategy);
        log(LogLevel::Info, &format!("{{name}}: {what}"));
        Ok(HookReport {
            message: what,
            details: vec![Detail {
                key: "services".to_string(),
                value: ctx.deployment.services.len().to_string(),
            }],
        })
    }
}

export!(Plugin);
