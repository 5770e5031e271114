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
    /// Settings that differ per environment, applied over the ones above
    /// once the environment is known ([`Config::for_environment`](super::Config::for_environment)).
    pub environments: BTreeMap<super::Environment, EnvironmentSettings>,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// Window over which a trend (rising, steady, falling) is computed, in
    /// seconds: the history's stored samples within it plus live ones.
    pub trend_window_s: u64,
    /// Fewer samples than this in the window: "not enough data", no trend.
    pub trend_min_samples: u32,
    /// Samples spanning less than this many seconds: "not enough data".
    pub trend_min_span_s: u64,
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
    /// Each feature's share of the forest's attention: how likely it is to
    /// be among the columns a tree sees (0: never). Keys: the feature names
    /// and aliases of `ml::KNOWN_WEIGHT_KEYS`; others are refused.
    pub feature_weights: BTreeMap<String, f64>,
    /// An outcome's weight halves with every this many newer outcomes of
    /// the same strategy in the same environment (0: no decay).
    pub half_life_deployments: f64,
    /// An outcome's weight halves with every this many days of age (0: no
    /// decay).
    pub half_life_days: f64,
    /// Change detection: the corrected p-value below which a strategy's
    /// success rate in an environment has changed (0: detection off).
    pub drift_p_value: f64,
    /// After a change outside production, the share of adaptive
    /// deployments there that re-check the candidates, 0..1.
    pub drift_exploration_rate: f64,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    pub pre_deployment_scripts: Vec<String>,
    pub post_deployment_scripts: Vec<String>,
}

/// `experimental`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Experimental {
    pub enable_predictive_scaling: bool,
    pub enable_canary_deployments: bool,
    pub enable_rollback_prediction: bool,
}

/// Sandbox limits of plugin calls (`plugin_defaults`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Wall-clock deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear-memory cap of one instance, in MiB.
    pub memory_mb: u64,
    /// Plugin time of one deployment, all calls together (detectors, plan,
    /// on-progress, hooks, metric queries), in milliseconds.
    pub deployment_budget_ms: u64,
    /// The longest pause a strategy may ask for (`pause` decisions and a
    /// wave's `pause-after-s`), in seconds.
    pub max_pause_s: u32,
    /// Whether a plugin file may replace a built-in plugin of the same name
    /// (always announced; `false` refuses it).
    pub allow_overrides: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout_ms: 2000,
            memory_mb: 128,
            deployment_budget_ms: 300_000,
            max_pause_s: 300,
            allow_overrides: true,
        }
    }
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
    /// A text the `http` answer's body must contain. `${ADEPLOY_DEPLOYMENT_ID}`,
    /// `${ADEPLOY_VERSION}` and `${ADEPLOY_SERVICE}` are replaced first, so
    /// an old instance still holding the port fails the check.
    pub expect_body: Option<String>,
    /// A regular expression (Rust `regex` syntax) the body must match; the
    /// same variables are replaced, their values matched literally.
    pub expect_body_regex: Option<String>,
    /// Headers the `http` answer must carry: name (any case) → a text the
    /// value must contain (variables replaced).
    pub expect_headers: BTreeMap<String, String>,
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
    /// A container image run by podman or docker: here, or with `hosts` /
    /// `host_labels` on those inventory hosts over ssh.
    Container,
}

/// `services.<name>.runtime`: the container runtime a `target: container`
/// service runs under.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Podman,
    Docker,
}

impl ContainerRuntime {
    /// The program's name.
    pub fn program(self) -> &'static str {
        match self {
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Docker => "docker",
        }
    }
}

/// `services.<name>.strategy_mode`: how a container replaces the running one.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerMode {
    /// Stop the old container, start the new one (the old one is kept,
    /// stopped, until the deployment is recorded).
    #[default]
    Replace,
    /// Start the new one beside the old one on the other slot's port, judge
    /// it, run `switch`, then stop the old one.
    BlueGreen,
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
    /// The version this deployment puts out (`run --set-version NAME=V`
    /// overrides it). Exported to its commands as `ADEPLOY_VERSION`,
    /// usable in health expectations as `${ADEPLOY_VERSION}`, recorded in
    /// the history and the report.
    pub version: Option<String>,
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
    /// Metrics judged while each step soaks (`services.<name>.analysis`).
    pub analysis: Option<ServiceAnalysis>,
    /// `target: container`: the image without its tag (`localhost/web`,
    /// `registry.example.com/team/web`); `version` is the tag.
    pub image: Option<String>,
    /// `target: container`: podman or docker (default: whichever is installed,
    /// podman first).
    pub runtime: Option<ContainerRuntime>,
    /// `target: container`: options before the runtime's subcommand
    /// (`["--runtime", "runc"]`).
    pub runtime_options: Vec<String>,
    /// `target: container`: extra options of its `run` (`["--network", "host"]`).
    pub run_options: Vec<String>,
    /// `target: container`: `--publish` specs (`127.0.0.1:8080:80`).
    pub ports: Vec<String>,
    /// `target: container`: `--volume` specs.
    pub volumes: Vec<String>,
    /// `target: container`: the command and arguments after the image.
    pub args: Vec<String>,
    /// `target: container`: replace (default) or blue-green.
    pub strategy_mode: ContainerMode,
    /// `strategy_mode: blue-green`: the two ports the slots (blue, green)
    /// take turns on; the new container's is `${ADEPLOY_PORT}`.
    pub slot_ports: Vec<u16>,
    /// `strategy_mode: blue-green`: sends traffic to the new container (e.g.
    /// rewrites a proxy's upstream to `$ADEPLOY_PORT` and reloads it); run
    /// after the new one is judged healthy, and again towards the old one on
    /// rollback.
    pub switch: Option<CommandSpec>,
    /// `target: container`: seconds the runtime's `stop` waits before it
    /// kills (default 10).
    pub stop_timeout_s: Option<u32>,
}

