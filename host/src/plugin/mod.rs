//! The WebAssembly plugin host.
//!
//! A [`PluginHost`] owns one wasmtime [`Engine`] (with epoch interruption and
//! a ticker thread), one [`Linker`] that provides the `adeploy:plugin/host`
//! imports plus an empty WASI, and the compiled-component cache. A [`Plugin`]
//! is a loaded component: name, kind, digest, grants, limits and an
//! [`InstancePre`]. Every call instantiates into a fresh store, runs under a
//! deadline and a memory cap, and returns a [`Called`] value with what the
//! plugin logged and was denied.
//!
//! Why deadlines and not fuel: a plan call costs ~16 k fuel in Rust and
//! ~2.6 M in JavaScript, so a fuel budget would have to know the language; a
//! wall-clock deadline does not.

mod bindings;
mod cache;
mod convert;
mod grants;
mod provider;
mod registry;
mod sandbox;
pub mod scaffold;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

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
pub use convert::detection_rules;
pub use grants::summary as grants_summary;
pub use provider::{MAX_SAMPLES, MetricQuery, ProviderError, QueryError, Sample, TimeWindow};
pub use registry::{BUILTIN_NAMES, EXPERIMENTAL_BUILTINS, Manifest, PluginSet, builtin_component};
pub use sandbox::{EnvSource, HostWorld, PluginEvent};

use crate::config::Grants;
use sandbox::{PluginState, Sandbox};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// Package versions a plugin may have been built against.
pub const SUPPORTED_WIT: &str = "0.1.x";

/// Plugin calls that may run at the same time (pooling allocator slots).
const POOL_SLOTS: u32 = 64;

/// Bytes of a pooled memory, table or stack reset in place between calls.
const KEEP_RESIDENT: usize = 4 << 20;

/// How often the epoch advances; deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The four kinds of plugin, one per WIT world.
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

/// A plugin failure. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("plugin '{plugin}': cannot read {}: {source}", path.display())]
    Read {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin '{plugin}': {} is not a WebAssembly file", path.display())]
    NotWasm { plugin: String, path: PathBuf },
    #[error(
        "plugin '{plugin}': {} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        path.display()
    )]
    CoreModule { plugin: String, path: PathBuf },
    #[error(
        "plugin '{plugin}' implements no adeploy world (expected an export adeploy:plugin/detector, strategy, hook or metric-provider @{SUPPORTED_WIT}); it exports: {exports}"
    )]
    UnknownWorld { plugin: String, exports: String },
    #[error(
        "plugin '{plugin}' was built against adeploy:plugin@{found}; this adeploy supports adeploy:plugin@{SUPPORTED_WIT}: rebuild it with a matching adeploy-sdk/WIT"
    )]
    IncompatibleVersion { plugin: String, found: String },
    #[error("plugin '{plugin}' does not compile: {reason}")]
    Compile { plugin: String, reason: String },
    #[error("plugin '{plugin}' cannot be linked: {reason}")]
    Link { plugin: String, reason: String },
    #[error("plugin '{plugin}': sha256 of {} is {actual}, but the config pins {expected}; refusing to load it", path.display())]
    DigestMismatch {
        plugin: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "plugin '{plugin}': bad manifest {location}: {}",
        crate::config::one_line(reason)
    )]
    Manifest {
        plugin: String,
        path: PathBuf,
        /// `path`, or `path:line:column` when the position is known.
        location: String,
        reason: String,
    },
    #[error("plugin '{plugin}' is a {actual} plugin, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("no plugin named '{plugin}' (known: {known})")]
    NotFound { plugin: String, known: String },
    #[error("plugin '{plugin}' trapped in {function}: {reason}")]
    Trap {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin '{plugin}' exceeded its {deadline_ms} ms deadline in {function}")]
    Deadline {
        plugin: String,
        function: &'static str,
        deadline_ms: u64,
    },
    #[error("plugin '{plugin}' hit its memory cap of {cap_mib} MiB in {function}")]
    MemoryCap {
        plugin: String,
        function: &'static str,
        cap_mib: u64,
    },
    #[error("plugin '{plugin}' returned a malformed value from {function}: {reason}")]
    Malformed {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin '{plugin}' refused in {function}: {message}")]
    Refused {
        plugin: String,
        function: &'static str,
        message: String,
    },
    #[error("plugin host: {0}")]
    Engine(String),
}

impl PluginError {
    /// The plugin the error is about (empty for engine errors).
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Read { plugin, .. }
            | PluginError::NotWasm { plugin, .. }
            | PluginError::CoreModule { plugin, .. }
            | PluginError::UnknownWorld { plugin, .. }
            | PluginError::IncompatibleVersion { plugin, .. }
            | PluginError::Compile { plugin, .. }
            | PluginError::Link { plugin, .. }
            | PluginError::DigestMismatch { plugin, .. }
            | PluginError::Manifest { plugin, .. }
            | PluginError::WrongKind { plugin, .. }
            | PluginError::NotFound { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Deadline { plugin, .. }
            | PluginError::MemoryCap { plugin, .. }
            | PluginError::Malformed { plugin, .. }
            | PluginError::Refused { plugin, .. } => plugin,
            PluginError::Engine(_) => "",
        }
    }

    /// True for errors caused by the plugin file or its configuration (bad
    /// input, exit code 2), false for failures while it runs.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::Deadline { .. }
                | PluginError::MemoryCap { .. }
                | PluginError::Malformed { .. }
                | PluginError::Refused { .. }
                | PluginError::Engine(_)
        )
    }
}

