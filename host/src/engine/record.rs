//! Phase three of a deployment: [`Engine::record`] turns an [`Executed`]
//! deployment into its [`DeploymentOutcome`]: the last decisions, alerts,
//! the report file, the history record, and a retraining of the strategy
//! model when it is due (in the background, after the deployment lock is
//! released, under the history's retraining lock). A dry run gets its
//! report and writes nothing.

use chrono::{Local, Timelike, Utc};
use serde_json::json;

use crate::config::Environment;
use crate::history::{HistoryBackend, HistoryLocation, HistoryStore};
use crate::ml::FailurePattern;
use crate::monitor::Snapshot;
use crate::report::{self, Decision, OwnProcesses, Report, ReportInput};

use super::Engine;
use super::error::EngineError;
use super::event::DeploymentEvent;
use super::execute::{Executed, Run};
use super::learn::{self, Past};
use super::log::{DecisionLog, audit};
use super::preflight::Planned;
use super::types::DeploymentOutcome;

impl Engine {
    /// Writes what happened and returns the outcome.
    pub(super) async fn record(
        &self,
        executed: Executed,
    ) -> Result<DeploymentOutcome, EngineError> {
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
            processes,
            tracking,
            memory_total_bytes,
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
            outcomes.push_newest(o);
        }
        let alerts = self.alerts(
            p.config.alerts.consecutive_failures,
            &outcomes,
            p.environment,
            &p.req.services,
            &mut p.log,
        );
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
            analysis: &result.analysis,
            processes: Some(OwnProcesses {
                tracking: &tracking,
                samples: &processes,
                memory_total_bytes,
            }),
            ..report_base(p)
        }));
        let report_path = self.report_path(&p.id);
        report::write_atomically(&report_path, &report).map_err(|source| EngineError::Io {
            what: format!("cannot write {}", report_path.display()),
            source,
        })?;
        record.report_path = Some(report_path.clone());
        history
            .append_decisions(&p.id, &p.log.records_from(flushed))
            .await?;
        history
            .append_samples(&p.id, &samples.iter().map(Into::into).collect::<Vec<_>>())
            .await?;
        let record = p.log.redactor().redact_value(&record);
        history.put_deployment(&record).await?;
        // Recorded: what the container steps replaced is no longer needed
        // for a rollback (still under the lock, so no other run is
        // deploying these services).
        super::execute::container::retire_replaced(
            &p.config,
            &self.state_dir,
            &p.id,
            &record.steps,
        )
        .await;
        lock.release().await;
        let offline = journaled(&history, &p.log);
        if offline && retrain.is_some() {
            // Training reads the whole history, which is out of reach now;
            // the next deployment that reaches it retrains.
            tracing::warn!("the strategy model is not retrained while the history is unreachable");
        }
        if !offline {
            self.keep_samples_compact(&history, &p.id);
        }
        if let Some(reason) = retrain.filter(|_| !offline) {
            // Training takes up to seconds; the deployment is finished and
            // recorded, so it runs beside whatever the caller does next.
            // `wait_for_learning` collects it. Only one process retrains
            // at a time (the history's retraining lock).
            let ml = self.config.ml_config.clone();
            let after = p.id.clone();
            let seen = p.model_state.model().map(|m| m.meta().trained_at);
            let task = tokio::spawn(async move {
                let r = learn::retrain_if_due(&history, &ml, after, reason, seen).await?;
                if let Ok(meta) = &r.result {
                    // Every retraining is in the audit log, so the history
                    // page plots the model's accuracy without reading every
                    // deployment's decisions.
                    audit(
                        &history,
                        "model_retrain",
                        json!({
                            "trained_at": meta.trained_at,
                            "samples": meta.samples,
                            "oob_accuracy": meta.oob_accuracy,
                            "trigger": "background",
                            "after": r.after,
                            "reason": r.reason,
                        }),
                    )
                    .await;
                }
                Some(r)
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

    /// `history.retention`: metric samples of deployments older than it are
    /// downsampled to `history.downsampled_samples`. It scans the history,
    /// so it runs after one deployment in [`DOWNSAMPLE_EVERY`] (chosen by
    /// the deployment id, so runners on a shared history take turns), not
    /// after each.
    /// It runs in the background beside a retraining (`wait_for_learning`
    /// collects both); cut short, it resumes next time (each deployment's
    /// samples are replaced in one transaction).
    fn keep_samples_compact(&self, history: &HistoryStore, id: &str) {
        if !downsample_turn(id) {
            return;
        }
        let settings = &self.config.history;
        let Some(before) = chrono::Duration::from_std(settings.retention())
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
        else {
            return;
        };
        let keep = settings.downsampled_samples.max(1) as usize;
        let history = history.clone();
        let task = tokio::spawn(async move {
            match history.downsample(before, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    deployments = n,
                    "downsampled the metric samples of deployments older than history.retention"
                ),
                Err(e) => tracing::warn!("cannot downsample old metric samples: {e}"),
            }
            None
        });
        if let Ok(mut tasks) = self.learning.lock() {
            tasks.push(task);
        }
    }

    /// Consecutive failures of a service or in the environment (newest
    /// outcome first, this deployment included) at or over
    /// `alerts.consecutive_failures` (`threshold`, the environment's): a
    /// warning, a decision, and the messages the report recommends on.
    fn alerts(
        &self,
        threshold: u32,
        outcomes: &Past,
        environment: Environment,
        services: &[String],
        log: &mut DecisionLog,
    ) -> Vec<String> {
        let n = threshold as usize;
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

/// One deployment in this many downsamples old metric samples.
const DOWNSAMPLE_EVERY: u64 = 50;

fn downsample_turn(id: &str) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish().is_multiple_of(DOWNSAMPLE_EVERY)
}

/// Whether this deployment's records went to the local journal (the shared
/// history's database out of reach); if so, says so on the event channel.
fn journaled(history: &HistoryStore, log: &DecisionLog) -> bool {
    match history.location() {
        HistoryLocation::Postgres {
            url,
            journal_pending,
        } if journal_pending > 0 => {
            let journal = history
                .as_postgres()
                .map(|pg| pg.journal_path())
                .unwrap_or_default();
            log.emit(DeploymentEvent::HistoryJournaled {
                url,
                pending: journal_pending,
                journal,
            });
            true
        }
        _ => false,
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
        analysis: &[],
        processes: None,
    }
}

/// The failure patterns of `outcomes` that match this deployment.
fn relevant_patterns(outcomes: &Past, p: &Planned, metrics: &Snapshot) -> Vec<FailurePattern> {
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
