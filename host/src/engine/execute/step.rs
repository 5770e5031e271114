//! One step's task (pre-service hooks, deploy command, health validation,
//! post-service hooks), the environment commands run with, and how a fleet
//! step reaches its host over ssh.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::analysis::{MetricVerdict, Verdict};
use crate::exec::HealthOutcome;
use crate::history::{PhaseKind, PhaseStatus, ProbeMark, StepPhase};

use crate::config::{
    CommandSpec, HealthFrom, HealthSpec, InventoryHost, ServiceConfig, SshSettings,
};
use crate::exec::ssh::SshTarget;
use crate::exec::{self, CommandContext, HealthPolicy, RunOptions};
use crate::history::{ContainerStep, step_label};
use crate::plugin::Phase;
use crate::report::StepRecord;

use super::super::context::service_timeout;
use super::Execution;
use super::container::ContainerJob;

/// How a step's task ended.
pub(super) struct StepDone {
    pub index: usize,
    pub ok: bool,
    pub message: String,
    pub seconds: f64,
    pub cancelled: bool,
    /// Deploy, health, soak, analysis: as far as the step got.
    pub phases: Vec<StepPhase>,
    /// The metric verdicts of its analysis (empty without one).
    pub analysis: Vec<MetricVerdict>,
    /// What the environment's policy made of an inconclusive analysis.
    pub analysis_policy: Option<String>,
    /// A container step: what it started and replaced.
    pub container: Option<ContainerStep>,
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
    /// The context variables of a command (`wave` numbered from 1): one
    /// builder for every command ([`exec::command_env`]), versions included.
    pub(super) fn env_for(
        &self,
        service: &str,
        wave: u32,
        host: Option<&str>,
    ) -> Vec<(String, String)> {
        let address = host
            .and_then(|h| self.config().inventory.hosts.get(h))
            .map_or("127.0.0.1".to_string(), |h| h.address.clone());
        let versions = self.versions.get(service);
        exec::command_env(
            &CommandContext {
                deployment_id: self.id,
                service,
                strategy: self.strategy,
                environment: self.environment,
                deployment_size: self.size.as_str(),
                wave,
                host,
                host_address: &address,
                state_dir: self.settings.state_dir,
                version: versions.and_then(|v| v.version.as_deref()),
                previous_version: versions.and_then(|v| v.previous.as_deref()),
            },
            &[],
        )
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
        if !service.is_fleet() {
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
    /// health validation (samples, then the soak), the service's metric
    /// analysis, post-service hooks. Every part is a timed phase of the step.
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
        let (mut env, cwd) = self.command_env(&name, &service, rec.wave, host.as_deref());
        let remote = self.remote(&service, host.as_deref());
        let job = ContainerJob::of(
            self.config(),
            &name,
            &service,
            host.as_deref(),
            self.id,
            self.ssh_control,
        );
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
        let tracker = self.tracker.clone();
        let analysis = self.step_analysis(&name);
        async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            let mut phases: Vec<StepPhase> = Vec::new();
            let mut verdicts: Vec<MetricVerdict> = Vec::new();
            let mut policy_note: Option<String> = None;
            let mut container: Option<ContainerStep> = None;
            macro_rules! finish {
                ($ok:expr, $message:expr, $cancelled:expr) => {
                    return StepDone {
                        index,
                        ok: $ok,
                        message: $message,
                        seconds: started.elapsed().as_secs_f64(),
                        cancelled: $cancelled,
                        phases,
                        analysis: verdicts,
                        analysis_policy: policy_note,
                        container,
                    }
                };
            }
            let cancelled_message = || "cancelled: the deadline was reached".to_string();
            for h in &hooks {
                if let Err(e) = h.run_hook(Phase::PreService, &hook_ctx).await {
                    finish!(false, format!("pre-service hook: {e}"), false);
                }
            }
            let shown = step_label(&name, host.as_deref());
            if let Some(job) = &job {
                let label = format!("{shown} container");
                let opts = RunOptions {
                    label: &label,
                    env: &env,
                    cwd: &cwd,
                    timeout,
                    log: &log,
                    cancel: Some(&cancel),
                    tracker: None,
                };
                let clock = PhaseClock::start();
                let deployed = job.deploy(&opts, &mut container).await;
                match deployed {
                    _ if *cancel.borrow() => {
                        phases.push(clock.end(PhaseKind::Deploy, PhaseStatus::Cancelled, None));
                        finish!(false, cancelled_message(), true);
                    }
                    Ok(port) => {
                        phases.push(clock.end(PhaseKind::Deploy, PhaseStatus::Succeeded, None));
                        if let Some(p) = port {
                            env.push(("ADEPLOY_PORT".to_string(), p.to_string()));
                        }
                    }
                    Err(e) => {
                        let message = format!("deploy failed: {e}");
                        phases.push(clock.end(
                            PhaseKind::Deploy,
                            PhaseStatus::Failed,
                            Some(message.clone()),
                        ));
                        finish!(false, message, false);
                    }
                }
            }
            let deploy = match (&job, &service.deploy) {
                (Some(_), _) => None,
                (None, Some(d)) => Some(d),
                (None, None) => finish!(
                    false,
                    format!("service '{name}' has no deploy command"),
                    false
                ),
            };
            if let Some(deploy) = deploy {
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
                    tracker: Some(&tracker),
                };
                let clock = PhaseClock::start();
                match exec::run_command(&deploy, &opts).await {
                    Ok(o) if o.cancelled || (o.timed_out && clipped) => {
                        phases.push(clock.end(PhaseKind::Deploy, PhaseStatus::Cancelled, None));
                        finish!(false, cancelled_message(), true);
                    }
                    Ok(o) if !o.success => {
                        let message = match &remote {
                            Some(r) => r.describe("deploy", &o),
                            None => format!("deploy failed: {}", o.describe()),
                        };
                        phases.push(clock.end(
                            PhaseKind::Deploy,
                            PhaseStatus::Failed,
                            Some(message.clone()),
                        ));
                        finish!(false, message, false);
                    }
                    Ok(_) => {
                        phases.push(clock.end(PhaseKind::Deploy, PhaseStatus::Succeeded, None))
                    }
                    Err(e) => {
                        phases.push(clock.end(
                            PhaseKind::Deploy,
                            PhaseStatus::Failed,
                            Some(e.to_string()),
                        ));
                        finish!(false, e.to_string(), false);
                    }
                }
            }
            if check_health && let Some(health) = &service.health {
                let health = match &remote {
                    Some(r) => r.health(health, &env),
                    None => health.clone(),
                };
                let health = if job.is_some() {
                    fill_health(&health, &env)
                } else {
                    health
                };
                let hlabel = format!("{shown} health");
                let hopts = RunOptions {
                    label: &hlabel,
                    env: &env,
                    cwd: &cwd,
                    timeout,
                    log: &log,
                    cancel: Some(&cancel),
                    tracker: Some(&tracker),
                };
                let clock = PhaseClock::start();
                let outcome = exec::validate(&health, &policy, deadline, &hopts).await;
                let cancelled = *cancel.borrow();
                let (ok, failure, was_cancelled) = match &outcome {
                    _ if cancelled => (false, cancelled_message(), true),
                    Ok(o) if !o.healthy && clipped && tokio::time::Instant::now() >= deadline => {
                        (false, cancelled_message(), true)
                    }
                    Ok(o) if o.healthy => (true, String::new(), false),
                    Ok(o) => (false, format!("health check failed: {}", o.message), false),
                    Err(e) => (false, format!("health check: {e}"), false),
                };
                phases.extend(health_phases(
                    &clock,
                    outcome.as_ref().ok(),
                    ok,
                    was_cancelled,
                    &failure,
                ));
                if !ok {
                    finish!(false, failure, was_cancelled);
                }
            }
            let mut message = "deployed and healthy".to_string();
            if let Some(a) = &analysis {
                let clock = PhaseClock::start();
                let Some(found) = a.run(host.as_deref(), &env, &cancel).await else {
                    phases.push(clock.end(PhaseKind::Analysis, PhaseStatus::Cancelled, None));
                    finish!(false, cancelled_message(), true);
                };
                verdicts = found;
                let settled = a.settle(&shown, &verdicts).await;
                policy_note = settled.policy.clone();
                phases.push(clock.marks(
                    PhaseKind::Analysis,
                    settled.status,
                    Some(settled.message.clone()),
                    verdict_marks(&verdicts),
                ));
                if !settled.ok {
                    finish!(false, settled.message, false);
                }
                message = format!("deployed and healthy; {}", settled.message);
            }
            if let (Some(job), Some(state)) = (&job, container.as_mut())
                && job.switch.is_some()
            {
                let label = format!("{shown} switch");
                let opts = RunOptions {
                    label: &label,
                    env: &env,
                    cwd: &cwd,
                    timeout,
                    log: &log,
                    cancel: Some(&cancel),
                    tracker: Some(&tracker),
                };
                let clock = PhaseClock::start();
                if let Err(e) = job.switch_over(state, &opts).await {
                    let message = format!("{e}");
                    phases.push(clock.end(
                        PhaseKind::Switch,
                        PhaseStatus::Failed,
                        Some(message.clone()),
                    ));
                    finish!(false, message, false);
                }
                phases.push(clock.end(PhaseKind::Switch, PhaseStatus::Succeeded, None));
                message = format!("{message}; switched to {}", state.name);
            }
            for h in &hooks {
                if let Err(e) = h.run_hook(Phase::PostService, &hook_ctx).await {
                    finish!(false, format!("post-service hook: {e}"), false);
                }
            }
            finish!(true, message, false)
        }
    }
}