/// Settings of the plugin host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// The machine as plugins see it.
    pub world: HostWorld,
    /// Largest memory cap any plugin may be given, in MiB (sizes the pool).
    pub max_memory_mb: u64,
}

impl HostOptions {
    /// Defaults, with the memory pool sized for the largest cap in `config`.
    pub fn for_config(config: &crate::config::Config) -> HostOptions {
        let largest = config
            .plugins
            .values()
            .filter_map(|p| p.limits.as_ref().and_then(|l| l.memory_mb))
            .chain(std::iter::once(config.plugin_defaults.memory_mb))
            .max()
            .unwrap_or(128);
        HostOptions {
            max_memory_mb: largest,
            ..HostOptions::default()
        }
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            cache_dir: default_cache_dir(),
            world: HostWorld::default(),
            max_memory_mb: 1024,
        }
    }
}

/// Advances the engine's epoch until dropped.
#[derive(Debug)]
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("adeploy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| {
                tracing::error!("cannot start the epoch thread, deadlines rely on timers only: {e}")
            });
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The wasmtime engine, linker and cache that load and run plugins.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: cache::ComponentCache,
    world: Arc<HostWorld>,
    http: Arc<OnceLock<reqwest::Client>>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.cache.dir())
            .field("world", &self.world)
            .finish()
    }
}

