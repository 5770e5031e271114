//! Asking the strategy: every progress event (wave started or finished, a
//! step succeeded or failed, over budget) goes through [`Execution::consult`]:
//! progress → the plugin's `on-progress` → apply the decision.

use std::time::Duration;

use crate::plugin::{Decision as StrategyDecision, Progress, ProgressKind, Step};
use crate::report::{Decision, StepRecord, StepStatus};

use super::super::context::wit_metrics;
use super::super::event::DeploymentEvent;
use super::super::log::DecisionLog;
use super::Execution;
use super::scheduler::Stop;

impl Execution<'_> {
    /// Tells the strategy what happened and applies its answer; a stop
    /// reason for abort or rollback. `wave` is numbered from 1.
    pub(super) async fn consult(
        &self,
        kind: ProgressKind,
        wave: u32,
        step: Option<&Step>,
        message: &str,
        steps: &[StepRecord],
        dl: &mut DecisionLog,
    ) -> Option<Stop> {
        let event = self.progress(kind, wave, step, message, steps).await;
        let decision = self.decide(&event, dl).await;
        self.apply(decision, &event, dl).await
    }

    async fn progress(
        &self,
        kind: ProgressKind,
        wave: u32,
        step: Option<&Step>,
        message: &str,
        steps: &[StepRecord],
    ) -> Progress {
        let m = self.metrics().await;
        let count = |s: StepStatus| {
            u32::try_from(steps.iter().filter(|r| r.status == s).count()).unwrap_or(u32::MAX)
        };
        Progress {
            kind,
            // The WIT contract counts waves from 0.
            wave: wave.saturating_sub(1),
            waves_total: u32::try_from(self.rollout.waves.len()).unwrap_or(u32::MAX),
            step: step.cloned(),
            message: message.to_string(),
            succeeded: count(StepStatus::Succeeded),
            failed: count(StepStatus::Failed) + count(StepStatus::Cancelled),
            remaining: count(StepStatus::Pending),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            metrics: wit_metrics(&m),
        }
    }

    /// Asks the strategy what to do after `event`; a failing call is noted and
    /// treated as `continue` (the failure policy still applies).
    async fn decide(&self, event: &Progress, dl: &mut DecisionLog) -> StrategyDecision {
        match self.plugin.on_progress(self.ctx, event).await {
            Ok(c) => {
                if !matches!(c.value, StrategyDecision::Continue) {
                    dl.record(Decision::StrategyDecision {
                        event: event.kind.to_string(),
                        decision: c.value.to_string(),
                    });
                }
                c.value
            }
            Err(e) => {
                dl.record(Decision::StrategyDecisionFailed {
                    error: e.to_string(),
                });
                StrategyDecision::Continue
            }
        }
    }

    /// Applies a strategy decision taken after `event`; a stop reason for
    /// abort/rollback.
    async fn apply(
        &self,
        decision: StrategyDecision,
        event: &Progress,
        dl: &mut DecisionLog,
    ) -> Option<Stop> {
        match decision {
            StrategyDecision::Continue => None,
            StrategyDecision::Pause(s) => {
                // Why the strategy paused: the event it answered.
                let reason = if event.message.is_empty() {
                    format!("the strategy asked to pause after {}", event.kind)
                } else {
                    format!("the strategy asked to pause: {}", event.message)
                };
                self.pause(s, &reason, dl).await;
                None
            }
            StrategyDecision::Abort(r) => Some(Stop::Abort(format!("the strategy aborted: {r}"))),
            StrategyDecision::Rollback(r) => {
                Some(Stop::Rollback(format!("the strategy rolled back: {r}")))
            }
        }
    }

    /// Waits `seconds`: at most `plugin_defaults.max_pause_s` (a strategy
    /// decides how long, the operator how long at most) and at most until
    /// the deadline.
    pub(super) async fn pause(&self, seconds: u32, reason: &str, dl: &mut DecisionLog) {
        let max = self.config().plugin_defaults.max_pause_s;
        let (seconds, reason) = if seconds > max {
            (
                max,
                format!(
                    "{reason} for {seconds} s, capped at plugin_defaults.max_pause_s = {max} s"
                ),
            )
        } else {
            (seconds, reason.to_string())
        };
        let mut d = Duration::from_secs(u64::from(seconds));
        if let Some(left) = self.remaining() {
            d = d.min(left);
        }
        dl.emit(DeploymentEvent::Paused {
            seconds,
            reason: reason.clone(),
        });
        dl.record(Decision::Pause {
            seconds: d.as_secs_f64(),
            reason,
        });
        tokio::time::sleep(d).await;
    }
}
