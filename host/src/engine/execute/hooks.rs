//! Deployment-level hooks: the config's scripts (`hooks.pre_deployment_scripts`,
//! `hooks.post_deployment_scripts`) and every hook plugin, at each phase.
//! (Per-service phases run inside the step's task, `step.rs`.)

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::CommandSpec;
use crate::exec::{self, RunOptions};
use crate::plugin::{HookContext, Phase};
use crate::report::Decision;

use super::super::event::DeploymentEvent;
use super::super::log::DecisionLog;
use super::Execution;

impl Execution<'_> {
    pub(super) fn hook_ctx(
        &self,
        service: Option<&str>,
        failure_count: u32,
        message: &str,
    ) -> HookContext {
        HookContext {
            deployment: self.ctx.clone(),
            strategy: self.strategy.to_string(),
            service: service.map(String::from),
            failure_count,
            message: message.to_string(),
        }
    }

    /// Runs the deployment-level hooks of `phase`: the config's scripts (pre
    /// and post deployment) and every hook plugin. Returns the first failure.
    pub(super) async fn deployment_hooks(
        &self,
        phase: Phase,
        failure_count: u32,
        message: &str,
        dl: &mut DecisionLog,
    ) -> Result<(), String> {
        let config = self.config();
        let cwd = config.base_dir();
        let scripts: &[String] = match phase {
            Phase::PreDeployment => &config.hooks.pre_deployment_scripts,
            Phase::PostDeployment => &config.hooks.post_deployment_scripts,
            _ => &[],
        };
        let mut first_error = None;
        for script in scripts {
            // Scripts see the first wave's number, as they always have.
            let env = self.env_for("", 1, None);
            let opts = RunOptions {
                label: &format!("{phase} hook"),
                env: &env,
                cwd: &cwd,
                timeout: self
                    .remaining()
                    .unwrap_or(Duration::from_secs(600))
                    .min(Duration::from_secs(600)),
                log: self.log,
                cancel: None,
                tracker: Some(self.tracker),
            };
            let (ok, msg) =
                match exec::run_command(&CommandSpec::Shell(script.clone()), &opts).await {
                    Ok(o) if o.success => (true, "ok".to_string()),
                    Ok(o) => (false, format!("`{script}` failed: {}", o.describe())),
                    Err(e) => (false, e.to_string()),
                };
            dl.emit(DeploymentEvent::Hook {
                phase,
                name: script.clone(),
                ok,
                message: msg.clone(),
            });
            dl.record(Decision::Hook {
                phase,
                hook: script.clone(),
                ok,
                message: msg.clone(),
                details: None,
                failure_count: None,
            });
            if !ok && first_error.is_none() {
                first_error = Some(msg);
            }
        }
        for plugin in &self.settings.hooks {
            let ctx = self.hook_ctx(None, failure_count, &dl.redactor().redact(message));
            let (ok, msg, details) = match plugin.run_hook(phase, &ctx).await {
                Ok(r) => (
                    true,
                    r.value.message,
                    r.value
                        .details
                        .into_iter()
                        .map(|d| (d.key, d.value))
                        .collect::<BTreeMap<_, _>>(),
                ),
                Err(e) => (false, e.to_string(), BTreeMap::new()),
            };
            dl.emit(DeploymentEvent::Hook {
                phase,
                name: plugin.name().into(),
                ok,
                message: msg.clone(),
            });
            dl.record(Decision::Hook {
                phase,
                hook: plugin.name().into(),
                ok,
                message: msg.clone(),
                details: Some(details),
                failure_count: Some(failure_count),
            });
            if !ok && first_error.is_none() {
                first_error = Some(msg);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
