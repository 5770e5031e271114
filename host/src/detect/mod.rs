//! Environment detection: the operator's word, else the combined evidence of
//! every detector plugin, weighed by rules the host enforces.
//!
//! Who decides, in order:
//!
//! 1. `--environment` (the operator, on the command line);
//! 2. the variable named by `environment_detection.env_var`
//!    (`DEPLOYMENT_ENVIRONMENT`), **read by the host itself** from the world
//!    plugins see; a value that names no environment is an error, not a
//!    guess;
//! 3. the detectors' evidence, combined by weight.
//!
//! Plugins never outvote 1 or 2: their evidence only decides when the
//! operator said nothing. And their evidence is not taken at face value.
//! The host normalises it ([`normalise`]): a detector may claim a method
//! (`env-var`, `hostname`, `network`, `filesystem`, `process`) only if it
//! holds the grant for it *and* used that grant successfully during the
//! call; a weight is at most the operator's weight for the method
//! (`environment_detection.weights`; a detector's own methods at most the
//! strongest of hostname, network, filesystem and process); and one detector
//! counts at most once per rule of a method for an environment. Evidence
//! that fails these checks is kept in the decision log with the reason it
//! was ignored. NaN, infinite and negative weights never get here (the
//! plugin host refuses the whole answer).
//!
//! [`DetectedEnvironment::signals`] lists every credible signal (the
//! operator's, the variable's, and counted evidence); the engine requires an
//! approval when any of them names an environment in
//! `approvals.required_for`, whatever won.
//!
//! How evidence maps to confidence ([`confidence`]): the winner's share of
//! the counted evidence weight (*agreement*: what `min_confidence` is
//! compared with) times how much evidence there is for it (*support*: its
//! weight against one piece of evidence from every method, capped at 1).
//! One weak marker that nothing contradicts is unanimous but thin:
//! agreement 1, support 1/8 with the default weights, confidence 0.125. The
//! operator and the variable give 1.0; a fallback to the default
//! environment gives 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Environment, EnvironmentDetection, Grants};
use crate::plugin::{EnvSource, HostWorld, PluginKind, PluginSet, Used, detection_rules};

/// Detectors called at the same time.
const CONCURRENT_DETECTORS: usize = 8;

/// One piece of evidence, attributed to the detector that found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub detector: String,
    pub method: String,
    pub environment: Environment,
    /// The weight it counts with (0 when ignored).
    pub weight: f64,
    pub detail: String,
    /// The weight the detector claimed, when the host lowered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_weight: Option<f64>,
    /// Why it does not count, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl EvidenceRecord {
    /// Whether this evidence counts towards the environment.
    pub fn counts(&self) -> bool {
        self.ignored.is_none() && self.weight > 0.0
    }
}

/// Where the environment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionSource {
    /// `--environment`.
    Operator,
    /// The variable named by `environment_detection.env_var`
    /// (`DEPLOYMENT_ENVIRONMENT`), read by the host.
    EnvVar,
    /// The detectors' evidence.
    Evidence,
    /// `default_environment`, for lack of clear evidence.
    Default,
}

/// What the host read from `environment_detection.env_var`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVarReading {
    /// The variable's name.
    pub name: String,
    pub value: String,
    /// The environment the value names (none: it names no environment).
    pub environment: Option<Environment>,
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
    /// The variable, when it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<EnvVarReading>,
}

/// A credible signal that names an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub environment: Environment,
    /// Who names it: `--environment`, `DEPLOYMENT_ENVIRONMENT="prod"`,
    /// `detector 'detector' (hostname evidence)`.
    pub by: String,
}

