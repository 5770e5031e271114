//! The on-disk cache of compiled components.
//!
//! Key: the sha256 of the component bytes plus a hash of the engine's
//! compilation settings (`Engine::precompile_compatibility_hash`, which covers
//! the wasmtime version, target and every codegen flag). A second process with
//! the same binary and settings memory-maps the artifact instead of compiling
//! (~0.2 ms instead of 0.1–10 s). Entries are written to a temporary file and
//! renamed, so a crash or a concurrent writer never leaves a torn artifact.
//!
//! Trust: loading an artifact runs native code compiled from it. The cache
//! directory must be writable only by the user running adeploy (it is created
//! with mode 0700); SECURITY notes in docs/ARCHITECTURE.md say so.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadOutcome {
    /// Compiled now (and stored, when the cache is on).
    Compiled,
    /// Memory-mapped from the cache.
    Cached,
}

/// Time and outcome of making one component ready.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LoadStats {
    pub outcome: LoadOutcome,
    #[serde(serialize_with = "ser_micros", rename = "micros")]
    pub elapsed: Duration,
}

fn ser_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone)]
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let dir = dir.and_then(|d| match create_private_dir(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %d.display(), "component cache disabled: {e}");
                None
            }
        });
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// Returns the compiled component for `bytes` (whose sha256 is `digest`).
    pub fn load(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, LoadStats)> {
        let started = Instant::now();
        if let Some(path) = self.entry(digest)
            && path.is_file()
        {
            match deserialize_file(engine, &path) {
                Ok(c) => {
                    return Ok((
                        c,
                        LoadStats {
                            outcome: LoadOutcome::Cached,
                            elapsed: started.elapsed(),
                        },
                    ));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable cached component: {e}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = match self.entry(digest) {
            Some(path) => {
                let artifact = engine.precompile_component(bytes)?;
                if let Err(e) = write_atomically(&path, &artifact) {
                    tracing::warn!(path = %path.display(), "cannot store compiled component: {e}");
                }
                deserialize_bytes(engine, &artifact)?
            }
            None => Component::new(engine, bytes)?,
        };
        Ok((
            component,
            LoadStats {
                outcome: LoadOutcome::Compiled,
                elapsed: started.elapsed(),
            },
        ))
    }
}

#[allow(unsafe_code)]
fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Engine::precompile_component` of an
    // engine with the same compatibility hash (it is part of the file name),
    // and is written atomically into a directory private to this user.
    // wasmtime additionally checks the artifact's header and version.
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` was returned by `precompile_component` of this engine
    // a moment ago.
    unsafe { Component::deserialize(engine, artifact) }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The default cache directory: `ADEPLOY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/adeploy/components`, else `~/.cache/adeploy/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ADEPLOY_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("adeploy").join("components"))
}
