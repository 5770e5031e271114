//! The engine: the decision flow of one deployment, and the queries around
//! it (list, report, audit, model, diagnostics).
//!
//! [`Engine::deploy`] is three typed phases:
//!
//! ```text
//! preflight(request) -> Planned      check the request, detect, sample, load history,
//!                                    choose the strategy, validate, plan (writes nothing)
//! execute(Planned)   -> Executed     confirm, lock, record `running`, run the waves
//!                                    (a dry run executes nothing)
//! record(Executed)   -> DeploymentOutcome
//!                                    decisions, alerts, report file, history, learning
//! ```
//!
//! Why it is shaped this way: everything that can be refused for bad input
//! (unknown services, unknown strategy) is refused in `preflight`, before the
//! run lock is taken or anything is written, so a typo never leaves a trace
//! in the history. Every step of the flow is a typed [`Decision`] in the
//! log, and every step of execution is a [`DeploymentEvent`] on the channel
//! the caller passes in: the CLI renders the same stream an embedding tool
//! receives.
//!
//! The modules: `preflight/` (phase one; `choose.rs` the strategy and its
//! checks), `execute/` (phase two), `record.rs` (phase three), `query.rs`
//! (list, report, audit, model), `diagnostics.rs`; beneath them `types.rs`
//! (request, options, outcome), `error.rs`, `event.rs`, `log.rs` (decision
//! and audit log), `context.rs` (what plugins are told), `select.rs` (the
//! adaptive selector) and `learn.rs` (history → learning). The modules
//! beneath import nothing from this file; the phases and queries import only
//! [`Engine`].

mod analysis;
mod context;
pub mod diagnostics;
mod error;
mod event;
mod execute;
pub mod learn;
mod log;
mod past;
mod preflight;
mod query;
mod reanalysis;
mod record;
mod reports;
pub mod select;
mod types;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use crate::history::HistoryStore;
use crate::monitor::{Snapshot, SystemMonitor};
use crate::plugin::{DeploymentScope, HostOptions, PluginHost, PluginKind, PluginSet};

pub use crate::report::{
    Approval, CandidateScore, Decision, DecisionEntry, DriftDetection, Exploration, StepRecord,
    StepStatus,
};
pub use error::EngineError;
pub use event::DeploymentEvent;
pub use reanalysis::{ReanalysedMetric, Reanalysis};
pub use reports::HistoryReport;
pub use select::{
    AdaptiveSelector, LearningContext, RuleSelector, Selection, SelectionContext, StrategySelector,
};
pub use types::{
    Confirm, DeploymentOutcome, DeploymentRequest, DeploymentSize, EngineOptions,
    InconclusiveAnalysis, MetricsSource, Question,
};

