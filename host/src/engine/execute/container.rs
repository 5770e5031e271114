//! `target: container` steps: start the new container (replace or
//! blue-green), switch traffic, roll back to exactly the previous container,
//! and retire the old one once the deployment is recorded.
//!
//! The runtime's commands are in `exec::container`; this is the policy:
//!
//! - **replace**: stop the running container of the service (kept, stopped),
//!   start `adeploy-<service>-<version>`; health and analysis judge it as
//!   any step. Rollback removes the new container and starts the previous
//!   one by its id: the same image (digest) and configuration.
//! - **blue-green**: start the new container on the other slot's port beside
//!   the running one; after health and analysis run `switch`, then stop the
//!   old one. A failure before the switch leaves the old one serving,
//!   untouched; a rollback after it starts the old one and switches back.
//! - **Ownership**: containers are found by the `adeploy.service` label
//!   (and `adeploy.host` on a fleet host); one under adeploy's name without
//!   the label was started by someone else and is never replaced.

use std::path::Path;

use crate::config::placeholders;
use crate::config::secret::EnvValue;
use crate::config::{
    CommandSpec, Config, ContainerMode, ContainerRuntime, ServiceConfig, TargetKind,
};
use crate::exec::container::{
    self as rt, ContainerError, ContainerInfo, RemoteHost, RunSpec, Runtime,
};
use crate::exec::{self, RunOptions};
use crate::history::{ContainerRef, ContainerStep, StepRecord, StepStatus};

/// Slot names of blue-green, by index into `slot_ports`.
const SLOTS: [&str; 2] = ["blue", "green"];

/// Everything a container step needs, owned (a step task carries it).
#[derive(Debug, Clone)]
pub(crate) struct ContainerJob {
    pub service: String,
    pub host: Option<String>,
    pub deployment_id: String,
    pub configured: Option<ContainerRuntime>,
    pub options: Vec<String>,
    pub remote: Option<RemoteHost>,
    pub image: String,
    pub version: String,
    pub mode: ContainerMode,
    pub slot_ports: Vec<u16>,
    pub switch: Option<CommandSpec>,
    pub stop_timeout_s: u32,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub run_options: Vec<String>,
    pub args: Vec<String>,
    /// The service's `env` names, and which of them are plain text (their
    /// `${ADEPLOY_*}` placeholders are filled in).
    pub env_names: Vec<(String, bool)>,
}

/// The fleet host of a container step, from the config alone (rollback and
/// retirement need it without an `Execution`).
pub(crate) fn remote_host(
    config: &Config,
    service: &ServiceConfig,
    host: Option<&str>,
    control_dir: Option<&Path>,
) -> Option<RemoteHost> {
    if !service.is_fleet() {
        return None;
    }
    let name = host?;
    let inv = &config.inventory;
    Some(RemoteHost {
        name: name.to_string(),
        host: inv.hosts.get(name)?.clone(),
        settings: inv.ssh.clone(),
        control_dir: control_dir.map(Path::to_path_buf),
    })
}

impl ContainerJob {
    /// `None` unless the service is a container service.
    pub(crate) fn of(
        config: &Config,
        name: &str,
        service: &ServiceConfig,
        host: Option<&str>,
        deployment_id: &str,
        control_dir: Option<&Path>,
    ) -> Option<ContainerJob> {
        if service.target != TargetKind::Container {
            return None;
        }
        Some(ContainerJob {
            service: name.to_string(),
            host: host.map(str::to_string),
            deployment_id: deployment_id.to_string(),
            configured: service.runtime,
            options: service.runtime_options.clone(),
            remote: remote_host(config, service, host, control_dir),
            image: service.image.clone().unwrap_or_default(),
            version: service.version.clone().unwrap_or_default(),
            mode: service.strategy_mode,
            slot_ports: service.slot_ports.clone(),
            switch: service.switch.clone(),
            stop_timeout_s: service.stop_timeout_s.unwrap_or(10),
            ports: service.ports.clone(),
            volumes: service.volumes.clone(),
            run_options: service.run_options.clone(),
            args: service.args.clone(),
            env_names: service
                .env
                .iter()
                .map(|(k, v)| (k.clone(), matches!(v, EnvValue::Plain(_))))
                .collect(),
        })
    }

    /// `adeploy-<service>-<version>` (with `-<host>` on a fleet host, so
    /// hosts sharing one runtime do not collide).
    pub fn name(&self) -> String {
        match &self.host {
            Some(h) => format!("adeploy-{}-{}-{h}", self.service, self.version),
            None => format!("adeploy-{}-{}", self.service, self.version),
        }
    }

    fn prefix(&self) -> String {
        format!("adeploy-{}-", self.service)
    }

