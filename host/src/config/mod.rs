//! The configuration: schema, embedded defaults, loading and merging.
//!
//! Why YAML stays in this module: `serde_yaml` is archived upstream. Every
//! other module receives typed values (or calls [`parse_yaml`]), so swapping
//! the parser touches only this file. Errors keep `file:line:column` and the
//! key path (`plugins.detector.grants.env[0]`), because an operator fixes a
//! config by going to a line.
//!
//! Layering: the embedded `config/deployment_config.yaml` is the documented
//! default; `--config F` is merged over it key by key (maps merge, lists and
//! scalars replace). The user file is first checked on its own, so its errors
//! point into it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod schema;
pub use schema::*;

/// The documented default configuration, compiled into the binary.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../../config/deployment_config.yaml");

/// Name under which the embedded default appears in error messages.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded config/deployment_config.yaml>";

/// A configuration problem, always naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax or schema error at a known position. `message` starts with the
    /// key path, e.g. `plugins.detector: unknown field ...`.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but makes no sense (or no position is known).
    #[error("{}: {key}: {message}", path.display())]
    Semantic {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Parses YAML text into `T`, with `path:line:column` and the key path in errors.
/// The only YAML entry point of adeploy (plugin manifests use it too).
pub fn parse_yaml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    // serde_yaml's message already starts with the key path ("plugins.detector: ...")
    // and ends with the position; we move the position to the front.
    serde_yaml::from_str(text).map_err(|err| {
        let message = strip_location(&err.to_string());
        match err.location() {
            Some(l) => ConfigError::Invalid {
                path: path.to_path_buf(),
                line: l.line(),
                column: l.column(),
                message,
            },
            None => ConfigError::Semantic {
                path: path.to_path_buf(),
                key: "(top level)".to_string(),
                message,
            },
        }
    })
}

fn key_path(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s.is_empty() || s == "." {
        "(top level)".to_string()
    } else {
        s
    }
}

/// serde_yaml appends " at line L column C" to messages; the position is
/// already in front of ours.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Converts a YAML value (a plugin's free-form `config`) to a JSON string.
pub fn yaml_to_json(value: &serde_yaml::Value) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

impl Config {
    /// The embedded defaults alone.
    pub fn embedded() -> Result<Config, ConfigError> {
        let cfg: Config = parse_yaml(DEFAULT_CONFIG_YAML, Path::new(DEFAULT_CONFIG_NAME))?;
        cfg.validate(Path::new(DEFAULT_CONFIG_NAME))?;
        Ok(cfg)
    }

    /// The embedded defaults with `path` merged over them (when given).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::embedded();
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_layers(&text, path)
    }

    /// The embedded defaults with `text` (read from `path`) merged over them.
    pub fn from_layers(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // Check the user layer alone first, so errors point into it.
        let _: Config = parse_yaml(text, path)?;
        let base: serde_yaml::Value =
            parse_yaml(DEFAULT_CONFIG_YAML, Path::new(DEFAULT_CONFIG_NAME))?;
        let user: serde_yaml::Value = parse_yaml(text, path)?;
        let merged = merge(base, user);
        let mut cfg: Config =
            serde_path_to_error::deserialize(merged).map_err(|err| ConfigError::Semantic {
                path: path.to_path_buf(),
                key: key_path(err.path()),
                message: strip_location(&err.into_inner().to_string()),
            })?;
        cfg.source = Some(path.to_path_buf());
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The directory relative paths in this config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let semantic = |key: String, message: String| ConfigError::Semantic {
            path: path.to_path_buf(),
            key,
            message,
        };
        for (name, limits) in &self.resource_limits {
            for (field, v) in [
                ("cpu_limit", limits.cpu_limit),
                ("memory_limit", limits.memory_limit),
            ] {
                if !(v > 0.0 && v <= 1.0) {
                    return Err(semantic(
                        format!("resource_limits.{name}.{field}"),
                        format!("must be a fraction in (0, 1], got {v}"),
                    ));
                }
            }
            if limits.concurrency == 0 {
                return Err(semantic(
                    format!("resource_limits.{name}.concurrency"),
                    "must be at least 1".to_string(),
                ));
            }
        }
        if self.plugin_defaults.timeout_ms == 0 || self.plugin_defaults.memory_mb == 0 {
            return Err(semantic(
                "plugin_defaults".to_string(),
                "timeout_ms and memory_mb must be at least 1".to_string(),
            ));
        }
        for (name, p) in &self.plugins {
            if let Some(digest) = &p.sha256
                && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(semantic(
                    format!("plugins.{name}.sha256"),
                    "must be 64 hexadecimal digits (`sha256sum FILE`)".to_string(),
                ));
            }
            if let Some(limits) = &p.limits
                && (limits.timeout_ms == Some(0) || limits.memory_mb == Some(0))
            {
                return Err(semantic(
                    format!("plugins.{name}.limits"),
                    "timeout_ms and memory_mb must be at least 1".to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// Deep merge: maps merge key by key, everything else in `over` replaces `base`.
fn merge(base: serde_yaml::Value, over: serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value;
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Mapping(b)
        }
        (_, over) => over,
    }
}

/// A map from environment name to patterns, as the seed's config writes it.
pub type PatternMap<T> = BTreeMap<Environment, Vec<T>>;

/// The environments adeploy knows, least to most careful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Local,
    Development,
    Staging,
    Production,
}

impl Environment {
    /// The lowercase name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_validates() {
        let cfg = Config::embedded().unwrap();
        for s in ["conservative", "balanced", "aggressive"] {
            assert!(
                cfg.resource_limits.contains_key(s),
                "resource_limits.{s} missing"
            );
        }
        assert_eq!(cfg.ml_config.retrain_frequency, 10);
        assert!(cfg.plugins.contains_key("detector"));
    }

    #[test]
    fn user_layer_merges_over_defaults() {
        let cfg = Config::from_layers(
            "resource_limits:\n  aggressive:\n    concurrency: 3\n",
            Path::new("my.yaml"),
        )
        .unwrap();
        let a = &cfg.resource_limits["aggressive"];
        assert_eq!(a.concurrency, 3);
        assert_eq!(a.cpu_limit, 0.9, "untouched keys keep their defaults");
        assert!(cfg.resource_limits.contains_key("balanced"));
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key_path() {
        let err = Config::from_layers(
            "thresholds:\n  high_cpu: 70\n  hgih_memory: 3\n",
            Path::new("my.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("my.yaml:3:3: thresholds: unknown field `hgih_memory`"),
            "{err}"
        );
    }

    #[test]
    fn type_error_names_the_key() {
        let err = Config::from_layers(
            "plugins:\n  detector:\n    grants:\n      hostname: sometimes\n",
            Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.yaml:4:17: plugins.detector.grants.hostname:"),
            "{err}"
        );
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let err = Config::from_layers("thresholds:\n  high_cpu: 1\n  - x\n", Path::new("bad.yaml"))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { line: 3, .. }), "{err}");
    }

    #[test]
    fn out_of_range_limit_is_rejected() {
        let err = Config::from_layers(
            "resource_limits:\n  balanced:\n    cpu_limit: 1.5\n",
            Path::new("c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "c.yaml: resource_limits.balanced.cpu_limit: must be a fraction in (0, 1], got 1.5"
        );
    }
}
