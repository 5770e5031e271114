//! The scheduler loop: waves of steps under the plan's concurrency, then
//! success, or the failure path (on-failure hooks, rollback).
//!
//! Why a scheduler loop rather than one task per wave: a step may start only
//! when the services it depends on have settled, no step may start while
//! the machine is over budget, and every completion is a progress event the
//! strategy may answer with pause, abort or rollback. One loop that owns the
//! counters decides all of that in one place; steps themselves run as tasks.

use std::collections::HashSet;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::analysis::{MetricVerdict, Verdict};
use crate::history::DeploymentStatus;
use crate::monitor::Snapshot;
use crate::plugin::{Phase, ProgressKind, RollbackScope, Step};
use crate::report::{Decision, LeftDeployed, StepRecord, StepStatus};

use super::super::event::DeploymentEvent;
use super::super::log::DecisionLog;
use super::step::StepDone;
use super::{Execution, ExecutionResult};

/// Why execution stopped early.
#[derive(Debug, Clone)]
pub(super) enum Stop {
    Abort(String),
    Rollback(String),
    Deadline(String),
}

impl Execution<'_> {
    pub(crate) async fn run(&self, dl: &mut DecisionLog) -> ExecutionResult {
        let mut steps: Vec<StepRecord> = Vec::new();
        for (w, wave) in self.rollout.waves.iter().enumerate() {
            for step in &wave.steps {
                let mut rec =
                    StepRecord::pending(step.service.clone(), step.host.clone(), wave_number(w));
                if let Some(v) = self.versions.get(&step.service) {
                    rec.version.clone_from(&v.version);
                    rec.previous_version.clone_from(&v.previous);
                }
                steps.push(rec);
            }
        }

        if let Err(msg) = self.deployment_hooks(Phase::PreDeployment, 0, "", dl).await {
            let message = format!("pre-deployment hook failed, nothing was deployed: {msg}");
            dl.record(Decision::Aborted {
                reason: message.clone(),
            });
            return ExecutionResult {
                success: false,
                status: DeploymentStatus::Aborted,
                message,
                steps,
                analysis: Vec::new(),
            };
        }

        let mut concurrency = self.rollout.concurrency.min(self.limits.concurrency).max(1) as usize;
        let mut readings: Vec<Snapshot> = Vec::new();
        let mut analysis: Vec<MetricVerdict> = Vec::new();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let mut order: Vec<usize> = Vec::new(); // indices in deploy start order
        let mut stop: Option<Stop> = None;
        let mut failures = 0u32;
        let in_deployment: HashSet<String> = steps.iter().map(|s| s.service.clone()).collect();
        let waves = u32::try_from(self.rollout.waves.len()).unwrap_or(u32::MAX);

        'waves: for (w, plan_wave) in self.rollout.waves.iter().enumerate() {
            let wave = wave_number(w);
            dl.emit(DeploymentEvent::WaveStarted { wave, waves });
            if let Some(s) = self
                .consult(ProgressKind::WaveStarted, wave, None, "", &steps, dl)
                .await
            {
                stop = Some(s);
                break 'waves;
            }
            let mut pending: Vec<usize> = (0..steps.len())
                .filter(|&i| steps[i].wave == wave)
                .collect();
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
                    if let Some(s) = self.wait_for_budget(wave, &steps, dl).await {
                        pending.insert(pos, i);
                        stop = Some(s);
                        break;
                    }
                    steps[i].started_at = Some(Utc::now());
                    order.push(i);
                    dl.emit(DeploymentEvent::StepStarted {
                        service: steps[i].service.clone(),
                        host: steps[i].host.clone(),
                        wave,
                    });
                    // The task keeps the deployment's plugin scope (time
                    // budget, deadline, output limits) for its hooks.
                    running.spawn(crate::plugin::DeploymentScope::propagate(self.step_task(
                        i,
                        &steps[i],
                        cancel_rx.clone(),
                    )));
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
                let mut done = match joined {
                    Ok(d) => d,
                    Err(e) => {
                        dl.record(Decision::StepTaskFailed {
                            error: e.to_string(),
                        });
                        continue;
                    }
                };
                for v in &done.analysis {
                    dl.record(Decision::AnalysisVerdict {
                        service: v.service.clone(),
                        host: v.host.clone(),
                        metric: v.metric.clone(),
                        provider: v.provider.clone(),
                        verdict: v.verdict,
                        reason: v.reason.clone(),
                        policy: (v.verdict == Verdict::Inconclusive)
                            .then(|| done.analysis_policy.clone())
                            .flatten(),
                    });
                }
                analysis.extend(done.analysis.iter().cloned());
                let rec = &mut steps[done.index];
                rec.seconds = done.seconds;
                rec.message = done.message.clone();
                rec.phases = std::mem::take(&mut done.phases);
                rec.container = done.container.take();
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
                dl.record(Decision::StepFinished {
                    service: rec.service.clone(),
                    host: rec.host.clone(),
                    wave,
                    status: rec.status,
                    message: done.message.clone(),
                    seconds: done.seconds,
                });
                if !done.ok {
                    failures += 1;
                }
                if stop.is_none() && self.config().experimental.enable_predictive_scaling {
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
                    if let Some(s) = self
                        .consult(kind, wave, Some(&step), &done.message, &steps, dl)
                        .await
                    {
                        stop = Some(s);
                    } else if failures > self.rollout.failure.max_failures {
                        let max_failures = self.rollout.failure.max_failures;
                        dl.record(Decision::FailurePolicy {
                            failures,
                            max_failures,
                        });
                        stop = Some(Stop::Rollback(format!(
                            "{failures} failed step(s), more than the plan's max_failures {max_failures}"
                        )));
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
            if let Some(s) = self
                .consult(ProgressKind::WaveFinished, wave, None, "", &steps, dl)
                .await
            {
                stop = Some(s);
                break;
            }
            if plan_wave.pause_after_s > 0 && w + 1 < self.rollout.waves.len() {
                self.pause(
                    plan_wave.pause_after_s,
                    "the plan pauses after this wave",
                    dl,
                )
                .await;
            }
        }

        let all_ok = steps.iter().all(|s| s.status == StepStatus::Succeeded);
        if stop.is_none() && all_ok {
            match self
                .deployment_hooks(Phase::PostDeployment, 0, "", dl)
                .await
            {
                Err(msg) => {
                    stop = Some(Stop::Rollback(format!(
                        "post-deployment hook failed: {msg}"
                    )));
                }
                Ok(()) => {
                    let n = steps.len();
                    let message = if analysis.is_empty() {
                        format!("{n} step(s) deployed and healthy")
                    } else {
                        format!(
                            "{n} step(s) deployed and healthy; {} metric verdict(s): {}",
                            analysis.len(),
                            crate::analysis::overall(&analysis)
                        )
                    };
                    return ExecutionResult {
                        success: true,
                        status: DeploymentStatus::Succeeded,
                        message,
                        steps,
                        analysis,
                    };
                }
            }
        }
        let mut result = self.fail(stop, order, steps, dl).await;
        result.analysis = analysis;
        result
    }

    /// The failure path: skip what never started, run the on-failure hooks,
    /// roll back what the scope selects, run the on-rollback hooks.
    async fn fail(
        &self,
        stop: Option<Stop>,
        order: Vec<usize>,
        mut steps: Vec<StepRecord>,
        dl: &mut DecisionLog,
    ) -> ExecutionResult {
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
            let left = LeftDeployed::of(&steps);
            if left.is_empty() {
                DeploymentStatus::RolledBack
            } else {
                // Something is left deployed: not a rollback, an alert.
                for l in &left {
                    dl.emit(DeploymentEvent::Alert {
                        message: format!(
                            "rollback of {} failed, it is left deployed{}: {}",
                            l.step,
                            l.version
                                .as_deref()
                                .map(|v| format!(" at {v}"))
                                .unwrap_or_default(),
                            l.message
                        ),
                    });
                }
                dl.record(Decision::RollbackFailed {
                    left_deployed: left,
                });
                DeploymentStatus::RollbackFailed
            }
        };
        let message = if status == DeploymentStatus::RollbackFailed {
            let left: Vec<String> = LeftDeployed::of(&steps)
                .into_iter()
                .map(|l| l.step)
                .collect();
            format!(
                "{reason}; rollback failed, left deployed: {}",
                left.join(", ")
            )
        } else {
            reason
        };
        ExecutionResult {
            success: false,
            status,
            message,
            steps,
            analysis: Vec::new(),
        }
    }

    fn dependencies(&self, i: usize, steps: &[StepRecord]) -> Vec<String> {
        self.config()
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
}

/// The number of the wave at `index` in the plan: waves are numbered from 1.
fn wave_number(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1)
}
