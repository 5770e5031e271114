//! {{name}}: an adeploy detector. It gathers evidence through the host
//! imports (each needs a grant) and says which environment it points at.
//! This one reads the `APP_ENV` variable (granted by `plugins.{{name}}.grants.env`).

wit_bindgen::generate!({
    path: "wit",
    world: "adeploy:plugin/detector-plugin",
    generate_all,
});

use adeploy::plugin::host::{HostError, env_var};
use adeploy::plugin::types::{Environment, PluginInfo};
use exports::adeploy::plugin::detector::{DetectionRules, Detection, Evidence, Guest};

struct Plugin;

fn environment(name: &str) -> Option<Environment> {
    match name.trim().to_ascii_lowercase().as_str() {
        "local" => Some(Environment::Local),
        "development" | "dev" => Some(Environment::Development),
        "staging" | "stage" => Some(Environment::Staging),
        "production" | "prod" => Some(Environment::Production),
        _ => None,
    }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: "0.1.0".to_string(),
            description: "{{description}}".to_string(),
        }
    }

    fn detect(rules: DetectionRules, _config: String) -> Result<Detection, String> {
        let mut notes = Vec::new();
        let value = match env_var("APP_ENV") {
            Ok(v) => v,
            // A denial is a value: note it and carry on without evidence.
            Err(HostError::Denied(why)) => {
                notes.push(format!("APP_ENV not readable: {why}"));
                None
            }
            Err(e) => return Err(format!("reading APP_ENV: {e:?}")),
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
                detail: format!("APP_ENV={}", value.unwrap_or_default()),
            }],
            notes,
        })
    }
}

export!(Plugin);
