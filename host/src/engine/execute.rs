//! Executing a plan: waves of steps under the strategy's concurrency and
//! resource budget, health checks, the strategy's on-progress decisions, hooks,
//! the deadline, and rollback.
//!
//! Why a scheduler loop rather than one task per wave: a step may start only
//! when the services it depends on have succeeded, no step may start while
//! the machine is over budget, and every completion is a progress event the
//! strategy may answer with pause, abort or rollback. One loop that owns the
//! counters decides all of that in one place; steps themselves run as tasks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{DecisionLog, DeploymentEvent, DeploymentSize, Engine, service_timeout};
use crate::config::{
    CommandSpec, Environment, HealthFrom, HealthSpec, InventoryHost, ResourceLimits, ServiceConfig,
    SshSettings, TargetKind,
};
use crate::exec::ssh::SshTarget;
use crate::exec::{self, DeploymentLog, HealthPolicy, RunOptions};
use crate::history::DeploymentStatus;
use crate::plugin::{
    Decision, DeploymentContext, HookContext, Metrics, Phase, Plugin, PluginKind, Progress,
    ProgressKind, RollbackScope, Rollout, Step,
};
use crate::report::{StepRecord, StepStatus};

pub(crate) struct ExecutionResult {
    pub success: bool,
    pub status: DeploymentStatus,
    pub message: String,
    pub steps: Vec<StepRecord>,
}

pub(crate) struct Execution<'a> {
    pub engine: &'a Engine,
    pub id: &'a str,
    pub strategy: &'a str,
    pub environment: Environment,
    pub size: DeploymentSize,
    pub plugin: &'a Arc<Plugin>,
    pub ctx: &'a DeploymentContext,
    pub rollout: &'a Rollout,
    pub limits: &'a ResourceLimits,
    pub deadline: Option<Instant>,
    /// What set the deadline, for messages (`--max-time of 5 min`).
    pub deadline_label: &'a str,
    pub log: &'a DeploymentLog,
    /// Consecutive failures before this deployment (for on-failure hooks).
    pub streaks: &'a crate::ml::Streaks,
    /// The background sampler, when the machine is measured.
    pub sampler: Option<&'a crate::monitor::Sampler>,
    /// Where ssh ControlMaster sockets live (`None`: no connection reuse).
    pub ssh_control: Option<&'a Path>,
    /// Each service's `env`, secrets resolved.
    pub service_env: &'a HashMap<String, Vec<(String, String)>>,
}

/// A fleet step's host, owned so a step task can carry it.
#[derive(Debug, Clone)]
struct Remote {
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

