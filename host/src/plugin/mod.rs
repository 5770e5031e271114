//! The WebAssembly plugin host.
//!
//! A [`PluginHost`] (`host.rs`) owns one wasmtime [`Engine`] (with epoch
//! interruption and a ticker thread), one
//! [`Linker`](wasmtime::component::Linker) that provides the
//! `adeploy:plugin/host` imports plus an empty WASI (`sandbox.rs`), and the
//! compiled-component cache (`cache.rs`); it loads and inspects components.
//! A [`Plugin`] is a loaded component: name, kind, digest, grants, limits and
//! a typed [`InstancePre`](wasmtime::component::InstancePre). Every export
//! (`exports.rs`) goes through one generic call (`call.rs`): a fresh store,
//! a deadline and a memory cap, one classification of failures
//! ([`PluginError`], `error.rs`), and a [`Called`] value with what the plugin
//! logged and was denied; answers are checked before anyone acts on them
//! (`validate.rs`).
//!
//! Why deadlines and not fuel: a plan call costs ~16 k fuel in Rust and
//! ~2.6 M in JavaScript, so a fuel budget would have to know the language; a
//! wall-clock deadline does not.

mod bindings;
mod cache;
mod call;
mod convert;
mod error;
mod exports;
mod grants;
mod host;
mod provider;
mod registry;
mod rootfs;
mod sandbox;
mod scope;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

pub use bindings::detector_api::{
    Detection, DetectionRules, Evidence, Marker as RuleMarker, MethodWeights, PatternSet,
};
pub use bindings::hook_api::{HookContext, HookReport, Phase};
pub use bindings::strategy_api::{
    Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Step,
    ValidationPolicy, Wave,
};
pub use bindings::types::{
    DeploymentContext, DeploymentSize, Detail, Environment as WitEnvironment, Metrics, PluginInfo,
    ResourceLimits as WitResourceLimits, Service,
};
pub use cache::{LoadOutcome, LoadStats, default_cache_dir};
pub use call::Called;
pub use convert::detection_rules;
pub use error::PluginError;
pub use grants::summary as grants_summary;
pub use host::{HostOptions, Inspection, PluginHost, PluginSettings};
pub use provider::{MAX_SAMPLES, MetricQuery, ProviderError, QueryError, Sample, TimeWindow};
pub use registry::{
    BUILTIN_NAMES, EXPERIMENTAL_BUILTINS, Manifest, PluginSet, builtin_component, builtin_kind,
    check_name,
};
pub use sandbox::{EnvSource, HostWorld, PluginEvent, Used};
pub use scope::{DeploymentScope, LINES_PER_CALL, LINES_PER_DEPLOYMENT, OutputGate};
pub use validate::{
    MAX_DESCRIPTION_BYTES, MAX_DETAILS, MAX_EVIDENCE, MAX_NAME_BYTES, MAX_NOTES, MAX_REASON_BYTES,
    MAX_TEXT_BYTES, MAX_WEIGHT,
};

use crate::config::Grants;
use call::TypedPre;
use sandbox::Sandbox;

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// Package versions a plugin may have been built against.
pub const SUPPORTED_WIT: &str = "0.1.x";

/// How often the epoch advances; deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The kinds of plugin, one per WIT world.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Detector,
    Strategy,
    Hook,
    /// Reads metrics for the analysis (`provider.rs`).
    #[serde(rename = "metric-provider")]
    MetricProvider,
}

impl PluginKind {
    /// Every kind, in the order messages list them.
    pub const ALL: &[PluginKind] = &[
        PluginKind::Detector,
        PluginKind::Strategy,
        PluginKind::Hook,
        PluginKind::MetricProvider,
    ];

    /// The kind whose interface is `name` (`strategy` in
    /// `adeploy:plugin/strategy@0.1.0`).
    pub fn from_interface(name: &str) -> Option<PluginKind> {
        PluginKind::ALL
            .iter()
            .copied()
            .find(|k| k.interface() == name)
    }

    /// The interface names, for messages: `detector, strategy, hook or metric-provider`.
    pub fn listed() -> String {
        let names: Vec<&str> = PluginKind::ALL.iter().map(|k| k.interface()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        }
    }

    /// The interface name in `adeploy:plugin/<name>@0.1.0`.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Detector => "detector",
            PluginKind::Strategy => "strategy",
            PluginKind::Hook => "hook",
            PluginKind::MetricProvider => "metric-provider",
        }
    }

    /// The world a component of this kind implements.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Detector => "adeploy:plugin/detector-plugin@0.1.0",
            PluginKind::Strategy => "adeploy:plugin/strategy-plugin@0.1.0",
            PluginKind::Hook => "adeploy:plugin/hook-plugin@0.1.0",
            PluginKind::MetricProvider => "adeploy:plugin/metric-provider-plugin@0.1.0",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", content = "path", rename_all = "snake_case")]
pub enum PluginSource {
    /// Compiled into the adeploy binary.
    BuiltIn,
    /// A component file.
    Path(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::BuiltIn => f.write_str("built-in"),
            PluginSource::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded plugin, ready to be called any number of times.
pub struct Plugin {
    name: String,
    kind: PluginKind,
    wit_version: String,
    source: PluginSource,
    sha256: String,
    size: u64,
    info: PluginInfo,
    grants: Grants,
    manifest: Option<Manifest>,
    timeout: Duration,
    memory_bytes: usize,
    config_json: String,
    load: LoadStats,
    imports: Vec<String>,
    exports: Vec<String>,
    engine: Engine,
    typed: TypedPre,
    sandbox: Arc<Sandbox>,
    /// This file replaces the built-in plugin of the same name.
    overrides_builtin: bool,
    /// Why the config's grants for this name were not given to it.
    grants_withheld: Option<String>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
    /// What the plugin says about itself (manifest values win).
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    pub fn source(&self) -> &PluginSource {
        &self.source
    }
    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }
    /// What the manifest asks for that the config does not grant (empty
    /// without a manifest). Reported by `plugins list` and a warning at load;
    /// never granted.
    pub fn missing_grants(&self) -> Grants {
        self.manifest
            .as_ref()
            .map(|m| grants::missing(&m.grants, &self.grants))
            .unwrap_or_default()
    }
    /// Whether the component was compiled now or loaded from the cache, and how long it took.
    pub fn load_stats(&self) -> LoadStats {
        self.load
    }
    /// The WIT package version the component was built against.
    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }
    /// The deadline of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The plugin's own config, as the JSON it receives.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }
    /// Whether this file replaces the built-in plugin of the same name.
    pub fn overrides_builtin(&self) -> bool {
        self.overrides_builtin
    }
    /// Why the config's `plugins.<name>.grants` were not given to this file
    /// (an override the config did not pin), when they were not.
    pub fn grants_withheld(&self) -> Option<&str> {
        self.grants_withheld.as_deref()
    }
}
