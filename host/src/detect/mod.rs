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
//!
//! How evidence maps to confidence ([`confidence`]): the winner's share of
//! the evidence weight (*agreement*: what `min_confidence` is compared with)
//! times how much evidence there is for it (*support*: its weight against one
//! piece of evidence from every method, capped at 1). One weak marker that
//! nothing contradicts is unanimous but thin: agreement 1, support 1/8 with
//! the default weights, confidence 0.125. The operator and the variable give
//! 1.0; a fallback to the default environment gives 0.

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
    /// 0..1: agreement × support of the evidence ([`confidence`]); 1.0 from
    /// the operator or the variable, 0 for the default environment.
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
                    confidence: confidence(w, total, &d.weights),
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

/// How sure the evidence makes a detection, 0..1: agreement × support.
///
/// - *agreement*: `winner` (the summed weight of the winning environment's
///   evidence) as a share of `total` (all the evidence's weight);
/// - *support*: `winner` against one piece of evidence from every method
///   (the sum of the configured `weights` of hostname, network, filesystem
///   and process), capped at 1: the more independent evidence agrees, the
///   surer the detection.
///
/// ```
/// use adeploy::config::MethodWeights;
/// use adeploy::detect::confidence;
///
/// let w = MethodWeights { env_var: 10.0, hostname: 3.0, network: 2.0, filesystem: 2.0, process: 1.0 };
/// assert_eq!(confidence(1.0, 1.0, &w), 0.125); // one process marker, nothing against it
/// assert_eq!(confidence(8.0, 8.0, &w), 1.0); // every method agrees
/// assert!((confidence(3.0, 5.0, &w) - 0.225).abs() < 1e-12); // hostname against a marker
/// ```
pub fn confidence(winner: f64, total: f64, weights: &crate::config::MethodWeights) -> f64 {
    if !(winner > 0.0 && total > 0.0) {
        return 0.0;
    }
    let agreement = (winner / total).min(1.0);
    let reference: f64 = [
        weights.hostname,
        weights.network,
        weights.filesystem,
        weights.process,
    ]
    .iter()
    .map(|w| w.max(0.0))
    .sum();
    let support = if reference > 0.0 {
        (winner / reference).min(1.0)
    } else {
        1.0
    };
    agreement * support
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MethodWeights;

    fn defaults() -> MethodWeights {
        MethodWeights {
            env_var: 10.0,
            hostname: 3.0,
            network: 2.0,
            filesystem: 2.0,
            process: 1.0,
        }
    }

    #[test]
    fn one_weak_marker_is_not_certainty() {
        let c = confidence(1.0, 1.0, &defaults());
        assert!(c < 0.2, "{c}");
    }

    #[test]
    fn more_agreeing_evidence_is_surer_and_disagreement_lowers_it() {
        let w = defaults();
        let hostname = confidence(3.0, 3.0, &w);
        let and_marker = confidence(5.0, 5.0, &w);
        let all = confidence(8.0, 8.0, &w);
        assert!(
            hostname < and_marker && and_marker < all,
            "{hostname} {and_marker} {all}"
        );
        assert_eq!(all, 1.0);
        assert_eq!(confidence(16.0, 16.0, &w), 1.0, "capped");
        let contested = confidence(5.0, 7.0, &w);
        assert!(contested < and_marker, "{contested}");
        assert!((contested - 5.0 / 7.0 * 5.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn no_evidence_is_no_confidence() {
        assert_eq!(confidence(0.0, 0.0, &defaults()), 0.0);
        let zero = MethodWeights {
            env_var: 0.0,
            hostname: 0.0,
            network: 0.0,
            filesystem: 0.0,
            process: 0.0,
        };
        assert_eq!(confidence(2.0, 4.0, &zero), 0.5, "agreement alone");
    }
}