impl PluginHost {
    /// Creates an engine with epoch interruption and the sandbox's linker.
    pub fn new(options: HostOptions) -> Result<PluginHost, PluginError> {
        let engine_err = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(512 << 10);
        config.async_stack_size(2 << 20);
        // The pooling allocator keeps instance slots, memories and fiber
        // stacks warm between calls: a fresh store per call stays cheap
        // (BENCHMARKS.md). Its slots bound concurrent calls, not plugins.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 4)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 4)
            .total_stacks(POOL_SLOTS)
            .max_memory_size(
                usize::try_from(options.max_memory_mb.max(1) << 20).unwrap_or(usize::MAX),
            )
            .async_stack_keep_resident(64 << 10);
        // Between calls, reset the pages a guest dirtied in place instead of
        // returning them to the kernel and faulting them in again on the next
        // call (most of a small call's cost otherwise). Only with PAGEMAP_SCAN
        // (Linux 6.7+), which resets just the dirty pages: without it, keeping
        // memory resident would memset the whole region on every call.
        if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(64 << 10);
        }
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_err)?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        bindings::host::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        bindings::types::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        let cache = cache::ComponentCache::new(&engine, options.cache_dir);
        let ticker = EpochTicker::start(&engine);
        Ok(PluginHost {
            engine,
            linker,
            cache,
            world: Arc::new(options.world),
            http: Arc::new(OnceLock::new()),
            _ticker: ticker,
        })
    }

    /// The directory of the compiled-component cache, when enabled.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.dir()
    }

    /// Loads a component from bytes. `settings` carry the grants, limits and
    /// config the plugin runs with.
    pub async fn load(
        &self,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let path = match &source {
            PluginSource::Path(p) => p.clone(),
            PluginSource::BuiltIn => PathBuf::from(format!("<built-in {name}>")),
        };
        check_header(name, &path, bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = &settings.pinned_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(PluginError::DigestMismatch {
                plugin: name.to_string(),
                path,
                expected: expected.clone(),
                actual: sha256,
            });
        }
        let (component, load_stats) =
            self.cache
                .load(&self.engine, &sha256, bytes)
                .map_err(|e| PluginError::Compile {
                    plugin: name.to_string(),
                    reason: one_line(&e),
                })?;
        let shape = Shape::of(&self.engine, &component);
        let (kind, wit_version) = shape.world(name)?;
        if let Some(m) = &settings.manifest
            && m.kind != kind
        {
            return Err(PluginError::Manifest {
                plugin: name.to_string(),
                path: m.path.clone(),
                location: m.path.display().to_string(),
                reason: format!(
                    "declares kind {}, but the component implements {kind}",
                    m.kind
                ),
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link {
                plugin: name.to_string(),
                reason: one_line(&e),
            })?;
        let typed = TypedPre::new(kind, pre).map_err(|e| PluginError::Link {
            plugin: name.to_string(),
            reason: one_line(&e),
        })?;
        let sandbox = Arc::new(Sandbox {
            plugin: name.to_string(),
            grants: settings.grants.clone(),
            world: self.world.clone(),
            http: self.http.clone(),
        });
        let mut plugin = Plugin {
            name: name.to_string(),
            kind,
            wit_version,
            source,
            sha256,
            size: bytes.len() as u64,
            info: PluginInfo {
                name: name.to_string(),
                version: String::new(),
                description: String::new(),
            },
            grants: settings.grants,
            manifest: settings.manifest,
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            memory_bytes: usize::try_from(settings.memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            config_json: settings.config_json,
            load: load_stats,
            imports: shape.imports,
            exports: shape.exports,
            engine: self.engine.clone(),
            typed,
            sandbox,
        };
        let info = plugin.describe().await?.value;
        plugin.info = PluginInfo {
            name: info.name,
            version: plugin
                .manifest
                .as_ref()
                .and_then(|m| m.version.clone())
                .unwrap_or(info.version),
            description: plugin
                .manifest
                .as_ref()
                .and_then(|m| m.description.clone())
                .unwrap_or(info.description),
        };
        Ok(plugin)
    }

    /// Reads and loads a component file. Its name is the manifest's, else the file stem.
    pub async fn load_file(
        &self,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = settings.manifest.as_ref().map_or(stem, |m| m.name.clone());
        self.load_named_file(&name, path, settings).await
    }

    /// Reads and loads a component file under the given name.
    pub async fn load_named_file(
        &self,
        name: &str,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: name.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        self.load(
            name,
            PluginSource::Path(path.to_path_buf()),
            &bytes,
            settings,
        )
        .await
    }

    /// Describes a component file without a config: its world, imports,
    /// exports, digest and manifest. Fails on anything that is not an adeploy
    /// plugin component.
    pub async fn inspect(&self, path: &Path) -> Result<Inspection, PluginError> {
        let manifest = Manifest::beside(path)?;
        let settings = PluginSettings {
            manifest,
            ..PluginSettings::default()
        };
        let plugin = self.load_file(path, settings).await?;
        Ok(Inspection {
            name: plugin.name.clone(),
            path: path.to_path_buf(),
            kind: plugin.kind,
            world: plugin.kind.world().to_string(),
            wit_version: plugin.wit_version.clone(),
            version: plugin.info.version.clone(),
            description: plugin.info.description.clone(),
            sha256: plugin.sha256.clone(),
            size: plugin.size,
            imports: plugin.imports.clone(),
            exports: plugin.exports.clone(),
            manifest: plugin.manifest.clone(),
            load: plugin.load,
        })
    }
}

/// What a plugin runs with, from the config (and manifest).
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub grants: Grants,
    pub timeout_ms: u64,
    pub memory_mb: u64,
    /// The plugin's own config as JSON.
    pub config_json: String,
    pub pinned_sha256: Option<String>,
    pub manifest: Option<Manifest>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            grants: Grants::default(),
            timeout_ms: 2000,
            memory_mb: 128,
            config_json: "{}".to_string(),
            pinned_sha256: None,
            manifest: None,
        }
    }
}

