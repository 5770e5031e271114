//! {{name}}: an adeploy detector. It gathers evidence through the host
//! imports (each needs a grant) and says which environment it points at.
//! This one reads the `APP_ENV` variable (granted by
//! `plugins.{{name}}.grants.env`); its config may name another variable:
//! `{"variable": "MY_ENV"}`.
//!
//! It is written with adeploy-sdk (vendored in `adeploy-sdk/`): the trait,
//! the export macro, the host imports and typed config.

use adeploy_sdk::detector::{Detection, DetectionRules, Detector, Evidence};
use adeploy_sdk::host::{self, HostError};
use adeploy_sdk::types::{Environment, PluginInfo};
use serde::Deserialize;

struct Plugin;

/// This detector's config (every key optional).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Config {
    variable: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { variable: "APP_ENV".to_string() }
    }
}

fn environment(name: &str) -> Option<Environment> {
    match name.trim().to_ascii_lowercase().as_str() {
        "local" => Some(Environment::Local),
        "development" | "dev" => Some(Environment::Development),
        "staging" | "stage" => Some(Environment::Staging),
        "production" | "prod" => Some(Environment::Production),
        _ => None,
    }
}

impl Detector for Plugin {
    fn describe() -> PluginInfo {
        adeploy_sdk::info("{{name}}", "0.1.0", "{{description}}")
    }

    fn detect(rules: DetectionRules, config: String) -> Result<Detection, String> {
        let config: Config = adeploy_sdk::config::from_json(&config)?;
        let name = config.variable;
        let mut notes = Vec::new();
        let value = match host::env_var(&name) {
            Ok(v) => v,
            // A denial is a value: note it and carry on without evidence.
            Err(HostError::Denied(why)) => {
                notes.push(format!("{name} not readable: {why}"));
                None
            }
            Err(e) => return Err(format!("reading {name}: {e:?}")),
        };
        let Some(env) = value.as_deref().and_then(environment) else {
            return Ok(Detection { environment: None, confidence: 0.0, evidence: vec![], notes });
        };
        Ok(Detection {
            environment: Some(env),
            confidence: 1.0,
            evidence: vec![Evidence {
                method: "env-var".to_string(),
                environment: env,
                weight: rules.weights.env_var,
                detail: format!("{name}={}", value.unwrap_or_default()),
            }],
            notes,
        })
    }
}

adeploy_sdk::export_detector!(Plugin);