    fn image_ref(&self) -> String {
        format!("{}:{}", self.image, self.version)
    }

    /// The runtime: the configured or installed one; on a fleet host, the
    /// configured one or whichever the host has.
    pub(crate) async fn runtime(&self) -> Result<Runtime, ContainerError> {
        let kind = match (&self.remote, self.configured) {
            (None, configured) => rt::local_runtime(configured)?,
            (Some(_), Some(k)) => k,
            (Some(r), None) => rt::remote_runtime(r).await?,
        };
        Ok(Runtime {
            kind,
            options: self.options.clone(),
            remote: self.remote.clone(),
        })
    }

    /// This service's containers on this host (others' hosts excluded).
    pub(crate) async fn mine(
        &self,
        runtime: &Runtime,
    ) -> Result<Vec<ContainerInfo>, ContainerError> {
        let mut found = runtime.containers(&self.service, &self.prefix()).await?;
        found.retain(|c| {
            !c.owned_by(&self.service) || c.label(rt::LABEL_HOST) == self.host.as_deref()
        });
        Ok(found)
    }

    /// Fills `${ADEPLOY_*}` in a config text from the step's environment.
    fn fill(&self, text: &str, env: &[(String, String)]) -> Result<String, ContainerError> {
        placeholders::substitute(text, |name| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
        .map_err(|e| ContainerError::Failed {
            runtime: "adeploy".to_string(),
            what: format!("settings of {}", self.service),
            host: self.host.clone(),
            message: e.to_string(),
        })
    }

    /// Starts the new container. `state` is filled in as it goes, so a
    /// failure half-way still tells the rollback what to undo. Returns the
    /// blue-green port (for `ADEPLOY_PORT`).
    pub async fn deploy(
        &self,
        opts: &RunOptions<'_>,
        state: &mut Option<ContainerStep>,
    ) -> Result<Option<u16>, ContainerError> {
        let runtime = self.runtime().await?;
        let name = self.name();
        let image = self.image_ref();
        *state = Some(ContainerStep {
            runtime: runtime.program().to_string(),
            name: name.clone(),
            image: image.clone(),
            ..ContainerStep::default()
        });
        let existing = self.mine(&runtime).await?;
        if let Some(c) = existing.iter().find(|c| c.name == name) {
            if !c.owned_by(&self.service) {
                return Err(ContainerError::Foreign {
                    name,
                    runtime: runtime.program().to_string(),
                    host: self.host.clone(),
                });
            }
            // The same version again: the old container makes room under
            // another name (and is still the one to return to).
            let suffix: String = self.deployment_id.chars().rev().take(4).collect();
            runtime
                .rename(&name, &format!("{name}-was-{suffix}"), opts)
                .await?;
        }
        let running: Vec<&ContainerInfo> = existing
            .iter()
            .filter(|c| c.running && c.owned_by(&self.service))
            .collect();
        let previous = running.first().map(|c| ContainerRef {
            name: c.name.clone(),
            id: c.id.clone(),
            image: c.image.clone(),
            digest: c.image_id.clone(),
            slot: c.label(rt::LABEL_SLOT).map(str::to_string),
            port: c.label(rt::LABEL_PORT).and_then(|p| p.parse().ok()),
        });
        let slot = match self.mode {
            ContainerMode::Replace => None,
            ContainerMode::BlueGreen => {
                let taken = previous.as_ref().and_then(|p| p.slot.as_deref());
                Some(usize::from(taken == Some(SLOTS[0])))
            }
        };
        let port = slot.and_then(|i| self.slot_ports.get(i).copied());
        if let Some(s) = state.as_mut() {
            s.previous = previous.clone();
            s.slot = slot.map(|i| SLOTS[i].to_string());
            s.port = port;
        }
        let digest = runtime.ensure_image(&image, opts).await?;
        if self.mode == ContainerMode::Replace {
            for c in &running {
                runtime.stop(&c.id, self.stop_timeout_s, opts).await?;
            }
        }
        let mut env = opts.env.to_vec();
        if let Some(p) = port {
            env.push(("ADEPLOY_PORT".into(), p.to_string()));
        }
        let mut labels = vec![
            (rt::LABEL_SERVICE.to_string(), self.service.clone()),
            (rt::LABEL_DEPLOYMENT.to_string(), self.deployment_id.clone()),
            (rt::LABEL_VERSION.to_string(), self.version.clone()),
        ];
        if let Some(h) = &self.host {
            labels.push((rt::LABEL_HOST.to_string(), h.clone()));
        }
        if let (Some(i), Some(p)) = (slot, port) {
            labels.push((rt::LABEL_SLOT.to_string(), SLOTS[i].to_string()));
            labels.push((rt::LABEL_PORT.to_string(), p.to_string()));
        }
        let mut env_names: Vec<String> = [
            "ADEPLOY_SERVICE",
            "ADEPLOY_VERSION",
            "ADEPLOY_DEPLOYMENT_ID",
            "ADEPLOY_HOST",
            "ADEPLOY_HOST_ADDRESS",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if port.is_some() {
            env_names.push("ADEPLOY_PORT".into());
        }
        for (k, plain) in &self.env_names {
            if *plain && let Some((_, v)) = env.iter().rev().find(|(n, _)| n == k) {
                let filled = self.fill(v, &env)?;
                env.push((k.clone(), filled));
            }
            env_names.push(k.clone());
        }
        let fill_all = |list: &[String]| -> Result<Vec<String>, ContainerError> {
            list.iter().map(|t| self.fill(t, &env)).collect()
        };
        let spec = RunSpec {
            name: name.clone(),
            image: image.clone(),
            labels,
            env: env_names,
            ports: fill_all(&self.ports)?,
            volumes: fill_all(&self.volumes)?,
            run_options: fill_all(&self.run_options)?,
            args: fill_all(&self.args)?,
        };
        let mut run_opts = *opts;
        run_opts.env = &env;
        if let Err(e) = runtime
            .act(&format!("run {name}"), &spec.argv(), &run_opts)
            .await
        {
            // A container may have been created before it failed to start.
            let _ = runtime.remove_quietly(&name).await;
            return Err(e);
        }
        let started = runtime.inspect(&name).await?;
        let Some(started) = started else {
            return Err(ContainerError::Failed {
                runtime: runtime.program().to_string(),
                what: format!("run {name}"),
                host: self.host.clone(),
                message: "the container is gone right after starting".to_string(),
            });
        };
        if let Some(s) = state.as_mut() {
            s.id = Some(started.id.clone());
            s.digest = Some(if started.image_id.is_empty() {
                digest
            } else {
                started.image_id.clone()
            });
        }
        if !started.running {
            let logs = runtime.last_log_line(&name).await;
            return Err(ContainerError::Failed {
                runtime: runtime.program().to_string(),
                what: format!("run {name}"),
                host: self.host.clone(),
                message: format!(
                    "the container exited right after starting (status {}){}",
                    started.status,
                    logs.map(|l| format!(": {l}")).unwrap_or_default()
                ),
            });
        }
        Ok(port)
    }

    /// Blue-green, after the new container was judged: `switch` towards it,
    /// then stop the old one.
    pub async fn switch_over(
        &self,
        state: &mut ContainerStep,
        opts: &RunOptions<'_>,
    ) -> Result<(), ContainerError> {
        let runtime = self.runtime().await?;
        self.run_switch(&runtime, state, false, opts).await?;
        state.switched = true;
        if let Some(p) = &state.previous {
            runtime.stop(&p.id, self.stop_timeout_s, opts).await?;
        }
        Ok(())
    }

    /// Runs `switch` towards the new container (or back to the previous one).
    async fn run_switch(
        &self,
        runtime: &Runtime,
        state: &ContainerStep,
        back: bool,
        opts: &RunOptions<'_>,
    ) -> Result<(), ContainerError> {
        let Some(cmd) = &self.switch else {
            return Ok(());
        };
        let (to_port, to_slot, to_name, from_port) = if back {
            let p = state.previous.as_ref();
            (
                p.and_then(|p| p.port),
                p.and_then(|p| p.slot.clone()),
                p.map(|p| p.name.clone()),
                state.port,
            )
        } else {
            (
                state.port,
                state.slot.clone(),
                Some(state.name.clone()),
                state.previous.as_ref().and_then(|p| p.port),
            )
        };
        let mut env = opts.env.to_vec();
        let mut set = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                env.push((k.to_string(), v));
            }
        };
        set("ADEPLOY_PORT", to_port.map(|p| p.to_string()));
        set("ADEPLOY_PREVIOUS_PORT", from_port.map(|p| p.to_string()));
        set("ADEPLOY_SLOT", to_slot);
        set("ADEPLOY_CONTAINER", to_name);
        let spec = match &self.remote {
            Some(r) => r.target().wrap(cmd, &env, None),
            None => cmd.clone(),
        };
        let mut o = *opts;
        o.env = &env;
        let what = if back { "switch back" } else { "switch" };
        let outcome = exec::run_command(&spec, &o).await?;
        if outcome.success {
            return Ok(());
        }
        let message = match &self.remote {
            Some(r) => r
                .target()
                .describe_failure(&outcome)
                .unwrap_or_else(|| outcome.describe()),
            None => outcome.describe(),
        };
        Err(ContainerError::Failed {
            runtime: runtime.program().to_string(),
            what: what.to_string(),
            host: self.host.clone(),
            message,
        })
    }

