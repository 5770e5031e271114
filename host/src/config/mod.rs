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
//! scalars replace; a user `services` map replaces the demo services whole).
//! The user file is first checked on its own, so its errors point into it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod history;
mod schema;
pub mod secret;
pub use history::*;
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
    #[error("{}:{line}:{column}: {}", path.display(), one_line(message))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but makes no sense (or no position is known).
    #[error("{}: {}: {}", path.display(), one_line(key), one_line(message))]
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
    // serde_yaml appends the location last; a quoted value may itself
    // contain " at line ", so cut at the last one.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so that an
/// error quoting a user's key or value stays one line: a quoted key such as
/// `"a\nb"` must not break the message, or forge a second line, in a log.
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Converts a YAML value (a plugin's free-form `config`) to a JSON string.
pub fn yaml_to_json(value: &serde_yaml::Value) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

impl Config {
    /// The embedded defaults alone.
    pub fn embedded() -> Result<Config, ConfigError> {
        let cfg: Config = parse_yaml(DEFAULT_CONFIG_YAML, Path::new(DEFAULT_CONFIG_NAME))?;
        cfg.validate(Path::new(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG_YAML)?;
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
        let merged = merge_layers(base, user);
        let mut cfg: Config =
            serde_path_to_error::deserialize(merged).map_err(|err| ConfigError::Semantic {
                path: path.to_path_buf(),
                key: key_path(err.path()),
                message: strip_location(&err.into_inner().to_string()),
            })?;
        cfg.source = Some(path.to_path_buf());
        cfg.validate(path, text)?;
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

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let semantic = |key: String, message: String| ConfigError::Semantic {
            path: path.to_path_buf(),
            key,
            message,
        };
        self.validate_services(path, text)?;
        self.history.validate(path)?;
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
        if self.monitoring.sample_interval_ms == 0 || self.monitoring.latency_timeout_ms == 0 {
            return Err(semantic(
                "monitoring".to_string(),
                "sample_interval_ms and latency_timeout_ms must be at least 1".to_string(),
            ));
        }
        for (i, e) in self.monitoring.latency_endpoints.iter().enumerate() {
            if e.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(semantic(
                    format!("monitoring.latency_endpoints[{i}]"),
                    format!("{e:?} is not host:port"),
                ));
            }
        }
        let ml = &self.ml_config;
        for (field, v) in [
            ("exploration_rate", ml.exploration_rate),
            (
                "rollback_prediction_threshold",
                ml.rollback_prediction_threshold,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(semantic(
                    format!("ml_config.{field}"),
                    format!("must be a fraction in [0, 1], got {v}"),
                ));
            }
        }
        if !ml.model_type.is_empty() && ml.model_type != "random_forest" {
            return Err(semantic(
                "ml_config.model_type".to_string(),
                format!(
                    "{:?} is not available; adeploy has `random_forest`",
                    ml.model_type
                ),
            ));
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

impl Config {
    /// Every service has a deploy command, a well-formed health check, and
    /// dependencies on defined services without cycles. Errors point at the
    /// line of the offending key when the user's file has it.
    fn validate_services(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |keys: &[&str], message: String| {
            let key = keys.join(".");
            match locate(text, keys) {
                Some((line, column)) => ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: format!("{key}: {message}"),
                },
                None => ConfigError::Semantic {
                    path: path.to_path_buf(),
                    key,
                    message,
                },
            }
        };
        for (name, s) in &self.services {
            if s.deploy.is_none() {
                return Err(err(
                    &["services", name],
                    "has no `deploy` command".to_string(),
                ));
            }
            for (field, cmd) in [("deploy", &s.deploy), ("rollback", &s.rollback)] {
                if let Some(CommandSpec::Argv(v)) = cmd
                    && v.first().is_none_or(|p| p.is_empty())
                {
                    return Err(err(
                        &["services", name, field],
                        "an argv list needs a program".to_string(),
                    ));
                }
            }
            if let Some(h) = &s.health {
                let kinds = [h.http.is_some(), h.tcp.is_some(), h.command.is_some()]
                    .iter()
                    .filter(|k| **k)
                    .count();
                if kinds != 1 {
                    return Err(err(
                        &["services", name, "health"],
                        format!("needs exactly one of http, tcp, command (found {kinds})"),
                    ));
                }
                if let Some(url) = &h.http
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(err(
                        &["services", name, "health", "http"],
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                if let Some(addr) = &h.tcp
                    && addr
                        .rsplit_once(':')
                        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                {
                    return Err(err(
                        &["services", name, "health", "tcp"],
                        format!("{addr:?} is not host:port"),
                    ));
                }
            }
            self.validate_fleet(name, s, &err)?;
            for dep in &s.depends_on {
                if !self.services.contains_key(dep) {
                    return Err(err(
                        &["services", name, "depends_on"],
                        format!(
                            "unknown service '{dep}' (defined: {})",
                            self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(cycle) = dependency_cycle(&self.services) {
            return Err(err(
                &["services", &cycle[0], "depends_on"],
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The inventory hosts of service `name`, in inventory order: the ones
    /// named in `hosts` plus every host carrying all of `host_labels`. Empty
    /// for local services.
    pub fn hosts_of(&self, name: &str) -> Vec<String> {
        let Some(s) = self.services.get(name) else {
            return Vec::new();
        };
        if s.target != TargetKind::Ssh {
            return Vec::new();
        }
        self.inventory
            .hosts
            .iter()
            .filter(|(host, h)| {
                s.hosts.contains(host)
                    || (!s.host_labels.is_empty()
                        && s.host_labels.iter().all(|l| h.labels.contains(l)))
            })
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// `target: ssh` needs hosts that exist; a local service has none; a
    /// remote health check is a command.
    fn validate_fleet(
        &self,
        name: &str,
        s: &ServiceConfig,
        err: &dyn Fn(&[&str], String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let fleet = s.target == TargetKind::Ssh;
        if !fleet && (!s.hosts.is_empty() || !s.host_labels.is_empty()) {
            return Err(err(
                &["services", name, "hosts"],
                "hosts and host_labels need `target: ssh`".to_string(),
            ));
        }
        if !fleet {
            if s.health.as_ref().and_then(|h| h.from) == Some(HealthFrom::Remote) {
                return Err(err(
                    &["services", name, "health", "from"],
                    "`from: remote` needs `target: ssh`".to_string(),
                ));
            }
            return Ok(());
        }
        let known = || {
            let names: Vec<&str> = self.inventory.hosts.keys().map(String::as_str).collect();
            if names.is_empty() {
                "the inventory has no hosts".to_string()
            } else {
                format!("inventory hosts: {}", names.join(", "))
            }
        };
        for h in &s.hosts {
            if !self.inventory.hosts.contains_key(h) {
                return Err(err(
                    &["services", name, "hosts"],
                    format!("unknown host '{h}' ({})", known()),
                ));
            }
        }
        if self.hosts_of(name).is_empty() {
            return Err(err(
                &["services", name],
                format!(
                    "`target: ssh` selects no host: add `hosts` or `host_labels` that match ({})",
                    known()
                ),
            ));
        }
        if let Some(h) = &s.health
            && h.from == Some(HealthFrom::Remote)
            && h.command.is_none()
        {
            return Err(err(
                &["services", name, "health", "from"],
                "`from: remote` runs a `command` on the host (e.g. `curl -fsS http://localhost:8080/health`); http and tcp checks run from the controller".to_string(),
            ));
        }
        for (host, h) in &self.inventory.hosts {
            if h.address.trim().is_empty() {
                return Err(err(
                    &["inventory", "hosts", host, "address"],
                    "is empty".to_string(),
                ));
            }
            if h.port == Some(0) {
                return Err(err(
                    &["inventory", "hosts", host, "port"],
                    "must be 1-65535".to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// A cycle in `depends_on`, as the list of services on it (first repeated last).
fn dependency_cycle(services: &BTreeMap<String, ServiceConfig>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, ServiceConfig>,
        stack: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for d in services
            .get(n)
            .map(|s| s.depends_on.as_slice())
            .unwrap_or_default()
        {
            if let Some(c) = visit(d, services, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = std::collections::HashSet::new();
    services
        .keys()
        .find_map(|n| visit(n, services, &mut Vec::new(), &mut done))
}

/// The 1-based line and column of a key path in block-style YAML, if present.
fn locate(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let mut from = 0usize;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for key in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent
                && indent <= p
                && i > from
            {
                break;
            }
            let bare = trimmed.trim_start_matches("- ");
            let matches = bare
                .strip_prefix(*key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || bare
                    .strip_prefix(&format!("\"{key}\""))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'));
            if matches {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        found = Some((i + 1, indent + 1));
        from = i;
        parent_indent = Some(indent);
    }
    found
}

/// Merges the user layer over the defaults. `services` is replaced whole: the
/// embedded demo services are examples, not a base to extend.
fn merge_layers(mut base: serde_yaml::Value, user: serde_yaml::Value) -> serde_yaml::Value {
    if let (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(u)) = (&mut base, &user)
        && u.contains_key("services")
    {
        b.remove("services");
    }
    merge(base, user)
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
    fn strip_location_cuts_only_the_trailing_position() {
        assert_eq!(
            strip_location("unknown variant `x at line 9`, expected y at line 3 column 7"),
            "unknown variant `x at line 9`, expected y"
        );
        assert_eq!(strip_location("no position"), "no position");
    }

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
