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

/// Runs `adeploy ARGS` (see [`adeploy_command`]) to completion.
pub fn adeploy(args: &[&str], cwd: &Path, state: &Path) -> Output {
    adeploy_command(cwd, state).args(args).output().unwrap()
}
