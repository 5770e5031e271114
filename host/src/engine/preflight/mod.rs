//! Phase one of a deployment: [`Engine::preflight`] turns a request into a
//! [`Planned`] deployment, or refuses it.
//!
//! ```text
//! check request ─▶ resolve secrets ─▶ detect environment ─▶ approval needed?
//!   ─▶ sample metrics ─▶ load history and model ─▶ choose strategy (choose.rs:
//!   operator or selector, max-time, safety override, rollback prediction)
//!   ─▶ resources ─▶ validate conditions ─▶ the strategy's plan
//! ```
//!
//! Why a phase of its own: everything that can be refused for bad input is
//! refused here, before the run lock is taken or anything is written, so a
//! typo never leaves a trace in the history. A dry run ends after this phase.

mod choose;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::secret::Redactor;
use crate::config::{Environment, ResourceLimits};
use crate::detect::EnvironmentDetector;
use crate::history::{DeploymentRecord, History};
use crate::ml::{DurationEstimate, FeatureContext, Outcome, Streaks};
use crate::monitor::Snapshot;
use crate::plugin::{DeploymentContext, Plugin, Rollout};
use crate::report::decision::LoadedModel;
use crate::report::{Approval, Decision, PlanView};

use super::Engine;
use super::context::{deployment_context, limits_for};
use super::error::EngineError;
use super::event::DeploymentEvent;
use super::learn::{self, ModelState};
use super::log::DecisionLog;
use super::select::LearningContext;
use super::types::{Confirm, DeploymentRequest};

/// A deployment that passed every check and has a plan: what execution
/// and recording need.
pub(crate) struct Planned {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    pub req: DeploymentRequest,
    pub log: DecisionLog,
    /// Each service's `env`, secrets resolved.
    pub service_env: HashMap<String, Vec<(String, String)>>,
    pub environment: Environment,
    /// The environment is in `approvals.required_for`.
    pub needs_approval: bool,
    pub confirm: Option<Confirm>,
    /// The machine's load before anything ran.
    pub baseline: Snapshot,
    /// Earlier deployments, newest first, and their outcomes.
    pub past: Vec<DeploymentRecord>,
    pub outcomes: Vec<Outcome>,
    pub model_state: ModelState,
    /// Earlier deployments with recorded features.
    pub training_samples: usize,
    pub strategy: String,
    pub plugin: Arc<Plugin>,
    pub ctx: DeploymentContext,
    pub rollout: Rollout,
    pub view: PlanView,
    pub limits: ResourceLimits,
    /// The context the strategy was chosen in (recorded for learning).
    pub features: FeatureContext,
    /// Consecutive failures before this deployment.
    pub streaks: Streaks,
    /// The duration similar deployments took.
    pub prediction: Option<DurationEstimate>,
}