/// The result of `adeploy plugins inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub name: String,
    pub path: PathBuf,
    pub kind: PluginKind,
    pub world: String,
    pub wit_version: String,
    pub version: String,
    pub description: String,
    pub sha256: String,
    pub size: u64,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub manifest: Option<Manifest>,
    pub load: LoadStats,
}

/// The value a plugin call returned, with what happened during it.
#[derive(Debug, Clone)]
pub struct Called<T> {
    pub value: T,
    /// Logs and denials, in order.
    pub events: Vec<PluginEvent>,
    /// Events beyond the per-call limit, counted only.
    pub dropped_events: usize,
    pub elapsed: Duration,
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

    fn wrong_kind(&self, expected: PluginKind) -> PluginError {
        PluginError::WrongKind {
            plugin: self.name.clone(),
            expected,
            actual: self.kind,
        }
    }

    /// A fresh store with the plugin's memory cap and epoch deadline.
    fn new_store(&self) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(self.sandbox.clone(), self.memory_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        let ticks = (self.timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        store
    }

    /// Turns the outcome of a call (under `tokio::time::timeout`) into a [`Called`].
    fn finish<T>(
        &self,
        function: &'static str,
        store: Store<PluginState>,
        started: Instant,
        outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<Called<T>, PluginError> {
        let deadline_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let value = match outcome {
            Err(_elapsed) => {
                return Err(PluginError::Deadline {
                    plugin: self.name.clone(),
                    function,
                    deadline_ms,
                });
            }
            Ok(Err(e)) => return Err(self.classify(function, &e, store.data(), deadline_ms)),
            Ok(Ok(v)) => v,
        };
        let state = store.into_data();
        Ok(Called {
            value,
            events: state.events,
            dropped_events: state.dropped_events,
            elapsed: started.elapsed(),
        })
    }

    fn classify(
        &self,
        function: &'static str,
        e: &wasmtime::Error,
        state: &PluginState,
        deadline_ms: u64,
    ) -> PluginError {
        let plugin = self.name.clone();
        if state.limiter.hit {
            return PluginError::MemoryCap {
                plugin,
                function,
                cap_mib: (self.memory_bytes >> 20) as u64,
            };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return PluginError::Deadline {
                plugin,
                function,
                deadline_ms,
            };
        }
        let mut reason = e
            .downcast_ref::<Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| one_line(e));
        // A Rust guest prints its panic message to stderr before trapping.
        let stderr = state.stderr.contents();
        let text = String::from_utf8_lossy(&stderr);
        if let Some(line) = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("note: "))
        {
            reason = format!("{reason} (plugin stderr: {line})");
        }
        PluginError::Trap {
            plugin,
            function,
            reason,
        }
    }

    fn refused(&self, function: &'static str, message: String) -> PluginError {
        PluginError::Refused {
            plugin: self.name.clone(),
            function,
            message,
        }
    }

    fn malformed(&self, function: &'static str, reason: String) -> PluginError {
        PluginError::Malformed {
            plugin: self.name.clone(),
            function,
            reason,
        }
    }

    /// The context as this plugin receives it: with its own config.
    fn with_own_config(&self, ctx: &DeploymentContext) -> DeploymentContext {
        let mut own = ctx.clone();
        own.config.clone_from(&self.config_json);
        own
    }

