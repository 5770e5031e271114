//! # adeploy-sdk: write adeploy plugins in Rust
//!
//! An adeploy plugin is a WebAssembly component that implements one of the
//! worlds of the `adeploy:plugin@0.1.0` WIT package (`wit/` in the adeploy
//! repository): a **detector** recognises the environment, a **strategy**
//! shapes and steers a rollout, a **hook** runs at fixed points of a
//! deployment, a **metric provider** reads a time series from a monitoring
//! system for the host's analysis. This crate holds the generated bindings, a trait per kind with
//! sensible defaults, an export macro per kind, the helpers every
//! strategy needs (dependency ordering, waves, fleet steps, step labels),
//! strict parsing of whole-number config keys ([`config_whole_numbers`]) and
//! ready-made inputs for native unit tests ([`testing`]).
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
//! `on_progress` has a default: continue, and pause 10 s while the machine is
//! over the strategy's budget. Rolling back past the failure budget is not the
//! plugin's job: the host enforces the plan's `failure` policy
//! (`max_failures`, `rollback_scope`) whatever `on_progress` answers, so a
//! strategy overrides `on_progress` only to be stricter (roll back on the
//! first failure, abort) or to pause.
//!
//! ## Config
//!
//! [`config::config`] reads the plugin's own settings (`plugins.<name>.config`
//! in the operator's YAML) into any `serde::Deserialize` type and refuses
//! unknown keys by name; [`config::strategy_config`] adds the validation keys
//! every strategy shares ([`config::ValidationSettings`]).
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

pub mod config;
pub mod detector;
pub mod hook;
pub mod provider;
pub mod strategy;
pub mod testing;

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

