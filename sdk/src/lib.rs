//! # adeploy-sdk: write adeploy plugins in Rust
//!
//! An adeploy plugin is a WebAssembly component that implements one of the
//! worlds of the `adeploy:plugin@0.1.0` WIT package (`wit/` in the adeploy
//! repository): a **detector** recognises the environment, a **strategy**
//! shapes and steers a rollout, a **hook** runs at fixed points of a
//! deployment. This crate holds the generated bindings, a trait per kind with
//! sensible defaults, an export macro per kind, and the helpers every
//! strategy needs (dependency ordering, waves, fleet steps).
//!
//! Build a plugin with `cargo build --release --target wasm32-wasip2`; the
//! `.wasm` in `target/wasm32-wasip2/release/` is the component. Load it with
//! `adeploy run --plugins DIR` or inspect it with `adeploy plugins inspect`.
//!
//! ## A complete strategy plugin
//!
//! ```
//! use adeploy_sdk::strategy::{self, Rollout, Strategy, ValidationPolicy, FailurePolicy, RollbackScope};
//! use adeploy_sdk::types::{DeploymentContext, PluginInfo};
//!
//! /// Two services per wave, dependencies first, one health sample each.
//! struct Pairs;
//!
//! impl Strategy for Pairs {
//!     fn describe() -> PluginInfo {
//!         adeploy_sdk::info("pairs", "0.1.0", "two services per wave")
//!     }
//!
//!     fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
//!         let waves = strategy::waves(&ctx.services, 2)?;
//!         Ok(Rollout {
//!             waves,
//!             concurrency: ctx.limits.concurrency.min(2),
//!             validation: ValidationPolicy { health_checks: true, samples: 1, interval_ms: 500, soak_s: 0 },
//!             failure: FailurePolicy { max_failures: 0, rollback_scope: RollbackScope::All },
//!             notes: vec!["two at a time".to_string()],
//!         })
//!     }
//! }
//!
//! adeploy_sdk::export_strategy!(Pairs);
//! # fn main() {}
//! ```
//!
//! `on_progress` has a default (roll back past the failure budget, pause while
//! the machine is over budget); override it to steer the rollout yourself.
//!
//! ## Host imports
//!
//! [`host`] holds what the adeploy host lets a plugin do: `log`, `now`,
//! `env-var`, `hostname`, `path-exists`, `read-file`, `list-processes`,
//! `resolve`, `tcp-probe`, `http-fetch`. Everything but `log` and `now` needs a
//! grant in the operator's config; a denial is an `Err(HostError::Denied(..))`
//! value the plugin can record and carry on from.

mod common {
    wit_bindgen::generate!({
        inline: "package adeploy:sdk; world common { import adeploy:plugin/host@0.1.0; import adeploy:plugin/types@0.1.0; }",
        path: "../wit",
        world: "adeploy:sdk/common",
        generate_all,
    });
}

pub use common::adeploy::plugin::{host, types};

pub mod detector;
pub mod hook;
pub mod strategy;

/// The version of the `adeploy:plugin` WIT package these bindings implement.
pub const WIT_VERSION: &str = "0.1.0";

/// Builds a [`types::PluginInfo`] for `describe`.
pub fn info(name: &str, version: &str, description: &str) -> types::PluginInfo {
    types::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
    }
}

/// Writes a debug line to the deployment log.
pub fn debug(message: &str) {
    host::log(host::LogLevel::Debug, message);
}

/// Writes an info line to the deployment log.
pub fn log_info(message: &str) {
    host::log(host::LogLevel::Info, message);
}

/// Writes a warning to the deployment log.
pub fn warn(message: &str) {
    host::log(host::LogLevel::Warn, message);
}

/// Parses the plugin's own config (the `config` JSON string the host passes).
/// An empty string counts as `{}`.
pub fn parse_config(config: &str) -> Result<serde_json::Value, String> {
    if config.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(config).map_err(|e| format!("plugin config is not valid JSON: {e}"))
}

impl types::Environment {
    /// The lowercase name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            types::Environment::Local => "local",
            types::Environment::Development => "development",
            types::Environment::Staging => "staging",
            types::Environment::Production => "production",
        }
    }
}
