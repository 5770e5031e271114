//! Build-script helper that compiles workspace plugin crates to
//! `wasm32-wasip2` components.
//!
//! Why a nested cargo: the guests must be built for another target than the
//! host, and cargo cannot depend on an artifact of another target on stable.
//! The nested build uses its own target directory (`<target>/guests`) so it
//! never waits on the lock the outer build holds, and it shares that
//! directory between the host's build script and the test fixtures' one, so a
//! guest is compiled once.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The rustc target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";
/// The workspace profile for guests (`[profile.guest]` in the root Cargo.toml).
pub const PROFILE: &str = "guest";

/// One built guest.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The cargo package name, e.g. `adeploy-plugin-balanced`.
    pub package: String,
    /// The component file.
    pub wasm: PathBuf,
}

/// The workspace root, found from a crate's manifest dir by looking for
/// `rust-toolchain.toml`.
pub fn workspace_root(manifest_dir: &Path) -> Result<PathBuf, String> {
    manifest_dir
        .ancestors()
        .find(|p| p.join("rust-toolchain.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no rust-toolchain.toml above {}", manifest_dir.display()))
}

/// The target directory the outer build uses, derived from a build script's
/// `OUT_DIR` (`<target>/<profile>/build/<pkg>-<hash>/out`).
pub fn target_dir(out_dir: &Path) -> Result<PathBuf, String> {
    // Cargo marks a target directory it creates with CACHEDIR.TAG; one that
    // existed before (a script made `target/…` first) has no tag, so fall
    // back to the layout: `<target>/<profile>/build/<pkg>-<hash>/out`.
    if let Some(tagged) = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
    {
        return Ok(tagged.to_path_buf());
    }
    let build = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"));
    build
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "cannot find the target directory above {}",
                out_dir.display()
            )
        })
}

/// Names a rustup toolchain to build the guests with instead of the outer
/// build's: the fuzz targets build with a nightly that may lack the
/// wasm32-wasip2 standard library (and cannot download it offline), while
/// the pinned toolchain has it.
const GUEST_TOOLCHAIN: &str = "ADEPLOY_GUEST_TOOLCHAIN";

fn guest_toolchain() -> Option<String> {
    std::env::var(GUEST_TOOLCHAIN)
        .ok()
        .filter(|t| !t.is_empty())
}

/// Installs the wasm32-wasip2 standard library with rustup when the toolchain
/// lacks it (rust-toolchain.toml lists the target, but rustup only adds it
/// when it installs the toolchain itself).
fn ensure_target() -> Result<(), String> {
    let mut rustc = match guest_toolchain() {
        Some(t) => {
            let mut c = Command::new("rustc");
            c.env("RUSTUP_TOOLCHAIN", t);
            c
        }
        None => Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())),
    };
    let sysroot = rustc
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        return Ok(());
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let mut rustup = Command::new("rustup");
    if let Some(t) = guest_toolchain() {
        rustup.env("RUSTUP_TOOLCHAIN", t);
    }
    let status = rustup
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| {
            format!(
                "the {TARGET} target is missing and rustup cannot be run ({e}); install the target"
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {TARGET}` failed ({status})"))
    }
}

/// Builds `packages` (cargo package names) of the workspace at `root` for
/// wasm32-wasip2 into `<target>/guests` and returns their component files.
/// Call from a build script; it also prints the `rerun-if-changed` lines for
/// `watch` (paths relative to `root`).
pub fn build(
    root: &Path,
    target: &Path,
    packages: &[&str],
    watch: &[&str],
) -> Result<Vec<Guest>, String> {
    for w in watch {
        println!("cargo:rerun-if-changed={}", root.join(w).display());
    }
    println!("cargo:rerun-if-env-changed={GUEST_TOOLCHAIN}");
    ensure_target()?;
    let guest_target = target.join("guests");
    let mut cmd = match guest_toolchain() {
        // Another toolchain: rustup's `cargo` proxy with that toolchain, and
        // none of the outer build's compiler settings.
        Some(t) => {
            let mut c = Command::new("cargo");
            c.env("RUSTUP_TOOLCHAIN", t)
                .env_remove("RUSTC")
                .env_remove("RUSTDOC");
            c
        }
        None => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    };
    cmd.current_dir(root)
        .arg("build")
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(&guest_target);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    // The outer cargo passes its flags and wrappers (clippy, coverage) to build
    // scripts through the environment; the guests are built plainly.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo for the plugins: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugins {packages:?} for {TARGET} failed ({status}); \
             is the target installed? `rustup target add {TARGET}`"
        ));
    }
    let out = guest_target.join(TARGET).join(PROFILE);
    packages
        .iter()
        .map(|p| {
            let wasm = out.join(format!("{}.wasm", p.replace('-', "_")));
            if wasm.is_file() {
                Ok(Guest {
                    package: (*p).to_string(),
                    wasm,
                })
            } else {
                Err(format!("cargo built {p} but {} is missing", wasm.display()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn target_dir_with_or_without_the_cache_tag() {
        let root = std::env::temp_dir().join(format!("guest-build-test-{}", std::process::id()));
        let target = root.join("target");
        let out = target.join("debug/build/pkg-0123abcd/out");
        std::fs::create_dir_all(&out).unwrap();
        // A target dir made by a script before cargo: no tag.
        assert_eq!(target_dir(&out).unwrap(), target);
        std::fs::write(
            target.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        assert_eq!(target_dir(&out).unwrap(), target);
        assert!(target_dir(Path::new("/nowhere/out")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
