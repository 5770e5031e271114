//! Rollback: each target's `rollback` command, in reverse start order, on
//! the host where its deploy ran.

use std::collections::HashMap;

use crate::exec::{self, RunOptions};
use crate::history::{PhaseKind, PhaseStatus, StepPhase};
use crate::report::{Decision, StepRecord};

use super::super::context::service_timeout;
use super::super::event::DeploymentEvent;
use super::super::log::DecisionLog;
use super::Execution;
use super::container::ContainerJob;
use super::step::PhaseClock;

impl Execution<'_> {
    /// Rolls back `targets` (already in reverse deploy order).
    pub(super) async fn rollback(
        &self,
        targets: &[usize],
        steps: &mut [StepRecord],
        reason: &str,
        dl: &mut DecisionLog,
    ) {
        let services: Vec<String> = targets.iter().map(|&i| steps[i].label()).collect();
        dl.emit(DeploymentEvent::RollbackStarted {
            reason: reason.to_string(),
            services: services.clone(),
        });
        dl.record(Decision::RollbackStarted {
            reason: reason.to_string(),
            services,
        });
        let mut results: HashMap<usize, (bool, String, StepPhase)> = HashMap::new();
        for &i in targets {
            let clock = PhaseClock::start();
            let name = steps[i].service.clone();
            let host = steps[i].host.clone();
            let service = self
                .config()
                .services
                .get(&name)
                .cloned()
                .unwrap_or_default();
            let job = ContainerJob::of(
                self.config(),
                &name,
                &service,
                host.as_deref(),
                self.id,
                self.ssh_control,
            );
            let wave = steps[i].wave;
            let step_name = steps[i].label();
            let (ok, message) = match (&service.rollback, job, steps[i].container.as_mut()) {
                (_, Some(job), Some(state)) => {
                    let (env, cwd) = self.command_env(&name, &service, wave, host.as_deref());
                    let label = format!("{step_name} rollback");
                    let opts = RunOptions {
                        label: &label,
                        env: &env,
                        cwd: &cwd,
                        timeout: service_timeout(&service),
                        log: self.log,
                        cancel: None,
                        tracker: Some(self.tracker),
                    };
                    match job.rollback(state, &opts).await {
                        Ok(m) => (true, format!("rolled back: {m}")),
                        Err(e) => (false, format!("rollback failed: {e}")),
                    }
                }
                (_, Some(_), None) => (true, "nothing was started".to_string()),
                (None, None, _) => (false, "no rollback command configured".to_string()),
                (Some(cmd), None, _) => {
                    let (env, cwd) =
                        self.command_env(&name, &service, steps[i].wave, host.as_deref());
                    let remote = self.remote(&service, host.as_deref());
                    let cmd = match &remote {
                        Some(r) => r.wrap(cmd, &env),
                        None => cmd.clone(),
                    };
                    let label = format!("{} rollback", steps[i].label());
                    let opts = RunOptions {
                        label: &label,
                        env: &env,
                        cwd: &cwd,
                        timeout: service_timeout(&service),
                        log: self.log,
                        cancel: None,
                        tracker: Some(self.tracker),
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
                host: host.clone(),
                ok,
                message: message.clone(),
            });
            dl.record(Decision::StepRolledBack {
                service: name,
                host,
                ok,
                message: message.clone(),
            });
            let phase = clock.end(
                PhaseKind::Rollback,
                if ok {
                    PhaseStatus::RolledBack
                } else {
                    PhaseStatus::RollbackFailed
                },
                Some(message.clone()),
            );
            results.insert(i, (ok, message, phase));
        }
        for (i, (ok, message, phase)) in results {
            steps[i].rolled_back = Some(ok);
            steps[i].rollback_message = Some(message);
            steps[i].phases.push(phase);
        }
    }
}
