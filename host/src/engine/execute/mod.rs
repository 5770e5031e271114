//! Phase two of a deployment: [`execute`] runs a [`Planned`] deployment and
//! returns it [`Executed`].
//!
//! Before the first step: the operator's confirmation, the approval in the
//! audit log, the deployment lock (waiting for another run's is announced
//! as an event; see `take_lock`), recovery of deployments a crash cut off,
//! the deployment log and the `running` record. Then one [`Execution`]: waves of
//! steps under the strategy's concurrency and resource budget, health
//! checks, the strategy's on-progress decisions, hooks, the deadline, and
//! rollback. A dry run executes nothing.
//!
//! The parts: `scheduler.rs` (the loop over waves and steps), `step.rs` (one
//! step's task: hooks, deploy, health; fleet hosts over ssh),
//! `progress.rs` (asking the strategy: progress → decide → apply),
//! `budget.rs` (the CPU/memory budget, predictive scaling), `hooks.rs`
//! (deployment-level hooks), `rollback.rs`.
//!
//! Why [`Settings`] rather than the engine: execution needs the config, the
//! state directory, the hook plugins and the metrics; it cannot reach back
//! into the engine's decision flow.

mod analysis;
mod budget;
pub(crate) mod container;
mod hooks;
mod progress;
mod rollback;
mod scheduler;
mod step;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Local;
use serde_json::json;

use crate::analysis::MetricVerdict;
use crate::config::{Config, Environment, ResourceLimits};
use crate::exec::DeploymentLog;
use crate::history::{
    DeploymentLock, DeploymentRecord, DeploymentStatus, HistoryBackend, HistoryStore, LockRequest,
    LockWait,
};
use crate::ml::Streaks;
use crate::monitor::{
    ProcessSample, ProcessTracker, ProcessTreeSampler, Sampler, Snapshot, TrackingMode,
};
use crate::plugin::{DeploymentContext, Plugin, Rollout};
use crate::report::{Decision, StepRecord};

use super::analysis::ServiceAnalysis;
use super::error::EngineError;
use super::event::DeploymentEvent;
use super::log::{DecisionLog, audit};
use super::preflight::Planned;
use super::preflight::versions::ServiceVersion;
use super::types::{DeploymentSize, Metering, Question};
use analysis::Asker;

/// What execution needs from the engine.
pub(crate) struct Settings<'a> {
    /// The history (`None` for a dry run, which writes nothing).
    pub history: Option<&'a HistoryStore>,
    pub config: &'a Config,
    pub state_dir: &'a Path,
    /// The hook plugins, run at every phase.
    pub hooks: Vec<Arc<Plugin>>,
    pub metering: &'a Metering,
    /// How long to wait for another run's deployment lock.
    pub lock_wait: Duration,
}

/// A deployment after execution (or a dry run, which executed nothing).
pub(crate) struct Executed {
    pub planned: Planned,
    /// `None` for a dry run.
    pub run: Option<Run>,
}

/// What a real run holds until it is recorded.
pub(crate) struct Run {
    /// Held until the record is written.
    pub lock: DeploymentLock,
    pub history: HistoryStore,
    /// The `running` record, to be finished.
    pub record: DeploymentRecord,
    /// Decisions already in the history.
    pub flushed: usize,
    pub log_path: PathBuf,
    pub result: ExecutionResult,
    /// The machine's load during the run (the baseline when not measured).
    pub samples: Vec<Snapshot>,
    /// The deployment's own processes during the run, and how they were
    /// known.
    pub processes: Vec<ProcessSample>,
    pub tracking: TrackingMode,
    /// The machine's memory, for the own processes' share of it.
    pub memory_total_bytes: u64,
}

/// How execution ended.
pub(crate) struct ExecutionResult {
    pub success: bool,
    pub status: DeploymentStatus,
    pub message: String,
    pub steps: Vec<StepRecord>,
    /// Every metric verdict of every step's analysis, in step order.
    pub analysis: Vec<MetricVerdict>,
}

