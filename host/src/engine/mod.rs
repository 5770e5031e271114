//! The engine: the decision flow of one deployment, and the queries around
//! it (list, report).
//!
//! ```text
//! request ─▶ validate request ─▶ detect environment ─▶ sample metrics ─▶ load history
//!   ─▶ select strategy ─▶ safety override? ─▶ resources ─▶ validate conditions ─▶ plan
//!   ─▶ (dry run | confirm) ─▶ execute waves ─▶ collect ─▶ learn ─▶ report
//! ```
//!
//! Why it is shaped this way: everything that can be refused for bad input
//! (unknown services, unknown strategy) is refused before the run lock is taken
//! or anything is written, so a typo never leaves a trace in the history.
//! Every step of the flow is a decision in the log, and every step of
//! execution is an event on the channel the caller passes in: the CLI renders
//! the same stream an embedding tool receives.

pub mod diagnostics;
mod execute;
pub mod learn;
pub mod select;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Local, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::secret::Redactor;
use crate::config::{Config, Environment};
use crate::detect::EnvironmentDetector;
use crate::exec::DeploymentLog;
use crate::history::{
    DecisionRecord, DeploymentRecord, DeploymentStatus, History, HistoryError, RunLock,
};
use crate::ml::DurationEstimate;
use crate::monitor::{Sampler, Snapshot, SystemMonitor};
use crate::plugin::{HostOptions, PluginError, PluginHost, PluginKind, PluginSet};
use crate::report::{self, Report};
pub use crate::report::{StepRecord, StepStatus};
use learn::ModelState;
pub use select::{
    AdaptiveSelector, CandidateScore, LearningContext, RuleSelector, Selection, SelectionContext,
    StrategySelector,
};

/// `--deployment-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentSize {
    Small,
    #[default]
    Medium,
    Large,
}

impl DeploymentSize {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentSize::Small => "small",
            DeploymentSize::Medium => "medium",
            DeploymentSize::Large => "large",
        }
    }
}

/// What to deploy and how.
#[derive(Debug, Clone, Default)]
pub struct DeploymentRequest {
    /// Service names from the config, in the operator's order.
    pub services: Vec<String>,
    /// A strategy plugin's name, or `None`/`adaptive` to let adeploy choose.
    pub strategy: Option<String>,
    /// `--environment`: skips detection.
    pub environment: Option<Environment>,
    /// `--max-time`: hard deadline of the whole deployment.
    pub max_time: Option<Duration>,
    pub size: DeploymentSize,
    /// Run the decision flow and plan, execute nothing.
    pub dry_run: bool,
    /// Deploy even though memory or disk is over its threshold.
    pub force: bool,
    /// How the operator approves this deployment, for environments in
    /// `approvals.required_for`.
    pub approval: Option<Approval>,
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

/// Something that happened, for live progress. The final outcome is the
/// return value of [`Engine::deploy`], not an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeploymentEvent {
    Decision(DecisionRecord),
    Planned {
        strategy: String,
        waves: Vec<Vec<String>>,
        concurrency: u32,
    },
    WaveStarted {
        wave: u32,
        waves: u32,
    },
    StepStarted {
        service: String,
        /// The inventory host of a fleet step.
        host: Option<String>,
        wave: u32,
    },
    StepFinished {
        service: String,
        host: Option<String>,
        ok: bool,
        message: String,
        seconds: f64,
    },
    Paused {
        seconds: u32,
        reason: String,
    },
    RollbackStarted {
        reason: String,
        services: Vec<String>,
    },
    StepRolledBack {
        service: String,
        host: Option<String>,
        ok: bool,
        message: String,
    },
    Hook {
        phase: String,
        name: String,
        ok: bool,
        message: String,
    },
    /// Repeated failures (`alerts.consecutive_failures`).
    Alert {
        message: String,
    },
    /// `experimental.enable_predictive_scaling` changed the concurrency.
    Scaled {
        from: u32,
        to: u32,
        reason: String,
    },
}

/// Why a deployment could not be attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Bad input: unknown service or strategy, invalid request. Exit code 2.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Monitor(#[from] crate::monitor::MonitorError),
    /// Training the strategy model failed.
    #[error("{0}")]
    Learn(String),
    /// The operator declined the plan (`--interactive`).
    #[error("deployment cancelled at the confirmation prompt")]
    Declined,
}

impl EngineError {
    /// True for errors caused by the request or the config (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            EngineError::BadInput(_) => true,
            EngineError::Plugin(p) => p.is_bad_input(),
            // Corrupted or foreign state, or a state dir another run holds:
            // nothing was attempted, the operator has to act.
            EngineError::History(
                HistoryError::Corrupt { .. }
                | HistoryError::Incompatible { .. }
                | HistoryError::Busy { .. }
                | HistoryError::Locked { .. },
            ) => true,
            _ => false,
        }
    }
}

/// How a deployment ended.
#[derive(Debug, Clone)]
pub struct DeploymentOutcome {
    pub id: String,
    pub status: DeploymentStatus,
    pub success: bool,
    pub report: Report,
    /// Where the JSON report was written (none for a dry run).
    pub report_path: Option<PathBuf>,
    pub log_path: Option<PathBuf>,
}

/// Called with the plan before execution (`--interactive`); `false` declines.
pub type Confirm = Box<dyn Fn(&report::PlanView) -> bool + Send + Sync>;

