//! The decision vocabulary: every decision the engine records, as a typed
//! [`Decision`].
//!
//! "Every arrow is recorded as a decision": the decision log goes into the
//! report (`decision_process`), the history and the event stream, and
//! embedders and CI scripts read it. On the wire a decision keeps the seed's
//! shape, `{"timestamp", "decision_type", "details"}`: `decision_type` is the
//! variant's snake_case name and `details` its fields, with the same keys
//! adeploy has always written. A `decision_type` this build does not know (a
//! newer adeploy's, or a plugin-era record with other details) reads as
//! [`Decision::Other`] and is written back unchanged, so nothing is lost.
//!
//! Why here: the report and the history are below the engine, and the report
//! holds the typed log. The history stores the same JSON
//! ([`crate::history::DecisionRecord`]), so its storage never depends on this
//! vocabulary; [`DecisionEntry`] converts both ways.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::Verdict;
use crate::config::{Environment, Override, ResourceLimits};
use crate::detect::DetectedEnvironment;
use crate::history::{DecisionRecord, DeploymentStatus, StepStatus};
use crate::ml::{DriftEvent, DurationEstimate, Streaks};
use crate::monitor::{EndpointLatency, Snapshot, TrackingMode, cpu::CpuBasis};
use crate::plugin::Phase;

use super::{LeftDeployed, PlanView};

/// One entry of the decision log: when, and what was decided.
///
/// Serialised as `{"timestamp", "decision_type", "details"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub decision: Decision,
}

impl DecisionEntry {
    /// A decision made now.
    pub fn now(decision: Decision) -> DecisionEntry {
        DecisionEntry {
            timestamp: Utc::now(),
            decision,
        }
    }

    /// The stored form (what the history keeps).
    pub fn to_record(&self) -> DecisionRecord {
        let (decision_type, details) = self.decision.parts();
        DecisionRecord {
            timestamp: self.timestamp,
            decision_type,
            details,
        }
    }

    /// The typed form of a stored decision ([`Decision::Other`] when this
    /// build does not know its type or its details).
    pub fn from_record(record: &DecisionRecord) -> DecisionEntry {
        DecisionEntry {
            timestamp: record.timestamp,
            decision: Decision::from_parts(&record.decision_type, record.details.clone()),
        }
    }
}

/// An operator's approval of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Approval {
    /// `--approve`: approved up front.
    Flag { user: String },
    /// A yes at the confirmation prompt (the engine's `confirm` callback).
    Prompt { user: String },
}

impl Approval {
    pub fn user(&self) -> &str {
        match self {
            Approval::Flag { user } | Approval::Prompt { user } => user,
        }
    }
}

/// How one candidate strategy scored in a model-based selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub strategy: String,
    /// Expected probability of success: the prior (the forest's estimate,
    /// or the uninformed 0.5 for a strategy the model never saw) refined by
    /// the recency-weighted outcomes in this exact context.
    pub p_success: f64,
    /// The prior: the forest's estimate (mean leaf share of success over
    /// trees), or 0.5 when `known` is false.
    pub p_model: f64,
    /// Whether the model was trained on deployments of this strategy. An
    /// unseen strategy gets an uninformed prior, never the forest's guess.
    #[serde(default = "known_default")]
    pub known: bool,
    /// Past deployments with this strategy, environment, size and services...
    pub context_samples: usize,
    /// ...and how many of them succeeded.
    pub context_successes: usize,
    /// The same, weighted by recency: deployments' worth of evidence...
    #[serde(default)]
    pub context_weight: f64,
    /// ...and of success.
    #[serde(default)]
    pub context_weighted_successes: f64,
    /// Past deployments with this strategy.
    pub samples: usize,
    /// Expected minutes, when similar deployments exist.
    pub expected_minutes: Option<f64>,
    /// Whether the expected duration fits `--max-time` (none: no limit or no
    /// estimate).
    pub fits_max_time: Option<bool>,
    pub utility: f64,
}

fn known_default() -> bool {
    true
}