impl DetectedEnvironment {
    /// Every credible signal: the operator's choice, the variable the host
    /// read, and each piece of evidence that counts.
    pub fn signals(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        if self.source == DetectionSource::Operator {
            out.push(Signal {
                environment: self.environment,
                by: "--environment".to_string(),
            });
        }
        if let Some(EnvVarReading {
            name,
            value,
            environment: Some(environment),
        }) = &self.env_var
        {
            out.push(Signal {
                environment: *environment,
                by: format!("{name}={value:?}"),
            });
        }
        for e in self.evidence.iter().filter(|e| e.counts()) {
            let by = format!("detector '{}' ({} evidence)", e.detector, e.method);
            if !out
                .iter()
                .any(|s| s.environment == e.environment && s.by == by)
            {
                out.push(Signal {
                    environment: e.environment,
                    by,
                });
            }
        }
        out
    }
}

/// Why the environment cannot be determined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The variable is set to something that names no environment: the
    /// operator said something the host cannot read, so it does not guess.
    #[error(
        "{name}={} names no environment (production, staging, development, local, or prod/stage/dev); fix or unset it, or pass --environment",
        crate::terminal::safe(&format!("{value:?}"))
    )]
    UnknownEnvironment { name: String, value: String },
}

/// The environment a value such as `PROD` or `staging` names.
pub fn parse_environment(value: &str) -> Option<Environment> {
    match value.trim().to_ascii_lowercase().as_str() {
        "production" | "prod" | "prd" => Some(Environment::Production),
        "staging" | "stage" | "stg" => Some(Environment::Staging),
        "development" | "dev" => Some(Environment::Development),
        "local" => Some(Environment::Local),
        _ => None,
    }
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
    config: &'a crate::config::Config,
}

impl<'a> EnvironmentDetector<'a> {
    pub fn new(plugins: &'a PluginSet, config: &'a crate::config::Config) -> Self {
        EnvironmentDetector { plugins, config }
    }