    /// Undoes the step: the new container removed, the previous one serving
    /// again (started by id; switched back to after a switch). Returns what
    /// serves now.
    pub async fn rollback(
        &self,
        state: &mut ContainerStep,
        opts: &RunOptions<'_>,
    ) -> Result<String, ContainerError> {
        let runtime = self.runtime().await?;
        // Blue-green: the previous one serves (again) before the new one goes.
        let blue_green = self.mode == ContainerMode::BlueGreen;
        if blue_green && let Some(p) = state.previous.clone() {
            self.start_if_stopped(&runtime, &p.id, opts).await?;
            if state.switched {
                self.run_switch(&runtime, state, true, opts).await?;
                state.switched = false;
            }
        }
        // The new container: by id, or by name only if this deployment
        // started it (never someone else's under the same name).
        let new = match &state.id {
            Some(id) => runtime.inspect(id).await?,
            None => runtime
                .inspect(&state.name)
                .await?
                .filter(|c| c.label(rt::LABEL_DEPLOYMENT) == Some(self.deployment_id.as_str())),
        };
        if let Some(c) = new {
            if c.running {
                runtime.stop(&c.id, self.stop_timeout_s, opts).await?;
            }
            runtime.remove_quietly(&c.id).await?;
        }
        if !blue_green && let Some(p) = state.previous.clone() {
            self.start_if_stopped(&runtime, &p.id, opts).await?;
        }
        let Some(p) = &state.previous else {
            return Ok(format!("removed {}; nothing ran before it", state.name));
        };
        let now = runtime.inspect(&p.id).await?;
        match now {
            Some(c) if c.running => {
                state.rolled_back_to = Some(c.image_id.clone());
                Ok(format!(
                    "removed {}; {} serves again ({})",
                    state.name, p.name, c.image_id
                ))
            }
            Some(c) => Err(ContainerError::Failed {
                runtime: runtime.program().to_string(),
                what: format!("start {}", p.name),
                host: self.host.clone(),
                message: format!("the previous container is {} after starting it", c.status),
            }),
            None => Err(ContainerError::Failed {
                runtime: runtime.program().to_string(),
                what: format!("start {}", p.name),
                host: self.host.clone(),
                message: "the previous container is gone (removed by someone?)".to_string(),
            }),
        }
    }

