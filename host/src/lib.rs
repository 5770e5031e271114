//! # adeploy: an adaptive deployment orchestrator you can embed
//!
//! adeploy deploys a set of services with a strategy chosen from the detected
//! environment, the live load of the machine and what it learned from earlier
//! deployments. Environment detectors, rollout strategies and hooks are
//! WebAssembly components behind the WIT contract in `wit/`, loaded by the
//! sandboxed host in [`plugin`].
//!
//! The `adeploy` binary is a thin CLI over this library: everything it prints
//! comes from the public API below.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use adeploy::config::Config;
//! use adeploy::plugin::{HostOptions, PluginHost, PluginKind, PluginSet};
//!
//! let config = Config::load(None)?; // the embedded defaults
//! let host = PluginHost::new(HostOptions::default())?;
//! let plugins = PluginSet::load(&host, &config, &[]).await?;
//! for p in plugins.of_kind(PluginKind::Strategy) {
//!     println!("{} {} — {}", p.name(), p.info().version, p.info().description);
//! }
//! # Ok(()) }
//! ```

pub mod analysis;
pub mod config;
pub mod detect;
pub mod engine;
pub mod exec;
pub mod fs;
pub mod history;
pub mod ml;
pub mod monitor;
pub mod plugin;
pub mod report;
pub mod terminal;
