//! A plugin's own config, typed: `plugins.<name>.config` of the operator's
//! YAML arrives as a JSON string (`ctx.config`, `request.config`, the
//! `config` argument of `detect`); [`config`] and [`from_json`] read it into
//! any `T: Deserialize` and refuse keys `T` does not have, naming the key
//! and the accepted ones, whether or not `T` says
//! `#[serde(deny_unknown_fields)]`. A misspelt key refuses the deployment
//! instead of silently keeping a default.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(default)]
//! struct Settings {
//!     waves: u32,
//!     label: String,
//! }
//!
//! impl Default for Settings {
//!     fn default() -> Self {
//!         Settings { waves: 4, label: "canary".into() }
//!     }
//! }
//!
//! let s: Settings = adeploy_sdk::config::from_json(r#"{"waves": 2}"#)?;
//! assert_eq!((s.waves, s.label.as_str()), (2, "canary"));
//!
//! let err = adeploy_sdk::config::from_json::<Settings>(r#"{"wave": 2}"#).unwrap_err();
//! assert_eq!(err, "unknown config key `wave` (accepted: waves, label)");
//!
//! let err = adeploy_sdk::config::from_json::<Settings>(r#"{"waves": "two"}"#).unwrap_err();
//! assert_eq!(err, "config key `waves`: invalid type: string \"two\", expected u32");
//! # Ok::<(), String>(())
//! ```
//!
//! Strategies share three validation keys (`samples`, `interval_ms`,
//! `soak_s`): [`strategy_config`] reads them into a [`ValidationSettings`]
//! over the strategy's defaults, beside the strategy's own keys.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::strategy::ValidationPolicy;
use crate::types::DeploymentContext;

/// Reads the deployment's plugin config (`ctx.config`) into `T`; see the
/// module docs. An empty string counts as `{}`.
pub fn config<T: DeserializeOwned>(ctx: &DeploymentContext) -> Result<T, String> {
    from_json(&ctx.config)
}

/// Reads a plugin config (a JSON object; empty counts as `{}`) into `T`.
///
/// Errors, one line each: `plugin config is not valid JSON: …`,
/// `plugin config must be a JSON object`, ``unknown config key `x`
/// (accepted: a, b)`` (when `T` is a struct: its fields, in declaration
/// order), ``config key `x`: <what serde says>`` for a value of the wrong
/// type, and `plugin config: <what serde says>` for what concerns no one key
/// (a missing required field).
pub fn from_json<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let value = object(config)?;
    if let (Some(fields), serde_json::Value::Object(map)) = (fields_of::<T>(), &value) {
        refuse_unknown(map, &[fields])?;
    }
    typed(value)
}

/// The validation keys every strategy's config accepts, and the
/// [`ValidationPolicy`] they make: `samples` healthy samples per step (at
/// least 1), `interval_ms` apart, then `soak_s` seconds of soak. Each
/// strategy has its own defaults (and may vary them by environment);
/// [`strategy_config`] puts the operator's keys over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSettings {
    pub samples: u32,
    pub interval_ms: u32,
    pub soak_s: u32,
}

impl Default for ValidationSettings {
    /// One sample a second after deploying, no soak.
    fn default() -> Self {
        ValidationSettings {
            samples: 1,
            interval_ms: 1000,
            soak_s: 0,
        }
    }
}

impl ValidationSettings {
    /// The config keys, in the order error messages list them.
    pub const KEYS: [&'static str; 3] = ["samples", "interval_ms", "soak_s"];

    /// These settings as the plan's validation policy, with health checks.
    pub fn policy(&self) -> ValidationPolicy {
        ValidationPolicy {
            health_checks: true,
            samples: self.samples,
            interval_ms: self.interval_ms,
            soak_s: self.soak_s,
        }
    }

    /// `self` with the validation keys of `ctx.config` over it; any other
    /// key is refused. For a strategy with keys of its own, see
    /// [`strategy_config`].
    pub fn with_config(self, ctx: &DeploymentContext) -> Result<ValidationSettings, String> {
        strategy_config::<NoKeys>(ctx, self).map(|(_, v)| v)
    }
}

/// A config with no keys of its own (for [`strategy_config`] when the
/// validation keys are all a strategy takes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct NoKeys {}

/// A strategy's config: its own keys read into `T` (as [`from_json`] does)
/// and the validation keys ([`ValidationSettings::KEYS`]) over `defaults`.
/// A key that is neither is refused, naming every accepted key (`T`'s
/// first); a validation key must be a whole number from 0 to `u32::MAX`,
/// and `samples` at least 1.
///
/// ```
/// use adeploy_sdk::config::{strategy_config, ValidationSettings};
/// use adeploy_sdk::testing::context;
/// use adeploy_sdk::types::Environment;
///
/// #[derive(serde::Deserialize)]
/// #[serde(default)]
/// struct Own { waves: u32 }
/// impl Default for Own { fn default() -> Self { Own { waves: 4 } } }
///
/// let defaults = ValidationSettings { samples: 2, interval_ms: 1000, soak_s: 0 };
/// let ctx = context(Environment::Staging, vec![], r#"{"waves": 2, "soak_s": 30}"#);
/// let (own, validation) = strategy_config::<Own>(&ctx, defaults)?;
/// assert_eq!((own.waves, validation.samples, validation.soak_s), (2, 2, 30));
///
/// let ctx = context(Environment::Staging, vec![], r#"{"sample": 3}"#);
/// assert_eq!(
///     strategy_config::<Own>(&ctx, defaults).err().unwrap(),
///     "unknown config key `sample` (accepted: waves, samples, interval_ms, soak_s)"
/// );
/// # Ok::<(), String>(())
/// ```
pub fn strategy_config<T: DeserializeOwned>(
    ctx: &DeploymentContext,
    defaults: ValidationSettings,
) -> Result<(T, ValidationSettings), String> {
    let serde_json::Value::Object(mut own) = object(&ctx.config)? else {
        return Err("plugin config must be a JSON object".to_string());
    };
    let fields = fields_of::<T>().unwrap_or(&[]);
    refuse_unknown(&own, &[fields, &ValidationSettings::KEYS])?;
    let mut validation = serde_json::Map::new();
    for key in ValidationSettings::KEYS {
        if let Some(v) = own.remove(key) {
            validation.insert(key.to_string(), v);
        }
    }
    let mut v = defaults;
    crate::config_whole_numbers(
        &serde_json::Value::Object(validation).to_string(),
        &mut [
            ("samples", &mut v.samples),
            ("interval_ms", &mut v.interval_ms),
            ("soak_s", &mut v.soak_s),
        ],
    )?;
    if v.samples == 0 {
        return Err("config key `samples` must be at least 1".to_string());
    }
    Ok((typed(serde_json::Value::Object(own))?, v))
}

/// The config as a JSON value that must be an object.
fn object(config: &str) -> Result<serde_json::Value, String> {
    let value = crate::parse_config(config)?;
    if !value.is_object() {
        return Err("plugin config must be a JSON object".to_string());
    }
    Ok(value)
}

/// The first key of `map` in none of `known`, as an error listing them all.
fn refuse_unknown(
    map: &serde_json::Map<String, serde_json::Value>,
    known: &[&[&str]],
) -> Result<(), String> {
    let accepted: Vec<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
    match map.keys().find(|k| !accepted.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(format!(
            "unknown config key `{key}` (accepted: {})",
            if accepted.is_empty() {
                "none".to_string()
            } else {
                accepted.join(", ")
            }
        )),
    }
}

/// `value` as `T`, an error naming the key whose value does not fit.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("plugin config: {}", e.inner())
        } else {
            format!("config key `{path}`: {}", e.inner())
        }
    })
}

