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

mod analysis;
pub mod container;
mod environments;
mod history;
pub mod placeholders;
mod schema;
pub mod secret;
pub use analysis::DEFAULT_CONFIDENCE;
pub use environments::{EffectiveSettings, Override};
pub use history::*;
pub use placeholders::{PLACEHOLDERS, PlaceholderError, Template};
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

/// The directory of the config file `path`, as relative paths in it are
/// resolved: `my_config.yaml` (a bare name, as the seed writes it) is in
/// `.`, not in `""` — `Path::parent` gives an empty path for a bare name,
/// and an empty working directory makes every command fail to start.
pub fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        // A bare name, or a path with no parent at all (`/`, ``).
        _ if path.has_root() => path.to_path_buf(),
        _ => PathBuf::from("."),
    }
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
    crate::terminal::safe(text)
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

    /// The directory relative paths in this config are resolved against:
    /// the config file's directory ([`config_dir`]), or `.` for the
    /// embedded default.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_deref()
            .map_or_else(|| PathBuf::from("."), config_dir)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let semantic = |key: String, message: String| ConfigError::Semantic {
            path: path.to_path_buf(),
            key,
            message,
        };
        self.validate_services(path, text)?;
        self.validate_analysis(path, text)?;
        self.history.validate(path)?;
        for (name, limits) in &self.resource_limits {
            if let Err((field, message)) = check_limits(limits) {
                return Err(semantic(format!("resource_limits.{name}.{field}"), message));
            }
        }
        self.validate_environments(path, text)?;
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
        self.validate_ml(path, text)?;
        for (field, v) in [
            ("exploration_rate", ml.exploration_rate),
            ("drift_exploration_rate", ml.drift_exploration_rate),
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
        let d = &self.environment_detection;
        let w = &d.weights;
        if [w.env_var, w.hostname, w.network, w.filesystem, w.process]
            .iter()
            .any(|x| !x.is_finite() || *x < 0.0 || *x > 1e6)
        {
            return Err(semantic(
                "environment_detection.weights".to_string(),
                "weights are numbers from 0 to 1000000".to_string(),
            ));
        }
        if !(d.min_confidence.is_finite() && (0.0..=1.0).contains(&d.min_confidence)) {
            return Err(semantic(
                "environment_detection.min_confidence".to_string(),
                "must be a number from 0 to 1".to_string(),
            ));
        }
        if self.plugin_defaults.timeout_ms == 0
            || self.plugin_defaults.memory_mb == 0
            || self.plugin_defaults.deployment_budget_ms == 0
        {
            return Err(semantic(
                "plugin_defaults".to_string(),
                "timeout_ms, memory_mb and deployment_budget_ms must be at least 1".to_string(),
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
    /// `ml_config`: feature weights name known features and are weights;
    /// half-lives and the drift p-value are in range. Errors point at the
    /// key when the user's file has it.
    fn validate_ml(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let ml = &self.ml_config;
        let err = |keys: &[&str], message: String| error_at(path, text, keys, message);
        for (key, w) in &ml.feature_weights {
            if !crate::ml::KNOWN_WEIGHT_KEYS.contains(&key.as_str()) {
                return Err(err(
                    &["ml_config", "feature_weights", key],
                    format!(
                        "unknown feature {:?}; the known ones are {}",
                        one_line(key),
                        crate::ml::KNOWN_WEIGHT_KEYS.join(", ")
                    ),
                ));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(err(
                    &["ml_config", "feature_weights", key],
                    format!(
                        "must be a weight of 0 or more (0 keeps the feature out of the model), got {w}"
                    ),
                ));
            }
        }
        if crate::ml::column_weights(&ml.feature_weights)
            .iter()
            .all(|w| *w == 0.0)
        {
            return Err(err(
                &["ml_config", "feature_weights"],
                "every feature weighs 0: the model would have nothing to learn from".to_string(),
            ));
        }
        for (field, v) in [
            ("half_life_deployments", ml.half_life_deployments),
            ("half_life_days", ml.half_life_days),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(
                    &["ml_config", field],
                    format!("must be 0 (no decay) or more, got {v}"),
                ));
            }
        }
        if !(0.0..1.0).contains(&ml.drift_p_value) {
            return Err(err(
                &["ml_config", "drift_p_value"],
                format!(
                    "must be in [0, 1) (0 turns change detection off; e.g. 0.01), got {}",
                    ml.drift_p_value
                ),
            ));
        }
        Ok(())
    }

    /// Every service has a deploy command, a well-formed health check, and
    /// dependencies on defined services without cycles. Errors point at the
    /// line of the offending key when the user's file has it.
    fn validate_services(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |keys: &[&str], message: String| error_at(path, text, keys, message);
        for (name, s) in &self.services {
            container::validate(name, s, &err)?;
            if s.deploy.is_none() && s.target != TargetKind::Container {
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
                    && !(s.target == TargetKind::Container && addr.contains("${ADEPLOY_"))
                    && addr
                        .rsplit_once(':')
                        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                {
                    return Err(err(
                        &["services", name, "health", "tcp"],
                        format!("{addr:?} is not host:port"),
                    ));
                }
                validate_expectations(h, &|key: &[&str], message: String| {
                    let mut keys = vec!["services", name.as_str(), "health"];
                    keys.extend_from_slice(key);
                    err(&keys, message)
                })?;
            }
            if let Some(v) = &s.version {
                check_version(v).map_err(|m| err(&["services", name, "version"], m))?;
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
        if !s.is_fleet() {
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
        let fleet = s.is_fleet();
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
                    "`from: remote` needs `target: ssh` (or a container service with hosts)"
                        .to_string(),
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

/// A strategy's budget makes sense: fractions in (0, 1], concurrency ≥ 1.
/// `Err((field, message))`.
fn check_limits(limits: &ResourceLimits) -> Result<(), (&'static str, String)> {
    for (field, v) in [
        ("cpu_limit", limits.cpu_limit),
        ("memory_limit", limits.memory_limit),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            return Err((field, format!("must be a fraction in (0, 1], got {v}")));
        }
    }
    if limits.concurrency == 0 {
        return Err(("concurrency", "must be at least 1".to_string()));
    }
    Ok(())
}

/// An error about the key path `keys`, at its line and column in `text`
/// when the user's file has it there.
fn error_at(path: &Path, text: &str, keys: &[&str], message: String) -> ConfigError {
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
}

/// `expect_body`, `expect_body_regex` and `expect_headers` of a health
/// check: only for `http`, known variables only, a regex that compiles, a
/// header name that is one. `err` takes the key path below `health`.
fn validate_expectations(
    h: &HealthSpec,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<(), ConfigError> {
    if h.http.is_none() {
        for (key, set) in [
            ("expect_body", h.expect_body.is_some()),
            ("expect_body_regex", h.expect_body_regex.is_some()),
            ("expect_headers", !h.expect_headers.is_empty()),
        ] {
            if set {
                return Err(err(&[key], "only applies to an `http` check".to_string()));
            }
        }
        return Ok(());
    }
    if let Some(body) = &h.expect_body {
        if body.is_empty() {
            return Err(err(
                &["expect_body"],
                "is empty (every body contains it)".to_string(),
            ));
        }
        Template::parse(body).map_err(|m| err(&["expect_body"], m.to_string()))?;
    }
    if let Some(re) = &h.expect_body_regex {
        let t = Template::parse(re).map_err(|m| err(&["expect_body_regex"], m.to_string()))?;
        let sample = t
            .render(|_| Some("x".to_string()), regex::escape)
            .unwrap_or_default();
        regex::Regex::new(&sample).map_err(|e| {
            err(
                &["expect_body_regex"],
                format!("is not a regular expression: {}", regex_error(&e)),
            )
        })?;
    }
    for (name, value) in &h.expect_headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(
                &["expect_headers", name],
                format!("{:?} is not an HTTP header name", one_line(name)),
            ));
        }
        Template::parse(value).map_err(|m| err(&["expect_headers", name], m.to_string()))?;
    }
    Ok(())
}

/// The one line of a `regex` error that says what is wrong (its Display
/// draws the pattern with a caret under the problem, over several lines).
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| one_line(&text).into_owned(), str::to_string)
}

/// A version as a service may declare it: 1 to 128 printable characters, no
/// spaces (it goes into environment variables, file names and reports).
pub fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".to_string());
    }
    if v.chars().count() > 128 {
        return Err("is longer than 128 characters".to_string());
    }
    if let Some(c) = v.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{:?} contains {:?}; a version has no spaces or control characters",
            one_line(v),
            c
        ));
    }
    Ok(())
}

