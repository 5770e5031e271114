//! A step's metric analysis: after the health checks, wait out the
//! analysis window (`samples` samples `interval_s` apart), query every
//! metric and its baseline over it, judge, and settle the step's verdict
//! under the environment's policy for inconclusive analyses.
//!
//! Why the window is read at its end: one range query per metric gives the
//! `samples` points the judge needs, at the provider's resolution, with one
//! provider call (bounded by the plugin's deadline) rather than one per
//! interval. A provider that cannot answer (Prometheus down, hung) makes
//! the metric inconclusive, never a hang: every call has the plugin's
//! deadline, and the wait ends at once when the deployment is cancelled.
//!
//! A failed analysis fails the step: the scheduler hands it to the
//! strategy's `on-progress` as a failed step whose message names the metric
//! (the WIT contract has no analysis progress kind: wasmtime type-checks a
//! component's types exactly, and a new enum case would break every
//! strategy built before it), and the plan's failure policy rolls back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use crate::analysis::{self as judge, MetricVerdict, Verdict};
use crate::config::{Environment, InconclusivePolicy, placeholders};
use crate::history::PhaseStatus;

use super::super::analysis::{MetricQueries, ServiceAnalysis, first_line, judge_metric, lookup};
use super::super::types::{Confirm, InconclusiveAnalysis, Question};
use super::Execution;

/// The operator's confirm callback and the lock that keeps its questions
/// one at a time (steps run concurrently).
#[derive(Clone)]
pub(crate) struct Asker {
    pub confirm: Arc<Confirm>,
    pub lock: Arc<Mutex<()>>,
}

/// What a step's task needs to analyse its service: owned, so the task can
/// carry it.
#[derive(Clone)]
pub(super) struct StepAnalysis {
    service: String,
    run: ServiceAnalysis,
    environment: Environment,
    policy: InconclusivePolicy,
    asker: Option<Asker>,
}

/// The step's verdict after the policy.
pub(super) struct Settled {
    /// The step may go on.
    pub ok: bool,
    pub status: PhaseStatus,
    /// One line naming the deciding metric.
    pub message: String,
    /// For an inconclusive analysis: the policy and what it decided
    /// (`fail`, `pass`, `ask: yes`, `ask: no`, `ask: not interactive`).
    pub policy: Option<String>,
}

impl Execution<'_> {
    /// The analysis of `service`'s steps, if it has one.
    pub(super) fn step_analysis(&self, service: &str) -> Option<StepAnalysis> {
        let run = self.analysis.get(service)?.clone();
        Some(StepAnalysis {
            service: service.to_string(),
            run,
            environment: self.environment,
            policy: self.config().inconclusive_policy(self.environment),
            asker: self.asker.clone(),
        })
    }
}

impl StepAnalysis {
    /// Waits out the window, then queries and judges every metric; `None`
    /// when the deployment was cancelled meanwhile.
    pub async fn run(
        &self,
        host: Option<&str>,
        env: &[(String, String)],
        cancel: &watch::Receiver<bool>,
    ) -> Option<Vec<MetricVerdict>> {
        let plan = &self.run.plan;
        let wait = Duration::from_millis(plan.duration_ms());
        let mut rx = cancel.clone();
        if *rx.borrow() {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = rx.wait_for(|stop| *stop) => return None,
        }
        let end = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let window = plan.window_ending(end);
        let mut verdicts = Vec::with_capacity(plan.metrics.len());
        for m in &plan.metrics {
            let Some(provider) = self.run.providers.get(&m.name) else {
                continue;
            };
            let fill = |text: &str| {
                placeholders::substitute(text, |name| lookup(env, name))
                    .map_err(|e| format!("metric '{}': {e}", m.name))
            };
            let query = match fill(&m.query) {
                Ok(q) => q,
                Err(why) => {
                    let subject = judge::Subject {
                        service: self.service.clone(),
                        host: host.map(str::to_string),
                        metric: m.name.clone(),
                        provider: m.provider.clone(),
                        window,
                        query: m.query.clone(),
                        baseline_query: m.baseline.clone(),
                    };
                    verdicts.push(MetricVerdict::without_data(subject, why).with_rule(&m.rule));
                    continue;
                }
            };
            let baseline = m.baseline.as_deref().map(|b| {
                fill(b).map_err(|e| {
                    if lookup(env, "ADEPLOY_PREVIOUS_VERSION").is_none() {
                        format!(
                            "no previous version of {} was deployed successfully: nothing to compare with ({e})",
                            self.service
                        )
                    } else {
                        e
                    }
                })
            });
            let v = judge_metric(
                MetricQueries {
                    service: &self.service,
                    host,
                    metric: m,
                    provider,
                    window,
                    query,
                    baseline,
                    env,
                },
                &m.rule,
            )
            .await;
            verdicts.push(v);
        }
        Some(verdicts)
    }

    /// The step's verdict from its metrics': a failing metric fails it; an
    /// inconclusive one is what the environment's policy says (`ask` asks
    /// the operator's confirm callback, and fails without one).
    pub async fn settle(&self, step: &str, verdicts: &[MetricVerdict]) -> Settled {
        let n = verdicts.len();
        match judge::overall(verdicts) {
            Verdict::Pass => Settled {
                ok: true,
                status: PhaseStatus::Succeeded,
                message: format!("analysis passed ({n} metric{})", plural(n)),
                policy: None,
            },
            Verdict::Fail => Settled {
                ok: false,
                status: PhaseStatus::Failed,
                message: format!(
                    "analysis failed: {}",
                    first_line(verdicts, Verdict::Fail).unwrap_or_default()
                ),
                policy: None,
            },
            Verdict::Inconclusive => {
                let why = first_line(verdicts, Verdict::Inconclusive).unwrap_or_default();
                let key = format!(
                    "environments.{}.analysis.inconclusive: {}",
                    self.environment,
                    self.policy.as_str()
                );
                let (ok, decided) = match self.policy {
                    InconclusivePolicy::Pass => (true, "pass".to_string()),
                    InconclusivePolicy::Fail => (false, "fail".to_string()),
                    InconclusivePolicy::Ask => match &self.asker {
                        None => (false, "ask: not interactive".to_string()),
                        Some(asker) => {
                            let question = InconclusiveAnalysis {
                                step: step.to_string(),
                                environment: self.environment,
                                verdicts: verdicts
                                    .iter()
                                    .filter(|v| v.verdict == Verdict::Inconclusive)
                                    .cloned()
                                    .collect(),
                            };
                            let _one_at_a_time = asker.lock.lock().await;
                            let yes = (asker.confirm)(&Question::Inconclusive(&question));
                            (yes, format!("ask: {}", if yes { "yes" } else { "no" }))
                        }
                    },
                };
                let message = match decided.as_str() {
                    "pass" => format!("analysis inconclusive, passed ({key}): {why}"),
                    "fail" => format!("analysis inconclusive ({key}): {why}"),
                    "ask: yes" => format!("analysis inconclusive, passed by the operator: {why}"),
                    "ask: no" => format!("analysis inconclusive, failed by the operator: {why}"),
                    _ => format!(
                        "analysis inconclusive ({key}, and no --interactive prompt to ask): {why}"
                    ),
                };
                Settled {
                    ok,
                    status: if ok {
                        PhaseStatus::Inconclusive
                    } else {
                        PhaseStatus::Failed
                    },
                    message,
                    policy: Some(decided),
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