/// The field names of `T` when it deserializes as a struct: serde hands
/// them to `deserialize_struct`, which this probe records and then stops.
/// `None` for anything else (a map, a `#[serde(flatten)]` struct), whose
/// unknown keys are then serde's business.
fn fields_of<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0
}

struct Probe(Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::context;
    use crate::types::Environment;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default)]
    struct Own {
        waves: u32,
        label: String,
    }

    impl Default for Own {
        fn default() -> Self {
            Own {
                waves: 4,
                label: "x".into(),
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Required {
        address: String,
    }

    #[test]
    fn keys_are_typed_and_unknown_ones_refused() {
        assert_eq!(from_json::<Own>("").unwrap(), Own::default());
        assert_eq!(
            from_json::<Own>(r#"{"label": "y"}"#).unwrap(),
            Own {
                waves: 4,
                label: "y".into()
            }
        );
        assert_eq!(
            from_json::<Own>(r#"{"label": "y", "colour": 1}"#).unwrap_err(),
            "unknown config key `colour` (accepted: waves, label)"
        );
        assert_eq!(
            from_json::<Own>("[1]").unwrap_err(),
            "plugin config must be a JSON object"
        );
        assert!(
            from_json::<Own>("{")
                .unwrap_err()
                .starts_with("plugin config is not valid JSON: "),
        );
        assert_eq!(
            from_json::<Own>(r#"{"waves": -1}"#).unwrap_err(),
            "config key `waves`: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            from_json::<Required>("{}").unwrap_err(),
            "plugin config: missing field `address`"
        );
        assert_eq!(
            from_json::<NoKeys>(r#"{"a": 1}"#).unwrap_err(),
            "unknown config key `a` (accepted: none)"
        );
    }

    #[test]
    fn a_map_takes_any_key() {
        let m: std::collections::BTreeMap<String, u32> = from_json(r#"{"a": 1, "b": 2}"#).unwrap();
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn strategy_config_splits_validation_keys_from_the_strategy_s_own() {
        let defaults = ValidationSettings {
            samples: 2,
            interval_ms: 1000,
            soak_s: 5,
        };
        let run = |config: &str| {
            strategy_config::<Own>(&context(Environment::Staging, vec![], config), defaults)
        };
        let (own, v) = run(r#"{"waves": 2, "interval_ms": 50}"#).unwrap();
        assert_eq!(own.waves, 2);
        assert_eq!(
            v,
            ValidationSettings {
                samples: 2,
                interval_ms: 50,
                soak_s: 5
            }
        );
        assert_eq!(
            run(r#"{"soak": 1}"#).unwrap_err(),
            "unknown config key `soak` (accepted: waves, label, samples, interval_ms, soak_s)"
        );
        assert_eq!(
            run(r#"{"samples": 0}"#).unwrap_err(),
            "config key `samples` must be at least 1"
        );
        assert_eq!(
            run(r#"{"samples": "3"}"#).unwrap_err(),
            "config key `samples` must be a whole number, got \"3\""
        );
        assert_eq!(
            run(r#"{"waves": "3"}"#).unwrap_err(),
            "config key `waves`: invalid type: string \"3\", expected u32"
        );
        // Only the validation keys.
        let ctx = context(Environment::Staging, vec![], r#"{"waves": 2}"#);
        assert_eq!(
            defaults.with_config(&ctx).unwrap_err(),
            "unknown config key `waves` (accepted: samples, interval_ms, soak_s)"
        );
        let ctx = context(Environment::Staging, vec![], r#"{"soak_s": 0}"#);
        assert_eq!(defaults.with_config(&ctx).unwrap().policy().soak_s, 0);
        assert!(defaults.policy().health_checks);
    }
}
