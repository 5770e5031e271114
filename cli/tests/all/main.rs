//! Integration tests of the `adeploy` binary, one test binary with a module
//! per feature: commands, exit codes, rendering, processes killed mid-run,
//! plugins in other languages through `--plugins`. The library's tests live
//! in host/tests/all; both share its `common.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod cli_run;
mod common;
mod diagnostics;
mod examples;
mod hostile;
mod metric_provider;
mod scaffold;
mod security;