/// A container service's health check with `${ADEPLOY_*}` in its URL,
/// address or command filled in from the step's environment (the new
/// container's port, for blue-green). A placeholder without a value is
/// left as it is, and the check then fails naming it.
fn fill_health(spec: &HealthSpec, env: &[(String, String)]) -> HealthSpec {
    let fill = |t: &String| {
        crate::config::placeholders::substitute(t, |n| {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or_else(|_| t.clone())
    };
    let mut h = spec.clone();
    h.http = spec.http.as_ref().map(fill);
    h.tcp = spec.tcp.as_ref().map(fill);
    h.command = match &spec.command {
        Some(CommandSpec::Shell(s)) => Some(CommandSpec::Shell(fill(s))),
        Some(CommandSpec::Argv(v)) => Some(CommandSpec::Argv(v.iter().map(fill).collect())),
        None => None,
    };
    h
}

/// When a phase began, to close it with its duration.
pub(super) struct PhaseClock {
    at: DateTime<Utc>,
    started: Instant,
}

impl PhaseClock {
    pub fn start() -> PhaseClock {
        PhaseClock {
            at: Utc::now(),
            started: Instant::now(),
        }
    }

    /// The phase from the start until now.
    pub fn end(&self, kind: PhaseKind, status: PhaseStatus, message: Option<String>) -> StepPhase {
        self.marks(kind, status, message, Vec::new())
    }

    /// [`PhaseClock::end`], with its probes.
    pub fn marks(
        &self,
        kind: PhaseKind,
        status: PhaseStatus,
        message: Option<String>,
        samples: Vec<ProbeMark>,
    ) -> StepPhase {
        StepPhase {
            kind,
            started_at: self.at,
            seconds: self.started.elapsed().as_secs_f64(),
            status,
            message,
            samples,
        }
    }
}

/// The health phase (samples until enough consecutive ones were healthy)
/// and, when it began, the soak, each with its probes.
fn health_phases(
    clock: &PhaseClock,
    outcome: Option<&HealthOutcome>,
    ok: bool,
    cancelled: bool,
    failure: &str,
) -> Vec<StepPhase> {
    let failed = if cancelled {
        PhaseStatus::Cancelled
    } else {
        PhaseStatus::Failed
    };
    let message = (!ok).then(|| failure.to_string());
    let marks = |soak: bool| -> Vec<ProbeMark> {
        outcome
            .map(|o| {
                o.probes
                    .iter()
                    .filter(|p| p.soak == soak)
                    .map(|p| ProbeMark {
                        timestamp: p.timestamp,
                        ok: p.healthy,
                        message: (!p.healthy).then(|| p.detail.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut health = clock.marks(
        PhaseKind::Health,
        if ok { PhaseStatus::Succeeded } else { failed },
        message.clone(),
        marks(false),
    );
    let Some(soak_at) = outcome.and_then(|o| o.soak_started_at) else {
        return vec![health];
    };
    let total = health.seconds;
    let before_soak = (soak_at - health.started_at)
        .to_std()
        .map_or(0.0, |d| d.as_secs_f64())
        .min(total);
    health.seconds = before_soak;
    health.status = PhaseStatus::Succeeded;
    health.message = None;
    let soak = StepPhase {
        kind: PhaseKind::Soak,
        started_at: soak_at,
        seconds: total - before_soak,
        status: if ok { PhaseStatus::Succeeded } else { failed },
        message,
        samples: marks(true),
    };
    vec![health, soak]
}

/// One mark per metric at the end of its window: whether it passed.
fn verdict_marks(verdicts: &[MetricVerdict]) -> Vec<ProbeMark> {
    verdicts
        .iter()
        .map(|v| ProbeMark {
            timestamp: DateTime::from_timestamp_millis(i64::try_from(v.window.end_ms).unwrap_or(0))
                .unwrap_or_else(Utc::now),
            ok: v.verdict == Verdict::Pass,
            message: Some(format!("{}: {}", v.metric, v.verdict)),
        })
        .collect()
}