/// An adaptive deployment that tries a strategy on purpose: which, why, and
/// at what rate (never in production).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    pub strategy: String,
    pub environment: Environment,
    /// The share of adaptive deployments that explore here now...
    pub rate: f64,
    /// ...and the setting it comes from (`ml_config.exploration_rate`, or
    /// `ml_config.drift_exploration_rate` after a change).
    pub rate_source: String,
    /// This deployment's uniform draw; it explores when the draw is below
    /// the rate.
    pub draw: f64,
    /// The strategy's deployments so far (in this environment since the
    /// change, when re-checking after one).
    pub deployments: usize,
    pub reason: String,
}

/// A detected change in a strategy's success rate in an environment, with
/// the evidence and what the engine does about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftDetection {
    #[serde(flatten)]
    pub event: DriftEvent,
    /// The evidence in one line.
    pub summary: String,
    /// What the engine does until the new regime is learned.
    pub response: String,
}

/// The stored strategy model as `history_loaded` reports it: its training
/// summary, or the string `"discarded"` (no model at all is `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoadedModel {
    Trained {
        samples: usize,
        trained_at: DateTime<Utc>,
        oob_accuracy: Option<f64>,
    },
    /// The blob could not be read (a `model_discarded` decision says why).
    Discarded(Discarded),
}

/// The `"discarded"` marker of [`LoadedModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discarded;

impl Serialize for Discarded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("discarded")
    }
}

impl<'de> Deserialize<'de> for Discarded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Discarded, D::Error> {
        match String::deserialize(d)?.as_str() {
            "discarded" => Ok(Discarded),
            other => Err(serde::de::Error::custom(format!(
                "expected \"discarded\", found {other:?}"
            ))),
        }
    }
}

/// The details of a `max_time_check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxTimeCheck {
    pub strategy: String,
    pub max_time_minutes: f64,
    /// `null` when there is nothing to judge by.
    pub feasible: Option<bool>,
    /// Why there is nothing to judge by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<DurationEstimate>,
    /// An adaptive choice moved to this faster strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_estimate: Option<DurationEstimate>,
    /// Set when the check failed: whether `--force` overrode it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<bool>,
}