    /// Instantiates the plugin in a fresh store without calling it, and returns
    /// how long that took: the fixed cost every call pays.
    pub async fn instantiate(&self) -> Result<Duration, PluginError> {
        let started = Instant::now();
        let mut store = self.new_store();
        let out = tokio::time::timeout(self.timeout, async {
            match &self.typed {
                TypedPre::Detector(p) => p.instantiate_async(&mut store).await.map(drop),
                TypedPre::Strategy(p) => p.instantiate_async(&mut store).await.map(drop),
                TypedPre::Hook(p) => p.instantiate_async(&mut store).await.map(drop),
                TypedPre::Provider(p) => p.instantiate_async(&mut store).await.map(drop),
            }
        })
        .await;
        self.finish("instantiate", store, started, out)
            .map(|c| c.elapsed)
    }

    /// Calls the plugin's `describe`.
    pub async fn describe(&self) -> Result<Called<PluginInfo>, PluginError> {
        let started = Instant::now();
        let mut store = self.new_store();
        let out = tokio::time::timeout(self.timeout, async {
            match &self.typed {
                TypedPre::Detector(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.adeploy_plugin_detector().call_describe(&mut store).await
                }
                TypedPre::Strategy(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.adeploy_plugin_strategy().call_describe(&mut store).await
                }
                TypedPre::Hook(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.adeploy_plugin_hook().call_describe(&mut store).await
                }
                TypedPre::Provider(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.adeploy_plugin_metric_provider()
                        .call_describe(&mut store)
                        .await
                }
            }
        })
        .await;
        self.finish("describe", store, started, out)
    }

    /// Calls a detector's `detect` and checks the answer.
    pub async fn detect(&self, rules: &DetectionRules) -> Result<Called<Detection>, PluginError> {
        let TypedPre::Detector(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Detector));
        };
        let started = Instant::now();
        let mut store = self.new_store();
        let out = tokio::time::timeout(self.timeout, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.adeploy_plugin_detector()
                .call_detect(&mut store, rules, &self.config_json)
                .await
        })
        .await;
        let called = transpose(self.finish("detect", store, started, out)?)
            .map_err(|m| self.refused("detect", m))?;
        validate_detection(&called.value).map_err(|r| self.malformed("detect", r))?;
        Ok(called)
    }

    /// Calls a strategy's `plan` and checks the rollout against the context.
    pub async fn plan(&self, ctx: &DeploymentContext) -> Result<Called<Rollout>, PluginError> {
        let TypedPre::Strategy(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Strategy));
        };
        let started = Instant::now();
        let mut store = self.new_store();
        let own = self.with_own_config(ctx);
        let out = tokio::time::timeout(self.timeout, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.adeploy_plugin_strategy()
                .call_plan(&mut store, &own)
                .await
        })
        .await;
        let called = transpose(self.finish("plan", store, started, out)?)
            .map_err(|m| self.refused("plan", m))?;
        validate_rollout(ctx, &called.value).map_err(|r| self.malformed("plan", r))?;
        Ok(called)
    }

    /// Calls a strategy's `on-progress`.
    pub async fn on_progress(
        &self,
        ctx: &DeploymentContext,
        event: &Progress,
    ) -> Result<Called<Decision>, PluginError> {
        let TypedPre::Strategy(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Strategy));
        };
        let started = Instant::now();
        let mut store = self.new_store();
        let own = self.with_own_config(ctx);
        let out = tokio::time::timeout(self.timeout, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.adeploy_plugin_strategy()
                .call_on_progress(&mut store, &own, event)
                .await
        })
        .await;
        let mut called = self.finish("on-progress", store, started, out)?;
        if let Decision::Abort(r) | Decision::Rollback(r) = &mut called.value {
            cap_reason(r);
        }
        Ok(called)
    }

    /// Calls a hook's `run`.
    pub async fn run_hook(
        &self,
        phase: Phase,
        ctx: &HookContext,
    ) -> Result<Called<HookReport>, PluginError> {
        let TypedPre::Hook(pre) = &self.typed else {
            return Err(self.wrong_kind(PluginKind::Hook));
        };
        let started = Instant::now();
        let mut store = self.new_store();
        let mut own = ctx.clone();
        own.deployment.config.clone_from(&self.config_json);
        let out = tokio::time::timeout(self.timeout, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.adeploy_plugin_hook()
                .call_run(&mut store, phase, &own)
                .await
        })
        .await;
        let called = transpose(self.finish("run", store, started, out)?)
            .map_err(|m| self.refused("run", m))?;
        let r = &called.value;
        text_budget(
            "the report's message and details",
            std::iter::once(r.message.as_str()).chain(
                r.details
                    .iter()
                    .flat_map(|d| [d.key.as_str(), d.value.as_str()]),
            ),
        )
        .map_err(|reason| self.malformed("run", reason))?;
        Ok(called)
    }
}