use execute::{Executed, Settings};
use preflight::Planned;
use types::Metering;

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
    _host: Option<PluginHost>,
    /// False for an engine opened with [`Engine::for_queries`].
    plugins_loaded: bool,
    metering: Metering,
    selector: Box<dyn StrategySelector>,
    lock_wait: Duration,
    /// The history (`history:` settings: redb in the state directory, or
    /// PostgreSQL), opened on first use and then shared by every call.
    history: tokio::sync::OnceCell<HistoryStore>,
    /// Model retrainings (and downsampling) running in the background.
    learning: Mutex<Vec<tokio::task::JoinHandle<Option<learn::Retrained>>>>,
    /// The exploration draws (seeded by `EngineOptions::exploration_seed`).
    draws: Mutex<rand::rngs::StdRng>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the plugins and prepares the state directory's paths (nothing is
    /// written until a deployment starts).
    pub async fn new(config: Config, options: EngineOptions) -> Result<Engine, EngineError> {
        let state_dir = Engine::state_dir_of(&config, &options);
        // The monitor first: it takes its first CPU reading now, so the
        // window the first figure needs passes while the plugins load.
        let monitor = Engine::monitor_for(&state_dir)?;
        let host = PluginHost::new(
            options
                .host
                .clone()
                .unwrap_or_else(|| HostOptions::for_config(&config)),
        )?;
        let plugins = PluginSet::load(&host, &config, &options.plugin_dirs).await?;
        Engine::assemble(config, options, state_dir, monitor, plugins, Some(host))
    }

    /// An engine for the queries only (`list`, `report`, `audit_log`,
    /// the model): no plugin host, no plugin loaded, so a config that names
    /// plugins from a `--plugins` directory, or a broken plugin, does not
    /// stop anyone from reading the history. `deploy` and `diagnostics`
    /// refuse with [`EngineError::QueriesOnly`].
    pub fn for_queries(config: Config, options: EngineOptions) -> Result<Engine, EngineError> {
        let state_dir = Engine::state_dir_of(&config, &options);
        let monitor = Engine::monitor_for(&state_dir)?;
        Engine::assemble(
            config,
            options,
            state_dir,
            monitor,
            PluginSet::default(),
            None,
        )
    }

    fn state_dir_of(config: &Config, options: &EngineOptions) -> PathBuf {
        options.state_dir.clone().unwrap_or_else(|| {
            let s = &config.state_dir;
            if s.is_absolute() {
                s.clone()
            } else {
                std::env::current_dir().unwrap_or_default().join(s)
            }
        })
    }

    fn monitor_for(state_dir: &Path) -> Result<Arc<SystemMonitor>, EngineError> {
        Ok(Arc::new(SystemMonitor::new(
            state_dir.parent().unwrap_or(Path::new("/")),
        )?))
    }

    fn assemble(
        config: Config,
        options: EngineOptions,
        state_dir: PathBuf,
        monitor: Arc<SystemMonitor>,
        plugins: PluginSet,
        host: Option<PluginHost>,
    ) -> Result<Engine, EngineError> {
        Ok(Engine {
            config,
            state_dir,
            plugins,
            plugins_loaded: host.is_some(),
            _host: host,
            metering: Metering::new(options.metrics_source, options.fixed_metrics, monitor),
            selector: Box::new(AdaptiveSelector),
            lock_wait: options.lock_wait.unwrap_or(Duration::from_secs(10)),
            history: tokio::sync::OnceCell::new(),
            learning: Mutex::new(Vec::new()),
            draws: Mutex::new(match options.exploration_seed {
                Some(seed) => rand::SeedableRng::seed_from_u64(seed),
                None => rand::SeedableRng::from_entropy(),
            }),
        })
    }

    /// A uniform draw in [0, 1) for the adaptive choice's exploration.
    pub(crate) fn draw(&self) -> f64 {
        match self.draws.lock() {
            Ok(mut rng) => rand::Rng::r#gen(&mut *rng),
            Err(_) => rand::random(),
        }
    }

    /// Runs one deployment through the whole decision flow. `events` receives
    /// live progress; `confirm` is asked before execution (`--interactive`).
    pub async fn deploy(
        &self,
        req: DeploymentRequest,
        events: Option<UnboundedSender<DeploymentEvent>>,
        confirm: Option<Confirm>,
    ) -> Result<DeploymentOutcome, EngineError> {
        if !self.plugins_loaded {
            return Err(EngineError::QueriesOnly { what: "deploy" });
        }
        // One scope for the whole deployment: every plugin call in it (and
        // in the tasks it spawns) shares the plugin time budget and the
        // deadline, and its output is rate-limited.
        let deadline =
            types::deadline_label(&req, &self.config).map(|(d, _)| std::time::Instant::now() + d);
        let scope = Arc::new(DeploymentScope::new(
            Duration::from_millis(self.config.plugin_defaults.deployment_budget_ms),
            deadline,
        ));
        let outcome = scope
            .clone()
            .within(async {
                let planned = self.preflight(req, events, confirm).await?;
                let executed = self.execute(planned).await?;
                self.record(executed).await
            })
            .await;
        scope.gate().summarize("this deployment");
        outcome
    }

    /// Phase two (see [`execute`]): what execution may use of the engine.
    async fn execute(&self, planned: Planned) -> Result<Executed, EngineError> {
        // The deployment's own config: its versions and its environment's
        // settings (`environments.<env>`).
        let config = planned.config.clone();
        // A dry run writes nothing, so it needs no history opened for writing.
        let history = if planned.req.dry_run {
            None
        } else {
            Some(self.history().await?)
        };
        let settings = Settings {
            history,
            config: &config,
            state_dir: &self.state_dir,
            hooks: self.plugins.of_kind(PluginKind::Hook).cloned().collect(),
            metering: &self.metering,
            lock_wait: self.lock_wait,
        };
        execute::execute(planned, &settings).await
    }

    /// The machine's load now (or the pinned snapshot, see
    /// [`EngineOptions::fixed_metrics`]).
    pub async fn sample_metrics(&self) -> Snapshot {
        self.metering.sample().await
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
        &self.metering.monitor
    }

    /// The strategies that can be named with `--strategy`.
    pub fn strategies(&self) -> Vec<String> {
        self.plugins
            .of_kind(PluginKind::Strategy)
            .map(|p| p.name().to_string())
            .collect()
    }

    /// Waits for the model retrainings (and the history's downsampling of
    /// old metric samples) started by earlier deployments and returns what
    /// the retrainings did. A CLI run calls this after printing its result;
    /// a long-running embedding may call it whenever it likes (or never: the
    /// tasks finish on their own while the runtime lives).
    pub async fn wait_for_learning(&self) -> Vec<learn::Retrained> {
        let tasks: Vec<_> = match self.learning.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let mut done = Vec::new();
        for t in tasks {
            if let Ok(Some(r)) = t.await {
                done.push(r);
            }
        }
        done
    }
}

/// Compile-time check: a deployment can run on a multi-threaded runtime
/// (`tokio::spawn(engine.deploy(..))` in an embedding tool).
#[allow(dead_code)]
fn deploy_is_send(e: &Engine) -> impl Send + '_ {
    e.deploy(DeploymentRequest::default(), None, None)
}