/// Where the engine keeps its state and finds its plugins.
#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Overrides `state_dir` of the config.
    pub state_dir: Option<PathBuf>,
    /// `--plugins DIR` directories.
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugin host settings (cache directory, world).
    pub host: Option<HostOptions>,
    /// How long a second run waits for the first before refusing.
    pub lock_wait: Option<Duration>,
    /// Pins every metric reading to this snapshot instead of measuring the
    /// machine: for simulations and tests of the load-dependent decisions.
    pub fixed_metrics: Option<Snapshot>,
    /// Takes every metric reading from this function instead of the machine
    /// (wins over `fixed_metrics`): for an embedding tool with its own
    /// monitoring, and for simulations of changing load.
    pub metrics_source: Option<MetricsSource>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("state_dir", &self.state_dir)
            .field("plugin_dirs", &self.plugin_dirs)
            .field("host", &self.host)
            .field("lock_wait", &self.lock_wait)
            .field("fixed_metrics", &self.fixed_metrics)
            .field("metrics_source", &self.metrics_source.is_some())
            .finish()
    }
}

/// A function that returns the machine's load (see
/// [`EngineOptions::metrics_source`]).
pub type MetricsSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The deployment engine. One per process is plenty; it holds the plugin
/// host, the loaded plugins and the system monitor.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use adeploy::config::Config;
/// use adeploy::engine::{DeploymentRequest, Engine, EngineOptions};
///
/// let engine = Engine::new(Config::load(None)?, EngineOptions::default()).await?;
/// let request = DeploymentRequest {
///     services: vec!["api-service".into(), "web-frontend".into()],
///     dry_run: true,
///     ..DeploymentRequest::default()
/// };
/// let outcome = engine.deploy(request, None, None).await?;
/// print!("{}", outcome.report.human_summary());
/// # Ok(()) }
/// ```
pub struct Engine {
    config: Config,
    state_dir: PathBuf,
    plugins: PluginSet,
    _host: PluginHost,
    monitor: Arc<SystemMonitor>,
    selector: Box<dyn StrategySelector>,
    lock_wait: Duration,
    metrics_source: Option<MetricsSource>,
    /// Model retrainings running in the background.
    learning: Mutex<Vec<tokio::task::JoinHandle<learn::Retrained>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// A decision log that also publishes each entry as an event. Secrets are
/// redacted from both.
pub(crate) struct DecisionLog {
    entries: Vec<DecisionRecord>,
    events: Option<UnboundedSender<DeploymentEvent>>,
    pub(crate) redactor: Arc<Redactor>,
}

impl DecisionLog {
    fn new(events: Option<UnboundedSender<DeploymentEvent>>, redactor: Arc<Redactor>) -> Self {
        DecisionLog {
            entries: Vec::new(),
            events,
            redactor,
        }
    }

    pub(crate) fn record(&mut self, decision_type: &str, mut details: serde_json::Value) {
        self.redactor.redact_json(&mut details);
        let d = DecisionRecord {
            timestamp: Utc::now(),
            decision_type: decision_type.to_string(),
            details,
        };
        tracing::debug!(decision = decision_type, details = %d.details, "decision");
        self.emit(DeploymentEvent::Decision(d.clone()));
        self.entries.push(d);
    }

    pub(crate) fn emit(&self, event: DeploymentEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(self.redactor.redact_value(&event));
        }
    }
}

impl Engine {
    /// Loads the plugins and prepares the state directory's paths (nothing is
    /// written until a deployment starts).
    pub async fn new(config: Config, options: EngineOptions) -> Result<Engine, EngineError> {
        let state_dir = options.state_dir.clone().unwrap_or_else(|| {
            let s = &config.state_dir;
            if s.is_absolute() {
                s.clone()
            } else {
                std::env::current_dir().unwrap_or_default().join(s)
            }
        });
        let host = PluginHost::new(
            options
                .host
                .clone()
                .unwrap_or_else(|| HostOptions::for_config(&config)),
        )?;
        let plugins = PluginSet::load(&host, &config, &options.plugin_dirs).await?;
        let monitor = Arc::new(SystemMonitor::new(
            state_dir.parent().unwrap_or(Path::new("/")),
        )?);
        Ok(Engine {
            config,
            state_dir,
            plugins,
            _host: host,
            monitor,
            selector: Box::new(AdaptiveSelector),
            lock_wait: options.lock_wait.unwrap_or(Duration::from_secs(10)),
            metrics_source: match (options.metrics_source, options.fixed_metrics) {
                (Some(f), _) => Some(f),
                (None, Some(s)) => Some(Arc::new(move || Snapshot {
                    timestamp: Utc::now(),
                    ..s
                })),
                (None, None) => None,
            },
            learning: Mutex::new(Vec::new()),
        })
    }

    /// The machine's load now (or the pinned snapshot, see
    /// [`EngineOptions::fixed_metrics`]).
    pub async fn sample_metrics(&self) -> Snapshot {
        if let Some(source) = &self.metrics_source {
            return source();
        }
        let monitor = self.monitor.clone();
        tokio::task::spawn_blocking(move || monitor.sample())
            .await
            .unwrap_or_else(|_| empty_snapshot())
    }

