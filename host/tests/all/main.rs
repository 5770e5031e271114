//! Integration tests of the adeploy host, one binary with a module per
//! feature. Plugins are real components built from this repository: the
//! built-ins (embedded by host/build.rs) and the fixtures in
//! tests/fixtures/plugins (built by the adeploy-fixtures build script).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builtin_detector;
mod builtin_hook;
mod builtin_strategies;
mod cli;
mod cli_run;
mod common;
mod diagnostics;
mod engine;
mod examples;
mod fleet;
mod fuzz_regressions;
mod health_identity;
mod hostile;
mod learning;
mod permissions;
mod process_tree;
mod sandbox;
mod scaffold;
mod security;
