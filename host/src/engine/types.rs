//! What goes into a deployment and what comes out: the request, the engine's
//! options, the outcome, and how the machine's load is read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::Environment;
use crate::history::DeploymentStatus;
use crate::monitor::{Snapshot, SystemMonitor};
use crate::plugin::HostOptions;
use crate::report::{self, Approval, Report};

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
    /// `--set-version SERVICE=VERSION`: the version each named service
    /// deploys, over its `services.<name>.version` (exported to its
    /// commands as `ADEPLOY_VERSION`, checked by health expectations that
    /// use `${ADEPLOY_VERSION}`, recorded in the report). A service not in
    /// the config, or a malformed version, is refused as bad input before
    /// anything is written.
    pub versions: BTreeMap<String, String>,
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

/// Asks the operator (`--interactive`): the plan before execution (`false`
/// declines the deployment), and whether an inconclusive analysis may pass
/// where the environment's policy is `ask` (`false` fails the step). Called
/// from the engine's tasks, one question at a time; it may block.
pub type Confirm = Box<dyn Fn(&Question<'_>) -> bool + Send + Sync>;

/// What [`Confirm`] is asked.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Question<'a> {
    /// Deploy with this plan?
    Plan(&'a report::PlanView),
    /// A step's analysis had no data to judge by and
    /// `environments.<env>.analysis.inconclusive` is `ask`: go on as if it
    /// passed?
    Inconclusive(&'a InconclusiveAnalysis),
}

impl Question<'_> {
    /// The yes/no question, one line (`Deploy with this plan?`).
    pub fn prompt(&self) -> String {
        match self {
            Question::Plan(_) => "Deploy with this plan?".to_string(),
            Question::Inconclusive(q) => format!(
                "The analysis of {} is inconclusive: go on as if it passed (no fails the step)?",
                q.step
            ),
        }
    }
}

/// The inconclusive analysis of one step, for [`Question::Inconclusive`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InconclusiveAnalysis {
    /// `service` or `service@host`.
    pub step: String,
    pub environment: Environment,
    /// The metrics without a verdict, each with why.
    pub verdicts: Vec<crate::analysis::MetricVerdict>,
}

impl InconclusiveAnalysis {
    /// What to show above the prompt: one line per metric.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "analysis of {} in {}: inconclusive\n",
            self.step, self.environment
        );
        for v in &self.verdicts {
            out.push_str(&format!("  {}: {}\n", v.metric, v.reason));
        }
        out
    }
}

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
    /// Seeds the draws that decide whether an adaptive deployment explores
    /// (simulations and tests that must repeat); `None`: from the OS.
    pub exploration_seed: Option<u64>,
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
            .field("exploration_seed", &self.exploration_seed)
            .finish()
    }
}

/// A function that returns the machine's load (see
/// [`EngineOptions::metrics_source`]).
pub type MetricsSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Where readings of the machine's load come from: the embedder's source
/// (or the pinned snapshot), else the system monitor.
#[derive(Clone)]
pub(crate) struct Metering {
    pub source: Option<MetricsSource>,
    pub monitor: Arc<SystemMonitor>,
}

impl Metering {
    pub fn new(
        options_source: Option<MetricsSource>,
        fixed: Option<Snapshot>,
        monitor: Arc<SystemMonitor>,
    ) -> Metering {
        let source = match (options_source, fixed) {
            (Some(f), _) => Some(f),
            (None, Some(s)) => Some(Arc::new(move || Snapshot {
                timestamp: Utc::now(),
                ..s
            }) as MetricsSource),
            (None, None) => None,
        };
        Metering { source, monitor }
    }

    /// Whether readings come from the machine (and a background sampler is
    /// worth running).
    pub fn measures_the_machine(&self) -> bool {
        self.source.is_none()
    }

    /// The machine's load now.
    pub async fn sample(&self) -> Snapshot {
        if let Some(source) = &self.source {
            return source();
        }
        let monitor = self.monitor.clone();
        tokio::task::spawn_blocking(move || monitor.sample())
            .await
            .unwrap_or_else(|_| Snapshot {
                timestamp: Utc::now(),
                cpu_percent: 0.0,
                memory_percent: 0.0,
                disk_percent: 0.0,
                load_per_core: 0.0,
                network_latency_ms: None,
            })
    }
}

/// The deployment's hard deadline, and what set it: `--max-time`, else
/// `thresholds.max_deployment_time` (none when both are off).
pub(crate) fn deadline_label(
    req: &DeploymentRequest,
    config: &crate::config::Config,
) -> Option<(Duration, String)> {
    match req.max_time {
        Some(d) => Some((d, format!("--max-time of {} min", d.as_secs().div_ceil(60)))),
        None if config.thresholds.max_deployment_time > 0 => {
            let m = config.thresholds.max_deployment_time;
            Some((
                Duration::from_secs(u64::from(m) * 60),
                format!("thresholds.max_deployment_time of {m} min"),
            ))
        }
        None => None,
    }
}