/// How much text (notes, evidence, messages) one plugin call may return.
/// A plugin's memory cap already bounds what the host lifts; this keeps a
/// chatty or hostile plugin from filling the decision log, the reports and
/// the history with megabytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A rollback or abort reason longer than this is cut (with a note).
pub const MAX_REASON_BYTES: usize = 4 * 1024;

fn text_budget<'a>(what: &str, texts: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let total: usize = texts.map(str::len).sum();
    if total > MAX_TEXT_BYTES {
        return Err(format!(
            "{what} are {total} bytes, more than the {MAX_TEXT_BYTES} a plugin may return"
        ));
    }
    Ok(())
}

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary.
fn cap_reason(reason: &mut String) {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let cut = reason.len() - end;
        reason.truncate(end);
        reason.push_str(&format!("… ({cut} more bytes cut)"));
    }
}

/// The instance-pre of a plugin, typed by its world.
enum TypedPre {
    Detector(bindings::detector::DetectorPluginPre<PluginState>),
    Strategy(bindings::strategy::StrategyPluginPre<PluginState>),
    Hook(bindings::hook::HookPluginPre<PluginState>),
    Provider(bindings::provider::MetricProviderPluginPre<PluginState>),
}

impl TypedPre {
    fn new(kind: PluginKind, pre: InstancePre<PluginState>) -> wasmtime::Result<TypedPre> {
        Ok(match kind {
            PluginKind::Detector => {
                TypedPre::Detector(bindings::detector::DetectorPluginPre::new(pre)?)
            }
            PluginKind::Strategy => {
                TypedPre::Strategy(bindings::strategy::StrategyPluginPre::new(pre)?)
            }
            PluginKind::Hook => TypedPre::Hook(bindings::hook::HookPluginPre::new(pre)?),
            PluginKind::MetricProvider => {
                TypedPre::Provider(bindings::provider::MetricProviderPluginPre::new(pre)?)
            }
        })
    }
}

/// Turns `Called<Result<T, E>>` into `Result<Called<T>, E>`.
fn transpose<T, E>(called: Called<Result<T, E>>) -> Result<Called<T>, E> {
    let Called {
        value,
        events,
        dropped_events,
        elapsed,
    } = called;
    value.map(|value| Called {
        value,
        events,
        dropped_events,
        elapsed,
    })
}

fn validate_detection(d: &Detection) -> Result<(), String> {
    text_budget(
        "evidence details and notes",
        d.evidence
            .iter()
            .flat_map(|e| [e.method.as_str(), e.detail.as_str()])
            .chain(d.notes.iter().map(String::as_str)),
    )?;
    if !(0.0..=1.0).contains(&d.confidence) {
        return Err(format!("confidence {} is outside 0..1", d.confidence));
    }
    if let Some(e) = d
        .evidence
        .iter()
        .find(|e| !e.weight.is_finite() || e.weight < 0.0)
    {
        return Err(format!("evidence {:?} has weight {}", e.detail, e.weight));
    }
    Ok(())
}

