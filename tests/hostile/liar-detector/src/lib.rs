//! Hostile plugin `liar-detector`: a detector that lies, floods or breaks
//! in the way its config asks (`{"mode": "...", "environment": "local"}`):
//!
//! - `claim`: evidence for `environment` (default `local`) under every
//!   built-in method (`env-var`, `hostname`, `network`, `filesystem`,
//!   `process`) and its own, each with weight 1e6 (the most the host accepts), confidence 1. It first
//!   touches every import it might hold a grant for (the variable, the host
//!   name, `/`, the process list), so with grants its claims are as
//!   credible as a detector's can be;
//! - `nan`, `inf`, `neg-inf`, `huge`: one piece of evidence whose weight is
//!   NaN, +inf, -inf or `f64::MAX`;
//! - `nan-confidence`: a NaN confidence;
//! - `many-evidence`: 1.5 million empty evidence records;
//! - `many-notes`: 3 million empty notes;
//! - `loop`: `detect` never returns;
//! - `escape`: evidence detail and a note carrying terminal escapes.
//!
//! Its description carries terminal escapes too (shown by `plugins list`).

use adeploy_sdk::detector::{Detection, DetectionRules, Detector, Evidence};
use adeploy_sdk::types::{Environment, PluginInfo};

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct Liar;

/// What a terminal must never receive raw: clear screen, a window title
/// (OSC), a C1 CSI, a bidi override and a bell.
pub const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}evil\u{7}";

fn evidence(method: &str, environment: Environment, weight: f64) -> Evidence {
    Evidence {
        method: method.to_string(),
        environment,
        weight,
        detail: format!("{method} says so"),
    }
}

fn environment(name: &str) -> Environment {
    match name {
        "production" => Environment::Production,
        "staging" => Environment::Staging,
        "development" => Environment::Development,
        _ => Environment::Local,
    }
}

impl Detector for Liar {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "liar-detector",
            "0.1.0",
            &format!("hostile detector {ESCAPES} that lies"),
        )
    }

    fn detect(_rules: DetectionRules, config: String) -> Result<Detection, String> {
        let cfg = adeploy_sdk::parse_config(&config)?;
        let get = |k: &str| {
            cfg.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let env = environment(&get("environment"));
        let mut d = Detection {
            environment: Some(env),
            confidence: 1.0,
            evidence: Vec::new(),
            notes: Vec::new(),
        };
        match get("mode").as_str() {
            "claim" => {
                let _ = adeploy_sdk::host::env_var("DEPLOYMENT_ENVIRONMENT");
                let _ = adeploy_sdk::host::hostname();
                let _ = adeploy_sdk::host::path_exists("/");
                let _ = adeploy_sdk::host::list_processes();
                for m in [
                    "env-var",
                    "hostname",
                    "network",
                    "filesystem",
                    "process",
                    "liar",
                ] {
                    d.evidence.push(evidence(m, env, 1e6));
                }
            }
            "nan" => d.evidence.push(evidence("hostname", env, f64::NAN)),
            "inf" => d.evidence.push(evidence("hostname", env, f64::INFINITY)),
            "neg-inf" => d
                .evidence
                .push(evidence("hostname", env, f64::NEG_INFINITY)),
            "huge" => d.evidence.push(evidence("hostname", env, f64::MAX)),
            "nan-confidence" => d.confidence = f64::NAN,
            "many-evidence" => {
                d.evidence = vec![
                    Evidence {
                        method: String::new(),
                        environment: env,
                        weight: 0.0,
                        detail: String::new(),
                    };
                    1_500_000
                ];
            }
            "many-notes" => d.notes = vec![String::new(); 3_000_000],
            "loop" => loop {
                std::hint::spin_loop();
            },
            "escape" => {
                d.evidence.push(Evidence {
                    method: "liar".to_string(),
                    environment: env,
                    weight: 1.0,
                    detail: format!("detail {ESCAPES} end"),
                });
                d.notes.push(format!("note {ESCAPES} end"));
            }
            _ => {}
        }
        Ok(d)
    }
}

adeploy_sdk::export_detector!(Liar);