    fn wrap(&self, command: &CommandSpec, env: &[(String, String)]) -> CommandSpec {
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
    fn describe(&self, what: &str, o: &exec::CommandOutcome) -> String {
        match self.target().describe_failure(o) {
            Some(m) => format!("{what} failed: {m}"),
            None => format!("{what} failed on {}: {}", self.name, o.describe()),
        }
    }
}

/// How far ahead predictive scaling projects the load trend, in minutes.
const SCALING_HORIZON_MIN: f64 = 1.0;

/// Why execution stopped early.
#[derive(Debug, Clone)]
enum Stop {
    Abort(String),
    Rollback(String),
    Deadline(String),
}

struct StepDone {
    index: usize,
    ok: bool,
    message: String,
    seconds: f64,
    cancelled: bool,
}

impl Execution<'_> {
    fn env_for(&self, service: &str, wave: u32, host: Option<&str>) -> Vec<(String, String)> {
        let address = host
            .and_then(|h| self.engine.config.inventory.hosts.get(h))
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
            ("ADEPLOY_WAVE".into(), (wave + 1).to_string()),
            ("ADEPLOY_HOST".into(), host.unwrap_or("localhost").into()),
            ("ADEPLOY_HOST_ADDRESS".into(), address),
            (
                "ADEPLOY_STATE_DIR".into(),
                self.engine.state_dir.display().to_string(),
            ),
        ]
    }

    /// The environment (context variables plus the service's `env`) and the
    /// working directory of a service's commands.
    fn command_env(
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
            Some(w) => self.engine.config.base_dir().join(w),
            None => self.engine.config.base_dir(),
        };
        (env, cwd)
    }

    /// How to reach the host of a fleet step (`None` for a local step).
    fn remote(&self, service: &ServiceConfig, host: Option<&str>) -> Option<Remote> {
        if service.target != TargetKind::Ssh {
            return None;
        }
        let name = host?;
        let inv = &self.engine.config.inventory;
        Some(Remote {
            name: name.to_string(),
            host: inv.hosts.get(name)?.clone(),
            settings: inv.ssh.clone(),
            control_dir: self.ssh_control.map(Path::to_path_buf),
            workdir: service.workdir.clone().filter(|w| w.is_absolute()),
        })
    }

    fn hook_plugins(&self) -> Vec<Arc<Plugin>> {
        self.engine
            .plugins
            .of_kind(PluginKind::Hook)
            .cloned()
            .collect()
    }

    fn hook_ctx(&self, service: Option<&str>, failure_count: u32, message: &str) -> HookContext {
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
    async fn deployment_hooks(
        &self,
        phase: Phase,
        failure_count: u32,
        message: &str,
        dl: &mut DecisionLog,
    ) -> Result<(), String> {
        let cwd = self.engine.config.base_dir();
        let scripts: &[String] = match phase {
            Phase::PreDeployment => &self.engine.config.hooks.pre_deployment_scripts,
            Phase::PostDeployment => &self.engine.config.hooks.post_deployment_scripts,
            _ => &[],
        };
        let phase_name = phase_str(phase);
        let mut first_error = None;
        for script in scripts {
            let env = self.env_for("", 0, None);
            let opts = RunOptions {
                label: &format!("{phase_name} hook"),
                env: &env,
                cwd: &cwd,
                timeout: self
                    .remaining()
                    .unwrap_or(Duration::from_secs(600))
                    .min(Duration::from_secs(600)),
                log: self.log,
                cancel: None,
            };
            let (ok, msg) =
                match exec::run_command(&CommandSpec::Shell(script.clone()), &opts).await {
                    Ok(o) if o.success => (true, "ok".to_string()),
                    Ok(o) => (false, format!("`{script}` failed: {}", o.describe())),
                    Err(e) => (false, e.to_string()),
                };
            dl.emit(DeploymentEvent::Hook {
                phase: phase_name.into(),
                name: script.clone(),
                ok,
                message: msg.clone(),
            });
            dl.record(
                "hook",
                json!({ "phase": phase_name, "hook": script, "ok": ok, "message": msg }),
            );
            if !ok && first_error.is_none() {
                first_error = Some(msg);
            }
        }
        for plugin in self.hook_plugins() {
            let ctx = self.hook_ctx(None, failure_count, &dl.redactor.redact(message));
            let (ok, msg, details) = match plugin.run_hook(phase, &ctx).await {
                Ok(r) => (
                    true,
                    r.value.message,
                    r.value
                        .details
                        .into_iter()
                        .map(|d| (d.key, serde_json::Value::String(d.value)))
                        .collect::<serde_json::Map<_, _>>(),
                ),
                Err(e) => (false, e.to_string(), serde_json::Map::new()),
            };
            dl.emit(DeploymentEvent::Hook {
                phase: phase_name.into(),
                name: plugin.name().into(),
                ok,
                message: msg.clone(),
            });
            dl.record(
                "hook",
                json!({ "phase": phase_name, "hook": plugin.name(), "ok": ok, "message": msg, "details": details, "failure_count": failure_count }),
            );
            if !ok && first_error.is_none() {
                first_error = Some(msg);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    async fn metrics(&self) -> crate::monitor::Snapshot {
        self.engine.sample_metrics().await
    }

    async fn progress(
        &self,
        kind: ProgressKind,
        wave: u32,
        step: Option<&Step>,
        message: &str,
        steps: &[StepRecord],
        started: Instant,
    ) -> (Progress, crate::monitor::Snapshot) {
        let m = self.metrics().await;
        let count = |s: StepStatus| {
            u32::try_from(steps.iter().filter(|r| r.status == s).count()).unwrap_or(u32::MAX)
        };
        (
            Progress {
                kind,
                wave,
                waves_total: u32::try_from(self.rollout.waves.len()).unwrap_or(u32::MAX),
                step: step.cloned(),
                message: message.to_string(),
                succeeded: count(StepStatus::Succeeded),
                failed: count(StepStatus::Failed) + count(StepStatus::Cancelled),
                remaining: count(StepStatus::Pending),
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                metrics: Metrics {
                    cpu_percent: m.cpu_percent,
                    memory_percent: m.memory_percent,
                    disk_percent: m.disk_percent,
                    load_per_core: m.load_per_core,
                    network_latency_ms: m.network_latency_ms,
                },
            },
            m,
        )
    }

    /// Asks the strategy what to do after `event`; a failing call is noted and
    /// treated as `continue` (the failure policy still applies).
    async fn decide(&self, event: &Progress, dl: &mut DecisionLog) -> Decision {
        match self.plugin.on_progress(self.ctx, event).await {
            Ok(c) => {
                if !matches!(c.value, Decision::Continue) {
                    dl.record(
                        "strategy_decision",
                        json!({ "event": format!("{:?}", event.kind), "decision": format!("{:?}", c.value) }),
                    );
                }
                c.value
            }
            Err(e) => {
                dl.record(
                    "strategy_decision_failed",
                    json!({ "error": e.to_string() }),
                );
                Decision::Continue
            }
        }
    }

    pub(crate) async fn run(&self, dl: &mut DecisionLog) -> ExecutionResult {
        let started = Instant::now();
        let mut steps: Vec<StepRecord> = Vec::new();
        let mut wave_of: Vec<u32> = Vec::new();
        for (w, wave) in self.rollout.waves.iter().enumerate() {
            for step in &wave.steps {
                steps.push(StepRecord {
                    service: step.service.clone(),
                    host: step.host.clone(),
                    wave: u32::try_from(w).unwrap_or(u32::MAX),
                    status: StepStatus::Pending,
                    started_at: None,
                    seconds: 0.0,
                    message: String::new(),
                    rolled_back: None,
                    rollback_message: None,
                });
                wave_of.push(u32::try_from(w).unwrap_or(u32::MAX));
            }
        }

        if let Err(msg) = self.deployment_hooks(Phase::PreDeployment, 0, "", dl).await {
            let message = format!("pre-deployment hook failed, nothing was deployed: {msg}");
            dl.record("aborted", json!({ "reason": message }));
            return ExecutionResult {
                success: false,
                status: DeploymentStatus::Aborted,
                message,
                steps,
            };
        }

        let mut concurrency = self.rollout.concurrency.min(self.limits.concurrency).max(1) as usize;
        let mut readings: Vec<crate::monitor::Snapshot> = Vec::new();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let mut order: Vec<usize> = Vec::new(); // indices in deploy start order
        let mut stop: Option<Stop> = None;
        let mut failures = 0u32;
        let in_deployment: HashSet<String> = steps.iter().map(|s| s.service.clone()).collect();

        'waves: for (w, wave) in self.rollout.waves.iter().enumerate() {
            let w32 = u32::try_from(w).unwrap_or(u32::MAX);
            dl.emit(DeploymentEvent::WaveStarted {
                wave: w32,
                waves: self.rollout.waves.len() as u32,
            });
            let (p, _) = self
                .progress(ProgressKind::WaveStarted, w32, None, "", &steps, started)
                .await;
            if let Some(s) = self.apply(self.decide(&p, dl).await, dl).await {
                stop = Some(s);
                break 'waves;
            }
            let mut pending: Vec<usize> = (0..steps.len()).filter(|&i| wave_of[i] == w32).collect();
            let mut running: JoinSet<StepDone> = JoinSet::new();
            loop {
                if stop.is_none() && self.past_deadline() {
                    stop = Some(Stop::Deadline(self.deadline_message()));
                    let _ = cancel_tx.send(true);
                }
                // Start what may start.
                while stop.is_none() && running.len() < concurrency {
                    let Some(pos) = self.next_startable(&pending, &steps, &in_deployment) else {
                        break;
                    };
                    let i = pending.remove(pos);
                    if let Some(blocker) = self.failed_dependency(i, &steps, &in_deployment) {
                        steps[i].status = StepStatus::Skipped;
                        steps[i].message =
                            format!("not started: dependency {blocker} did not succeed");
                        continue;
                    }
                    // The resource budget: no step starts while over it.
                    if let Some(s) = self.wait_for_budget(w32, &steps, started, dl).await {
                        pending.insert(pos, i);
                        stop = Some(s);
                        break;
                    }
                    steps[i].started_at = Some(Utc::now());
                    order.push(i);
                    dl.emit(DeploymentEvent::StepStarted {
                        service: steps[i].service.clone(),
                        host: steps[i].host.clone(),
                        wave: w32,
                    });
                    running.spawn(self.step_task(i, &steps[i], w32, cancel_rx.clone()));
                }
                if running.is_empty() {
                    break;
                }
                let next = match self.remaining() {
                    Some(left) => match tokio::time::timeout(left, running.join_next()).await {
                        Ok(n) => n,
                        Err(_) => {
                            if stop.is_none() {
                                stop = Some(Stop::Deadline(self.deadline_message()));
                            }
                            let _ = cancel_tx.send(true);
                            running.join_next().await
                        }
                    },
                    None => running.join_next().await,
                };
                let Some(joined) = next else { break };
                let done = match joined {
                    Ok(d) => d,
                    Err(e) => {
                        dl.record("step_task_failed", json!({ "error": e.to_string() }));
                        continue;
                    }
                };
                let rec = &mut steps[done.index];
                rec.seconds = done.seconds;
                rec.message = done.message.clone();
                rec.status = if done.cancelled {
                    StepStatus::Cancelled
                } else if done.ok {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Failed
                };
                dl.emit(DeploymentEvent::StepFinished {
                    service: rec.service.clone(),
                    host: rec.host.clone(),
                    ok: done.ok,
                    message: done.message.clone(),
                    seconds: done.seconds,
                });
                dl.record(
                    "step_finished",
                    json!({ "service": rec.service, "host": rec.host, "wave": w32 + 1, "status": rec.status, "message": done.message, "seconds": done.seconds }),
                );
                if !done.ok {
                    failures += 1;
                }
                if stop.is_none() && self.engine.config.experimental.enable_predictive_scaling {
                    self.rescale(&mut concurrency, &mut readings, dl).await;
                }
                if stop.is_none() {
                    let step = Step {
                        service: steps[done.index].service.clone(),
                        host: steps[done.index].host.clone(),
                    };
                    let kind = if done.ok {
                        ProgressKind::StepSucceeded
                    } else {
                        ProgressKind::StepFailed
                    };
                    let (p, _) = self
                        .progress(kind, w32, Some(&step), &done.message, &steps, started)
                        .await;
                    if let Some(s) = self.apply(self.decide(&p, dl).await, dl).await {
                        stop = Some(s);
                    } else if failures > self.rollout.failure.max_failures {
                        let reason = format!(
                            "{failures} failed step(s), more than the plan's max_failures {}",
                            self.rollout.failure.max_failures
                        );
                        dl.record("failure_policy", json!({ "failures": failures, "max_failures": self.rollout.failure.max_failures }));
                        stop = Some(Stop::Rollback(reason));
                    }
                }
            }
            for i in pending {
                if steps[i].status == StepStatus::Pending && stop.is_none() {
                    steps[i].status = StepStatus::Skipped;
                    steps[i].message =
                        "not started: its dependencies are planned in a later wave".into();
                }
            }
            if stop.is_some() {
                break;
            }
            let (p, _) = self
                .progress(ProgressKind::WaveFinished, w32, None, "", &steps, started)
                .await;
            if let Some(s) = self.apply(self.decide(&p, dl).await, dl).await {
                stop = Some(s);
                break;
            }
            if wave.pause_after_s > 0 && w + 1 < self.rollout.waves.len() {
                self.pause(wave.pause_after_s, "the plan pauses after this wave", dl)
                    .await;
            }
        }

        let all_ok = steps.iter().all(|s| s.status == StepStatus::Succeeded);
        if stop.is_none() && all_ok {
            if let Err(msg) = self
                .deployment_hooks(Phase::PostDeployment, 0, "", dl)
                .await
            {
                stop = Some(Stop::Rollback(format!(
                    "post-deployment hook failed: {msg}"
                )));
            } else {
                let n = steps.len();
                return ExecutionResult {
                    success: true,
                    status: DeploymentStatus::Succeeded,
                    message: format!("{n} step(s) deployed and healthy"),
                    steps,
                };
            }
        }

        // Failure: decide what to roll back.
        let (reason, scope) = match &stop {
            Some(Stop::Abort(r)) => (r.clone(), RollbackScope::None),
            Some(Stop::Rollback(r)) => (r.clone(), self.rollout.failure.rollback_scope),
            Some(Stop::Deadline(r)) => (r.clone(), RollbackScope::All),
            None => (
                "some steps failed".to_string(),
                self.rollout.failure.rollback_scope,
            ),
        };
        for st in steps.iter_mut().filter(|s| s.status == StepStatus::Pending) {
            st.status = StepStatus::Skipped;
            st.message = format!("not started: {reason}");
        }
        // Hooks get the consecutive failures this one extends: of the
        // environment, or of a service that failed now, whichever is longer.
        let failed_count = steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Cancelled))
            .map(|s| self.streaks.services.get(&s.service).copied().unwrap_or(0) + 1)
            .chain(std::iter::once(self.streaks.environment + 1))
            .max()
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let _ = self
            .deployment_hooks(Phase::OnFailure, failed_count, &reason, dl)
            .await;
        let targets: Vec<usize> = order
            .iter()
            .rev()
            .copied()
            .filter(|&i| match scope {
                RollbackScope::None => false,
                RollbackScope::Failed => {
                    matches!(steps[i].status, StepStatus::Failed | StepStatus::Cancelled)
                }
                RollbackScope::All => steps[i].deployed(),
            })
            .collect();
        let status = if targets.is_empty() {
            if matches!(stop, Some(Stop::Abort(_))) {
                DeploymentStatus::Aborted
            } else {
                DeploymentStatus::Failed
            }
        } else {
            self.rollback(&targets, &mut steps, &reason, dl).await;
            let _ = self
                .deployment_hooks(Phase::OnRollback, failed_count, &reason, dl)
                .await;
            DeploymentStatus::RolledBack
        };
        ExecutionResult {
            success: false,
            status,
            message: reason,
            steps,
        }
    }

    /// `experimental.enable_predictive_scaling`: one step less concurrency
    /// while CPU or memory rises toward the strategy's budget (projected
    /// [`SCALING_HORIZON_MIN`] ahead), one more while both fall well below it,
    /// between 1 and `resource_limits.<strategy>.concurrency`.
    async fn rescale(
        &self,
        concurrency: &mut usize,
        readings: &mut Vec<crate::monitor::Snapshot>,
        dl: &mut DecisionLog,
    ) {
        use crate::monitor::{Direction, Metric, trend};
        let now = self.metrics().await;
        readings.push(now);
        let mut samples = self.sampler.map(|s| s.snapshot()).unwrap_or_default();
        samples.extend(readings.iter().copied());
        let window = Duration::from_secs(self.engine.config.monitoring.trend_window_s.max(1));
        let most = self.limits.concurrency.max(1) as usize;
        let mut stats = Vec::new();
        for (metric, budget) in [
            (Metric::Cpu, self.limits.cpu_limit * 100.0),
            (Metric::Memory, self.limits.memory_limit * 100.0),
        ] {
            let Some(t) = trend(&samples, metric, window) else {
                return;
            };
            let value = metric.value(&now);
            let projected = value + t.slope_per_min * SCALING_HORIZON_MIN;
            stats.push((
                metric,
                t.direction,
                t.slope_per_min,
                value,
                projected,
                budget,
            ));
        }
        let rising = stats
            .iter()
            .find(|s| s.1 == Direction::Rising && s.4 >= s.5 * 0.9)
            .map(|s| (s.0, s.3, s.2, s.4, s.5));
        let calm = stats
            .iter()
            .all(|s| s.1 != Direction::Rising && s.4 < s.5 * 0.6)
            && stats.iter().any(|s| s.1 == Direction::Falling);
        let (to, why) = match rising {
            Some((metric, value, slope, projected, budget)) if *concurrency > 1 => (
                *concurrency - 1,
                format!(
                    "{} {value:.0}% rising {slope:+.1} points/min toward the budget of {budget:.0}% (projected {projected:.0}% in {SCALING_HORIZON_MIN} min)",
                    metric.name()
                ),
            ),
            None if calm && *concurrency < most => (
                *concurrency + 1,
                format!(
                    "load falling well below the budget (CPU {:.0}%, memory {:.0}%)",
                    now.cpu_percent, now.memory_percent
                ),
            ),
            _ => return,
        };
        let from = u32::try_from(*concurrency).unwrap_or(u32::MAX);
        let to32 = u32::try_from(to).unwrap_or(u32::MAX);
        dl.record(
            "predictive_scaling",
            json!({ "from": from, "to": to32, "reason": why, "cpu_percent": now.cpu_percent, "memory_percent": now.memory_percent }),
        );
        dl.emit(DeploymentEvent::Scaled {
            from,
            to: to32,
            reason: why,
        });
        *concurrency = to;
    }

    fn deadline_message(&self) -> String {
        format!("{} reached: stopped and rolling back", self.deadline_label)
    }

    /// Applies a strategy decision; returns a stop reason for abort/rollback.
    async fn apply(&self, decision: Decision, dl: &mut DecisionLog) -> Option<Stop> {
        match decision {
            Decision::Continue => None,
            Decision::Pause(s) => {
                self.pause(s, "the strategy asked to pause", dl).await;
                None
            }
            Decision::Abort(r) => Some(Stop::Abort(format!("the strategy aborted: {r}"))),
            Decision::Rollback(r) => Some(Stop::Rollback(format!("the strategy rolled back: {r}"))),
        }
    }

    async fn pause(&self, seconds: u32, reason: &str, dl: &mut DecisionLog) {
        let mut d = Duration::from_secs(u64::from(seconds));
        if let Some(left) = self.remaining() {
            d = d.min(left);
        }
        dl.emit(DeploymentEvent::Paused {
            seconds,
            reason: reason.to_string(),
        });
        dl.record(
            "pause",
            json!({ "seconds": d.as_secs_f64(), "reason": reason }),
        );
        tokio::time::sleep(d).await;
    }

    /// Waits while the machine is over the strategy's CPU or memory budget,
    /// asking the strategy each time; returns a stop if it says so or the
    /// deadline passes.
    async fn wait_for_budget(
        &self,
        wave: u32,
        steps: &[StepRecord],
        started: Instant,
        dl: &mut DecisionLog,
    ) -> Option<Stop> {
        // The strategy is asked (and the decision log written) when the wait
        // begins and then every ASK_EVERY; in between the budget is re-checked
        // quietly each second, so a long wait does not flood the log.
        const ASK_EVERY: Duration = Duration::from_secs(10);
        let mut last_asked: Option<Instant> = None;
        loop {
            let m = self.metrics().await;
            let over_cpu = m.cpu_percent > self.limits.cpu_limit * 100.0;
            let over_mem = m.memory_percent > self.limits.memory_limit * 100.0;
            if !over_cpu && !over_mem {
                if last_asked.is_some() {
                    dl.record(
                        "back_under_budget",
                        json!({ "cpu_percent": m.cpu_percent, "memory_percent": m.memory_percent }),
                    );
                }
                return None;
            }
            if self.past_deadline() {
                return Some(Stop::Deadline(self.deadline_message()));
            }
            if last_asked.is_some_and(|t| t.elapsed() < ASK_EVERY) {
                tokio::time::sleep(
                    Duration::from_secs(1).min(self.remaining().unwrap_or(Duration::MAX)),
                )
                .await;
                continue;
            }
            last_asked = Some(Instant::now());
            let msg = format!(
                "over budget: CPU {:.0}% (limit {:.0}%), memory {:.0}% (limit {:.0}%)",
                m.cpu_percent,
                self.limits.cpu_limit * 100.0,
                m.memory_percent,
                self.limits.memory_limit * 100.0
            );
            dl.record("over_budget", json!({ "message": msg }));
            let (p, _) = self
                .progress(ProgressKind::OverBudget, wave, None, &msg, steps, started)
                .await;
            match self.decide(&p, dl).await {
                Decision::Continue => {}
                other => {
                    if let Some(s) = self.apply(other, dl).await {
                        return Some(s);
                    }
                }
            }
        }
    }

    fn dependencies(&self, i: usize, steps: &[StepRecord]) -> Vec<String> {
        self.engine
            .config
            .services
            .get(&steps[i].service)
            .map(|s| s.depends_on.clone())
            .unwrap_or_default()
    }

    /// A dependency (in this deployment) that failed or was skipped.
    fn failed_dependency(
        &self,
        i: usize,
        steps: &[StepRecord],
        in_deployment: &HashSet<String>,
    ) -> Option<String> {
        self.dependencies(i, steps).into_iter().find(|d| {
            in_deployment.contains(d.as_str())
                && steps.iter().any(|s| {
                    s.service == *d
                        && matches!(
                            s.status,
                            StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
                        )
                })
        })
    }

    /// The first pending step whose dependencies are settled (all of their
    /// steps finished, successfully or not).
    fn next_startable(
        &self,
        pending: &[usize],
        steps: &[StepRecord],
        in_deployment: &HashSet<String>,
    ) -> Option<usize> {
        pending.iter().position(|&i| {
            self.dependencies(i, steps).iter().all(|d| {
                !in_deployment.contains(d.as_str())
                    || steps
                        .iter()
                        .filter(|s| s.service == *d)
                        .all(|s| s.status != StepStatus::Pending)
            })
        })
    }

    /// The task that deploys one step: pre-service hooks, deploy command,
    /// health validation, post-service hooks.
    fn step_task(
        &self,
        index: usize,
        rec: &StepRecord,
        wave: u32,
        cancel: watch::Receiver<bool>,
    ) -> impl Future<Output = StepDone> + Send + 'static {
        let service: ServiceConfig = self
            .engine
            .config
            .services
            .get(&rec.service)
            .cloned()
            .unwrap_or_default();
        let name = rec.service.clone();
        let host = rec.host.clone();
        let (env, cwd) = self.command_env(&name, &service, wave, host.as_deref());
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
        let hooks = self.hook_plugins();
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
            let shown = match &host {
                Some(h) => format!("{name}@{h}"),
                None => name.clone(),
            };
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

    /// Rolls back `targets` (already in reverse deploy order).
    async fn rollback(
        &self,
        targets: &[usize],
        steps: &mut [StepRecord],
        reason: &str,
        dl: &mut DecisionLog,
    ) {
        let services: Vec<String> = targets
            .iter()
            .map(|&i| match &steps[i].host {
                Some(h) => format!("{}@{h}", steps[i].service),
                None => steps[i].service.clone(),
            })
            .collect();
        dl.emit(DeploymentEvent::RollbackStarted {
            reason: reason.to_string(),
            services: services.clone(),
        });
        dl.record(
            "rollback_started",
            json!({ "reason": reason, "services": services }),
        );
        let mut results: HashMap<usize, (bool, String)> = HashMap::new();
        for &i in targets {
            let name = steps[i].service.clone();
            let service = self
                .engine
                .config
                .services
                .get(&name)
                .cloned()
                .unwrap_or_default();
            let (ok, message) = match &service.rollback {
                None => (false, "no rollback command configured".to_string()),
                Some(cmd) => {
                    let host = steps[i].host.clone();
                    let (env, cwd) =
                        self.command_env(&name, &service, steps[i].wave, host.as_deref());
                    let remote = self.remote(&service, host.as_deref());
                    let cmd = match &remote {
                        Some(r) => r.wrap(cmd, &env),
                        None => cmd.clone(),
                    };
                    let label = match &host {
                        Some(h) => format!("{name}@{h} rollback"),
                        None => format!("{name} rollback"),
                    };
                    let opts = RunOptions {
                        label: &label,
                        env: &env,
                        cwd: &cwd,
                        timeout: service_timeout(&service),
                        log: self.log,
                        cancel: None,
                    };
                    match exec::run_command(&cmd, &opts).await {
                        Ok(o) if o.success => (true, "rolled back".to_string()),
                        Ok(o) => match &remote {
                            Some(r) => (false, r.describe("rollback", &o)),
                            None => (false, format!("rollback failed: {}", o.describe())),
                        },
                        Err(e) => (false, e.to_string()),
                    }
                }
            };
            dl.emit(DeploymentEvent::StepRolledBack {
                service: name.clone(),
                host: steps[i].host.clone(),
                ok,
                message: message.clone(),
            });
            dl.record(
                "step_rolled_back",
                json!({ "service": name, "host": steps[i].host, "ok": ok, "message": message }),
            );
            results.insert(i, (ok, message));
        }
        for (i, (ok, message)) in results {
            steps[i].rolled_back = Some(ok);
            steps[i].rollback_message = Some(message);
        }
    }
}

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::PreDeployment => "pre-deployment",
        Phase::PostDeployment => "post-deployment",
        Phase::PreService => "pre-service",
        Phase::PostService => "post-service",
        Phase::OnFailure => "on-failure",
        Phase::OnRollback => "on-rollback",
    }
}
