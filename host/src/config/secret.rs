//! Secret values in the config, and the redaction that keeps them out of
//! every log, report, decision and event.
//!
//! Why redaction at the sinks: a secret reaches a deploy command through its
//! environment, and from there it can show up anywhere the command's output
//! goes (a failing `curl -v` prints its headers). Instead of trusting every
//! code path, the engine builds one [`Redactor`] per deployment from the
//! resolved secret values, and the deployment log, the decision log, the
//! events, the report and the history record all pass through it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this would redact ordinary words; they are refused.
pub const MIN_SECRET_LEN: usize = 4;

/// A string that never prints: `Debug` and `Serialize` show [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    /// The value, for the one place that needs it (a command's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// A value of `services.<name>.env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// `KEY: value`: an ordinary value.
    Plain(String),
    /// `KEY: { secret: value }`: redacted everywhere adeploy writes.
    Secret { secret: SecretString },
    /// `KEY: { from_env: VAR }`: adeploy's own environment variable VAR at
    /// deployment time, treated as a secret.
    FromEnv { from_env: String },
}

/// Why a service's environment cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "services.{service}.env.{key}: from_env {var} is not set in adeploy's environment; export it or change the config"
    )]
    Unset {
        service: String,
        key: String,
        var: String,
    },
    #[error(
        "services.{service}.env.{key}: a secret must be at least {MIN_SECRET_LEN} characters (shorter ones would redact ordinary text)"
    )]
    TooShort { service: String, key: String },
}

/// A service's environment variables, and the secret values among them.
pub type ResolvedEnv = (Vec<(String, String)>, Vec<String>);

/// The environment of `service` with secrets resolved (`from_env` from
/// adeploy's own environment), and the secret values.
pub fn resolve_env(
    service: &str,
    env: &BTreeMap<String, EnvValue>,
) -> Result<ResolvedEnv, SecretError> {
    resolve_env_with(service, env, |var| std::env::var(var).ok())
}

/// [`resolve_env`] with `lookup` for `from_env` variables.
pub fn resolve_env_with(
    service: &str,
    env: &BTreeMap<String, EnvValue>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedEnv, SecretError> {
    let mut out = Vec::with_capacity(env.len());
    let mut secrets = Vec::new();
    for (key, v) in env {
        let value = match v {
            EnvValue::Plain(s) => {
                out.push((key.clone(), s.clone()));
                continue;
            }
            EnvValue::Secret { secret } => secret.expose().to_string(),
            EnvValue::FromEnv { from_env } => {
                lookup(from_env).ok_or_else(|| SecretError::Unset {
                    service: service.to_string(),
                    key: key.clone(),
                    var: from_env.clone(),
                })?
            }
        };
        if value.chars().count() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                service: service.to_string(),
                key: key.clone(),
            });
        }
        secrets.push(value.clone());
        out.push((key.clone(), value));
    }
    Ok((out, secrets))
}

/// Replaces every secret value in text with [`REDACTED`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(mut secrets: Vec<String>) -> Redactor {
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// Every string inside `value` redacted.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                *s = self.redact(s);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// `value` with every string redacted, through its JSON form. A value
    /// that does not round-trip is returned unchanged.
    pub fn redact_value<T: Serialize + serde::de::DeserializeOwned + Clone>(&self, value: &T) -> T {
        if self.is_empty() {
            return value.clone();
        }
        let Ok(mut json) = serde_json::to_value(value) else {
            return value.clone();
        };
        self.redact_json(&mut json);
        serde_json::from_value(json).unwrap_or_else(|_| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_are_redacted_longest_first() {
        let s = SecretString::new("hunter22");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        let r = Redactor::new(vec!["abcd".into(), "abcdefgh".into(), String::new()]);
        assert_eq!(
            r.redact("x abcdefgh y abcd"),
            format!("x {REDACTED} y {REDACTED}")
        );
        let mut v = serde_json::json!({"a": ["abcd", 1, {"b": "zabcdz"}]});
        r.redact_json(&mut v);
        assert_eq!(
            v.to_string(),
            format!("{{\"a\":[\"{REDACTED}\",1,{{\"b\":\"z{REDACTED}z\"}}]}}")
        );
    }

    #[test]
    fn env_values_resolve_plain_secret_and_from_env() {
        let yaml = "A: plain\nB: {secret: s3cr3t-value}\nC: {from_env: ADEPLOY_TEST_SECRET_C}\n";
        let env: BTreeMap<String, EnvValue> = serde_yaml::from_str(yaml).unwrap();
        let unset = |_: &str| None;
        assert!(matches!(
            resolve_env_with("svc", &env, unset),
            Err(SecretError::Unset { ref var, .. }) if var == "ADEPLOY_TEST_SECRET_C"
        ));
        let lookup = |v: &str| (v == "ADEPLOY_TEST_SECRET_C").then(|| "from-the-env".to_string());
        let (vars, secrets) = resolve_env_with("svc", &env, lookup).unwrap();
        assert_eq!(
            vars,
            [
                ("A".to_string(), "plain".to_string()),
                ("B".to_string(), "s3cr3t-value".to_string()),
                ("C".to_string(), "from-the-env".to_string()),
            ]
        );
        assert_eq!(secrets, ["s3cr3t-value", "from-the-env"]);
        let short: BTreeMap<String, EnvValue> = serde_yaml::from_str("K: {secret: ab}").unwrap();
        assert!(matches!(
            resolve_env_with("svc", &short, unset),
            Err(SecretError::TooShort { .. })
        ));
    }
}