impl Engine {
    /// Checks the request, decides everything that can be decided before
    /// running anything, and asks the strategy for its plan. Writes nothing.
    pub(super) async fn preflight(
        &self,
        req: DeploymentRequest,
        events: Option<UnboundedSender<DeploymentEvent>>,
        confirm: Option<Confirm>,
    ) -> Result<Planned, EngineError> {
        self.check_request(&req)?;
        let started_at = Utc::now();
        let started = Instant::now();
        let id = format!("deploy_{}", started_at.timestamp_millis());
        // Secrets of the services' environments: resolved now (a missing
        // variable is bad input, before anything is written) and redacted
        // from everything this deployment writes or sends.
        let mut service_env = HashMap::new();
        let mut secrets = Vec::new();
        for name in &req.services {
            if let Some(s) = self.config.services.get(name) {
                let (vars, found) =
                    crate::config::secret::resolve_env(name, &s.env).map_err(|error| {
                        EngineError::Secret {
                            service: name.clone(),
                            error,
                        }
                    })?;
                service_env.insert(name.clone(), vars);
                secrets.extend(found);
            }
        }
        let mut log = DecisionLog::new(events, Arc::new(Redactor::new(secrets)));
        self.note_experiments(&mut log);
        self.note_overrides(&mut log);

        // Detect the environment; does it need an approval? Any credible
        // signal naming an environment in approvals.required_for requires
        // one (the operator's, the variable the host read, counted
        // evidence), whatever environment won.
        let detected = EnvironmentDetector::new(&self.plugins, &self.config)
            .detect(req.environment)
            .await?;
        let environment = detected.environment;
        let required = &self.config.approvals.required_for;
        let mut named: Vec<crate::detect::Signal> = detected
            .signals()
            .into_iter()
            .filter(|s| required.contains(&s.environment))
            .collect();
        if required.contains(&environment) && !named.iter().any(|s| s.environment == environment) {
            named.insert(
                0,
                crate::detect::Signal {
                    environment,
                    by: "the detected environment".to_string(),
                },
            );
        }
        log.record(Decision::EnvironmentDetected(detected));
        self.check_time(&req, "environment detection")?;
        let needs_approval = !named.is_empty();
        if needs_approval {
            let usable = match &req.approval {
                Some(Approval::Flag { .. }) => true,
                Some(Approval::Prompt { .. }) => confirm.is_some(),
                None => false,
            };
            // The most careful environment named is the one to approve.
            let approve_for = named
                .iter()
                .map(|s| s.environment)
                .max()
                .unwrap_or(environment);
            let named_by: Vec<String> = named
                .iter()
                .map(|s| format!("{} ({})", s.by, s.environment))
                .collect();
            log.record(Decision::ApprovalRequired {
                environment: approve_for,
                approval: req.approval.clone(),
                dry_run: req.dry_run,
                named_by: named_by.clone(),
            });
            if !usable && !req.dry_run {
                return Err(EngineError::ApprovalRequired {
                    environment: approve_for,
                    named_by,
                });
            }
        }

        let baseline = self.baseline(&mut log).await;

        // Load the history: read what exists. Creating the database waits
        // until something is deployed (a refused or dry run leaves the state
        // dir untouched).
        let history = if !crate::history::database_path(&self.state_dir).exists() {
            None
        } else if req.dry_run {
            History::open(&self.state_dir).ok()
        } else {
            Some(History::open(&self.state_dir)?)
        };
        let past: Vec<DeploymentRecord> = history
            .as_ref()
            .and_then(|h| h.list_deployments(usize::MAX).ok())
            .unwrap_or_default();
        let outcomes = learn::outcomes(&past);
        let recent: Vec<bool> = outcomes
            .iter()
            .filter(|o| o.environment == environment)
            .map(|o| o.success)
            .collect();
        let model_state = match &history {
            Some(h) if req.dry_run => learn::load_model(h).unwrap_or(ModelState::Missing),
            Some(h) => learn::load_model(h)?,
            None => ModelState::Missing,
        };
        if let ModelState::Discarded(reason) = &model_state {
            log.record(Decision::ModelDiscarded {
                reason: reason.clone(),
            });
        }
        let training_samples = outcomes.iter().filter(|o| o.features.is_some()).count();
        log.record(Decision::HistoryLoaded {
            deployments: outcomes.len(),
            in_environment: recent.len(),
            recent_success_rate: (!recent.is_empty())
                .then(|| recent.iter().filter(|ok| **ok).count() as f64 / recent.len() as f64),
            training_samples,
            model: match &model_state {
                ModelState::Ready(m) => Some(LoadedModel::Trained {
                    samples: m.meta().samples,
                    trained_at: m.meta().trained_at,
                    oob_accuracy: m.meta().oob_accuracy,
                }),
                ModelState::Missing => None,
                ModelState::Discarded(_) => {
                    Some(LoadedModel::Discarded(crate::report::decision::Discarded))
                }
            },
        });

        // Choose the strategy.
        let candidates = self.strategies();
        let features = learn::feature_context(
            &baseline,
            environment,
            req.size,
            req.services.len(),
            &outcomes,
            "",
        );
        let durations =
            crate::ml::estimate_all(&outcomes, &candidates, environment, req.services.len());
        let learning = LearningContext {
            model: &model_state,
            outcomes: &outcomes,
            training_samples,
            features: &features,
            durations: &durations,
            roll: rand::random::<f64>(),
        };
        let learning = (!outcomes.is_empty()).then_some(&learning);
        let (strategy, selection) =
            self.select_strategy(&req, environment, &baseline, &recent, learning, &mut log);
        let strategy =
            self.check_max_time(&req, strategy, selection.as_ref(), &durations, &mut log)?;
        let strategy = self.safety_override(environment, &baseline, strategy, &mut log);
        let prediction = durations.get(&strategy).cloned();
        let mut warnings = Vec::new();
        if self.config.experimental.enable_rollback_prediction {
            warnings.extend(self.predict_rollback(
                &req,
                environment,
                &strategy,
                learning,
                confirm.is_some(),
                &mut log,
            )?);
        }
        let features = learn::for_strategy(&features, &outcomes, &strategy);
        let streaks = crate::ml::streaks(&outcomes, environment, &req.services);

        // Resources and validation.
        let limits = limits_for(&self.config, &strategy);
        log.record(Decision::ResourcesCalculated {
            strategy: strategy.clone(),
            limits: limits.clone(),
        });
        self.validate_conditions(&req, &baseline, &mut log)?;

        // The plan.
        let plugin = self.plugins.get(&strategy)?.clone();
        let ctx = deployment_context(&self.config, &id, &req, environment, &baseline, &limits);
        let rollout = plugin.plan(&ctx).await?.value;
        self.check_time(&req, "planning")?;
        let mut view = PlanView::new(&strategy, &rollout);
        view.warnings = warnings;
        log.record(Decision::Plan(view.clone()));
        log.emit(DeploymentEvent::Planned {
            strategy: strategy.clone(),
            waves: view.waves.clone(),
            concurrency: rollout.concurrency,
        });
        Ok(Planned {
            id,
            started_at,
            started,
            req,
            log,
            service_env,
            environment,
            needs_approval,
            confirm,
            baseline,
            past,
            outcomes,
            model_state,
            training_samples,
            strategy,
            plugin,
            ctx,
            rollout,
            view,
            limits,
            features,
            streaks,
            prediction,
        })
    }

