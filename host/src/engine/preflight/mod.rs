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

mod analysis;
mod choose;
pub(crate) mod versions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::secret::Redactor;
use crate::config::{Config, Environment, ResourceLimits, VersionOverride};
use crate::detect::EnvironmentDetector;
use crate::history::{DeploymentRecord, HistoryBackend, HistoryError, HistoryWindow};
use crate::ml::{DurationEstimate, FeatureContext, Streaks};
use crate::monitor::Snapshot;
use crate::plugin::{DeploymentContext, Plugin, PluginSource, Rollout};
use crate::report::decision::LoadedModel;
use crate::report::{Approval, Decision, PlanView};

use super::Engine;
use super::analysis::ServiceAnalysis;
use super::context::{deployment_context, limits_for};
use super::error::EngineError;
use super::event::DeploymentEvent;
use super::learn::{self, ModelState, Past};
use super::log::DecisionLog;
use super::select::LearningContext;
use super::types::{Confirm, DeploymentRequest};
use versions::ServiceVersion;

/// A deployment that passed every check and has a plan: what execution
/// and recording need.
pub(crate) struct Planned {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    pub req: DeploymentRequest,
    /// The config this deployment runs under: the engine's, with the
    /// request's versions and the environment's settings
    /// (`environments.<env>`) applied. Execution and recording read this.
    pub config: Arc<Config>,
    pub log: DecisionLog,
    /// Each service's `env`, secrets resolved.
    pub service_env: HashMap<String, Vec<(String, String)>>,
    pub environment: Environment,
    /// The environment is in `approvals.required_for`.
    pub needs_approval: bool,
    /// Shared with the steps, which may ask about inconclusive analyses.
    pub confirm: Option<Arc<Confirm>>,
    /// The machine's load before anything ran.
    pub baseline: Snapshot,
    /// The newest earlier deployments (`history.window` of them), newest
    /// first, and the learning's view: their outcomes plus totals over the
    /// whole history.
    pub past: Vec<DeploymentRecord>,
    pub outcomes: Past,
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
    /// Each requested service's version and the one it replaces.
    pub versions: BTreeMap<String, ServiceVersion>,
    /// The metric analysis of each service that has one.
    pub analysis: BTreeMap<String, ServiceAnalysis>,
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
        // The request's versions, and health expectations that need one,
        // are checked before anything is written.
        let mut config = self.config.clone();
        let versions: Vec<VersionOverride> = req
            .versions
            .iter()
            .map(|(service, version)| VersionOverride {
                service: service.clone(),
                version: version.clone(),
            })
            .collect();
        config.set_versions(&versions)?;
        config.check_health_versions(&req.services)?;
        check_containers(&config, &req.services)?;
        let started_at = Utc::now();
        let started = Instant::now();
        // Unique across runners of a shared history (and runs of one state
        // directory) that start in the same millisecond: records are keyed
        // by id, so a collision would replace another run's record.
        let id = format!(
            "deploy_{}_{:04x}",
            started_at.timestamp_millis(),
            rand::random::<u16>()
        );
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
        if let Some(wide) = crate::fs::state_dir_warning(&self.state_dir) {
            log.warn(wide.to_string());
        }
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
        // From here on, the environment's settings apply.
        let effective = config.for_environment(environment);
        if !effective.overrides.is_empty() {
            log.record(Decision::EnvironmentSettings {
                environment,
                overrides: effective.overrides.clone(),
            });
        }
        effective.apply_to(&mut config);
        let config = Arc::new(config);
        self.note_experiments(&config, &mut log);
        self.check_offered(&req, environment, &config)?;
        // The environment's own settings may require an approval too
        // (fail closed: either list counts).
        if config.approvals.required_for.contains(&environment)
            && !named.iter().any(|s| s.environment == environment)
        {
            named.insert(
                0,
                crate::detect::Signal {
                    environment,
                    by: "the detected environment".to_string(),
                },
            );
        }
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

