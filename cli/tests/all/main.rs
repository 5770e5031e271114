//! Integration tests of the `adeploy` binary, one test binary with a module
//! per feature: commands, exit codes, rendering, processes killed mid-run,
//! plugins in other languages through `--plugins`. The library's tests live
//! in host/tests/all; both share its `common.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod analysis_flow;
mod cli;
mod cli_run;
mod common;
#[allow(dead_code)]
#[path = "../../../host/tests/all/container_support.rs"]
mod container_support;
mod containers;
mod demo_port;
mod diagnostics;
mod examples;
mod golden;
mod hostile;
mod human_output;
mod metric_provider;
#[path = "../../../host/tests/all/prometheus_support.rs"]
mod prometheus_support;
mod reports;
mod scaffold;
mod security;
mod seed_commands;
mod shared_history;