    /// Replaces the adaptive strategy selector (the seam the ML model fills).
    pub fn set_selector(&mut self, selector: Box<dyn StrategySelector>) {
        self.selector = selector;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn plugins(&self) -> &PluginSet {
        &self.plugins
    }

    pub fn monitor(&self) -> &Arc<SystemMonitor> {
        &self.monitor
    }

    /// The history store of this state directory.
    pub fn history(&self) -> Result<History, EngineError> {
        Ok(History::open(&self.state_dir)?)
    }

    /// The strategies that can be named with `--strategy`.
    pub fn strategies(&self) -> Vec<String> {
        self.plugins
            .of_kind(PluginKind::Strategy)
            .map(|p| p.name().to_string())
            .collect()
    }

    fn check_request(&self, req: &DeploymentRequest) -> Result<(), EngineError> {
        if req.services.is_empty() {
            return Err(EngineError::BadInput(
                "no services given: name at least one with --services".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &req.services {
            if !self.config.services.contains_key(s) {
                let known: Vec<&str> = self.config.services.keys().map(String::as_str).collect();
                return Err(EngineError::BadInput(format!(
                    "unknown service '{s}' (the config defines: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            if !seen.insert(s) {
                return Err(EngineError::BadInput(format!(
                    "service '{s}' is named twice"
                )));
            }
        }
        if let Some(name) = req.strategy.as_deref()
            && name != "adaptive"
            && !self.strategies().iter().any(|s| s == name)
        {
            return Err(EngineError::BadInput(format!(
                "unknown strategy '{name}' (installed: adaptive, {})",
                self.strategies().join(", ")
            )));
        }
        Ok(())
    }

    /// Runs one deployment through the whole decision flow. `events` receives
    /// live progress; `confirm` is asked before execution (`--interactive`).
    pub async fn deploy(
        &self,
        req: DeploymentRequest,
        events: Option<UnboundedSender<DeploymentEvent>>,
        confirm: Option<Confirm>,
    ) -> Result<DeploymentOutcome, EngineError> {
        self.check_request(&req)?;
        let started_wall = Utc::now();
        let started = Instant::now();
        let id = format!("deploy_{}", started_wall.timestamp_millis());
        // Secrets of the services' environments: resolved now (a missing
        // variable is bad input, before anything is written) and redacted
        // from everything this deployment writes or sends.
        let mut service_env = std::collections::HashMap::new();
        let mut secrets = Vec::new();
        for name in &req.services {
            if let Some(s) = self.config.services.get(name) {
                let (vars, found) = crate::config::secret::resolve_env(name, &s.env)
                    .map_err(|e| EngineError::BadInput(e.to_string()))?;
                service_env.insert(name.clone(), vars);
                secrets.extend(found);
            }
        }
        let redactor = Arc::new(Redactor::new(secrets));
        let mut log = DecisionLog::new(events, redactor.clone());
        self.note_inactive_experiments(&mut log);

        // Detect environment.
        let detected = EnvironmentDetector::new(&self.plugins, &self.config)
            .detect(req.environment)
            .await?;
        log.record(
            "environment_detected",
            json!({
                "environment": detected.environment,
                "confidence": detected.confidence,
                "source": detected.source,
                "evidence": detected.evidence,
                "notes": detected.notes,
            }),
        );
        let environment = detected.environment;
        let needs_approval = self.config.approvals.required_for.contains(&environment);
        if needs_approval {
            let usable = match &req.approval {
                Some(Approval::Flag { .. }) => true,
                Some(Approval::Prompt { .. }) => confirm.is_some(),
                None => false,
            };
            log.record(
                "approval_required",
                json!({ "environment": environment, "approval": req.approval, "dry_run": req.dry_run }),
            );
            if !usable && !req.dry_run {
                return Err(EngineError::BadInput(format!(
                    "deployments to {environment} need an approval (approvals.required_for): pass --approve, or run with --interactive on a terminal and confirm"
                )));
            }
        }

        // Sample metrics.
        let mut baseline = self.sample_metrics().await;
        let m = &self.config.monitoring;
        if !m.latency_endpoints.is_empty() {
            let latency = crate::monitor::measure_latency(
                &m.latency_endpoints,
                Duration::from_millis(m.latency_timeout_ms),
            )
            .await;
            baseline.network_latency_ms = crate::monitor::median_latency(&latency);
            log.record("network_latency", json!({ "endpoints": latency }));
        }
        log.record(
            "system_metrics",
            serde_json::to_value(baseline).unwrap_or_default(),
        );

        // Load history.
        // Read what exists; creating the database waits until something is
        // deployed (a refused or dry run leaves the state dir untouched).
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
            log.record("model_discarded", json!({ "reason": reason }));
        }
        let training_samples = outcomes.iter().filter(|o| o.features.is_some()).count();
        log.record(
            "history_loaded",
            json!({
                "deployments": outcomes.len(),
                "in_environment": recent.len(),
                "recent_success_rate": if recent.is_empty() { None } else {
                    Some(recent.iter().filter(|ok| **ok).count() as f64 / recent.len() as f64)
                },
                "training_samples": training_samples,
                "model": match &model_state {
                    ModelState::Ready(m) => json!({
                        "samples": m.meta().samples,
                        "trained_at": m.meta().trained_at,
                        "oob_accuracy": m.meta().oob_accuracy,
                    }),
                    ModelState::Missing => json!(null),
                    ModelState::Discarded(_) => json!("discarded"),
                },
            }),
        );

        // Select the strategy.
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
        let strategy = self.safety_override(&req, environment, &baseline, strategy, &mut log);
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
        let limits = self.limits_for(&strategy);
        log.record(
            "resources_calculated",
            json!({ "strategy": strategy, "limits": limits }),
        );
        self.validate_conditions(&req, &baseline, &mut log)?;

        // Plan.
        let plugin = self.plugins.get(&strategy)?.clone();
        let ctx = self.context(&id, &req, environment, &baseline, &limits);
        let planned = plugin.plan(&ctx).await?;
        let rollout = planned.value;
        let mut view = report::PlanView::new(&strategy, &rollout);
        view.warnings = warnings;
        // What the report shares on both paths; each adds what happened
        // (a dry run: nothing, so it "succeeded" with no steps).
        let report_base = report::ReportInput {
            id: &id,
            started_at: started_wall,
            duration: Duration::ZERO,
            success: true,
            status: DeploymentStatus::Succeeded,
            strategy: &strategy,
            environment,
            services: &req.services,
            dry_run: req.dry_run,
            decisions: &[],
            plan: Some(&view),
            steps: &[],
            samples: &[],
            past: &past,
            prediction: prediction.as_ref(),
            patterns: &[],
            alerts: &[],
        };
        log.record("plan", serde_json::to_value(&view).unwrap_or_default());
        log.emit(DeploymentEvent::Planned {
            strategy: strategy.clone(),
            waves: view.waves.clone(),
            concurrency: rollout.concurrency,
        });

        if req.dry_run {
            log.record(
                "dry_run",
                json!({ "executed": false, "reason": "--dry-run: nothing was deployed" }),
            );
            let report = redactor.redact_value(&Report::build(report::ReportInput {
                duration: started.elapsed(),
                decisions: &log.entries,
                samples: &[baseline],
                patterns: &relevant_patterns(
                    &outcomes,
                    &strategy,
                    &req.services,
                    environment,
                    &baseline,
                ),
                ..report_base
            }));
            return Ok(DeploymentOutcome {
                id,
                status: DeploymentStatus::Succeeded,
                success: true,
                report,
                report_path: None,
                log_path: None,
            });
        }

        if let Some(confirm) = &confirm
            && !confirm(&view)
        {
            if needs_approval {
                self.audit(
                    "deployment_declined",
                    json!({ "deployment_id": id, "environment": environment, "services": req.services, "strategy": strategy }),
                );
            }
            return Err(EngineError::Declined);
        }
        if needs_approval && let Some(approval) = &req.approval {
            log.record("approved", json!({ "approval": approval }));
            self.audit(
                "deployment_approved",
                json!({
                    "deployment_id": id,
                    "environment": environment,
                    "services": req.services,
                    "strategy": strategy,
                    "approval": approval,
                }),
            );
        }

        // From here on the deployment is recorded.
        let lock = RunLock::acquire(&self.state_dir, self.lock_wait)?;
        let history = History::open(&self.state_dir)?;
        let recovered = history.recover_interrupted(&lock)?;
        remove_stale_temp_files(&self.state_dir.join("deployment_reports"));
        if !recovered.is_empty() {
            log.record("recovered_interrupted", json!({ "deployments": recovered }));
        }
        let deployment_log =
            DeploymentLog::create(&self.state_dir.join("deployment_logs"), Local::now())
                .map_err(|source| EngineError::Io {
                    what: "cannot create the deployment log".into(),
                    source,
                })?
                .with_redactor(redactor.clone());
        let mut record = DeploymentRecord {
            id: id.clone(),
            started_at: started_wall,
            finished_at: None,
            status: DeploymentStatus::Running,
            environment: environment.as_str().to_string(),
            strategy: strategy.clone(),
            services: req.services.clone(),
            deployment_size: req.size.as_str().to_string(),
            dry_run: false,
            success: None,
            duration_s: None,
            log_path: Some(deployment_log.path().to_path_buf()),
            report_path: None,
            pid: std::process::id(),
            summary: None,
            extra: json!({ "features": features }),
        };
        history.put_deployment(&record)?;
        history.append_decisions(&id, &log.entries)?;
        let flushed = log.entries.len();

        let sampler = match self.metrics_source {
            Some(_) => None,
            None => Some(Sampler::start_with_latency(
                self.monitor.clone(),
                Duration::from_millis(self.config.monitoring.sample_interval_ms.max(10)),
                self.config.monitoring.latency_endpoints.clone(),
                Duration::from_millis(self.config.monitoring.latency_timeout_ms),
            )),
        };
        // Fleet services reuse one ssh connection per host: the sockets live
        // in a private directory of the state dir.
        let fleet = req
            .services
            .iter()
            .any(|s| !self.config.hosts_of(s).is_empty());
        let ssh_control = if fleet && self.config.inventory.ssh.reuse_connections {
            let dir = self.state_dir.join("ssh");
            match private_dir(&dir) {
                Ok(()) => Some(dir),
                Err(e) => {
                    log.record(
                        "ssh_connection_reuse",
                        json!({ "enabled": false, "reason": format!("cannot create {}: {e}", dir.display()) }),
                    );
                    None
                }
            }
        } else {
            None
        };
        // --max-time, else thresholds.max_deployment_time, is a hard deadline.
        let (limit, limit_label) = match req.max_time {
            Some(d) => (
                Some(d),
                format!("--max-time of {} min", d.as_secs().div_ceil(60)),
            ),
            None if self.config.thresholds.max_deployment_time > 0 => {
                let m = self.config.thresholds.max_deployment_time;
                (
                    Some(Duration::from_secs(u64::from(m) * 60)),
                    format!("thresholds.max_deployment_time of {m} min"),
                )
            }
            None => (None, String::new()),
        };
        let deadline = limit.map(|d| started + d);
        let run = execute::Execution {
            engine: self,
            id: &id,
            strategy: &strategy,
            environment,
            size: req.size,
            plugin: &plugin,
            ctx: &ctx,
            rollout: &rollout,
            limits: &limits,
            deadline,
            deadline_label: &limit_label,
            log: &deployment_log,
            streaks: &streaks,
            sampler: sampler.as_ref(),
            ssh_control: ssh_control.as_deref(),
            service_env: &service_env,
        };
        let result = run.run(&mut log).await;
        let samples = match sampler {
            Some(s) => s.stop().await,
            None => vec![baseline],
        };

        let success = result.success;
        let status = result.status;
        log.record(
            "deployment_finished",
            json!({ "success": success, "status": status, "message": result.message }),
        );
        record.finished_at = Some(Utc::now());
        record.status = status;
        record.success = Some(success);
        record.duration_s = Some(started.elapsed().as_secs_f64());
        record.summary = Some(result.message.clone());
        record.extra = json!({ "steps": result.steps, "features": features });

        // Learn: this outcome joins the history the analyses read.
        let mut outcomes = outcomes;
        if let Some(o) = learn::outcome_of(&record) {
            outcomes.insert(0, o);
        }
        let alerts = self.alerts(&outcomes, environment, &req.services, &mut log);
        let rows = training_samples + 1;
        let retrain = learn::retrain_due(rows, &model_state, &self.config.ml_config);
        if let Some(reason) = &retrain {
            log.record(
                "model_retraining",
                json!({ "reason": reason, "in_background": true }),
            );
        }
        let report = redactor.redact_value(&Report::build(report::ReportInput {
            duration: started.elapsed(),
            success,
            status,
            decisions: &log.entries,
            steps: &result.steps,
            samples: &samples,
            patterns: &relevant_patterns(
                &outcomes,
                &strategy,
                &req.services,
                environment,
                &baseline,
            ),
            alerts: &alerts,
            ..report_base
        }));
        let report_path = self
            .state_dir
            .join("deployment_reports")
            .join(format!("deployment_report_{id}.json"));
        report::write_atomically(&report_path, &report).map_err(|source| EngineError::Io {
            what: format!("cannot write {}", report_path.display()),
            source,
        })?;
        record.report_path = Some(report_path.clone());
        history.append_decisions(&id, &log.entries[flushed..])?;
        history.append_samples(&id, &samples.iter().map(Into::into).collect::<Vec<_>>())?;
        let record = redactor.redact_value(&record);
        history.put_deployment(&record)?;
        drop(lock);
        if let Some(reason) = retrain {
            // Training takes up to seconds; the deployment is finished and
            // recorded, so it runs beside whatever the caller does next.
            // `wait_for_learning` collects it.
            let state_dir = self.state_dir.clone();
            let ml = self.config.ml_config.clone();
            let after = id.clone();
            let task = tokio::task::spawn_blocking(move || {
                learn::retrain_logged(&state_dir, &ml, after, reason)
            });
            if let Ok(mut tasks) = self.learning.lock() {
                tasks.push(task);
            }
        }
        Ok(DeploymentOutcome {
            id,
            status,
            success,
            report,
            report_path: Some(report_path),
            log_path: Some(deployment_log.path().to_path_buf()),
        })
    }

    /// Waits for the model retrainings started by earlier deployments and
    /// returns what they did. A CLI run calls this after printing its result;
    /// a long-running embedding may call it whenever it likes (or never: the
    /// tasks finish on their own while the runtime lives).
    pub async fn wait_for_learning(&self) -> Vec<learn::Retrained> {
        let tasks: Vec<_> = match self.learning.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let mut done = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                done.push(r);
            }
        }
        done
    }

    /// Consecutive failures of a service or in the environment (newest
    /// outcome first, this deployment included) at or over
    /// `alerts.consecutive_failures`: a warning, a decision, and the
    /// messages the report recommends on.
    fn alerts(
        &self,
        outcomes: &[crate::ml::Outcome],
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
            log.record(
                "alert",
                json!({ "alerts": alerts, "threshold": n, "streaks": streaks }),
            );
        }
        alerts
    }

    /// `experimental.enable_canary_deployments` installs the built-in
    /// canary strategy (see `plugin::registry`), which makes it a candidate
    /// of the adaptive choice and a valid `--strategy`. Record that it is
    /// active, and which component answers to `canary` (a plugin file may
    /// override the built-in).
    fn note_inactive_experiments(&self, log: &mut DecisionLog) {
        if self.config.experimental.enable_canary_deployments {
            let source = self
                .plugins
                .get("canary")
                .map(|p| p.source().to_string())
                .unwrap_or_else(|_| "missing".to_string());
            log.record(
                "experimental_active",
                json!({
                    "switch": "enable_canary_deployments",
                    "strategy": "canary",
                    "source": source,
                    "adaptive_candidate": self.strategies().iter().any(|s| s == "canary"),
                }),
            );
        }
    }

    fn select_strategy(
        &self,
        req: &DeploymentRequest,
        environment: Environment,
        metrics: &Snapshot,
        recent: &[bool],
        learning: Option<&LearningContext<'_>>,
        log: &mut DecisionLog,
    ) -> (String, Option<Selection>) {
        match req.strategy.as_deref() {
            Some(name) if name != "adaptive" => {
                log.record(
                    "strategy_selected",
                    json!({ "strategy": name, "source": "operator" }),
                );
                (name.to_string(), None)
            }
            _ => {
                let candidates = self.strategies();
                let sel = self.selector.select(&SelectionContext {
                    environment,
                    size: req.size,
                    metrics,
                    services: &req.services,
                    candidates: &candidates,
                    recent_outcomes: recent,
                    config: &self.config,
                    learning,
                    max_time: req.max_time,
                });
                log.record(
                    "strategy_predicted",
                    json!({
                        "strategy": sel.strategy,
                        "confidence": sel.confidence,
                        "method": sel.method,
                        "reasons": sel.reasons,
                        "candidates": sel.scores,
                    }),
                );
                (sel.strategy.clone(), Some(sel))
            }
        }
    }

    /// Is `--max-time` feasible with `strategy`, judged by similar past
    /// deployments? If not, an adaptive choice moves to the best candidate
    /// that fits; an operator's choice (or no candidate fitting) is refused
    /// with the numbers, unless `--force`.
    fn check_max_time(
        &self,
        req: &DeploymentRequest,
        strategy: String,
        selection: Option<&Selection>,
        durations: &BTreeMap<String, DurationEstimate>,
        log: &mut DecisionLog,
    ) -> Result<String, EngineError> {
        let Some(limit) = req.max_time else {
            return Ok(strategy);
        };
        let limit_min = limit.as_secs_f64() / 60.0;
        let judged = |s: &str| {
            durations
                .get(s)
                .filter(|e| e.samples >= crate::ml::duration::MIN_SAMPLES)
        };
        let Some(estimate) = judged(&strategy) else {
            log.record(
                "max_time_check",
                json!({
                    "strategy": strategy,
                    "max_time_minutes": limit_min,
                    "feasible": null,
                    "reason": format!(
                        "fewer than {} similar successful deployments: nothing to judge by",
                        crate::ml::duration::MIN_SAMPLES
                    ),
                }),
            );
            return Ok(strategy);
        };
        if estimate.minutes <= limit_min {
            log.record(
                "max_time_check",
                json!({ "strategy": strategy, "max_time_minutes": limit_min, "feasible": true, "estimate": estimate }),
            );
            return Ok(strategy);
        }
        // Candidates in the selector's order of preference (else fastest first).
        let mut order: Vec<String> = match selection {
            Some(sel) if !sel.scores.is_empty() => {
                sel.scores.iter().map(|c| c.strategy.clone()).collect()
            }
            _ => {
                let mut c = self.strategies();
                c.sort_by(|a, b| {
                    let m = |s: &str| durations.get(s).map_or(f64::INFINITY, |e| e.minutes);
                    m(a).total_cmp(&m(b))
                });
                c
            }
        };
        order.retain(|c| judged(c).is_some_and(|e| e.minutes <= limit_min));
        let faster = order.first().cloned();
        if selection.is_some()
            && let Some(to) = &faster
        {
            log.record(
                "max_time_check",
                json!({
                    "strategy": strategy,
                    "max_time_minutes": limit_min,
                    "feasible": false,
                    "estimate": estimate,
                    "switched_to": to,
                    "switched_estimate": durations.get(to),
                }),
            );
            return Ok(to.clone());
        }
        let numbers = format!(
            "--max-time of {limit_min:.1} min is too short for {strategy}: similar deployments took {:.1} min (median of {}, {})",
            estimate.minutes, estimate.samples, estimate.basis
        );
        log.record(
            "max_time_check",
            json!({
                "strategy": strategy,
                "max_time_minutes": limit_min,
                "feasible": false,
                "estimate": estimate,
                "forced": req.force,
            }),
        );
        if req.force {
            return Ok(strategy);
        }
        let hint = match &faster {
            Some(f) => format!(
                "; {f} is expected to take {:.1} min",
                durations.get(f).map_or(0.0, |e| e.minutes)
            ),
            None => String::new(),
        };
        Err(EngineError::BadInput(format!(
            "{numbers}{hint}; raise --max-time, choose a faster strategy, or pass --force"
        )))
    }

    /// `experimental.enable_rollback_prediction`: the chosen plan's predicted
    /// failure probability over `ml_config.rollback_prediction_threshold`
    /// needs confirmation. Returns the warning to show at the prompt; refuses
    /// without one (non-interactive), unless `--force` or a dry run.
    fn predict_rollback(
        &self,
        req: &DeploymentRequest,
        environment: Environment,
        strategy: &str,
        learning: Option<&LearningContext<'_>>,
        will_confirm: bool,
        log: &mut DecisionLog,
    ) -> Result<Option<String>, EngineError> {
        const MIN_HISTORY: usize = 5;
        let threshold = self.config.ml_config.rollback_prediction_threshold;
        let need = self.config.ml_config.min_training_samples.max(1) as usize;
        let predicted = learning.and_then(|l| match l.model.model() {
            Some(m) if l.training_samples >= need => {
                let p = m
                    .predict_one(
                        &learn::for_strategy(l.features, l.outcomes, strategy),
                        strategy,
                    )
                    .p_success;
                Some((
                    1.0 - p,
                    format!("model trained on {} deployments", m.meta().samples),
                ))
            }
            _ => {
                let same: Vec<_> = l
                    .outcomes
                    .iter()
                    .filter(|o| o.strategy == strategy && o.environment == environment)
                    .collect();
                (same.len() >= MIN_HISTORY).then(|| {
                    let failed = same.iter().filter(|o| !o.success).count();
                    (
                        failed as f64 / same.len() as f64,
                        format!(
                            "{failed} of {} past {strategy} deployments in {environment} failed",
                            same.len()
                        ),
                    )
                })
            }
        });
        let Some((p_fail, basis)) = predicted else {
            log.record(
                "rollback_prediction",
                json!({ "strategy": strategy, "predicted": false, "reason": "too little history to predict from" }),
            );
            return Ok(None);
        };
        let over = p_fail > threshold;
        let action = match (over, req.dry_run, will_confirm, req.force) {
            (false, ..) => "none",
            (true, true, ..) => "reported (dry run)",
            (true, false, true, _) => "confirmation asked",
            (true, false, false, true) => "forced",
            (true, false, false, false) => "refused",
        };
        log.record(
            "rollback_prediction",
            json!({
                "strategy": strategy,
                "p_failure": p_fail,
                "threshold": threshold,
                "basis": basis,
                "action": action,
            }),
        );
        let numbers = format!(
            "predicted failure probability {:.0}% of {strategy} in {environment} is over ml_config.rollback_prediction_threshold {:.0}% ({basis})",
            p_fail * 100.0,
            threshold * 100.0
        );
        match action {
            "refused" => Err(EngineError::BadInput(format!(
                "{numbers}; confirm with --interactive, choose another strategy, or pass --force"
            ))),
            "none" => Ok(None),
            _ => Ok(Some(numbers)),
        }
    }

    /// CPU over `thresholds.high_cpu` moves aggressive to balanced outside
    /// local and development.
    fn safety_override(
        &self,
        _req: &DeploymentRequest,
        environment: Environment,
        metrics: &Snapshot,
        strategy: String,
        log: &mut DecisionLog,
    ) -> String {
        let careful_env = matches!(environment, Environment::Staging | Environment::Production);
        if strategy == "aggressive"
            && careful_env
            && metrics.cpu_percent > self.config.thresholds.high_cpu
            && self.plugins.get("balanced").is_ok()
        {
            log.record(
                "safety_override",
                json!({
                    "from": "aggressive",
                    "to": "balanced",
                    "reason": format!(
                        "CPU {:.1}% is over thresholds.high_cpu {:.1}% in {environment}",
                        metrics.cpu_percent, self.config.thresholds.high_cpu
                    ),
                }),
            );
            return "balanced".to_string();
        }
        log.record("safety_override", json!({ "applied": false }));
        strategy
    }

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
        log.record(
            "validation",
            json!({ "passed": passed, "problems": problems, "forced": req.force && !problems.is_empty() }),
        );
        if passed {
            Ok(())
        } else {
            Err(EngineError::BadInput(format!(
                "system resources too high: {}; wait for lower load, or pass --force",
                problems.join("; ")
            )))
        }
    }

    fn limits_for(&self, strategy: &str) -> crate::config::ResourceLimits {
        self.config
            .resource_limits
            .get(strategy)
            .or_else(|| self.config.resource_limits.get("balanced"))
            .cloned()
            .unwrap_or(crate::config::ResourceLimits {
                cpu_limit: 0.7,
                memory_limit: 0.7,
                concurrency: 4,
            })
    }

    fn context(
        &self,
        id: &str,
        req: &DeploymentRequest,
        environment: Environment,
        metrics: &Snapshot,
        limits: &crate::config::ResourceLimits,
    ) -> crate::plugin::DeploymentContext {
        use crate::plugin::{DeploymentContext, Metrics, Service, WitResourceLimits};
        DeploymentContext {
            deployment_id: id.to_string(),
            environment: environment.into(),
            size: match req.size {
                DeploymentSize::Small => crate::plugin::DeploymentSize::Small,
                DeploymentSize::Medium => crate::plugin::DeploymentSize::Medium,
                DeploymentSize::Large => crate::plugin::DeploymentSize::Large,
            },
            services: req
                .services
                .iter()
                .map(|name| {
                    let s = &self.config.services[name];
                    Service {
                        name: name.clone(),
                        depends_on: s.depends_on.clone(),
                        hosts: self.config.hosts_of(name),
                        has_health_check: s.health.is_some(),
                        timeout_s: u32::try_from(service_timeout(s).as_secs()).unwrap_or(u32::MAX),
                    }
                })
                .collect(),
            metrics: Metrics {
                cpu_percent: metrics.cpu_percent,
                memory_percent: metrics.memory_percent,
                disk_percent: metrics.disk_percent,
                load_per_core: metrics.load_per_core,
                network_latency_ms: metrics.network_latency_ms,
            },
            limits: WitResourceLimits {
                cpu_limit: limits.cpu_limit,
                memory_limit: limits.memory_limit,
                concurrency: limits.concurrency,
            },
            max_time_minutes: req
                .max_time
                .map(|d| u32::try_from(d.as_secs().div_ceil(60)).unwrap_or(u32::MAX)),
            dry_run: req.dry_run,
            config: "{}".to_string(),
        }
    }

    /// The model, its training data and the failure patterns of the history.
    pub fn model_status(&self) -> Result<learn::ModelStatus, EngineError> {
        Ok(learn::status(&self.state_dir, &self.config.ml_config)?)
    }

    /// Trains the strategy model now on the whole history (blocking the
    /// caller's task for the training; seconds at 10,000 deployments).
    pub async fn retrain_model(&self) -> Result<crate::ml::ModelMeta, EngineError> {
        let state_dir = self.state_dir.clone();
        let ml = self.config.ml_config.clone();
        let meta = tokio::task::spawn_blocking(move || learn::retrain(&state_dir, &ml))
            .await
            .map_err(|e| EngineError::Learn(format!("the training task failed: {e}")))?
            .map_err(|e| match e {
                learn::LearnError::History(h) => EngineError::History(h),
                learn::LearnError::TooFewSamples { .. } => EngineError::BadInput(e.to_string()),
                other => EngineError::Learn(other.to_string()),
            })?;
        self.audit(
            "model_retrain",
            json!({ "samples": meta.samples, "oob_accuracy": meta.oob_accuracy }),
        );
        Ok(meta)
    }

    /// Deletes the stored model; `false` when there was none. The next
    /// deployment with enough history trains a new one.
    pub fn reset_model(&self) -> Result<bool, EngineError> {
        let removed = learn::reset(&self.state_dir)?;
        if removed {
            self.audit("model_reset", json!({}));
        }
        Ok(removed)
    }

    /// Appends to the audit log; a failure to do so is a warning, since the
    /// action itself already happened.
    fn audit(&self, action: &str, details: serde_json::Value) {
        let entry = crate::history::AuditEntry {
            timestamp: Utc::now(),
            user: crate::history::current_user(),
            action: action.to_string(),
            details,
        };
        if let Err(e) = History::open(&self.state_dir).and_then(|h| h.append_audit(&entry)) {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }

    /// The audit log, newest first (approvals, model changes).
    pub fn audit_log(&self, limit: usize) -> Result<Vec<crate::history::AuditEntry>, EngineError> {
        if !crate::history::database_path(&self.state_dir).exists() {
            return Ok(Vec::new());
        }
        Ok(History::open(&self.state_dir)?.audit(limit)?)
    }

    /// Recent deployments, newest first. Deployments cut off by a crash show
    /// as interrupted once no run holds the state directory.
    pub fn list(&self, limit: usize) -> Result<Vec<DeploymentRecord>, EngineError> {
        let history = History::open(&self.state_dir)?;
        if let Ok(lock) = RunLock::acquire(&self.state_dir, Duration::ZERO) {
            history.recover_interrupted(&lock)?;
        }
        Ok(history.list_deployments(limit)?)
    }

    /// The report of a finished deployment.
    pub fn report(&self, id: &str) -> Result<Report, EngineError> {
        let path = self
            .state_dir
            .join("deployment_reports")
            .join(format!("deployment_report_{id}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::BadInput(format!(
                    "{} is not a valid report ({e}); it may be from another version",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let history = History::open(&self.state_dir)?;
                match history.get_deployment(id)? {
                    Some(d) => Err(EngineError::BadInput(format!(
                        "deployment '{id}' has no report (status {:?}); see its log {}",
                        d.status,
                        d.log_path
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ))),
                    None => Err(EngineError::BadInput(format!(
                        "no deployment '{id}' in {}; `adeploy list` shows the ids",
                        self.state_dir.display()
                    ))),
                }
            }
            Err(source) => Err(EngineError::Io {
                what: format!("cannot read {}", path.display()),
                source,
            }),
        }
    }
}

/// The failure patterns of `outcomes` that match this deployment.
fn relevant_patterns(
    outcomes: &[crate::ml::Outcome],
    strategy: &str,
    services: &[String],
    environment: Environment,
    metrics: &Snapshot,
) -> Vec<crate::ml::FailurePattern> {
    let all = crate::ml::failure_patterns(outcomes);
    crate::ml::relevant(
        &all,
        strategy,
        environment,
        services,
        Some(metrics.cpu_percent),
        Local::now().hour(),
    )
    .into_iter()
    .cloned()
    .collect()
}

/// Removes the temporary files of report writes cut off by a crash (a report
/// is written to `.tmpXXXX` and renamed): with the run lock held, no other
/// process is writing one.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Creates `dir` (and parents) readable by this user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A service's deadline for one deploy including its health checks.
pub(crate) fn service_timeout(s: &crate::config::ServiceConfig) -> Duration {
    Duration::from_secs(s.timeout_s.unwrap_or(120).max(1))
}

fn empty_snapshot() -> Snapshot {
    Snapshot {
        timestamp: Utc::now(),
        cpu_percent: 0.0,
        memory_percent: 0.0,
        disk_percent: 0.0,
        load_per_core: 0.0,
        network_latency_ms: None,
    }
}

/// Compile-time check: a deployment can run on a multi-threaded runtime
/// (`tokio::spawn(engine.deploy(..))` in an embedding tool).
#[allow(dead_code)]
fn deploy_is_send(e: &Engine) -> impl Send + '_ {
    e.deploy(DeploymentRequest::default(), None, None)
}