        // Load the history: the newest `history.window` deployments and the
        // aggregates, never every record (see `engine/past.rs`), and the
        // model. Creating an embedded database waits until something is
        // deployed (a refused or dry run leaves the state dir untouched).
        let (window, model_state) = self.load_history(req.dry_run).await?;
        let past = window.recent;
        let outcomes = Past::from_window(&HistoryWindow {
            recent: past.clone(),
            aggregates: window.aggregates,
        });
        let versions = versions::resolve(&config, &req.services, environment, &past);
        let recent: Vec<bool> = outcomes
            .iter()
            .filter(|o| o.environment == environment)
            .map(|o| o.success)
            .collect();
        if let ModelState::Discarded(reason) = &model_state {
            log.record(Decision::ModelDiscarded {
                reason: reason.clone(),
            });
        }
        let training_samples = outcomes.training_samples();
        let (in_environment, environment_rate) = outcomes.in_environment(environment);
        log.record(Decision::HistoryLoaded {
            deployments: outcomes.deployments(),
            in_environment,
            recent_success_rate: environment_rate,
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
        let candidates = self.offered(&config);
        let evidence = learn::Evidence::new(&outcomes, &config.ml_config, Utc::now());
        let features = learn::feature_context(
            &baseline,
            environment,
            req.size,
            &req.services,
            &outcomes,
            &evidence.recency,
            "",
        );
        let images: Vec<String> = req
            .services
            .iter()
            .filter_map(|n| config.services.get(n))
            .filter(|s| s.target == crate::config::TargetKind::Container)
            .filter_map(|s| Some(format!("{}:{}", s.image.as_ref()?, s.version.as_ref()?)))
            .collect();
        let features = learn::with_images(features, &images, &outcomes, &evidence.recency);
        let durations =
            crate::ml::estimate_all(&outcomes, &candidates, environment, req.services.len());
        let learning = LearningContext {
            model: &model_state,
            outcomes: &outcomes,
            evidence: &evidence,
            training_samples,
            features: &features,
            durations: &durations,
            roll: self.draw(),
        };
        let learning = (outcomes.deployments() > 0).then_some(&learning);
        let (strategy, selection) = self.select_strategy(
            &req,
            &config,
            environment,
            &baseline,
            &recent,
            learning,
            &mut log,
        );
        let strategy = self.check_max_time(
            &req,
            &config,
            strategy,
            selection.as_ref(),
            &durations,
            &mut log,
        )?;
        let strategy = self.safety_override(&config, environment, &baseline, strategy, &mut log);
        let prediction = durations.get(&strategy).cloned();
        let mut warnings = Vec::new();
        if config.experimental.enable_rollback_prediction {
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
        let limits = limits_for(&config, &strategy);
        log.record(Decision::ResourcesCalculated {
            strategy: strategy.clone(),
            limits: limits.clone(),
        });
        validate_conditions(&config, &req, &baseline, &mut log)?;
        let (analysis, analysis_views) = self
            .plan_analysis(&id, &req, environment, &strategy, &versions)
            .await?;

        // The plan.
        let plugin = self.plugins.get(&strategy)?.clone();
        let ctx = deployment_context(&config, &id, &req, environment, &baseline, &limits);
        let rollout = plugin.plan(&ctx).await?.value;
        self.check_time(&req, "planning")?;
        let mut view = PlanView::new(&strategy, &rollout);
        view.warnings = warnings;
        view.analysis = analysis_views;
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
            config,
            log,
            service_env,
            environment,
            needs_approval,
            confirm: confirm.map(Arc::new),
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
            versions,
            analysis,
        })
    }

    /// The window of the history a deployment starts from, and the stored
    /// model. Nothing without a history yet. A dry run goes on without
    /// history when the embedded one cannot be read (its choice is only
    /// shown); a real run does not.
    async fn load_history(
        &self,
        dry_run: bool,
    ) -> Result<(HistoryWindow, ModelState), EngineError> {
        let window = self.config.history.window.max(1) as usize;
        let loaded = async {
            let Some(history) = self.existing_history().await? else {
                return Ok((HistoryWindow::default(), ModelState::Missing));
            };
            Ok::<_, EngineError>((
                history.window(window).await?,
                learn::load_model(history).await?,
            ))
        }
        .await;
        match loaded {
            // A shared history that cannot be reached (or used) is always
            // an error: the operator configured it.
            Err(EngineError::History(
                e @ (HistoryError::Unreachable { .. }
                | HistoryError::Settings { .. }
                | HistoryError::NewerSchema { .. }),
            )) => Err(e.into()),
            Err(e) if dry_run => {
                tracing::warn!("the history cannot be read ({e}); this dry run goes on without it");
                Ok((HistoryWindow::default(), ModelState::Missing))
            }
            other => other,
        }
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
        log.record(Decision::SystemMetrics {
            snapshot: baseline,
            cpu_basis: self
                .metering
                .measures_the_machine()
                .then(|| self.metering.monitor.cpu_basis())
                .flatten(),
        });
        baseline
    }