impl ServiceConfig {
    /// Runs on inventory hosts over ssh: `target: ssh`, or `target:
    /// container` with `hosts`/`host_labels`.
    pub fn is_fleet(&self) -> bool {
        match self.target {
            TargetKind::Ssh => true,
            TargetKind::Container => !self.hosts.is_empty() || !self.host_labels.is_empty(),
            TargetKind::Local => false,
        }
    }
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

/// `environments.<env>`: what one environment changes. Every key is
/// optional; what is not given comes from the top-level section of the same
/// name. (Room for more per-environment sections: each is a field here.)
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentSettings {
    /// Over `thresholds`.
    pub thresholds: ThresholdsOverride,
    /// Over `resource_limits`, per strategy (a strategy missing from
    /// `resource_limits` needs all three values).
    pub resource_limits: BTreeMap<String, ResourceLimitsOverride>,
    /// Over `experimental`.
    pub experimental: ExperimentalOverride,
    /// Over `alerts`.
    pub alerts: AlertsOverride,
    /// Over `hooks` (a list given here replaces the top-level one).
    pub hooks: HooksOverride,
    /// How analysis results are acted on in this environment.
    pub analysis: EnvironmentAnalysis,
}

/// `environments.<env>.thresholds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdsOverride {
    pub high_cpu: Option<f64>,
    pub critical_memory: Option<f64>,
    pub max_deployment_time: Option<u32>,
    pub min_free_disk_percent: Option<f64>,
}

/// `environments.<env>.resource_limits.<strategy>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimitsOverride {
    pub cpu_limit: Option<f64>,
    pub memory_limit: Option<f64>,
    pub concurrency: Option<u32>,
}

/// `environments.<env>.experimental`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentalOverride {
    pub enable_predictive_scaling: Option<bool>,
    pub enable_canary_deployments: Option<bool>,
    pub enable_rollback_prediction: Option<bool>,
}

/// `environments.<env>.alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsOverride {
    pub consecutive_failures: Option<u32>,
}

/// `environments.<env>.hooks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HooksOverride {
    pub pre_deployment_scripts: Option<Vec<String>>,
    pub post_deployment_scripts: Option<Vec<String>>,
}

/// `services.<name>.analysis`: the metrics that judge a step of this service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceAnalysis {
    /// Seconds between two samples of a metric.
    pub interval_s: u64,
    /// Samples per metric and step (the window is `(samples - 1) * interval_s`).
    pub samples: u32,
    /// The metrics, judged independently; the step's analysis fails when one fails.
    pub metrics: Vec<MetricSpec>,
}

impl Default for ServiceAnalysis {
    fn default() -> Self {
        ServiceAnalysis {
            interval_s: 10,
            samples: 5,
            metrics: Vec::new(),
        }
    }
}

/// `services.<name>.analysis.metrics[i]`: one metric, in threshold mode
/// (`min`/`max`), comparison mode (`baseline`) or both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricSpec {
    /// Unique within the service; names the metric in reports and errors.
    pub name: String,
    /// The metric-provider plugin that runs the queries.
    pub provider: String,
    /// The query for the version being deployed (`${ADEPLOY_...}` placeholders allowed).
    pub query: String,
    /// Threshold mode: a sample below this is out of bounds.
    pub min: Option<f64>,
    /// Threshold mode: a sample above this is out of bounds.
    pub max: Option<f64>,
    /// Threshold mode: out-of-bounds samples tolerated (default 0).
    pub failure_limit: Option<u32>,
    /// Threshold mode: the latest N samples must all be within bounds.
    pub consecutive_successes: Option<u32>,
    /// Fewer samples than this (default 1) is no data: inconclusive.
    pub min_samples: Option<u32>,
    /// Comparison mode: the query for the version being replaced.
    pub baseline: Option<String>,
    /// Comparison mode: the relative change of the median allowed (default 0.10).
    pub tolerance: Option<f64>,
    /// Comparison mode: an absolute change of the median allowed (default 0),
    /// for baselines at or near 0.
    pub absolute_tolerance: Option<f64>,
    /// Comparison mode: which change is bad (default `increase`).
    pub direction: Option<Direction>,
    /// Comparison mode: the confidence needed to call a change real
    /// (default 0.98, as Kayenta).
    pub confidence: Option<f64>,
}

/// Which change of a metric is bad.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (errors, latency, saturation).
    #[default]
    Increase,
    /// Lower is worse (throughput, cache hit rate).
    Decrease,
    /// Any change is bad.
    Either,
}

impl Direction {
    /// The lowercase name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        }
    }
}

/// `environments.<env>.analysis`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentAnalysis {
    /// What an `inconclusive` verdict (no data, provider unreachable) means.
    pub inconclusive: InconclusivePolicy,
}

/// What an inconclusive analysis means in an environment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InconclusivePolicy {
    /// As a failure: the step fails (and rolls back by the plan's scope).
    #[default]
    Fail,
    /// Pause and ask the operator at `--interactive`; without a terminal to
    /// ask, as `fail`.
    #[serde(alias = "pause")]
    Ask,
    /// As a pass.
    Pass,
}

impl InconclusivePolicy {
    /// The lowercase name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            InconclusivePolicy::Fail => "fail",
            InconclusivePolicy::Ask => "ask",
            InconclusivePolicy::Pass => "pass",
        }
    }
}