/// A rollout must deploy every step of the context exactly once, name only
/// known services and hosts, and run at least one step at a time.
fn validate_rollout(ctx: &DeploymentContext, r: &Rollout) -> Result<(), String> {
    use std::collections::HashSet;
    text_budget("the plan's notes", r.notes.iter().map(String::as_str))?;
    if r.concurrency == 0 {
        return Err("concurrency is 0".to_string());
    }
    if r.validation.health_checks && r.validation.samples == 0 {
        return Err("health checks with 0 samples".to_string());
    }
    let mut expected: HashSet<(String, Option<String>)> = HashSet::new();
    for s in &ctx.services {
        if s.hosts.is_empty() {
            expected.insert((s.name.clone(), None));
        } else {
            for h in &s.hosts {
                expected.insert((s.name.clone(), Some(h.clone())));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, wave) in r.waves.iter().enumerate() {
        if wave.steps.is_empty() {
            return Err(format!("wave {} is empty", i + 1));
        }
        for step in &wave.steps {
            let key = (step.service.clone(), step.host.clone());
            let label = match &step.host {
                Some(h) => format!("{}@{h}", step.service),
                None => step.service.clone(),
            };
            if !expected.contains(&key) {
                return Err(format!(
                    "wave {} has step {label:?}, which is not part of this deployment",
                    i + 1
                ));
            }
            if !seen.insert(key) {
                return Err(format!("step {label:?} appears twice"));
            }
        }
    }
    if let Some((name, host)) = expected.iter().find(|k| !seen.contains(*k)) {
        let label = host
            .as_ref()
            .map_or(name.clone(), |h| format!("{name}@{h}"));
        return Err(format!("the plan leaves out step {label:?}"));
    }
    Ok(())
}

/// The first line of an error chain, for one-line messages.
fn one_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

fn check_header(name: &str, path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(PluginError::NotWasm {
            plugin: name.to_string(),
            path: path.to_path_buf(),
        });
    }
    // Core modules have version 1, layer 0; components have layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(PluginError::CoreModule {
            plugin: name.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The import and export names of a component, and the world they reveal.
struct Shape {
    imports: Vec<String>,
    exports: Vec<String>,
}

impl Shape {
    fn of(engine: &Engine, component: &Component) -> Shape {
        let ty = component.component_type();
        let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        imports.sort();
        exports.sort();
        Shape { imports, exports }
    }

    /// The plugin kind and WIT version, from the exports (and the host import's version).
    fn world(&self, plugin: &str) -> Result<(PluginKind, String), PluginError> {
        let mut found: Option<(PluginKind, String)> = None;
        for name in &self.exports {
            let Some(rest) = name.strip_prefix("adeploy:plugin/") else {
                continue;
            };
            let (iface, version) = rest.split_once('@').unwrap_or((rest, "unversioned"));
            let kind = match iface {
                "detector" => PluginKind::Detector,
                "strategy" => PluginKind::Strategy,
                "hook" => PluginKind::Hook,
                "metric-provider" => PluginKind::MetricProvider,
                _ => continue,
            };
            if !version_supported(version) {
                return Err(PluginError::IncompatibleVersion {
                    plugin: plugin.to_string(),
                    found: version.to_string(),
                });
            }
            if let Some((other, _)) = &found {
                return Err(PluginError::UnknownWorld {
                    plugin: plugin.to_string(),
                    exports: format!("both {other} and {kind}: a plugin implements one world"),
                });
            }
            found = Some((kind, version.to_string()));
        }
        for name in &self.imports {
            if let Some(rest) = name.strip_prefix("adeploy:plugin/") {
                let version = rest.split_once('@').map_or("unversioned", |(_, v)| v);
                if !version_supported(version) {
                    return Err(PluginError::IncompatibleVersion {
                        plugin: plugin.to_string(),
                        found: version.to_string(),
                    });
                }
            }
        }
        found.ok_or_else(|| PluginError::UnknownWorld {
            plugin: plugin.to_string(),
            exports: if self.exports.is_empty() {
                "nothing".to_string()
            } else {
                self.exports.join(", ")
            },
        })
    }
}

/// 0.1.x is compatible with 0.1.0 (semver for 0.x: same minor).
fn version_supported(version: &str) -> bool {
    let mut parts = version.split('.');
    matches!((parts.next(), parts.next()), (Some("0"), Some("1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_supported("0.1.0"));
        assert!(version_supported("0.1.7"));
        assert!(!version_supported("0.2.0"));
        assert!(!version_supported("1.0.0"));
        assert!(!version_supported("unversioned"));
    }

    #[test]
    fn headers() {
        let p = Path::new("x.wasm");
        assert!(matches!(
            check_header("x", p, b"hello world"),
            Err(PluginError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header("x", p, b"\0asm\x01\0\0\0"),
            Err(PluginError::CoreModule { .. })
        ));
        assert!(check_header("x", p, b"\0asm\x0d\0\x01\0").is_ok());
    }
}