    /// `experimental.enable_canary_deployments` installs the built-in
    /// canary strategy (see `plugin::registry`), which makes it a candidate
    /// of the adaptive choice and a valid `--strategy`. Record that it is
    /// active, and which component answers to `canary` (a plugin file may
    /// override the built-in).
    fn note_experiments(&self, config: &Config, log: &mut DecisionLog) {
        if config.experimental.enable_canary_deployments {
            let source = self
                .plugins
                .get("canary")
                .map(|p| p.source().to_string())
                .unwrap_or_else(|_| "missing".to_string());
            log.record(Decision::ExperimentalActive {
                switch: "enable_canary_deployments".into(),
                strategy: "canary".into(),
                source,
                adaptive_candidate: self.offered(config).iter().any(|s| s == "canary"),
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

    /// The strategies this deployment may use: the installed ones, less an
    /// experimental built-in whose switch is off in this deployment's
    /// (effective) config. The canary is installed when any environment
    /// turns it on; it is offered only where the setting is on.
    pub(super) fn offered(&self, config: &Config) -> Vec<String> {
        self.strategies()
            .into_iter()
            .filter(|name| self.experiment_off(config, name).is_none())
            .collect()
    }

    /// The switch of the experimental built-in `name` when it is off in
    /// `config` (`None`: not experimental, a plugin file, or on).
    fn experiment_off(&self, config: &Config, name: &str) -> Option<&'static str> {
        let built_in = self
            .plugins
            .get(name)
            .is_ok_and(|p| matches!(p.source(), PluginSource::BuiltIn));
        match name {
            "canary" if built_in && !config.experimental.enable_canary_deployments => {
                Some("experimental.enable_canary_deployments")
            }
            _ => None,
        }
    }

    /// `--strategy` naming an experimental built-in that is off in this
    /// environment is refused (bad input, before anything is written).
    fn check_offered(
        &self,
        req: &DeploymentRequest,
        environment: Environment,
        config: &Config,
    ) -> Result<(), EngineError> {
        if let Some(name) = req.strategy.as_deref()
            && let Some(switch) = self.experiment_off(config, name)
        {
            return Err(EngineError::StrategyNotEnabled {
                name: name.to_string(),
                environment,
                switch: switch.to_string(),
            });
        }
        Ok(())
    }
}

/// Memory over `thresholds.critical_memory` or free disk under
/// `thresholds.min_free_disk_percent` refuses the deployment, unless
/// `--force`.
fn validate_conditions(
    config: &Config,
    req: &DeploymentRequest,
    metrics: &Snapshot,
    log: &mut DecisionLog,
) -> Result<(), EngineError> {
    let t = &config.thresholds;
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

/// Container services of the request: a version (the image tag) that is
/// one, and — for one on this machine — a runtime that is installed.
fn check_containers(config: &Config, services: &[String]) -> Result<(), EngineError> {
    for name in services {
        let Some(s) = config.services.get(name) else {
            continue;
        };
        if s.target != crate::config::TargetKind::Container {
            continue;
        }
        let path = config
            .source
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(crate::config::DEFAULT_CONFIG_NAME));
        let Some(version) = &s.version else {
            return Err(crate::config::ConfigError::Semantic {
                path,
                key: format!("services.{name}.version"),
                message: format!(
                    "a container service needs a version, the image tag: set services.{name}.version or run --set-version {name}=TAG"
                ),
            }
            .into());
        };
        crate::config::container::check_tag(version).map_err(|message| {
            crate::config::ConfigError::Semantic {
                path,
                key: format!("services.{name}.version"),
                message,
            }
        })?;
        if !s.is_fleet() {
            crate::exec::container::local_runtime(s.runtime).map_err(|source| {
                EngineError::Container {
                    service: name.clone(),
                    source: Box::new(source),
                }
            })?;
        }
    }
    Ok(())
}