    fn check_request(&self, req: &DeploymentRequest) -> Result<(), EngineError> {
        if req.services.is_empty() {
            return Err(EngineError::NoServices);
        }
        let mut seen = std::collections::HashSet::new();
        for s in &req.services {
            if !self.config.services.contains_key(s) {
                return Err(EngineError::UnknownService {
                    name: s.clone(),
                    known: self.config.services.keys().cloned().collect(),
                });
            }
            if !seen.insert(s) {
                return Err(EngineError::DuplicateService { name: s.clone() });
            }
        }
        if let Some(name) = req.strategy.as_deref()
            && name != "adaptive"
            && !self.strategies().iter().any(|s| s == name)
        {
            return Err(EngineError::UnknownStrategy {
                name: name.to_string(),
                installed: self.strategies(),
            });
        }
        Ok(())
    }

    /// The machine's load before anything runs, with the latency to
    /// `monitoring.latency_endpoints` when there are any.
    async fn baseline(&self, log: &mut DecisionLog) -> Snapshot {
        let mut baseline = self.metering.sample().await;
        let m = &self.config.monitoring;
        if !m.latency_endpoints.is_empty() {
            let endpoints = crate::monitor::measure_latency(
                &m.latency_endpoints,
                Duration::from_millis(m.latency_timeout_ms),
            )
            .await;
            baseline.network_latency_ms = crate::monitor::median_latency(&endpoints);
            log.record(Decision::NetworkLatency { endpoints });
        }
        log.record(Decision::SystemMetrics(baseline));
        baseline
    }

    /// `experimental.enable_canary_deployments` installs the built-in
    /// canary strategy (see `plugin::registry`), which makes it a candidate
    /// of the adaptive choice and a valid `--strategy`. Record that it is
    /// active, and which component answers to `canary` (a plugin file may
    /// override the built-in).
    fn note_experiments(&self, log: &mut DecisionLog) {
        if self.config.experimental.enable_canary_deployments {
            let source = self
                .plugins
                .get("canary")
                .map(|p| p.source().to_string())
                .unwrap_or_else(|_| "missing".to_string());
            log.record(Decision::ExperimentalActive {
                switch: "enable_canary_deployments".into(),
                strategy: "canary".into(),
                source,
                adaptive_candidate: self.strategies().iter().any(|s| s == "canary"),
            });
        }
    }

    /// Announces every plugin file that replaces a built-in: one decision
    /// each (the CLI prints it as a warning line).
    fn note_overrides(&self, log: &mut DecisionLog) {
        for p in self.plugins.overrides() {
            log.record(Decision::PluginOverride {
                plugin: p.name().to_string(),
                kind: p.kind().to_string(),
                source: p.source().to_string(),
                sha256: p.sha256().to_string(),
                grants_withheld: p.grants_withheld().map(String::from),
            });
        }
    }

    /// Past the deployment's deadline before anything was deployed: stop.
    fn check_time(&self, req: &DeploymentRequest, phase: &'static str) -> Result<(), EngineError> {
        match crate::plugin::DeploymentScope::current() {
            Some(scope) if scope.past_deadline() => Err(EngineError::OutOfTime {
                phase,
                limit: super::types::deadline_label(req, &self.config)
                    .map(|(_, label)| label)
                    .unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }

    /// Memory over `thresholds.critical_memory` or free disk under
    /// `thresholds.min_free_disk_percent` refuses the deployment, unless
    /// `--force`.
    fn validate_conditions(
        &self,
        req: &DeploymentRequest,
        metrics: &Snapshot,
        log: &mut DecisionLog,
    ) -> Result<(), EngineError> {
        let t = &self.config.thresholds;
        let mut problems = Vec::new();
        if metrics.memory_percent > t.critical_memory {
            problems.push(format!(
                "memory {:.1}% is over thresholds.critical_memory {:.1}%",
                metrics.memory_percent, t.critical_memory
            ));
        }
        let free = 100.0 - metrics.disk_percent;
        if free < t.min_free_disk_percent {
            problems.push(format!(
                "free disk {:.1}% is under thresholds.min_free_disk_percent {:.1}%",
                free, t.min_free_disk_percent
            ));
        }
        let passed = problems.is_empty() || req.force;
        log.record(Decision::Validation {
            passed,
            problems: problems.clone(),
            forced: req.force && !problems.is_empty(),
        });
        if passed {
            Ok(())
        } else {
            Err(EngineError::ResourcesTooHigh { problems })
        }
    }
}