    /// Detects the environment; `operator` (from `--environment`) wins
    /// outright (the detectors are not asked), then the variable the host
    /// reads. A detector that fails is noted and skipped, never fatal.
    pub async fn detect(
        &self,
        operator: Option<Environment>,
    ) -> Result<DetectedEnvironment, DetectError> {
        let d = &self.config.environment_detection;
        let world = self.plugins.world();
        let env_var = read_env_var(&world, &d.env_var);
        let mut notes = Vec::new();
        if let Some(environment) = operator {
            if let Some(r) = &env_var
                && r.environment.is_none()
            {
                notes.push(format!(
                    "{}={} names no environment; --environment decides",
                    r.name,
                    crate::terminal::safe(&format!("{:?}", r.value))
                ));
            }
            return Ok(DetectedEnvironment {
                environment,
                confidence: 1.0,
                source: DetectionSource::Operator,
                evidence: Vec::new(),
                notes,
                env_var,
            });
        }
        if let Some(r) = &env_var
            && r.environment.is_none()
        {
            return Err(DetectError::UnknownEnvironment {
                name: r.name.clone(),
                value: r.value.clone(),
            });
        }
        let rules = detection_rules(d);
        let detectors: Vec<_> = self.plugins.of_kind(PluginKind::Detector).collect();
        // Concurrently, a few at a time: N slow detectors cost N/8
        // deadlines, not N.
        let mut answers = Vec::with_capacity(detectors.len());
        for chunk in detectors.chunks(CONCURRENT_DETECTORS) {
            let mut calls = Vec::with_capacity(chunk.len());
            for plugin in chunk {
                calls.push(plugin.detect(&rules));
            }
            answers.extend(futures_util::future::join_all(calls).await);
        }
        let mut evidence = Vec::new();
        for (plugin, answer) in detectors.iter().zip(answers) {
            match answer {
                Ok(called) => {
                    let mut theirs: Vec<EvidenceRecord> = called
                        .value
                        .evidence
                        .into_iter()
                        .map(|e| EvidenceRecord {
                            detector: plugin.name().to_string(),
                            method: e.method,
                            environment: e.environment.into(),
                            weight: e.weight,
                            detail: e.detail,
                            claimed_weight: None,
                            ignored: None,
                        })
                        .collect();
                    normalise(&mut theirs, plugin.grants(), &called.used, d);
                    evidence.extend(theirs);
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
        Ok(combine(d, evidence, notes, env_var))
    }
}

/// The variable `name` as the world plugins see shows it (unset or empty:
/// none).
fn read_env_var(world: &HostWorld, name: &str) -> Option<EnvVarReading> {
    if name.is_empty() {
        return None;
    }
    let value = match &world.env {
        EnvSource::Process => std::env::var(name).ok(),
        EnvSource::Fixed(map) => map.get(name).cloned(),
    }?;
    if value.trim().is_empty() {
        return None;
    }
    Some(EnvVarReading {
        name: name.to_string(),
        environment: parse_environment(&value),
        value,
    })
}

/// The built-in methods, the grant each needs, and whether the detector
/// used it during the call.
fn method_allowed(method: &str, grants: &Grants, used: &Used) -> Result<(), String> {
    let (held, did, what) = match method {
        "env-var" => (
            !grants.env.is_empty(),
            used.env,
            "read an environment variable",
        ),
        "hostname" => (grants.hostname, used.hostname, "read the host name"),
        "network" => (
            !grants.network.is_empty(),
            used.network,
            "reached the network",
        ),
        "filesystem" => (!grants.paths.is_empty(), used.paths, "found or read a path"),
        "process" => (grants.processes, used.processes, "listed the processes"),
        _ => (true, used.any(), "used any granted import"),
    };
    match (held, did) {
        (false, _) => Err(format!(
            "claims the {method} method without the grant for it"
        )),
        (true, false) => Err(format!(
            "claims the {method} method but never {what} through its grants in this call"
        )),
        (true, true) => Ok(()),
    }
}

/// The operator's weight of `method`, and how many of the operator's rules
/// of that method point at `environment` (how often one detector may count
/// it).
fn method_bound(d: &EnvironmentDetection, method: &str, environment: Environment) -> (f64, usize) {
    let w = &d.weights;
    let patterns = |sets: &BTreeMap<Environment, Vec<String>>| {
        usize::from(sets.get(&environment).is_some_and(|p| !p.is_empty()))
    };
    match method {
        "env-var" => (w.env_var, 1),
        "hostname" => (w.hostname, patterns(&d.hostname_patterns)),
        "network" => (
            w.network,
            d.network_patterns.get(&environment).map_or(0, Vec::len),
        ),
        "filesystem" => (
            w.filesystem,
            d.filesystem_markers.get(&environment).map_or(0, Vec::len),
        ),
        "process" => (w.process, patterns(&d.process_patterns)),
        _ => (
            w.hostname.max(w.network).max(w.filesystem).max(w.process),
            1,
        ),
    }
}

/// Bounds one detector's evidence by the host's rules (see the module
/// docs): unheld or unused methods are ignored, weights are capped at the
/// operator's, and repeats beyond the operator's rules do not count.
pub fn normalise(
    evidence: &mut [EvidenceRecord],
    grants: &Grants,
    used: &Used,
    d: &EnvironmentDetection,
) {
    let mut counted: BTreeMap<(String, Environment), usize> = BTreeMap::new();
    for e in evidence.iter_mut() {
        if let Err(why) = method_allowed(&e.method, grants, used) {
            e.claimed_weight = Some(e.weight);
            e.weight = 0.0;
            e.ignored = Some(why);
            continue;
        }
        let (bound, rules) = method_bound(d, &e.method, e.environment);
        let n = counted
            .entry((e.method.clone(), e.environment))
            .or_default();
        if *n >= rules.max(1) {
            e.claimed_weight = Some(e.weight);
            e.weight = 0.0;
            e.ignored = Some(format!(
                "more {} evidence for {} than the config has rules",
                e.method, e.environment
            ));
            continue;
        }
        *n += 1;
        let bound = if bound.is_finite() {
            bound.max(0.0)
        } else {
            0.0
        };
        if !e.weight.is_finite() || e.weight > bound {
            e.claimed_weight = Some(e.weight);
            e.weight = bound;
        }
    }
}

/// The environment the counted evidence favours (or the variable, or the
/// default).
fn combine(
    d: &EnvironmentDetection,
    evidence: Vec<EvidenceRecord>,
    mut notes: Vec<String>,
    env_var: Option<EnvVarReading>,
) -> DetectedEnvironment {
    if let Some(EnvVarReading {
        environment: Some(environment),
        ..
    }) = &env_var
    {
        return DetectedEnvironment {
            environment: *environment,
            confidence: 1.0,
            source: DetectionSource::EnvVar,
            evidence,
            notes,
            env_var,
        };
    }
    let fallback = d.default_environment.unwrap_or(Environment::Development);
    let mut totals: BTreeMap<Environment, f64> = BTreeMap::new();
    for e in evidence.iter().filter(|e| e.counts()) {
        *totals.entry(e.environment).or_default() += e.weight;
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
        Some((environment, w))
            if total > 0.0 && total.is_finite() && w / total >= d.min_confidence =>
        {
            DetectedEnvironment {
                environment,
                confidence: confidence(w, total, &d.weights),
                source: DetectionSource::Evidence,
                evidence,
                notes,
                env_var,
            }
        }
        other => {
            let why = match other {
                Some((env, w)) if total > 0.0 => format!(
                    "evidence favours {env} with confidence {:.2}, below min_confidence {:.2}",
                    w / total,
                    d.min_confidence
                ),
                _ if !evidence.iter().any(EvidenceRecord::counts) => {
                    "no detector found any evidence that counts".to_string()
                }
                _ => "the evidence is tied".to_string(),
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
                env_var,
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

    fn config() -> EnvironmentDetection {
        crate::config::Config::embedded()
            .unwrap()
            .environment_detection
    }

    fn ev(method: &str, environment: Environment, weight: f64) -> EvidenceRecord {
        EvidenceRecord {
            detector: "d".into(),
            method: method.into(),
            environment,
            weight,
            detail: String::new(),
            claimed_weight: None,
            ignored: None,
        }
    }

    #[test]
    fn a_method_needs_its_grant_and_its_use() {
        let d = config();
        let mut e = vec![ev("env-var", Environment::Local, 1e300)];
        normalise(&mut e, &Grants::default(), &Used::default(), &d);
        assert!(!e[0].counts());
        assert!(
            e[0].ignored
                .as_deref()
                .unwrap()
                .contains("without the grant")
        );
        let grants = Grants {
            hostname: true,
            ..Grants::default()
        };
        let mut e = vec![ev("hostname", Environment::Local, 1.0)];
        normalise(&mut e, &grants, &Used::default(), &d);
        assert!(
            e[0].ignored
                .as_deref()
                .unwrap()
                .contains("never read the host name")
        );
        let used = Used {
            hostname: true,
            ..Used::default()
        };
        let mut e = vec![ev("hostname", Environment::Production, 1e300)];
        normalise(&mut e, &grants, &used, &d);
        assert!(e[0].counts());
        assert_eq!(e[0].weight, d.weights.hostname);
        assert_eq!(e[0].claimed_weight, Some(1e300));
    }

    #[test]
    fn repeats_count_once_per_rule() {
        let d = config();
        let grants = Grants {
            hostname: true,
            ..Grants::default()
        };
        let used = Used {
            hostname: true,
            ..Used::default()
        };
        let mut e: Vec<_> = (0..1000)
            .map(|_| ev("hostname", Environment::Production, 3.0))
            .collect();
        normalise(&mut e, &grants, &used, &d);
        assert_eq!(e.iter().filter(|e| e.counts()).count(), 1);
    }

    #[test]
    fn values_name_environments() {
        assert_eq!(parse_environment(" PROD "), Some(Environment::Production));
        assert_eq!(parse_environment("stg"), Some(Environment::Staging));
        assert_eq!(parse_environment("prodution"), None);
    }

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
