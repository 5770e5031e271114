//! Environment detection: the operator's word, else the combined evidence of
//! every detector plugin.
//!
//! Why combine evidence rather than answers: each detector reports weighted
//! evidence, so two detectors that each lean weakly towards staging can
//! outweigh one that leans towards development. An explicit `--environment`,
//! and then the `DEPLOYMENT_ENVIRONMENT` variable (as a detector read it),
//! win with confidence 1.0; missing, tied or weak evidence falls back to
//! `environment_detection.default_environment` with a warning, and every
//! piece of evidence is kept for the decision log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};
use crate::plugin::{PluginError, PluginKind, PluginSet, detection_rules};

/// One piece of evidence, attributed to the detector that found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub detector: String,
    pub method: String,
    pub environment: Environment,
    pub weight: f64,
    pub detail: String,
}

/// Where the environment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionSource {
    /// `--environment`.
    Operator,
    /// The variable named by `environment_detection.env_var`
    /// (`DEPLOYMENT_ENVIRONMENT`), as a detector read it.
    EnvVar,
    /// The detectors' evidence.
    Evidence,
    /// `default_environment`, for lack of clear evidence.
    Default,
}

/// The environment a deployment runs in, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedEnvironment {
    pub environment: Environment,
    /// 0..1: the winner's share of the evidence weight (1.0 from the operator).
    pub confidence: f64,
    pub source: DetectionSource,
    pub evidence: Vec<EvidenceRecord>,
    /// Warnings and detectors' notes (denied probes, fallbacks).
    pub notes: Vec<String>,
}

/// Runs the detectors and combines their evidence.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use adeploy::config::Config;
/// use adeploy::detect::EnvironmentDetector;
/// use adeploy::plugin::{HostOptions, PluginHost, PluginSet};
///
/// let config = Config::load(None)?;
/// let host = PluginHost::new(HostOptions::for_config(&config))?;
/// let plugins = PluginSet::load(&host, &config, &[]).await?;
/// let found = EnvironmentDetector::new(&plugins, &config).detect(None).await?;
/// println!("{} (confidence {:.2})", found.environment, found.confidence);
/// for e in &found.evidence {
///     println!("  {} {}: {}", e.detector, e.method, e.detail);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EnvironmentDetector<'a> {
    plugins: &'a PluginSet,
    config: &'a Config,
}

impl<'a> EnvironmentDetector<'a> {
    pub fn new(plugins: &'a PluginSet, config: &'a Config) -> Self {
        EnvironmentDetector { plugins, config }
    }

    /// Detects the environment; `operator` (from `--environment`) wins outright.
    /// A detector that fails is noted and skipped, never fatal.
    pub async fn detect(
        &self,
        operator: Option<Environment>,
    ) -> Result<DetectedEnvironment, PluginError> {
        if let Some(environment) = operator {
            return Ok(DetectedEnvironment {
                environment,
                confidence: 1.0,
                source: DetectionSource::Operator,
                evidence: Vec::new(),
                notes: Vec::new(),
            });
        }
        let rules = detection_rules(&self.config.environment_detection);
        let mut evidence = Vec::new();
        let mut notes = Vec::new();
        for plugin in self.plugins.of_kind(PluginKind::Detector) {
            match plugin.detect(&rules).await {
                Ok(called) => {
                    for e in called.value.evidence {
                        evidence.push(EvidenceRecord {
                            detector: plugin.name().to_string(),
                            method: e.method,
                            environment: e.environment.into(),
                            weight: e.weight,
                            detail: e.detail,
                        });
                    }
                    notes.extend(
                        called
                            .value
                            .notes
                            .into_iter()
                            .map(|n| format!("{}: {n}", plugin.name())),
                    );
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    notes.push(e.to_string());
                }
            }
        }
        Ok(self.combine(evidence, notes))
    }

    fn combine(
        &self,
        evidence: Vec<EvidenceRecord>,
        mut notes: Vec<String>,
    ) -> DetectedEnvironment {
        let d = &self.config.environment_detection;
        // The variable names the environment outright, like --environment.
        if let Some(e) = evidence
            .iter()
            .filter(|e| e.method == "env-var")
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
        {
            let environment = e.environment;
            return DetectedEnvironment {
                environment,
                confidence: 1.0,
                source: DetectionSource::EnvVar,
                evidence,
                notes,
            };
        }
        let fallback = d.default_environment.unwrap_or(Environment::Development);
        let mut totals: BTreeMap<Environment, f64> = BTreeMap::new();
        for e in &evidence {
            *totals.entry(e.environment).or_default() += e.weight.max(0.0);
        }
        let total: f64 = totals.values().sum();
        let mut ranked: Vec<(Environment, f64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let winner = match ranked.as_slice() {
            [] => None,
            [(env, w)] => Some((*env, *w)),
            [(env, w), (_, second), ..] if w > second => Some((*env, *w)),
            [(a, _), (b, _), ..] => {
                notes.push(format!("evidence for {a} and {b} is tied"));
                None
            }
        };
        match winner {
            Some((environment, w)) if total > 0.0 && w / total >= d.min_confidence => {
                DetectedEnvironment {
                    environment,
                    confidence: w / total,
                    source: DetectionSource::Evidence,
                    evidence,
                    notes,
                }
            }
            other => {
                let why = match other {
                    Some((env, w)) => format!(
                        "evidence favours {env} with confidence {:.2}, below min_confidence {:.2}",
                        w / total,
                        d.min_confidence
                    ),
                    None if evidence.is_empty() => "no detector found any evidence".to_string(),
                    None => "the evidence is tied".to_string(),
                };
                let msg = format!("{why}; using default_environment {fallback}");
                tracing::warn!("{msg}");
                notes.push(msg);
                DetectedEnvironment {
                    environment: fallback,
                    confidence: 0.0,
                    source: DetectionSource::Default,
                    evidence,
                    notes,
                }
            }
        }
    }
}
