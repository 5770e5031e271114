//! Phase three of a deployment: [`Engine::record`] turns an [`Executed`]
//! deployment into its [`DeploymentOutcome`]: the last decisions, alerts,
//! the report file, the history record, and a retraining of the strategy
//! model when it is due (in the background, after the run lock is released).
//! A dry run gets its report and writes nothing.

use chrono::{Local, Timelike, Utc};

use crate::config::Environment;
use crate::ml::{FailurePattern, Outcome};
use crate::monitor::Snapshot;
use crate::report::{self, Decision, Report, ReportInput};

use super::Engine;
use super::error::EngineError;
use super::event::DeploymentEvent;
use super::execute::{Executed, Run};
use super::learn;
use super::log::DecisionLog;
use super::preflight::Planned;
use super::types::DeploymentOutcome;

impl Engine {
    /// Writes what happened and returns the outcome.
    pub(super) fn record(&self, executed: Executed) -> Result<DeploymentOutcome, EngineError> {
        let Executed { mut planned, run } = executed;
        let Some(run) = run else {
            return Ok(dry_run_outcome(&planned));
        };
        let Run {
            lock,
            history,
            mut record,
            flushed,
            log_path,
            result,
            samples,
        } = run;
        let p = &mut planned;
        let (success, status) = (result.success, result.status);
        p.log.record(Decision::DeploymentFinished {
            success,
            status,
            message: result.message.clone(),
        });
        record.finished_at = Some(Utc::now());
        record.status = status;
        record.success = Some(success);
        record.duration_s = Some(p.started.elapsed().as_secs_f64());
        record.summary = Some(result.message.clone());
        record.steps = result.steps;

        // Learn: this outcome joins the history the analyses read.
        let mut outcomes = std::mem::take(&mut p.outcomes);
        if let Some(o) = learn::outcome_of(&record) {
            outcomes.insert(0, o);
        }
        let alerts = self.alerts(&outcomes, p.environment, &p.req.services, &mut p.log);
        let drift = learn::drift_detected_by(&outcomes, &p.id, &self.config.ml_config);
        for e in &drift {
            tracing::warn!("change detected: {}", e.summary());
            p.log
                .record(Decision::DriftDetected(report::DriftDetection {
                    summary: e.summary(),
                    response: learn::drift_response(e),
                    event: e.clone(),
                }));
        }
        let retrain = learn::retrain_due(
            p.training_samples + 1,
            &p.model_state,
            &self.config.ml_config,
            &drift,
        );
        if let Some(reason) = &retrain {
            p.log.record(Decision::ModelRetraining {
                reason: reason.clone(),
                in_background: true,
            });
        }
        let patterns = relevant_patterns(&outcomes, p, &p.baseline);
        let report = p.log.redactor().redact_value(&Report::build(ReportInput {
            duration: p.started.elapsed(),
            success,
            status,
            decisions: p.log.entries(),
            steps: &record.steps,
            samples: &samples,
            patterns: &patterns,
            alerts: &alerts,
            ..report_base(p)
        }));
        let report_path = self
            .state_dir
            .join("deployment_reports")
            .join(format!("deployment_report_{}.json", p.id));
        report::write_atomically(&report_path, &report).map_err(|source| EngineError::Io {
            what: format!("cannot write {}", report_path.display()),
            source,
        })?;
        record.report_path = Some(report_path.clone());
        history.append_decisions(&p.id, &p.log.records_from(flushed))?;
        history.append_samples(&p.id, &samples.iter().map(Into::into).collect::<Vec<_>>())?;
        let record = p.log.redactor().redact_value(&record);
        history.put_deployment(&record)?;
        drop(lock);
        if let Some(reason) = retrain {
            // Training takes up to seconds; the deployment is finished and
            // recorded, so it runs beside whatever the caller does next.
            // `wait_for_learning` collects it.
            let state_dir = self.state_dir.clone();
            let ml = self.config.ml_config.clone();
            let after = p.id.clone();
            let task = tokio::task::spawn_blocking(move || {
                learn::retrain_logged(&state_dir, &ml, after, reason)
            });
            if let Ok(mut tasks) = self.learning.lock() {
                tasks.push(task);
            }
        }
        Ok(DeploymentOutcome {
            id: planned.id,
            status,
            success,
            report,
            report_path: Some(report_path),
            log_path: Some(log_path),
        })
    }

    /// Consecutive failures of a service or in the environment (newest
    /// outcome first, this deployment included) at or over
    /// `alerts.consecutive_failures`: a warning, a decision, and the
    /// messages the report recommends on.
    fn alerts(
        &self,
        outcomes: &[Outcome],
        environment: Environment,
        services: &[String],
        log: &mut DecisionLog,
    ) -> Vec<String> {
        let n = self.config.alerts.consecutive_failures as usize;
        if n == 0 {
            return Vec::new();
        }
        let streaks = crate::ml::streaks(outcomes, environment, services);
        let mut alerts = Vec::new();
        if streaks.environment >= n {
            alerts.push(format!(
                "{} consecutive failed deployments in {environment}",
                streaks.environment
            ));
        }
        for (service, k) in &streaks.services {
            if *k >= n {
                alerts.push(format!("{service} failed in {k} consecutive deployments"));
            }
        }
        for a in &alerts {
            tracing::warn!("alert: {a} (alerts.consecutive_failures = {n})");
            log.emit(DeploymentEvent::Alert { message: a.clone() });
        }
        if !alerts.is_empty() {
            log.record(Decision::Alert {
                alerts: alerts.clone(),
                threshold: n,
                streaks,
            });
        }
        alerts
    }
}

/// A dry run's outcome: the report of the decisions and the plan; nothing
/// was written.
fn dry_run_outcome(p: &Planned) -> DeploymentOutcome {
    let patterns = relevant_patterns(&p.outcomes, p, &p.baseline);
    let report = p.log.redactor().redact_value(&Report::build(ReportInput {
        duration: p.started.elapsed(),
        decisions: p.log.entries(),
        samples: std::slice::from_ref(&p.baseline),
        patterns: &patterns,
        ..report_base(p)
    }));
    DeploymentOutcome {
        id: p.id.clone(),
        status: crate::history::DeploymentStatus::Succeeded,
        success: true,
        report,
        report_path: None,
        log_path: None,
    }
}

/// What the report shares on both paths; each adds what happened (a dry
/// run: nothing, so it "succeeded" with no steps).
fn report_base(p: &Planned) -> ReportInput<'_> {
    ReportInput {
        id: &p.id,
        started_at: p.started_at,
        duration: std::time::Duration::ZERO,
        success: true,
        status: crate::history::DeploymentStatus::Succeeded,
        strategy: &p.strategy,
        environment: p.environment,
        services: &p.req.services,
        dry_run: p.req.dry_run,
        decisions: &[],
        plan: Some(&p.view),
        steps: &[],
        samples: &[],
        past: &p.past,
        prediction: p.prediction.as_ref(),
        patterns: &[],
        alerts: &[],
    }
}

/// The failure patterns of `outcomes` that match this deployment.
fn relevant_patterns(outcomes: &[Outcome], p: &Planned, metrics: &Snapshot) -> Vec<FailurePattern> {
    let all = crate::ml::failure_patterns(outcomes);
    crate::ml::relevant(
        &all,
        &p.strategy,
        p.environment,
        &p.req.services,
        Some(metrics.cpu_percent),
        Local::now().hour(),
    )
    .into_iter()
    .cloned()
    .collect()
}