/// Runs `planned` (nothing for a dry run).
pub(crate) async fn execute(
    mut planned: Planned,
    s: &Settings<'_>,
) -> Result<Executed, EngineError> {
    if planned.req.dry_run {
        planned.log.record(Decision::DryRun {
            executed: false,
            reason: "--dry-run: nothing was deployed".into(),
        });
        return Ok(Executed { planned, run: None });
    }
    let Some(history) = s.history else {
        return Err(EngineError::Io {
            what: "a deployment needs its history".into(),
            source: std::io::Error::other("the engine passed none"),
        });
    };
    let history = history.clone();
    approve(&mut planned, &history).await?;

    // From here on the deployment is recorded. The lock comes first: the
    // `running` record is written by the run that holds it.
    let lock = take_lock(&mut planned, &history, s.lock_wait).await?;
    let recovered = history.recover_interrupted(&lock).await?;
    remove_stale_temp_files(&s.state_dir.join("deployment_reports"));
    if !recovered.is_empty() {
        planned.log.record(Decision::RecoveredInterrupted {
            deployments: recovered,
        });
    }
    let deployment_log = DeploymentLog::create(&s.state_dir.join("deployment_logs"), Local::now())
        .map_err(|source| EngineError::Io {
            what: "cannot create the deployment log".into(),
            source,
        })?
        .with_redactor(planned.log.redactor().clone());
    let req = &planned.req;
    let record = DeploymentRecord {
        environment: planned.environment.as_str().to_string(),
        strategy: planned.strategy.clone(),
        services: req.services.clone(),
        deployment_size: req.size.as_str().to_string(),
        log_path: Some(deployment_log.path().to_path_buf()),
        features: Some(planned.features.clone()),
        ..DeploymentRecord::running(planned.id.clone(), planned.started_at)
    };
    history.put_deployment(&record).await?;
    history
        .append_decisions(&planned.id, &planned.log.records_from(0))
        .await?;
    let flushed = planned.log.entries().len();

    // The deployment's own processes: everything its commands start.
    let tracker = Arc::new(ProcessTracker::new(&planned.id));
    let initial_tracking = tracker.mode();
    planned
        .log
        .record(Decision::ProcessTracking(initial_tracking.clone()));
    let interval = Duration::from_millis(s.config.monitoring.sample_interval_ms.max(10));
    let process_sampler = ProcessTreeSampler::start(tracker.clone(), interval);
    let asker = planned.confirm.clone().map(|confirm| Asker {
        confirm,
        lock: Arc::new(tokio::sync::Mutex::new(())),
    });
    let sampler = s.metering.measures_the_machine().then(|| {
        let m = &s.config.monitoring;
        Sampler::start_with_latency(
            s.metering.monitor.clone(),
            Duration::from_millis(m.sample_interval_ms.max(10)),
            m.latency_endpoints.clone(),
            Duration::from_millis(m.latency_timeout_ms),
        )
    });
    let ssh_control = ssh_control_dir(s, &req.services, &mut planned.log);
    // --max-time, else thresholds.max_deployment_time, is a hard deadline.
    let (limit, deadline_label) = match super::types::deadline_label(req, s.config) {
        Some((d, label)) => (Some(d), label),
        None => (None, String::new()),
    };
    let run = Execution {
        settings: s,
        started: Instant::now(),
        id: &planned.id,
        strategy: &planned.strategy,
        environment: planned.environment,
        size: req.size,
        plugin: &planned.plugin,
        ctx: &planned.ctx,
        rollout: &planned.rollout,
        limits: &planned.limits,
        deadline: limit.map(|d| planned.started + d),
        deadline_label: &deadline_label,
        log: &deployment_log,
        streaks: &planned.streaks,
        sampler: sampler.as_ref(),
        ssh_control: ssh_control.as_deref(),
        service_env: &planned.service_env,
        versions: &planned.versions,
        tracker: &tracker,
        analysis: &planned.analysis,
        asker,
    };
    let result = run.run(&mut planned.log).await;
    if !lock.is_held() {
        planned.log.record(Decision::LockLost {
            message: format!(
                "the deployment lock was lost during the deployment (the connection to {} went away); the deployment went on as planned, but other runs of {} in {} could start meanwhile",
                history.location(),
                req.services.join(", "),
                planned.environment
            ),
        });
    }
    let samples = match sampler {
        Some(s) => s.stop().await,
        None => vec![planned.baseline],
    };
    let processes = process_sampler.stop().await;
    let tracking = tracker.mode();
    if tracking != initial_tracking {
        // A command could not join the cgroup: the rest was measured
        // through the process tree.
        planned
            .log
            .record(Decision::ProcessTracking(tracking.clone()));
    }
    drop(tracker);
    Ok(Executed {
        run: Some(Run {
            lock,
            history,
            record,
            flushed,
            log_path: deployment_log.path().to_path_buf(),
            result,
            samples,
            processes,
            tracking,
            memory_total_bytes: s.metering.monitor.total_memory_bytes(),
        }),
        planned,
    })
}

