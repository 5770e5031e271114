//! [`EngineError`]: why a deployment (or a query) could not be done. Every
//! variant names its subject; [`EngineError::is_bad_input`] sorts them into
//! bad input (exit code 2: the request, the config, the state directory)
//! and runtime failures (exit code 1).

use std::path::PathBuf;

use crate::config::secret::SecretError;
use crate::config::{ConfigError, Environment};
use crate::history::{DeploymentStatus, HistoryError};
use crate::ml::DurationEstimate;
use crate::monitor::MonitorError;
use crate::plugin::PluginError;
use crate::report::RenderError;

use super::learn::LearnError;

/// Why a deployment could not be attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("no services given: name at least one with --services")]
    NoServices,
    #[error(
        "unknown service '{name}' (the config defines: {})",
        list_or_none(known)
    )]
    UnknownService { name: String, known: Vec<String> },
    #[error("service '{name}' is named twice")]
    DuplicateService { name: String },
    #[error("unknown strategy '{name}' (installed: adaptive, {})", installed.join(", "))]
    UnknownStrategy {
        name: String,
        /// The strategy plugins (`adaptive` chooses among them).
        installed: Vec<String>,
    },
    /// A service's `env` cannot be resolved (an unset `from_env`, a short
    /// secret).
    #[error("{error}")]
    Secret { service: String, error: SecretError },
    #[error(
        "deployments to {environment} need an approval (approvals.required_for; {environment} is named by {}): pass --approve, or run with --interactive on a terminal and confirm",
        crate::terminal::safe(&named_by.join(", "))
    )]
    ApprovalRequired {
        environment: Environment,
        /// The credible signals that name it (`--environment`,
        /// `DEPLOYMENT_ENVIRONMENT="production"`, a detector's evidence).
        named_by: Vec<String>,
    },
    /// The environment cannot be determined (an unreadable
    /// `DEPLOYMENT_ENVIRONMENT`).
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    /// The deployment's deadline passed before anything was deployed.
    #[error("the deployment's deadline ({limit}) was reached during {phase}; nothing was deployed")]
    OutOfTime { phase: &'static str, limit: String },
    /// The engine was opened for queries only ([`Engine::for_queries`](super::Engine::for_queries)).
    #[error(
        "this engine was opened for queries only, without plugins; open it with Engine::new to {what}"
    )]
    QueriesOnly { what: &'static str },
    /// `--max-time` is shorter than similar past deployments took.
    #[error(
        "--max-time of {max_time_minutes:.1} min is too short for {strategy}: similar deployments took {:.1} min (median of {}, {}){}; raise --max-time, choose a faster strategy, or pass --force",
        estimate.minutes,
        estimate.samples,
        estimate.basis,
        faster_hint(faster.as_ref())
    )]
    MaxTimeTooShort {
        strategy: String,
        max_time_minutes: f64,
        estimate: DurationEstimate,
        /// A strategy expected to fit, with its expected minutes.
        faster: Option<(String, f64)>,
    },
    /// `experimental.enable_rollback_prediction` refused a deployment
    /// nobody confirmed.
    #[error(
        "{}; confirm with --interactive, choose another strategy, or pass --force",
        failure_numbers(strategy, *environment, *p_failure, *threshold, basis)
    )]
    PredictedFailure {
        strategy: String,
        environment: Environment,
        p_failure: f64,
        threshold: f64,
        basis: String,
    },
    /// Memory or disk over its threshold (`--force` overrides).
    #[error(
        "system resources too high: {}; wait for lower load, or pass --force",
        problems.join("; ")
    )]
    ResourcesTooHigh { problems: Vec<String> },
    #[error("no deployment '{id}' in {}; `adeploy list` shows the ids", state_dir.display())]
    UnknownDeployment { id: String, state_dir: PathBuf },
    #[error(
        "deployment '{id}' has no report (status {}); see its log {}",
        status.as_str(),
        log.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    NoReport {
        id: String,
        status: DeploymentStatus,
        log: Option<PathBuf>,
    },
    #[error(
        "deployment '{id}' has no metric analysis to re-run (its services had no `analysis`, or it stopped before any step was analysed)"
    )]
    NoAnalysis { id: String },
    #[error("{} is not a valid report ({reason}); it may be from another version", path.display())]
    InvalidReport { path: PathBuf, reason: String },
    /// A metric of a service's analysis cannot be used: its provider rejects
    /// the query, refuses its config or grants, or is not a loaded
    /// metric-provider plugin; or the query needs a placeholder this
    /// deployment has no value for. Checked before anything runs.
    #[error("services.{service}.analysis: {message}")]
    Analysis {
        service: String,
        metric: String,
        message: String,
        /// The operator must fix the config (exit 2), rather than a
        /// provider that failed (exit 1).
        bad_input: bool,
    },
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
    /// The system monitor cannot read the machine.
    #[error(transparent)]
    Monitor {
        #[from]
        source: MonitorError,
    },
    /// Training the strategy model failed (or has too little to train on).
    #[error(transparent)]
    Learn {
        #[from]
        source: LearnError,
    },
    /// The operator declined the plan (`--interactive`).
    #[error("deployment cancelled at the confirmation prompt")]
    Declined,
    /// The request does not fit the config: `--set-version` of a service the
    /// config does not define, or a health expectation that needs a version
    /// the service does not have.
    #[error(transparent)]
    Config {
        #[from]
        source: ConfigError,
    },
    /// A report could not be rendered or written (an unknown format name is
    /// bad input).
    #[error(transparent)]
    Render {
        #[from]
        source: RenderError,
    },
    /// A container service cannot be run here: no runtime installed (checked
    /// before anything is written).
    #[error("services.{service}: {source}")]
    Container {
        service: String,
        #[source]
        source: Box<crate::exec::container::ContainerError>,
    },
    /// An experimental built-in strategy named with `--strategy` in an
    /// environment where its switch is off.
    #[error(
        "strategy '{name}' is experimental and off in {environment} ({switch}); turn it on under environments.{environment}.experimental, or choose another strategy"
    )]
    StrategyNotEnabled {
        name: String,
        environment: Environment,
        /// The config key that turns it on.
        switch: String,
    },
}