/// What the engine decided, one variant per `decision_type`, in the order a
/// deployment meets them. Optional fields are left out of `details` when
/// `None` unless noted (`null`): each decision type keeps the keys it has
/// always had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision_type", content = "details", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// An experimental switch that changes what this deployment can do is on.
    ExperimentalActive {
        switch: String,
        strategy: String,
        /// Which component answers to the strategy's name (`built-in`, a
        /// path, or `missing`).
        source: String,
        adaptive_candidate: bool,
    },
    /// The environment, from `--environment`, `DEPLOYMENT_ENVIRONMENT` or the
    /// detectors' evidence.
    EnvironmentDetected(DetectedEnvironment),
    /// `environments.<env>` changed these settings for this deployment
    /// (recorded only when it changed something).
    EnvironmentSettings {
        environment: Environment,
        overrides: Vec<Override>,
    },
    /// The environment is in `approvals.required_for`.
    ApprovalRequired {
        environment: Environment,
        /// `null` without one.
        approval: Option<Approval>,
        dry_run: bool,
        /// The credible signals naming an environment in
        /// `approvals.required_for` (any one of them requires the approval).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        named_by: Vec<String>,
    },
    /// A plugin file replaces the built-in plugin of the same name
    /// (announced in every deployment; `plugin_defaults.allow_overrides:
    /// false` refuses it).
    PluginOverride {
        plugin: String,
        kind: String,
        source: String,
        sha256: String,
        /// Why the config's grants for the name were not given to the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grants_withheld: Option<String>,
    },
    /// Round trips to `monitoring.latency_endpoints`.
    NetworkLatency { endpoints: Vec<EndpointLatency> },
    /// The machine's load before anything ran (the snapshot's keys), and
    /// what its CPU figure is: the counter and the window it was measured
    /// over (absent when readings come from the embedder's source).
    SystemMetrics {
        #[serde(flatten)]
        snapshot: Snapshot,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_basis: Option<CpuBasis>,
    },
    /// The stored model could not be read; rules decide.
    ModelDiscarded { reason: String },
    /// What the history holds for this deployment.
    HistoryLoaded {
        deployments: usize,
        in_environment: usize,
        /// `null` without deployments in this environment.
        recent_success_rate: Option<f64>,
        training_samples: usize,
        /// `null` without a model.
        model: Option<LoadedModel>,
    },
    /// The adaptive choice explores this time (`ml_config.exploration_rate`,
    /// or `drift_exploration_rate` after a change; never in production).
    Exploration(Exploration),
    /// The operator named the strategy.
    StrategySelected {
        strategy: String,
        /// `operator`.
        source: String,
    },
    /// The selector chose the strategy (`--strategy adaptive`).
    StrategyPredicted {
        strategy: String,
        confidence: f64,
        /// `rules`, `model`, `exploration` or `drift_fallback`.
        method: String,
        reasons: Vec<String>,
        /// Every candidate's score (empty when the rules decided).
        candidates: Vec<CandidateScore>,
    },
    /// Whether `--max-time` fits the strategy, judged by similar past
    /// deployments.
    MaxTimeCheck(MaxTimeCheck),
    /// `experimental.enable_rollback_prediction`: the predicted failure
    /// probability of the chosen strategy (or why there is none).
    RollbackPrediction {
        strategy: String,
        /// `false` when too little history exists (with `reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        predicted: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p_failure: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        basis: Option<String>,
        /// `none`, `reported (dry run)`, `confirmation asked`, `forced` or
        /// `refused`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
    /// High CPU outside local/development moves aggressive to balanced:
    /// `{applied: false}`, or `from`, `to` and `reason`.
    SafetyOverride {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `resource_limits.<strategy>` as the execution enforces them.
    ResourcesCalculated {
        strategy: String,
        limits: ResourceLimits,
    },
    /// Memory and disk against their thresholds.
    Validation {
        passed: bool,
        problems: Vec<String>,
        /// `--force` overrode problems.
        forced: bool,
    },
    /// The strategy's plan.
    Plan(PlanView),
    /// `--dry-run`: nothing executed.
    DryRun { executed: bool, reason: String },
    /// The operator approved a deployment to an environment that needs it.
    Approved { approval: Approval },
    /// Deployments cut off by a crash, now marked interrupted.
    RecoveredInterrupted { deployments: Vec<String> },
    /// This deployment waited for the deployment lock of its services:
    /// another run was deploying some of them to the same environment.
    LockWaited {
        services: Vec<String>,
        /// Who held them (deployment, user, host, pid, since), when known.
        held_by: Option<String>,
        waited_s: f64,
    },
    /// The deployment lock was lost while the deployment ran (the shared
    /// history's database went away); the deployment went on as planned,
    /// but other runs could start meanwhile.
    LockLost { message: String },
    /// ssh connection reuse is off for this deployment, and why.
    SshConnectionReuse { enabled: bool, reason: String },
    /// A hook ran (a config script, or a hook plugin with its `details` and
    /// the `failure_count` it was given).
    Hook {
        phase: Phase,
        hook: String,
        ok: bool,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<std::collections::BTreeMap<String, String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure_count: Option<u32>,
    },
    /// The strategy's `on-progress` answered something other than continue.
    StrategyDecision {
        /// The progress event (`StepFailed`, `WaveFinished`, ...).
        event: String,
        /// The answer (`Pause(5)`, `Rollback("...")`, ...).
        decision: String,
    },
    /// The strategy's `on-progress` failed; the run continues under the
    /// plan's failure policy.
    StrategyDecisionFailed { error: String },
    /// A pre-deployment hook failed: nothing was deployed.
    Aborted { reason: String },
    /// A step's task ended without a result.
    StepTaskFailed { error: String },
    /// A step finished.
    StepFinished {
        service: String,
        /// `null` for a local step.
        host: Option<String>,
        /// Numbered from 1.
        wave: u32,
        status: StepStatus,
        message: String,
        seconds: f64,
    },
    /// More failed steps than the plan's `max_failures`.
    FailurePolicy { failures: u32, max_failures: u32 },
    /// `experimental.enable_predictive_scaling` changed the concurrency.
    PredictiveScaling {
        from: u32,
        to: u32,
        reason: String,
        cpu_percent: f64,
        memory_percent: f64,
    },
    /// `experimental.enable_predictive_scaling` left the concurrency alone:
    /// the load's trend has too little data yet (recorded once).
    PredictiveScalingSkipped { reason: String },
    /// Execution paused (the strategy asked, or the plan pauses after a wave).
    Pause { seconds: f64, reason: String },
    /// The machine is back under the strategy's CPU and memory budget.
    BackUnderBudget {
        cpu_percent: f64,
        memory_percent: f64,
    },
    /// No step starts while the machine is over the budget.
    OverBudget { message: String },
    /// Rolling back these steps (`service` or `service@host`).
    RollbackStarted {
        reason: String,
        services: Vec<String>,
    },
    /// One step rolled back (or not).
    StepRolledBack {
        service: String,
        /// `null` for a local step.
        host: Option<String>,
        ok: bool,
        message: String,
    },
    /// How the deployment's own processes are measured (a cgroup v2 child,
    /// or the process tree via /proc): `{mode, path?}`. Recorded again if a
    /// command could not join the cgroup and measuring fell back.
    ProcessTracking(TrackingMode),
    /// One metric of a step's analysis, judged.
    AnalysisVerdict {
        service: String,
        /// `null` for a local step.
        host: Option<String>,
        metric: String,
        provider: String,
        verdict: Verdict,
        reason: String,
        /// For an inconclusive analysis of the step: the environment's
        /// policy and what it decided (`fail`, `pass`, `ask: yes`, `ask: no`,
        /// `ask: not interactive`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// A rollback failed: these steps are left deployed (an alert; the
    /// deployment's status is `rollback_failed`).
    RollbackFailed { left_deployed: Vec<LeftDeployed> },
    /// How the deployment ended.
    DeploymentFinished {
        success: bool,
        status: DeploymentStatus,
        message: String,
    },
    /// This deployment's outcome revealed a change in a strategy's success
    /// rate in its environment.
    DriftDetected(DriftDetection),
    /// The strategy model is retrained after this deployment.
    ModelRetraining { reason: String, in_background: bool },
    /// Consecutive failures at or over `alerts.consecutive_failures`.
    Alert {
        alerts: Vec<String>,
        threshold: usize,
        streaks: Streaks,
    },
    /// A decision type this build does not know, kept as it was written.
    #[serde(untagged)]
    Other {
        decision_type: String,
        #[serde(default)]
        details: serde_json::Value,
    },
}

impl Decision {
    /// The wire name (`strategy_predicted`, ...).
    pub fn decision_type(&self) -> String {
        self.parts().0
    }

    /// The `details` object as written to reports and the history.
    pub fn details(&self) -> serde_json::Value {
        self.parts().1
    }

    /// `(decision_type, details)` as serialised.
    fn parts(&self) -> (String, serde_json::Value) {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => {
                let kind = match m.remove("decision_type") {
                    Some(serde_json::Value::String(s)) => s,
                    _ => String::new(),
                };
                (kind, m.remove("details").unwrap_or_default())
            }
            // Serialising plain data into a JSON value does not fail.
            _ => (String::new(), serde_json::Value::Null),
        }
    }

    /// The typed decision of a stored `decision_type` and `details`.
    pub(crate) fn from_parts(decision_type: &str, details: serde_json::Value) -> Decision {
        let wire = serde_json::json!({ "decision_type": decision_type, "details": details });
        serde_json::from_value(wire).unwrap_or_else(|_| Decision::Other {
            decision_type: decision_type.to_string(),
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(d: Decision) -> serde_json::Value {
        let entry = DecisionEntry::now(d);
        let text = serde_json::to_string(&entry).unwrap();
        let back: DecisionEntry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entry, "{text}");
        let record = entry.to_record();
        assert_eq!(DecisionEntry::from_record(&record), entry);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_decision_keeps_the_seed_shape() {
        let v = round_trip(Decision::SafetyOverride {
            applied: Some(false),
            from: None,
            to: None,
            reason: None,
        });
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "{v}");
        assert_eq!(v["decision_type"], "safety_override");
        assert_eq!(v["details"], json!({ "applied": false }));

        let v = round_trip(Decision::StepFinished {
            service: "api".into(),
            host: None,
            wave: 1,
            status: StepStatus::Succeeded,
            message: "deployed and healthy".into(),
            seconds: 0.5,
        });
        assert_eq!(v["decision_type"], "step_finished");
        assert_eq!(
            v["details"],
            json!({ "service": "api", "host": null, "wave": 1, "status": "succeeded",
                    "message": "deployed and healthy", "seconds": 0.5 })
        );

        let v = round_trip(Decision::Hook {
            phase: Phase::OnFailure,
            hook: "notify".into(),
            ok: true,
            message: "sent".into(),
            details: Some([("to".to_string(), "ops".to_string())].into()),
            failure_count: Some(2),
        });
        assert_eq!(v["details"]["phase"], "on-failure");
        assert_eq!(v["details"]["details"], json!({ "to": "ops" }));

        let v = round_trip(Decision::HistoryLoaded {
            deployments: 3,
            in_environment: 0,
            recent_success_rate: None,
            training_samples: 0,
            model: Some(LoadedModel::Discarded(Discarded)),
        });
        assert_eq!(v["details"]["model"], "discarded");
        assert_eq!(v["details"]["recent_success_rate"], json!(null));
    }

    #[test]
    fn unknown_types_and_details_are_kept_as_written() {
        let future = json!({
            "timestamp": "2024-01-01T00:00:00Z",
            "decision_type": "metric_verdict",
            "details": { "metric": "error_rate", "verdict": "pass" },
        });
        let entry: DecisionEntry = serde_json::from_value(future.clone()).unwrap();
        assert!(
            matches!(&entry.decision, Decision::Other { decision_type, .. } if decision_type == "metric_verdict"),
            "{entry:?}"
        );
        assert_eq!(serde_json::to_value(&entry).unwrap(), future);

        // A known type whose details another version shaped differently.
        let odd = json!({
            "timestamp": "2024-01-01T00:00:00Z",
            "decision_type": "pause",
            "details": { "seconds": "five" },
        });
        let entry: DecisionEntry = serde_json::from_value(odd.clone()).unwrap();
        assert!(
            matches!(entry.decision, Decision::Other { .. }),
            "{entry:?}"
        );
        assert_eq!(serde_json::to_value(&entry).unwrap(), odd);
        assert_eq!(entry.decision.decision_type(), "pause");
    }

    #[test]
    fn the_typed_form_of_a_stored_record() {
        let record = DecisionRecord {
            timestamp: Utc::now(),
            decision_type: "over_budget".into(),
            details: json!({ "message": "over budget: CPU 99%" }),
        };
        let entry = DecisionEntry::from_record(&record);
        assert_eq!(
            entry.decision,
            Decision::OverBudget {
                message: "over budget: CPU 99%".into()
            }
        );
        assert_eq!(entry.to_record(), record);
    }

    #[test]
    fn system_metrics_keep_the_snapshot_keys_and_add_the_cpu_basis() {
        let snapshot = Snapshot {
            timestamp: Utc::now(),
            cpu_percent: 12.5,
            memory_percent: 40.0,
            disk_percent: 50.0,
            load_per_core: 0.2,
            network_latency_ms: None,
        };
        let v = round_trip(Decision::SystemMetrics {
            snapshot,
            cpu_basis: Some(CpuBasis {
                source: crate::monitor::CpuSource::ProcStat,
                window: std::time::Duration::from_millis(200),
            }),
        });
        assert_eq!(v["details"]["cpu_percent"], 12.5, "{v}");
        assert_eq!(v["details"]["cpu_basis"]["source"], "proc_stat", "{v}");
        // A record written before the basis existed still reads as typed.
        let old = json!({
            "timestamp": "2024-01-01T00:00:00Z",
            "decision_type": "system_metrics",
            "details": { "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": 1.0,
                         "memory_percent": 2.0, "disk_percent": 3.0, "load_per_core": 0.1,
                         "network_latency_ms": null },
        });
        let entry: DecisionEntry = serde_json::from_value(old).unwrap();
        assert!(
            matches!(
                entry.decision,
                Decision::SystemMetrics {
                    cpu_basis: None,
                    ..
                }
            ),
            "{entry:?}"
        );
    }
}
