//! The typed schema of `deployment_config.yaml`. Every section accepts only the
//! keys listed here (`deny_unknown_fields`): a typo is an error, not a silently
//! ignored setting. Defaults come from the embedded YAML, not from `Default`
//! (which only lets a partial user file be checked on its own).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PatternMap;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where history, logs, reports live (`--state-dir` / `ADEPLOY_STATE_DIR` win).
    pub state_dir: PathBuf,
    /// Per-strategy budget, keyed by strategy name (custom strategies too).
    pub resource_limits: BTreeMap<String, ResourceLimits>,
    /// System health thresholds.
    pub thresholds: Thresholds,
    /// Machine-learning settings.
    pub ml_config: MlConfig,
    /// Environment detection rules for detector plugins.
    pub environment_detection: EnvironmentDetection,
    /// Command hooks (the seed's scripts).
    pub hooks: Hooks,
    /// Experimental switches of the seed.
    pub experimental: Experimental,
    /// When repeated failures raise an alert.
    pub alerts: Alerts,
    /// Which deployments need an explicit approval.
    pub approvals: Approvals,
    /// System monitoring: sampling, trends, network latency.
    pub monitoring: Monitoring,
    /// Limits every plugin gets unless its own entry says otherwise.
    pub plugin_defaults: PluginLimits,
    /// Per-plugin settings, keyed by plugin name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// The services adeploy can deploy, keyed by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Remote hosts for `target: ssh` services, and how to reach them.
    pub inventory: Inventory,
    /// Where the deployment history lives (redb in the state dir, or PostgreSQL).
    pub history: super::HistoryConfig,
    /// The file this config was loaded from (none for the embedded default).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `resource_limits.<strategy>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Fraction of CPU (0..1] above which no new step starts.
    pub cpu_limit: f64,
    /// Fraction of memory (0..1] above which no new step starts.
    pub memory_limit: f64,
    /// Steps running at once.
    pub concurrency: u32,
}

/// `thresholds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// CPU percent above which adeploy becomes cautious.
    pub high_cpu: f64,
    /// Memory percent above which deployments are blocked.
    pub critical_memory: f64,
    /// Maximum deployment duration in minutes.
    pub max_deployment_time: u32,
    /// Free disk percent on the state directory's filesystem below which
    /// deployments are blocked.
    pub min_free_disk_percent: f64,
}

/// `monitoring`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    /// Interval of background samples during a deployment, in milliseconds.
    pub sample_interval_ms: u64,
    /// Window over which a trend (rising, steady, falling) is computed, in seconds.
    pub trend_window_s: u64,
    /// `host:port` endpoints whose TCP connect time is the network latency.
    pub latency_endpoints: Vec<String>,
    /// Deadline of one latency probe, in milliseconds.
    pub latency_timeout_ms: u64,
}

/// `ml_config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlConfig {
    /// Only `random_forest` is supported.
    pub model_type: String,
    /// Retrain every N deployments.
    pub retrain_frequency: u32,
    /// Below this many deployments, transparent rules decide.
    pub min_training_samples: u32,
    /// Multipliers applied to features.
    pub feature_weights: BTreeMap<String, f64>,
    /// Share of adaptive deployments (outside production) that try a
    /// strategy with fewer than `min_strategy_samples` deployments, 0..1.
    pub exploration_rate: f64,
    /// A strategy with fewer deployments than this is explored, not trusted.
    pub min_strategy_samples: u32,
    /// With `experimental.enable_rollback_prediction`: a predicted failure
    /// probability above this (0..1) needs confirmation.
    pub rollback_prediction_threshold: f64,
}

/// `approvals`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Approvals {
    /// Environments whose deployments need `--approve` or a yes at the
    /// `--interactive` prompt; recorded in the audit log.
    pub required_for: Vec<super::Environment>,
}

/// `alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// Alert after this many consecutive failures of a service or in an
    /// environment (0 turns alerts off).
    pub consecutive_failures: u32,
}

/// `environment_detection`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentDetection {
    /// The variable that names the environment outright.
    pub env_var: String,
    /// Substrings of the host name.
    pub hostname_patterns: PatternMap<String>,
    /// `name` (resolves) or `name:port` (answers).
    pub network_patterns: PatternMap<String>,
    /// Files or directories whose presence (and content) point at an environment.
    pub filesystem_markers: PatternMap<Marker>,
    /// Substrings of running processes' names.
    pub process_patterns: PatternMap<String>,
    /// Weight of one piece of evidence per method.
    pub weights: MethodWeights,
    /// Used when the evidence is missing, tied, or below `min_confidence`.
    pub default_environment: Option<super::Environment>,
    /// Share of the evidence weight (0..1) the winner needs.
    pub min_confidence: f64,
}

/// A filesystem marker: a path, or a path that must contain a text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Marker {
    /// The path exists.
    Path(String),
    /// The file exists and contains `contains`.
    Contains { path: String, contains: String },
}

impl Marker {
    /// The marker's path.
    pub fn path(&self) -> &str {
        match self {
            Marker::Path(p) => p,
            Marker::Contains { path, .. } => path,
        }
    }
}

/// `environment_detection.weights`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodWeights {
    pub env_var: f64,
    pub hostname: f64,
    pub network: f64,
    pub filesystem: f64,
    pub process: f64,
}

/// `hooks`: commands run before and after a deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    pub pre_deployment_scripts: Vec<String>,
    pub post_deployment_scripts: Vec<String>,
}

/// `experimental`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Experimental {
    pub enable_predictive_scaling: bool,
    pub enable_canary_deployments: bool,
    pub enable_rollback_prediction: bool,
}