impl EngineError {
    /// True for errors caused by the request, the config or the state
    /// directory (exit code 2): nothing was attempted, the operator has to
    /// act.
    pub fn is_bad_input(&self) -> bool {
        match self {
            EngineError::NoServices
            | EngineError::UnknownService { .. }
            | EngineError::DuplicateService { .. }
            | EngineError::UnknownStrategy { .. }
            | EngineError::Secret { .. }
            | EngineError::ApprovalRequired { .. }
            | EngineError::Detect(_)
            | EngineError::MaxTimeTooShort { .. }
            | EngineError::PredictedFailure { .. }
            | EngineError::ResourcesTooHigh { .. }
            | EngineError::UnknownDeployment { .. }
            | EngineError::NoReport { .. }
            | EngineError::NoAnalysis { .. }
            | EngineError::InvalidReport { .. }
            | EngineError::Config { .. }
            | EngineError::StrategyNotEnabled { .. }
            | EngineError::Learn {
                source: LearnError::TooFewSamples { .. },
            } => true,
            EngineError::Analysis { bad_input, .. } => *bad_input,
            EngineError::Container { source, .. } => source.is_bad_input(),
            EngineError::Plugin(p) => p.is_bad_input(),
            EngineError::Render {
                source: RenderError::UnknownFormat { .. },
            } => true,
            // Corrupted, foreign or newer state, an unreachable or
            // misconfigured shared history, a lock another run holds.
            EngineError::History(h) => h.needs_operator(),
            _ => self.is_busy(),
        }
    }

    /// True when another run holds what this one needs (the deployment lock
    /// of its services, the state directory, the model's retraining) and the
    /// wait for it ran out: nothing was attempted, and trying again later
    /// may succeed. The CLI exits with 75 (`EX_TEMPFAIL`) for these, so a CI
    /// job can retry exactly this case.
    pub fn is_busy(&self) -> bool {
        match self {
            EngineError::History(h) => h.is_busy(),
            EngineError::Learn {
                source: LearnError::RetrainBusy { .. },
            } => true,
            _ => false,
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn faster_hint(faster: Option<&(String, f64)>) -> String {
    match faster {
        Some((strategy, minutes)) => format!("; {strategy} is expected to take {minutes:.1} min"),
        None => String::new(),
    }
}

/// The numbers of a failure prediction over its threshold: the refusal's
/// message, and the warning shown at the confirmation prompt.
pub(crate) fn failure_numbers(
    strategy: &str,
    environment: Environment,
    p_failure: f64,
    threshold: f64,
    basis: &str,
) -> String {
    format!(
        "predicted failure probability {:.0}% of {strategy} in {environment} is over ml_config.rollback_prediction_threshold {:.0}% ({basis})",
        p_failure * 100.0,
        threshold * 100.0
    )
}
