//! The on-disk cache of compiled components.
//!
//! Key: the sha256 of the component bytes plus a hash of the engine's
//! compilation settings (`Engine::precompile_compatibility_hash`, which covers
//! the wasmtime version, target and every codegen flag). A second process with
//! the same binary and settings loads the artifact instead of compiling
//! (~1 ms instead of 0.1–10 s). Entries are written to a temporary file and
//! renamed, so a crash or a concurrent writer never leaves a torn artifact.
//!
//! Trust: loading an artifact runs native code compiled from it, so a pin
//! (`plugins.<name>.sha256`) must pin what actually runs, not just the
//! `.wasm` file. Two rules make it so:
//!
//! - **The directory is private.** It must belong to the user running
//!   adeploy and be closed to group and others (0700), and its parent must not
//!   be writable by others (unless sticky, like `/tmp`). A directory of ours
//!   that others could write to is emptied and recreated 0700 (whatever was
//!   planted is gone); one owned by someone else is not used at all (adeploy
//!   compiles in memory, with a warning).
//! - **Each artifact is bound to its component.** Beside `<entry>.cwasm`,
//!   `<entry>.cwasm.mac` records the component's sha256, the engine key,
//!   the artifact's sha256, and an HMAC-SHA256 of the three under a random
//!   key kept in the directory (`key`, 0600). Loading reads the artifact into
//!   memory, checks all four, and only then deserialises those same bytes: a
//!   swapped, copied or truncated artifact is discarded and recompiled.
//!
//! The same user can always replace what runs (they can replace adeploy);
//! the binding is against anyone else, and against entries moved between
//! names or machines.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
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

#[derive(Clone)]
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
    /// The MAC key of the directory.
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for ComponentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

/// What an entry's `.mac` file says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Binding {
    component_sha256: String,
    engine: String,
    artifact_sha256: String,
    mac: String,
}

type HmacSha256 = Hmac<Sha256>;

/// Why a cached artefact is not used.
enum Unbound {
    /// It or its binding is not there (an older adeploy's entry).
    Missing(String),
    /// The binding does not check out: someone changed the entry.
    Bad(String),
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let prepared = dir.and_then(|d| match prepare(&d) {
            Ok(key) => Some((d, key)),
            Err(e) => {
                tracing::warn!(dir = %d.display(), "component cache disabled: {e}");
                None
            }
        });
        let (dir, key) = match prepared {
            Some((d, key)) => (Some(d), Some(key)),
            None => (None, None),
        };
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
            key,
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