/// Reads a plugin config made only of whole-number keys into `slots`.
///
/// Why: most plugins take a few numeric knobs (`samples`, `interval_ms`, …)
/// and a misspelt key or a wrong type should refuse the deployment with a
/// message naming the key, not be ignored. Doing it here keeps the checks
/// and the wording the same in every plugin.
///
/// What: `config` is parsed like [`parse_config`] (an empty string is `{}`)
/// and must be a JSON object. Each `(name, slot)` pair declares an accepted
/// key; a key present in the config overwrites its slot, an absent key leaves
/// the slot's default alone. Keys are checked in `serde_json` map order
/// (sorted by name unless its `preserve_order` feature is on) and the first
/// bad one is reported:
///
/// - not JSON: `plugin config is not valid JSON: …`
/// - not an object: `plugin config must be a JSON object`
/// - a key with no slot: ``unknown config key `x` (accepted: a, b, c)``, the
///   accepted keys listed in slot order (`none` when there are no slots)
/// - a value that is not a whole number from 0 to `u32::MAX` (a string, a
///   negative or fractional number, `null`, …):
///   ``config key `x` must be a whole number, got "long"``
///
/// On an error no slot is written. Range checks beyond `u32` (say, "at least
/// 1") are the caller's to make afterwards.
///
/// ```
/// let (mut samples, mut soak_s) = (3, 5);
/// adeploy_sdk::config_whole_numbers(
///     r#"{"soak_s": 60}"#,
///     &mut [("samples", &mut samples), ("soak_s", &mut soak_s)],
/// )?;
/// assert_eq!((samples, soak_s), (3, 60));
///
/// let err = adeploy_sdk::config_whole_numbers(r#"{"soak": 1}"#, &mut [("samples", &mut samples)]);
/// assert_eq!(err.unwrap_err(), "unknown config key `soak` (accepted: samples)");
/// # Ok::<(), String>(())
/// ```
pub fn config_whole_numbers(config: &str, slots: &mut [(&str, &mut u32)]) -> Result<(), String> {
    let serde_json::Value::Object(map) = parse_config(config)? else {
        return Err("plugin config must be a JSON object".to_string());
    };
    // Validate everything first, so that an error leaves every slot as it was.
    let mut values = Vec::with_capacity(map.len());
    for (key, value) in &map {
        let Some(index) = slots.iter().position(|(name, _)| *name == key.as_str()) else {
            let accepted: Vec<&str> = slots.iter().map(|(name, _)| *name).collect();
            let accepted = if accepted.is_empty() {
                "none".to_string()
            } else {
                accepted.join(", ")
            };
            return Err(format!("unknown config key `{key}` (accepted: {accepted})"));
        };
        let number = value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("config key `{key}` must be a whole number, got {value}"))?;
        values.push((index, number));
    }
    for (index, number) in values {
        if let Some((_, slot)) = slots.get_mut(index) {
            **slot = number;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`config_whole_numbers`] over the three validation keys, starting
    /// from (1, 2, 3), and returns the result and the slots afterwards.
    fn read(config: &str) -> (Result<(), String>, (u32, u32, u32)) {
        let (mut samples, mut interval_ms, mut soak_s) = (1, 2, 3);
        let result = config_whole_numbers(
            config,
            &mut [
                ("samples", &mut samples),
                ("interval_ms", &mut interval_ms),
                ("soak_s", &mut soak_s),
            ],
        );
        (result, (samples, interval_ms, soak_s))
    }

    #[test]
    fn present_keys_overwrite_and_absent_keys_keep_defaults() {
        assert_eq!(read(r#"{"soak_s": 60}"#), (Ok(()), (1, 2, 60)));
        assert_eq!(
            read(r#"{"samples": 5, "interval_ms": 250, "soak_s": 0}"#),
            (Ok(()), (5, 250, 0))
        );
        assert_eq!(
            read(&format!(r#"{{"samples": {}}}"#, u32::MAX)),
            (Ok(()), (u32::MAX, 2, 3))
        );
    }

    #[test]
    fn empty_config_is_an_empty_object() {
        assert_eq!(read(""), (Ok(()), (1, 2, 3)));
        assert_eq!(read("  \n"), (Ok(()), (1, 2, 3)));
        assert_eq!(read("{}"), (Ok(()), (1, 2, 3)));
    }

    #[test]
    fn unknown_key_lists_the_accepted_keys_in_slot_order() {
        assert_eq!(
            read(r#"{"sample": 5}"#).0.unwrap_err(),
            "unknown config key `sample` (accepted: samples, interval_ms, soak_s)"
        );
        let mut waves = 4;
        let mut samples = 2;
        assert_eq!(
            config_whole_numbers(
                r#"{"speed": "fast"}"#,
                &mut [("waves", &mut waves), ("samples", &mut samples)]
            )
            .unwrap_err(),
            "unknown config key `speed` (accepted: waves, samples)"
        );
        assert_eq!(
            config_whole_numbers(r#"{"x": 1}"#, &mut []).unwrap_err(),
            "unknown config key `x` (accepted: none)"
        );
        assert_eq!(config_whole_numbers("{}", &mut []), Ok(()));
    }

    #[test]
    fn values_that_are_not_a_u32_name_the_key_and_the_value() {
        for (value, shown) in [
            (r#""long""#, r#""long""#),
            ("-1", "-1"),
            ("2.5", "2.5"),
            ("null", "null"),
            ("true", "true"),
            ("[1]", "[1]"),
            ("4294967296", "4294967296"),
        ] {
            assert_eq!(
                read(&format!(r#"{{"soak_s": {value}}}"#)).0.unwrap_err(),
                format!("config key `soak_s` must be a whole number, got {shown}")
            );
        }
    }

    #[test]
    fn config_that_is_not_a_json_object_is_refused() {
        assert_eq!(
            read("[1]").0.unwrap_err(),
            "plugin config must be a JSON object"
        );
        assert_eq!(
            read("5").0.unwrap_err(),
            "plugin config must be a JSON object"
        );
        assert!(
            read("{")
                .0
                .unwrap_err()
                .starts_with("plugin config is not valid JSON: ")
        );
    }

    #[test]
    fn an_error_writes_no_slot() {
        let (result, slots) = read(r#"{"samples": 9, "soak_s": -1}"#);
        assert!(result.is_err());
        assert_eq!(slots, (1, 2, 3));
        let (result, slots) = read(r#"{"samples": 9, "zzz": 1}"#);
        assert!(result.is_err());
        assert_eq!(slots, (1, 2, 3));
    }
}