/// Takes the deployment lock of this deployment's services in its
/// environment (see `history::DeploymentLock`: with a shared PostgreSQL
/// history, across machines), waiting up to `wait`. The wait is announced
/// on the event channel (who holds it, since when) and, once the lock is
/// taken, recorded as a `lock_waited` decision; a wait that runs out is
/// [`HistoryError::DeploymentBusy`](crate::history::HistoryError) (or
/// `Busy` for the embedded history), naming the holder.
async fn take_lock(
    planned: &mut Planned,
    history: &HistoryStore,
    wait: Duration,
) -> Result<DeploymentLock, EngineError> {
    let request = LockRequest {
        environment: planned.environment.as_str().to_string(),
        services: planned.req.services.clone(),
        deployment_id: planned.id.clone(),
    };
    let start = Instant::now();
    let mut last: Option<LockWait> = None;
    let lock = {
        let log = &planned.log;
        let mut on_wait = |w: &LockWait| {
            tracing::info!("{w}");
            log.emit(DeploymentEvent::WaitingForLock(w.clone()));
            last = Some(w.clone());
        };
        history
            .lock_deployment(&request, wait, &mut on_wait)
            .await?
    };
    if let Some(w) = last {
        planned.log.record(Decision::LockWaited {
            services: if w.services.is_empty() {
                request.services
            } else {
                w.services
            },
            held_by: w.holder.map(|h| h.to_string()),
            waited_s: start.elapsed().as_secs_f64(),
        });
    }
    Ok(lock)
}

/// The operator's confirmation (`--interactive`), and an approval recorded
/// where the environment needs one.
async fn approve(planned: &mut Planned, history: &HistoryStore) -> Result<(), EngineError> {
    let details = |approval: Option<&crate::report::Approval>| {
        let mut d = json!({
            "deployment_id": planned.id,
            "environment": planned.environment,
            "services": planned.req.services,
            "strategy": planned.strategy,
        });
        if let (Some(a), Some(map)) = (approval, d.as_object_mut()) {
            map.insert("approval".into(), json!(a));
        }
        d
    };
    if let Some(confirm) = &planned.confirm
        && !confirm(&Question::Plan(&planned.view))
    {
        if planned.needs_approval {
            audit(history, "deployment_declined", details(None)).await;
        }
        return Err(EngineError::Declined);
    }
    if planned.needs_approval
        && let Some(approval) = planned.req.approval.clone()
    {
        let audited = details(Some(&approval));
        planned.log.record(Decision::Approved { approval });
        audit(history, "deployment_approved", audited).await;
    }
    Ok(())
}

/// Fleet services reuse one ssh connection per host: the sockets live in a
/// private directory of the state dir (`None`: no reuse).
fn ssh_control_dir(
    s: &Settings<'_>,
    services: &[String],
    log: &mut DecisionLog,
) -> Option<PathBuf> {
    let fleet = services
        .iter()
        .any(|name| !s.config.hosts_of(name).is_empty());
    if !fleet || !s.config.inventory.ssh.reuse_connections {
        return None;
    }
    let dir = s.state_dir.join("ssh");
    match crate::fs::private_dir(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            log.record(Decision::SshConnectionReuse {
                enabled: false,
                reason: format!("cannot create {}: {e}", dir.display()),
            });
            None
        }
    }
}

/// One deployment's execution: what the scheduler, the steps, the hooks and
/// the rollback read. Owns nothing; the counters live in the scheduler.
pub(crate) struct Execution<'a> {
    pub settings: &'a Settings<'a>,
    /// When execution began (progress reports the time since).
    pub started: Instant,
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
    pub streaks: &'a Streaks,
    /// The background sampler, when the machine is measured.
    pub sampler: Option<&'a Sampler>,
    /// Where ssh ControlMaster sockets live (`None`: no connection reuse).
    pub ssh_control: Option<&'a Path>,
    /// Each service's `env`, secrets resolved.
    pub service_env: &'a HashMap<String, Vec<(String, String)>>,
    /// Each service's version and the one it replaces.
    pub versions: &'a BTreeMap<String, ServiceVersion>,
    /// Counts every command adeploy starts as the deployment's own.
    pub tracker: &'a Arc<ProcessTracker>,
    /// The metric analysis of each service that has one.
    pub analysis: &'a BTreeMap<String, ServiceAnalysis>,
    /// Asks the operator (`--interactive`) about inconclusive analyses.
    pub asker: Option<Asker>,
}

impl Execution<'_> {
    fn config(&self) -> &Config {
        self.settings.config
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn deadline_message(&self) -> String {
        format!("{} reached: stopped and rolling back", self.deadline_label)
    }

    async fn metrics(&self) -> Snapshot {
        self.settings.metering.sample().await
    }
}

/// Removes the temporary files of report writes cut off by a crash (a report
/// is written to `.tmpXXXX` and renamed): with the run lock held, no other
/// process is writing one.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
