//! Integration tests of the adeploy library, one binary with a module per
//! feature (the tests that run the `adeploy` binary live in the CLI crate,
//! cli/tests/all). Plugins are real components built from this repository: the
//! built-ins (embedded by host/build.rs) and the fixtures in
//! tests/fixtures/plugins (built by the adeploy-fixtures build script).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod analysis_flow;
mod builtin_detector;
mod builtin_hook;
mod builtin_strategies;
mod common;
mod container_fleet;
#[allow(dead_code)]
mod container_support;
mod containment;
mod engine;
mod fleet;
mod flow;
mod fuzz_regressions;
mod health_identity;
mod history_wiring;
mod hostile;
mod learning;
mod metric_provider;
mod permissions;
mod process_tree;
mod prometheus_support;
mod report_render;
mod sandbox;
mod wit_contract;
