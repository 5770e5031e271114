//! [`PluginHost`]: the one wasmtime engine of the process (epoch ticker,
//! pooling allocator), the linker with the host imports and an empty WASI,
//! the compiled-component cache, and loading: header → digest/pin →
//! cache/compile → world and version from the exports → `instantiate_pre` →
//! `describe`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use super::call::TypedPre;
use super::error::error_line;
use super::sandbox::{PluginState, Sandbox};
use super::scope::{LINES_PER_DEPLOYMENT, OutputGate};
use super::{
    EPOCH_TICK, HostWorld, LoadStats, Manifest, Plugin, PluginError, PluginInfo, PluginKind,
    PluginSource, bindings, cache, default_cache_dir,
};
use crate::config::Grants;

/// Plugin calls that may run at the same time (pooling allocator slots).
const POOL_SLOTS: u32 = 64;

/// Bytes of a pooled memory, table or stack reset in place between calls.
const KEEP_RESIDENT: usize = 4 << 20;

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
    /// Output of plugin calls made outside a deployment.
    gate: Arc<OutputGate>,
    _ticker: EpochTicker,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.gate.summarize("plugin calls outside a deployment");
    }
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
            gate: Arc::new(OutputGate::new(LINES_PER_DEPLOYMENT)),
            _ticker: ticker,
        })
    }

    /// The machine as plugins see it.
    pub fn world(&self) -> &Arc<HostWorld> {
        &self.world
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
                    reason: error_line(&e),
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
                reason: error_line(&e),
            })?;
        let typed = TypedPre::new(kind, pre).map_err(|e| PluginError::Link {
            plugin: name.to_string(),
            reason: error_line(&e),
        })?;
        let sandbox = Arc::new(Sandbox {
            plugin: name.to_string(),
            grants: settings.grants.clone(),
            world: self.world.clone(),
            http: self.http.clone(),
            gate: self.gate.clone(),
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
            overrides_builtin: false,
            grants_withheld: None,
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

    /// Reads and loads a component file, named by its file name (a manifest
    /// may not rename it; see [`PluginSet::load`](super::PluginSet::load)).
    pub async fn load_file(
        &self,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
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
            let Some(kind) = PluginKind::from_interface(iface) else {
                continue;
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