/// Sandbox limits of one plugin call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Wall-clock deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear-memory cap of one instance, in MiB.
    pub memory_mb: u64,
}

/// Per-plugin overrides of [`PluginLimits`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimitOverrides {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
}

/// `plugins.<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// A component file for this plugin (relative to the config file).
    pub path: Option<PathBuf>,
    /// The sha256 the file must have; a mismatch refuses to load it.
    pub sha256: Option<String>,
    /// What the plugin may do through host imports.
    pub grants: Grants,
    /// Sandbox limits for this plugin.
    pub limits: Option<PluginLimitOverrides>,
    /// The plugin's own settings, passed to it as JSON.
    pub config: Option<serde_yaml::Value>,
}

/// Capabilities granted to a plugin. Everything not listed is denied.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Environment variables: exact names, or prefixes ending in `*`.
    pub env: Vec<String>,
    /// Absolute path prefixes that may be tested and read.
    pub paths: Vec<String>,
    /// `host:port` patterns for resolve, tcp-probe and http-fetch; `*` matches
    /// any host or port, `*.example.com` any subdomain.
    pub network: Vec<String>,
    /// May read the host name.
    pub hostname: bool,
    /// May list running processes.
    pub processes: bool,
}

impl Grants {
    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.paths.is_empty()
            && self.network.is_empty()
            && !self.hostname
            && !self.processes
    }
}

/// A command: a string run by `sh -c`, or an argv list run directly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandSpec {
    /// Run with `sh -c`.
    Shell(String),
    /// Program and arguments, no shell.
    Argv(Vec<String>),
}

impl std::fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandSpec::Shell(s) => f.write_str(s),
            CommandSpec::Argv(v) => f.write_str(&v.join(" ")),
        }
    }
}

/// `services.<name>.health`: exactly one of `http`, `tcp`, `command`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSpec {
    /// A URL that must answer with `expect_status`.
    pub http: Option<String>,
    /// The status `http` must answer with (200 when not given).
    pub expect_status: Option<u16>,
    /// A `host:port` that must accept a TCP connection.
    pub tcp: Option<String>,
    /// A command that must exit 0.
    pub command: Option<CommandSpec>,
    /// Deadline of one probe in milliseconds (2000 when not given).
    pub timeout_ms: Option<u64>,
    /// Where a fleet service's check runs: from this machine (`controller`,
    /// the default; `{host}` in `http`/`tcp` becomes the host's address) or
    /// on the host over ssh (`remote`, `command` checks only).
    pub from: Option<HealthFrom>,
}

/// `services.<name>.health.from`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthFrom {
    #[default]
    Controller,
    Remote,
}

/// Where a service is deployed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Processes on this machine.
    #[default]
    Local,
    /// Commands on the inventory hosts, over the system OpenSSH client.
    Ssh,
}

/// `services.<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Deploys the service.
    pub deploy: Option<CommandSpec>,
    /// Undoes `deploy`; a service without one cannot be rolled back (reported).
    pub rollback: Option<CommandSpec>,
    /// How to tell the service is healthy after deploying it.
    pub health: Option<HealthSpec>,
    /// Services deployed (and healthy) before this one.
    pub depends_on: Vec<String>,
    /// Deadline of one deploy including its health checks, in seconds.
    pub timeout_s: Option<u64>,
    /// Where it runs.
    pub target: TargetKind,
    /// Extra environment variables for its commands.
    pub env: BTreeMap<String, super::secret::EnvValue>,
    /// Working directory of its commands (relative to the config file; for
    /// `target: ssh`, an absolute path on the host).
    pub workdir: Option<PathBuf>,
    /// `target: ssh`: inventory host names...
    pub hosts: Vec<String>,
    /// ...and/or labels: every host carrying all of them.
    pub host_labels: Vec<String>,
}

/// `inventory`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Inventory {
    /// Hosts by name, in the order fleet steps are planned.
    pub hosts: BTreeMap<String, InventoryHost>,
    /// How ssh connects to them.
    pub ssh: SshSettings,
}

/// `inventory.hosts.<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryHost {
    /// Host name or IP address (ssh's `HostName`; a `~/.ssh/config` alias
    /// works too).
    pub address: String,
    /// 22 when not given (or what `~/.ssh/config` says, if it says).
    pub port: Option<u16>,
    /// The login; ssh's default (or `~/.ssh/config`) when not given.
    pub user: Option<String>,
    /// A private key; the agent and `~/.ssh/config` otherwise.
    pub identity_file: Option<PathBuf>,
    /// Labels services select hosts by (`host_labels`).
    pub labels: Vec<String>,
    /// Overrides `inventory.ssh.connect_timeout_s` for this host.
    pub connect_timeout_s: Option<u32>,
}

/// `inventory.ssh`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SshSettings {
    /// `true`: unknown or changed host keys are refused
    /// (`StrictHostKeyChecking=yes`); `false`: new hosts are trusted on
    /// first use, changed keys still refused (`accept-new`).
    pub strict_host_key_checking: bool,
    /// A known_hosts file instead of `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// An ssh client config instead of `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// Seconds to establish a connection before the step fails.
    pub connect_timeout_s: u32,
    /// Keep one connection per host open and reuse it (ControlMaster).
    pub reuse_connections: bool,
    /// How long an idle reused connection stays open, seconds.
    pub control_persist_s: u32,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            strict_host_key_checking: true,
            known_hosts: None,
            config_file: None,
            connect_timeout_s: 10,
            reuse_connections: true,
            control_persist_s: 60,
        }
    }
}
