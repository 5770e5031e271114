//! One step's task (pre-service hooks, deploy command, health validation,
//! post-service hooks), the environment commands run with, and how a fleet
//! step reaches its host over ssh.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{
    CommandSpec, HealthFrom, HealthSpec, InventoryHost, ServiceConfig, SshSettings, TargetKind,
};
use crate::exec::ssh::SshTarget;
use crate::exec::{self, HealthPolicy, RunOptions};
use crate::history::step_label;
use crate::plugin::Phase;
use crate::report::StepRecord;

use super::super::context::service_timeout;
use super::Execution;

/// How a step's task ended.
pub(super) struct StepDone {
    pub index: usize,
    pub ok: bool,
    pub message: String,
    pub seconds: f64,
    pub cancelled: bool,
}

/// A fleet step's host, owned so a step task can carry it.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    name: String,
    host: InventoryHost,
    settings: SshSettings,
    control_dir: Option<PathBuf>,
    /// The service's absolute `workdir`, on the host.
    workdir: Option<PathBuf>,
}

impl Remote {
    fn target(&self) -> SshTarget<'_> {
        SshTarget {
            name: &self.name,
            host: &self.host,
            settings: &self.settings,
            control_dir: self.control_dir.as_deref(),
        }
    }

    pub fn wrap(&self, command: &CommandSpec, env: &[(String, String)]) -> CommandSpec {
        self.target().wrap(command, env, self.workdir.as_deref())
    }

    /// The health check as run for this host: a remote command over ssh, or
    /// `{host}` in an http/tcp check replaced by the host's address.
    fn health(&self, spec: &HealthSpec, env: &[(String, String)]) -> HealthSpec {
        let mut h = spec.clone();
        if spec.from == Some(HealthFrom::Remote) {
            h.command = spec.command.as_ref().map(|c| self.wrap(c, env));
        } else {
            let fill = |s: &String| s.replace("{host}", &self.host.address);
            h.http = spec.http.as_ref().map(fill);
            h.tcp = spec.tcp.as_ref().map(fill);
        }
        h
    }

    /// A failure message that names the host when ssh could not connect.
    pub fn describe(&self, what: &str, o: &exec::CommandOutcome) -> String {
        match self.target().describe_failure(o) {
            Some(m) => format!("{what} failed: {m}"),
            None => format!("{what} failed on {}: {}", self.name, o.describe()),
        }
    }
}

