//! Conversions between the config's types and the WIT types plugins receive.

use super::bindings::detector_api::{DetectionRules, Marker, MethodWeights, PatternSet};
use super::bindings::hook_api::Phase;
use super::bindings::types::Environment as WitEnvironment;
use crate::config::{self, Environment, EnvironmentDetection};

impl From<Environment> for WitEnvironment {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Local => WitEnvironment::Local,
            Environment::Development => WitEnvironment::Development,
            Environment::Staging => WitEnvironment::Staging,
            Environment::Production => WitEnvironment::Production,
        }
    }
}

impl From<WitEnvironment> for Environment {
    fn from(e: WitEnvironment) -> Self {
        match e {
            WitEnvironment::Local => Environment::Local,
            WitEnvironment::Development => Environment::Development,
            WitEnvironment::Staging => Environment::Staging,
            WitEnvironment::Production => Environment::Production,
        }
    }
}

fn pattern_sets(map: &config::PatternMap<String>) -> Vec<PatternSet> {
    map.iter()
        .map(|(env, patterns)| PatternSet {
            environment: (*env).into(),
            patterns: patterns.clone(),
        })
        .collect()
}

/// The detection rules detector plugins receive, from `environment_detection`.
pub fn detection_rules(d: &EnvironmentDetection) -> DetectionRules {
    DetectionRules {
        env_var: d.env_var.clone(),
        hostname_patterns: pattern_sets(&d.hostname_patterns),
        network_patterns: pattern_sets(&d.network_patterns),
        filesystem_markers: d
            .filesystem_markers
            .iter()
            .flat_map(|(env, markers)| {
                markers.iter().map(move |m| Marker {
                    environment: (*env).into(),
                    path: m.path().to_string(),
                    contains: match m {
                        config::Marker::Path(_) => None,
                        config::Marker::Contains { contains, .. } => Some(contains.clone()),
                    },
                })
            })
            .collect(),
        process_patterns: pattern_sets(&d.process_patterns),
        weights: MethodWeights {
            env_var: d.weights.env_var,
            hostname: d.weights.hostname,
            network: d.weights.network,
            filesystem: d.weights.filesystem,
            process: d.weights.process,
        },
    }
}

impl Phase {
    /// Every phase, in the order a deployment meets them.
    pub const ALL: &[Phase] = &[
        Phase::PreDeployment,
        Phase::PreService,
        Phase::PostService,
        Phase::PostDeployment,
        Phase::OnFailure,
        Phase::OnRollback,
    ];

    /// The WIT name (`pre-deployment`), as logs, decisions and events show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreDeployment => "pre-deployment",
            Phase::PostDeployment => "post-deployment",
            Phase::PreService => "pre-service",
            Phase::PostService => "post-service",
            Phase::OnFailure => "on-failure",
            Phase::OnRollback => "on-rollback",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
        let name = String::deserialize(d)?;
        Phase::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown hook phase '{name}'")))
    }
}

// Human names of the strategy contract's enums and variants, as decisions,
// plans and reports show them (`failed`, `pause 30 s`): never the bindings'
// `Debug` form (`RollbackScope::Failed`, `Decision::Pause(30)`).

impl std::fmt::Display for super::RollbackScope {
    /// The WIT name: `none`, `failed`, `all`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            super::RollbackScope::None => "none",
            super::RollbackScope::Failed => "failed",
            super::RollbackScope::All => "all",
        })
    }
}

impl std::fmt::Display for super::ProgressKind {
    /// The WIT name: `wave-started`, `step-failed`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            super::ProgressKind::WaveStarted => "wave-started",
            super::ProgressKind::StepSucceeded => "step-succeeded",
            super::ProgressKind::StepFailed => "step-failed",
            super::ProgressKind::WaveFinished => "wave-finished",
            super::ProgressKind::OverBudget => "over-budget",
        })
    }
}

impl std::fmt::Display for super::Decision {
    /// `continue`, `pause 30 s`, `abort: REASON`, `rollback: REASON`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            super::Decision::Continue => f.write_str("continue"),
            super::Decision::Pause(s) => write!(f, "pause {s} s"),
            super::Decision::Abort(r) => write!(f, "abort: {r}"),
            super::Decision::Rollback(r) => write!(f, "rollback: {r}"),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::super::{Decision, ProgressKind, RollbackScope};

    #[test]
    fn contract_values_read_as_words_not_debug_strings() {
        assert_eq!(RollbackScope::Failed.to_string(), "failed");
        assert_eq!(ProgressKind::StepFailed.to_string(), "step-failed");
        assert_eq!(Decision::Pause(30).to_string(), "pause 30 s");
        assert_eq!(
            Decision::Rollback("error rate".into()).to_string(),
            "rollback: error rate"
        );
        assert_eq!(Decision::Continue.to_string(), "continue");
    }
}