    async fn start_if_stopped(
        &self,
        runtime: &Runtime,
        id: &str,
        opts: &RunOptions<'_>,
    ) -> Result<(), ContainerError> {
        if runtime.inspect(id).await?.is_some_and(|c| !c.running) {
            runtime.start(id, opts).await?;
        }
        Ok(())
    }

    /// After the deployment is recorded: removes this service's stopped
    /// containers on this host other than the new one (the previous one,
    /// kept until now, and leftovers of earlier runs).
    pub async fn retire(&self, state: &ContainerStep) -> Result<Vec<String>, ContainerError> {
        let runtime = self.runtime().await?;
        let mut removed = Vec::new();
        for c in self.mine(&runtime).await? {
            if c.owned_by(&self.service) && !c.running && Some(&c.id) != state.id.as_ref() {
                runtime.remove_quietly(&c.id).await?;
                removed.push(c.name);
            }
        }
        Ok(removed)
    }
}

/// Retires what the successful container steps of a recorded deployment
/// replaced. Failures are warnings: the deployment is recorded already.
pub(crate) async fn retire_replaced(
    config: &Config,
    state_dir: &Path,
    deployment_id: &str,
    steps: &[StepRecord],
) {
    let control = state_dir.join("ssh");
    let control = (config.inventory.ssh.reuse_connections && control.is_dir()).then_some(control);
    for step in steps {
        let Some(state) = &step.container else {
            continue;
        };
        if step.status != StepStatus::Succeeded || step.rolled_back == Some(true) {
            continue;
        }
        let Some(service) = config.services.get(&step.service) else {
            continue;
        };
        let Some(mut job) = ContainerJob::of(
            config,
            &step.service,
            service,
            step.host.as_deref(),
            deployment_id,
            control.as_deref(),
        ) else {
            continue;
        };
        job.configured = match state.runtime.as_str() {
            "docker" => Some(ContainerRuntime::Docker),
            "podman" => Some(ContainerRuntime::Podman),
            _ => job.configured,
        };
        match job.retire(state).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!("{}: retired {}", step.label(), removed.join(", "));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: the replaced container is left: {e}", step.label()),
        }
    }
}