/// `NAME=VERSION`, as `run --set-version` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOverride {
    pub service: String,
    pub version: String,
}

impl std::str::FromStr for VersionOverride {
    type Err = String;

    /// `api=1.2.3` → service `api`, version `1.2.3`; the message of an error
    /// says what the form is.
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((service, version)) = s.split_once('=') else {
            return Err(format!(
                "{:?} is not SERVICE=VERSION (e.g. api=1.2.3)",
                one_line(s)
            ));
        };
        if service.is_empty() {
            return Err(format!("{:?} names no service", one_line(s)));
        }
        check_version(version).map_err(|m| format!("version of {}: {m}", one_line(service)))?;
        Ok(VersionOverride {
            service: service.to_string(),
            version: version.to_string(),
        })
    }
}

impl Config {
    /// Sets the versions of `run --set-version` over the config's. An unknown
    /// service is an error naming the defined ones.
    pub fn set_versions(&mut self, overrides: &[VersionOverride]) -> Result<(), ConfigError> {
        let path = self
            .source
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_NAME));
        for o in overrides {
            let Some(s) = self.services.get_mut(&o.service) else {
                return Err(ConfigError::Semantic {
                    path,
                    key: format!("--set-version {}", o.service),
                    message: format!(
                        "unknown service (defined: {})",
                        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            };
            check_version(&o.version).map_err(|message| ConfigError::Semantic {
                path: path.clone(),
                key: format!("--set-version {}", o.service),
                message,
            })?;
            s.version = Some(o.version.clone());
        }
        Ok(())
    }

    /// The version of service `name` (after [`Config::set_versions`]).
    pub fn version_of(&self, name: &str) -> Option<&str> {
        self.services.get(name)?.version.as_deref()
    }

    /// Checks, before a deployment of `services`, that every health
    /// expectation using `${ADEPLOY_VERSION}` has a version to compare with.
    pub fn check_health_versions(&self, services: &[String]) -> Result<(), ConfigError> {
        for name in services {
            let Some(s) = self.services.get(name) else {
                continue;
            };
            let Some(h) = &s.health else { continue };
            if s.version.is_some() {
                continue;
            }
            let texts = h
                .expect_body
                .iter()
                .map(|t| ("expect_body", t))
                .chain(h.expect_body_regex.iter().map(|t| ("expect_body_regex", t)))
                .chain(h.expect_headers.values().map(|t| ("expect_headers", t)));
            for (key, text) in texts {
                let uses = Template::parse(text)
                    .map(|t| t.variables().contains(&"ADEPLOY_VERSION"))
                    .unwrap_or(false);
                if uses {
                    return Err(ConfigError::Semantic {
                        path: self
                            .source
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_NAME)),
                        key: format!("services.{name}.health.{key}"),
                        message: format!(
                            "uses ${{ADEPLOY_VERSION}} but {name} has no version: set services.{name}.version or run --set-version {name}=VERSION"
                        ),
                    });
                }
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

/// The 1-based line and column of a key path in block-style YAML (a flow
/// mapping on the parent's line, `health: { http: …, expect_body: … }`,
/// included), if present.
fn locate(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let mut from = 0usize;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    // Where the previous key ended: (line index, byte offset).
    let mut after_prev: Option<(usize, usize)> = None;
    for key in keys {
        if let Some((li, off)) = after_prev
            && let Some(pos) = find_flow_key(&lines[li][off..], key)
        {
            let col = off + pos;
            found = Some((li + 1, lines[li][..col].chars().count() + 1));
            after_prev = Some((li, col + key.len()));
            continue;
        }
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
        found = Some((i + 1, lines[i][..indent].chars().count() + 1));
        let bare_at =
            indent + (lines[i].len() - indent - lines[i][indent..].trim_start_matches("- ").len());
        after_prev = Some((i, bare_at + key.len()));
        from = i;
        parent_indent = Some(indent);
    }
    found
}

/// The byte offset of `key:` inside a flow mapping in `rest` (the remainder
/// of a line after its parent key), if there.
fn find_flow_key(rest: &str, key: &str) -> Option<usize> {
    let open = rest.find('{')?;
    rest.match_indices(key)
        .map(|(i, _)| i)
        .filter(|&i| i > open)
        .find(|&i| {
            let before = rest[..i].trim_end_matches(['"', '\'']);
            let after = rest[i + key.len()..].trim_start_matches(['"', '\'']);
            before.ends_with(['{', ',', ' ']) && after.trim_start().starts_with(':')
        })
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
    fn feature_weights_refuse_unknown_keys_and_non_weights() {
        let err = |text: &str| {
            Config::from_layers(text, Path::new("my.yaml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("ml_config:\n  feature_weights:\n    system_cpu: 2\n    sytem_memory: 3\n");
        assert!(
            e.starts_with(
                "my.yaml:4:5: ml_config.feature_weights.sytem_memory: unknown feature \"sytem_memory\"; the known ones are system_cpu, historical_success_rate, environment_type, service_history, image_history, cpu_percent,"
            ),
            "{e}"
        );
        let e = err("ml_config:\n  feature_weights:\n    hour: -1\n");
        assert!(
            e.starts_with(
                "my.yaml:3:5: ml_config.feature_weights.hour: must be a weight of 0 or more"
            ),
            "{e}"
        );
        let e = err("ml_config:\n  half_life_deployments: -3\n");
        assert!(
            e.starts_with(
                "my.yaml:2:3: ml_config.half_life_deployments: must be 0 (no decay) or more"
            ),
            "{e}"
        );
        let e = err("ml_config:\n  drift_p_value: 1.5\n");
        assert!(
            e.starts_with("my.yaml:2:3: ml_config.drift_p_value: must be in [0, 1)"),
            "{e}"
        );
        let all_off: String = crate::ml::FEATURE_NAMES
            .iter()
            .map(|n| format!("    {n}: 0\n"))
            .collect();
        let e = err(&format!(
            "ml_config:\n  feature_weights:\n    system_cpu: 0\n    historical_success_rate: 0\n    environment_type: 0\n{all_off}"
        ));
        assert!(e.contains("every feature weighs 0"), "{e}");
        let cfg = Config::from_layers(
            "ml_config:\n  feature_weights:\n    service_history: 2\n    hour: 0\n",
            Path::new("ok.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.ml_config.feature_weights["service_history"], 2.0);
        assert_eq!(
            cfg.ml_config.feature_weights["system_cpu"], 1.0,
            "the defaults' keys stay"
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

    /// Regression: `adeploy --config my_config.yaml run ...` (a bare file
    /// name, as the seed and the README write it) made every command fail
    /// with "cannot start `true` in :" because the base directory was "".
    #[tokio::test]
    async fn a_bare_config_file_name_is_in_the_working_directory() {
        assert_eq!(config_dir(Path::new("my_config.yaml")), Path::new("."));
        assert_eq!(config_dir(Path::new("./my_config.yaml")), Path::new("."));
        assert_eq!(config_dir(Path::new("conf/my.yaml")), Path::new("conf"));
        assert_eq!(config_dir(Path::new("/etc/my.yaml")), Path::new("/etc"));
        assert_eq!(config_dir(Path::new("/")), Path::new("/"));

        let cfg = Config::from_layers(
            "services:\n  api:\n    deploy: 'true'\n",
            Path::new("my_config.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.base_dir(), Path::new("."));
        assert_eq!(Config::embedded().unwrap().base_dir(), Path::new("."));

        // The command really starts there (it failed to spawn before).
        let tmp = tempfile::tempdir().unwrap();
        let log = crate::exec::DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let cwd = cfg.base_dir();
        let opts = crate::exec::RunOptions::new("api deploy", &cwd, &log);
        let deploy = cfg.services["api"].deploy.clone().unwrap();
        let out = crate::exec::run_command(&deploy, &opts).await.unwrap();
        assert!(out.success, "{out:?}");
        let pwd = crate::exec::run_command(&CommandSpec::Shell("pwd -P".into()), &opts)
            .await
            .unwrap();
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(pwd.tail, [here.display().to_string()]);
    }

    /// `(line, column)` of the first `needle` in `text`, 1-based.
    fn position(text: &str, needle: &str) -> (usize, usize) {
        text.lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap()
    }

    #[test]
    fn health_expectations_and_versions_are_checked_with_positions() {
        let service = |health: &str, extra: &str| {
            format!("services:\n  api:\n    deploy: 'true'\n{extra}    health: {health}\n")
        };
        let cases = [
            (
                service(
                    "{ http: \"http://127.0.0.1:1/h\", expect_body: \"v=${ADEPLOY_VERISON}\" }",
                    "",
                ),
                "expect_body",
                "services.api.health.expect_body: unknown placeholder ${ADEPLOY_VERISON} (known: ${ADEPLOY_SERVICE}, ${ADEPLOY_DEPLOYMENT_ID}, ${ADEPLOY_ENVIRONMENT}, ${ADEPLOY_VERSION}, ${ADEPLOY_PREVIOUS_VERSION}, ${ADEPLOY_HOST}, ${ADEPLOY_HOST_ADDRESS}, ${ADEPLOY_PORT})",
            ),
            (
                service(
                    "\n      http: http://127.0.0.1:1/h\n      expect_body_regex: 'v=(${ADEPLOY_VERSION}'",
                    "",
                ),
                "expect_body_regex",
                "services.api.health.expect_body_regex: is not a regular expression: unclosed group",
            ),
            (
                service("{ tcp: \"127.0.0.1:1\", expect_body: ok }", ""),
                "expect_body",
                "services.api.health.expect_body: only applies to an `http` check",
            ),
            (
                service(
                    "\n      http: http://127.0.0.1:1/h\n      expect_headers:\n        \"bad header\": x",
                    "",
                ),
                "\"bad header\"",
                "services.api.health.expect_headers.bad header: \"bad header\" is not an HTTP header name",
            ),
            (
                service(
                    "{ http: \"http://127.0.0.1:1/h\" }",
                    "    version: 1.2 beta\n",
                ),
                "version",
                "services.api.version: \"1.2 beta\" contains ' '; a version has no spaces or control characters",
            ),
        ];
        for (text, at, message) in cases {
            let err = Config::from_layers(&text, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            let (line, column) = position(&text, at);
            assert_eq!(err, format!("c.yaml:{line}:{column}: {message}"), "{text}");
        }

        let ok = service(
            "\n      http: http://127.0.0.1:1/h\n      expect_body: \"deployment=${ADEPLOY_DEPLOYMENT_ID}\"\n      expect_body_regex: '^v=${ADEPLOY_VERSION}\\b'\n      expect_headers: { X-Service: \"${ADEPLOY_SERVICE}\" }",
            "    version: 1.2.3\n",
        );
        let cfg = Config::from_layers(&ok, Path::new("c.yaml")).unwrap();
        assert_eq!(cfg.version_of("api"), Some("1.2.3"));
        let h = cfg.services["api"].health.as_ref().unwrap();
        assert_eq!(h.expect_headers["X-Service"], "${ADEPLOY_SERVICE}");
    }

    #[test]
    fn versions_can_be_set_for_a_run() {
        let text = "services:\n  api:\n    deploy: 'true'\n    health:\n      http: http://127.0.0.1:1/h\n      expect_body: \"${ADEPLOY_VERSION}\"\n  web:\n    deploy: 'true'\n";
        let mut cfg = Config::from_layers(text, Path::new("c.yaml")).unwrap();
        let all = ["api".to_string(), "web".to_string()];
        assert_eq!(
            cfg.check_health_versions(&all).unwrap_err().to_string(),
            "c.yaml: services.api.health.expect_body: uses ${ADEPLOY_VERSION} but api has no version: set services.api.version or run --set-version api=VERSION"
        );
        assert!(cfg.check_health_versions(&["web".to_string()]).is_ok());

        let o: VersionOverride = "api=1.2.3".parse().unwrap();
        assert_eq!((o.service.as_str(), o.version.as_str()), ("api", "1.2.3"));
        assert_eq!(
            "api".parse::<VersionOverride>().unwrap_err(),
            "\"api\" is not SERVICE=VERSION (e.g. api=1.2.3)"
        );
        assert_eq!(
            "api=".parse::<VersionOverride>().unwrap_err(),
            "version of api: is empty"
        );
        cfg.set_versions(&[o]).unwrap();
        assert_eq!(cfg.version_of("api"), Some("1.2.3"));
        assert!(cfg.check_health_versions(&all).is_ok());
        let unknown = VersionOverride {
            service: "db".into(),
            version: "1".into(),
        };
        assert_eq!(
            cfg.set_versions(&[unknown]).unwrap_err().to_string(),
            "c.yaml: --set-version db: unknown service (defined: api, web)"
        );
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
