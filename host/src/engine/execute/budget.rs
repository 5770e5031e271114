//! The strategy's resource budget (`resource_limits.<strategy>`): no step
//! starts while the machine is over its CPU or memory limit, and
//! (experimentally) the concurrency follows the load's trend.

use std::time::{Duration, Instant};

use crate::monitor::{Direction, Metric, Snapshot, TrendWindow, assess};
use crate::plugin::ProgressKind;
use crate::report::{Decision, StepRecord};

use super::super::event::DeploymentEvent;
use super::super::log::DecisionLog;
use super::Execution;
use super::scheduler::Stop;

/// How far ahead predictive scaling projects the load trend, in minutes.
const SCALING_HORIZON_MIN: f64 = 1.0;

impl Execution<'_> {
    /// Waits while the machine is over the strategy's CPU or memory budget,
    /// asking the strategy each time; returns a stop if it says so or the
    /// deadline passes.
    pub(super) async fn wait_for_budget(
        &self,
        wave: u32,
        steps: &[StepRecord],
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
                    dl.record(Decision::BackUnderBudget {
                        cpu_percent: m.cpu_percent,
                        memory_percent: m.memory_percent,
                    });
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
            let message = format!(
                "over budget: CPU {:.0}% (limit {:.0}%), memory {:.0}% (limit {:.0}%)",
                m.cpu_percent,
                self.limits.cpu_limit * 100.0,
                m.memory_percent,
                self.limits.memory_limit * 100.0
            );
            dl.record(Decision::OverBudget {
                message: message.clone(),
            });
            if let Some(s) = self
                .consult(ProgressKind::OverBudget, wave, None, &message, steps, dl)
                .await
            {
                return Some(s);
            }
        }
    }

    /// `experimental.enable_predictive_scaling`: one step less concurrency
    /// while CPU or memory rises toward the strategy's budget (projected
    /// [`SCALING_HORIZON_MIN`] ahead), one more while both fall well below it,
    /// between 1 and `resource_limits.<strategy>.concurrency`. The trends
    /// are those of `monitoring.trend_window_s` with its minimums: with
    /// "not enough data" the concurrency stays, and the decision log says
    /// why once (`predictive_scaling_skipped`).
    pub(super) async fn rescale(
        &self,
        concurrency: &mut usize,
        readings: &mut Vec<Snapshot>,
        dl: &mut DecisionLog,
    ) {
        let now = self.metrics().await;
        readings.push(now);
        let mut samples = self.sampler.map(|s| s.snapshot()).unwrap_or_default();
        samples.extend(readings.iter().copied());
        let window = TrendWindow::from_config(&self.config().monitoring);
        let most = self.limits.concurrency.max(1) as usize;
        let mut stats = Vec::new();
        for (metric, budget) in [
            (Metric::Cpu, self.limits.cpu_limit * 100.0),
            (Metric::Memory, self.limits.memory_limit * 100.0),
        ] {
            let report = assess(&samples, metric, &window);
            let Some((direction, slope_per_min)) = report.trend() else {
                let said = dl
                    .entries()
                    .iter()
                    .any(|e| matches!(e.decision, Decision::PredictiveScalingSkipped { .. }));
                if !said {
                    dl.record(Decision::PredictiveScalingSkipped {
                        reason: report.to_string(),
                    });
                }
                return;
            };
            let value = metric.value(&now);
            let projected = value + slope_per_min * SCALING_HORIZON_MIN;
            stats.push((metric, direction, slope_per_min, value, projected, budget));
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
        dl.record(Decision::PredictiveScaling {
            from,
            to: to32,
            reason: why.clone(),
            cpu_percent: now.cpu_percent,
            memory_percent: now.memory_percent,
        });
        dl.emit(DeploymentEvent::Scaled {
            from,
            to: to32,
            reason: why,
        });
        *concurrency = to;
    }
}
