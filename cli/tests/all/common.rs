//! The library tests' helpers (host/tests/all/common.rs, shared by path so
//! both test binaries use one copy) and the ones that run the binary, which
//! exists only in this package (`CARGO_BIN_EXE_adeploy`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

// Each test binary uses a different part of the shared helpers.
#[allow(dead_code, unused_imports)]
#[path = "../../../host/tests/all/common.rs"]
mod shared;
#[allow(unused_imports)]
pub use shared::*;

/// The `adeploy` binary as a user runs it from `cwd` with state dir `state`:
/// the shared component cache, no inherited `ADEPLOY_CONFIG`,
/// `ADEPLOY_HISTORY_URL`, `DEPLOYMENT_ENVIRONMENT` or `RUST_LOG`, no stdin. Add arguments,
/// environment and output handling as the test needs.
pub fn adeploy_command(cwd: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adeploy"));
    c.current_dir(cwd)
        .env("ADEPLOY_CACHE_DIR", cache_dir())
        .env("ADEPLOY_STATE_DIR", state)
        .env_remove("ADEPLOY_CONFIG")
        .env_remove("ADEPLOY_HISTORY_URL")
        .env_remove("DEPLOYMENT_ENVIRONMENT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// `adeploy ARGS` on a pseudo-terminal (`script` from util-linux, which
/// .ci/run installs), otherwise as [`adeploy_command`] runs it: a clean
/// environment with `PATH`, `TERM=xterm`, the shared component cache and
/// `state`. Its stdin is the terminal's input.
pub fn adeploy_on_a_terminal(cwd: &Path, state: &Path, args: &[&str]) -> Command {
    let mut line = vec![env!("CARGO_BIN_EXE_adeploy").to_string()];
    line.extend(
        args.iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''"))),
    );
    let mut c = Command::new("script");
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .env("ADEPLOY_CACHE_DIR", cache_dir())
        .env("ADEPLOY_STATE_DIR", state)
        .args(["-qec", &line.join(" "), "/dev/null"]);
    c
}

/// Runs `adeploy ARGS` (see [`adeploy_command`]) to completion.
pub fn adeploy(args: &[&str], cwd: &Path, state: &Path) -> Output {
    adeploy_command(cwd, state).args(args).output().unwrap()
}