impl Execution<'_> {
    /// The context variables of a command (`wave` numbered from 1).
    pub(super) fn env_for(
        &self,
        service: &str,
        wave: u32,
        host: Option<&str>,
    ) -> Vec<(String, String)> {
        let address = host
            .and_then(|h| self.config().inventory.hosts.get(h))
            .map_or("127.0.0.1".to_string(), |h| h.address.clone());
        vec![
            ("ADEPLOY_DEPLOYMENT_ID".into(), self.id.to_string()),
            ("ADEPLOY_SERVICE".into(), service.to_string()),
            ("ADEPLOY_STRATEGY".into(), self.strategy.to_string()),
            (
                "ADEPLOY_ENVIRONMENT".into(),
                self.environment.as_str().to_string(),
            ),
            (
                "ADEPLOY_DEPLOYMENT_SIZE".into(),
                self.size.as_str().to_string(),
            ),
            ("ADEPLOY_WAVE".into(), wave.to_string()),
            ("ADEPLOY_HOST".into(), host.unwrap_or("localhost").into()),
            ("ADEPLOY_HOST_ADDRESS".into(), address),
            (
                "ADEPLOY_STATE_DIR".into(),
                self.settings.state_dir.display().to_string(),
            ),
        ]
    }

    /// The environment (context variables plus the service's `env`) and the
    /// working directory of a service's commands.
    pub(super) fn command_env(
        &self,
        name: &str,
        service: &ServiceConfig,
        wave: u32,
        host: Option<&str>,
    ) -> (Vec<(String, String)>, PathBuf) {
        let mut env = self.env_for(name, wave, host);
        if let Some(vars) = self.service_env.get(name) {
            env.extend(vars.iter().cloned());
        }
        let cwd = match &service.workdir {
            Some(w) if w.is_absolute() => w.clone(),
            Some(w) => self.config().base_dir().join(w),
            None => self.config().base_dir(),
        };
        (env, cwd)
    }

    /// How to reach the host of a fleet step (`None` for a local step).
    pub(super) fn remote(&self, service: &ServiceConfig, host: Option<&str>) -> Option<Remote> {
        if service.target != TargetKind::Ssh {
            return None;
        }
        let name = host?;
        let inv = &self.config().inventory;
        Some(Remote {
            name: name.to_string(),
            host: inv.hosts.get(name)?.clone(),
            settings: inv.ssh.clone(),
            control_dir: self.ssh_control.map(Path::to_path_buf),
            workdir: service.workdir.clone().filter(|w| w.is_absolute()),
        })
    }

    /// The task that deploys one step: pre-service hooks, deploy command,
    /// health validation, post-service hooks.
    pub(super) fn step_task(
        &self,
        index: usize,
        rec: &StepRecord,
        cancel: watch::Receiver<bool>,
    ) -> impl Future<Output = StepDone> + Send + 'static {
        let service: ServiceConfig = self
            .config()
            .services
            .get(&rec.service)
            .cloned()
            .unwrap_or_default();
        let name = rec.service.clone();
        let host = rec.host.clone();
        let (env, cwd) = self.command_env(&name, &service, rec.wave, host.as_deref());
        let remote = self.remote(&service, host.as_deref());
        let mut timeout = service_timeout(&service);
        // When the deployment's deadline is nearer than the service's own
        // timeout, running out of time means the deadline, not a slow service.
        let mut clipped = false;
        if let Some(left) = self.remaining()
            && left < timeout
        {
            timeout = left;
            clipped = true;
        }
        let log = self.log.clone();
        let hooks = self.settings.hooks.clone();
        let hook_ctx = self.hook_ctx(Some(&name), 0, "");
        let v = &self.rollout.validation;
        let policy = HealthPolicy {
            samples: v.samples.max(1),
            interval: Duration::from_millis(u64::from(v.interval_ms)),
            soak: Duration::from_secs(u64::from(v.soak_s)),
        };
        let check_health = v.health_checks;
        async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            let finish = |ok: bool, message: String, cancelled: bool| StepDone {
                index,
                ok,
                message,
                seconds: started.elapsed().as_secs_f64(),
                cancelled,
            };
            for h in &hooks {
                if let Err(e) = h.run_hook(Phase::PreService, &hook_ctx).await {
                    return finish(false, format!("pre-service hook: {e}"), false);
                }
            }
            let Some(deploy) = &service.deploy else {
                return finish(
                    false,
                    format!("service '{name}' has no deploy command"),
                    false,
                );
            };
            let shown = step_label(&name, host.as_deref());
            let deploy = match &remote {
                Some(r) => r.wrap(deploy, &env),
                None => deploy.clone(),
            };
            let label = format!("{shown} deploy");
            let opts = RunOptions {
                label: &label,
                env: &env,
                cwd: &cwd,
                timeout,
                log: &log,
                cancel: Some(&cancel),
            };
            match exec::run_command(&deploy, &opts).await {
                Ok(o) if o.cancelled || (o.timed_out && clipped) => {
                    return finish(false, "cancelled: the deadline was reached".into(), true);
                }
                Ok(o) if !o.success => {
                    let message = match &remote {
                        Some(r) => r.describe("deploy", &o),
                        None => format!("deploy failed: {}", o.describe()),
                    };
                    return finish(false, message, false);
                }
                Ok(_) => {}
                Err(e) => return finish(false, e.to_string(), false),
            }
            if check_health && let Some(health) = &service.health {
                let health = match &remote {
                    Some(r) => r.health(health, &env),
                    None => health.clone(),
                };
                let hlabel = format!("{shown} health");
                let hopts = RunOptions {
                    label: &hlabel,
                    env: &env,
                    cwd: &cwd,
                    timeout,
                    log: &log,
                    cancel: Some(&cancel),
                };
                let outcome = exec::validate(&health, &policy, deadline, &hopts).await;
                if *cancel.borrow() {
                    return finish(false, "cancelled: the deadline was reached".into(), true);
                }
                match outcome {
                    Ok(o) if !o.healthy && clipped && tokio::time::Instant::now() >= deadline => {
                        return finish(false, "cancelled: the deadline was reached".into(), true);
                    }
                    Ok(o) if o.healthy => {}
                    Ok(o) => {
                        return finish(false, format!("health check failed: {}", o.message), false);
                    }
                    Err(e) => return finish(false, format!("health check: {e}"), false),
                }
            }
            for h in &hooks {
                if let Err(e) = h.run_hook(Phase::PostService, &hook_ctx).await {
                    return finish(false, format!("post-service hook: {e}"), false);
                }
            }
            finish(true, "deployed and healthy".into(), false)
        }
    }
}