    fn mac(&self, component: &str, artifact: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(self.key.as_ref()?).ok()?;
        for part in [
            "adeploy-component-cache-v1",
            component,
            &self.engine_key,
            artifact,
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        Some(mac)
    }

    /// The artifact of `digest`, if its binding checks out; a bad entry is
    /// removed (and reported).
    fn verified(&self, digest: &str, path: &Path) -> Option<Vec<u8>> {
        let sidecar = mac_path(path);
        let check = || -> Result<Vec<u8>, Unbound> {
            let bytes = std::fs::read(path).map_err(|e| Unbound::Missing(e.to_string()))?;
            let text = std::fs::read(&sidecar)
                .map_err(|e| Unbound::Missing(format!("no binding ({e})")))?;
            let b: Binding = serde_json::from_slice(&text)
                .map_err(|e| Unbound::Bad(format!("unreadable binding ({e})")))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if b.component_sha256 != digest || b.engine != self.engine_key {
                return Err(Unbound::Bad("bound to another component or engine".into()));
            }
            if b.artifact_sha256 != actual {
                return Err(Unbound::Bad(
                    "the artifact is not the one that was compiled".into(),
                ));
            }
            let mac = self
                .mac(digest, &actual)
                .ok_or_else(|| Unbound::Bad("no key".into()))?;
            let tag = hex::decode(&b.mac).map_err(|_| Unbound::Bad("malformed MAC".into()))?;
            mac.verify_slice(&tag)
                .map_err(|_| Unbound::Bad("the MAC does not match".into()))?;
            Ok(bytes)
        };
        match check() {
            Ok(bytes) => Some(bytes),
            Err(Unbound::Missing(why)) => {
                // An entry of an older adeploy (or a crash between the two
                // writes): recompiled, nothing suspicious.
                tracing::debug!(path = %path.display(), "recompiling cached component: {why}");
                let _ = std::fs::remove_file(path);
                let _ = std::fs::remove_file(&sidecar);
                None
            }
            Err(Unbound::Bad(why)) => {
                tracing::warn!(path = %path.display(), "discarding cached component: {why}");
                let _ = std::fs::remove_file(path);
                let _ = std::fs::remove_file(&sidecar);
                None
            }
        }
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
            && let Some(artifact) = self.verified(digest, &path)
        {
            match deserialize_bytes(engine, &artifact) {
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
                    let _ = std::fs::remove_file(mac_path(&path));
                }
            }
        }
        let component = match self.entry(digest) {
            Some(path) => {
                let artifact = engine.precompile_component(bytes)?;
                if let Err(e) = self.store(digest, &path, &artifact) {
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

    /// Writes the artifact, then its binding (a crash between the two
    /// leaves an unbound artifact, which is recompiled).
    fn store(&self, digest: &str, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        let actual = hex::encode(Sha256::digest(artifact));
        let mac = self
            .mac(digest, &actual)
            .ok_or_else(|| std::io::Error::other("no cache key"))?;
        let binding = Binding {
            component_sha256: digest.to_string(),
            engine: self.engine_key.clone(),
            artifact_sha256: actual,
            mac: hex::encode(mac.finalize().into_bytes()),
        };
        write_atomically(path, artifact)?;
        let json = serde_json::to_vec(&binding).map_err(std::io::Error::other)?;
        write_atomically(&mac_path(path), &json)
    }
}

fn mac_path(artifact: &Path) -> PathBuf {
    let mut p = artifact.as_os_str().to_owned();
    p.push(".mac");
    PathBuf::from(p)
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` was either returned by `precompile_component` of
    // this engine a moment ago, or read from the private cache directory and
    // verified against its binding (component digest, engine key, artifact
    // digest, MAC under the directory's key) just before this call, from
    // these same bytes in memory. wasmtime additionally checks the
    // artifact's header and version.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Makes `dir` a private cache directory and returns its MAC key (see the
/// module docs).
fn prepare(dir: &Path) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let me = rustix::process::geteuid().as_raw();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let p = std::fs::metadata(parent)?;
    let sticky = p.mode() & 0o1000 != 0;
    if p.mode() & 0o022 != 0 && !sticky {
        return Err(std::io::Error::other(format!(
            "its parent {} is writable by others (mode {:o})",
            parent.display(),
            p.mode() & 0o7777
        )));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(std::io::Error::other("it is not a directory"));
        }
        Ok(m) if m.uid() != me => {
            return Err(std::io::Error::other(format!(
                "it belongs to uid {}, not to this user (uid {me}); remove it or set ADEPLOY_CACHE_DIR",
                m.uid()
            )));
        }
        Ok(m) if m.mode() & 0o022 != 0 => {
            // Ours, but others could have written to it: nothing in it can
            // be trusted. Start again, private.
            tracing::warn!(
                dir = %dir.display(),
                "the component cache was writable by others (mode {:o}): emptied and recreated with mode 0700",
                m.mode() & 0o7777
            );
            std::fs::remove_dir_all(dir)?;
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    key(dir)
}

/// The directory's MAC key: 32 random bytes in `key` (0600), created once.
fn key(dir: &Path) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join("key");
    if let Ok(m) = std::fs::symlink_metadata(&path)
        && m.is_file()
        && m.len() == 32
        && m.mode() & 0o077 == 0
        && let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let _ = std::fs::remove_file(&path);
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    // Another process may have created it meanwhile: theirs wins.
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        Err(_) => {
            let bytes = std::fs::read(&path)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| std::io::Error::other("the cache key is not 32 bytes"))
        }
    }
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
