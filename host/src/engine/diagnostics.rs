//! `adeploy diagnostics`: the environment, the machine, the thresholds, the
//! plugins, the state directory, the model and the config, in one report.
//!
//! Why it lives in the engine: it answers "would a deployment go through
//! right now, and why not", so it must judge with exactly the rules the
//! decision flow applies (thresholds, detection), not a copy of them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError};
use crate::detect::{DetectedEnvironment, EnvironmentDetector};
use crate::history::{DeploymentStatus, History};
use crate::monitor::{self, EndpointLatency, Snapshot, SystemDetail, Trend};
use crate::plugin::{LoadOutcome, PluginKind};

/// ok, caution (a deployment goes through, more carefully), critical (it is blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Caution,
    Critical,
}

/// One threshold of the config against the machine now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCheck {
    /// The config key, e.g. `thresholds.critical_memory`.
    pub key: String,
    pub value: f64,
    pub threshold: f64,
    pub status: CheckStatus,
    pub message: String,
}

/// A loaded plugin and what loading it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginCheck {
    pub name: String,
    pub kind: PluginKind,
    pub source: String,
    pub outcome: LoadOutcome,
    pub load_micros: u64,
}

/// The state directory and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateCheck {
    pub state_dir: PathBuf,
    pub database: PathBuf,
    pub status: CheckStatus,
    pub deployments: u64,
    pub last_deployment: Option<String>,
    pub last_status: Option<DeploymentStatus>,
    pub database_bytes: u64,
    pub message: String,
}

/// How the adaptive strategy decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheck {
    /// `rules` until a model is trained.
    pub method: String,
    pub detail: String,
}

/// The configuration in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigCheck {
    /// The file merged over the embedded default, if any.
    pub source: Option<PathBuf>,
    pub valid: bool,
    pub services: Vec<String>,
}

/// The whole diagnostics report (`adeploy diagnostics --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// False when any check is critical.
    pub healthy: bool,
    pub environment: DetectedEnvironment,
    pub system: SystemDetail,
    pub latency: Vec<EndpointLatency>,
    pub trends: Vec<Trend>,
    pub thresholds: Vec<ThresholdCheck>,
    pub plugins: Vec<PluginCheck>,
    pub state: StateCheck,
    pub model: ModelCheck,
    pub config: ConfigCheck,
}

/// How long diagnostics samples the machine for its trend.
const TREND_SAMPLES: usize = 8;
const TREND_INTERVAL: Duration = Duration::from_millis(250);

impl Engine {
    /// Examines everything a deployment depends on. Samples the machine for
    /// about two seconds (for the trend).
    pub async fn diagnostics(&self) -> Result<Diagnostics, EngineError> {
        if !self.plugins_loaded {
            return Err(EngineError::QueriesOnly {
                what: "run diagnostics",
            });
        }
        let environment = EnvironmentDetector::new(&self.plugins, &self.config)
            .detect(None)
            .await?;
        let m = &self.config.monitoring;
        let latency = monitor::measure_latency(
            &m.latency_endpoints,
            Duration::from_millis(m.latency_timeout_ms),
        )
        .await;
        // A first detailed reading, so the one after the trend window has
        // disk I/O rates (they are differences between two readings).
        let primer = self.monitor().clone();
        let _ = tokio::task::spawn_blocking(move || primer.detailed()).await;
        let mut samples: Vec<Snapshot> = Vec::with_capacity(TREND_SAMPLES);
        for i in 0..TREND_SAMPLES {
            if i > 0 {
                tokio::time::sleep(TREND_INTERVAL).await;
            }
            samples.push(self.sample_metrics().await);
        }
        let trends = monitor::trends(&samples, Duration::from_secs(m.trend_window_s.max(1)));
        let monitor = self.monitor().clone();
        let mut system = tokio::task::spawn_blocking(move || monitor.detailed())
            .await
            .map_err(|e| EngineError::Monitor {
                source: crate::monitor::MonitorError::Unavailable(format!(
                    "the reading task failed: {e}"
                )),
            })?;
        // The last trend sample is the freshest CPU figure (detailed() may run
        // too soon after it for sysinfo to measure CPU again).
        if let Some(last) = samples.last() {
            system.snapshot = *last;
        }
        system.snapshot.network_latency_ms = monitor::median_latency(&latency);

        let state = self.state_check();
        let thresholds = self.threshold_checks(&system.snapshot, &state);
        let plugins = self
            .plugins
            .iter()
            .map(|p| PluginCheck {
                name: p.name().to_string(),
                kind: p.kind(),
                source: p.source().to_string(),
                outcome: p.load_stats().outcome,
                load_micros: u64::try_from(p.load_stats().elapsed.as_micros()).unwrap_or(u64::MAX),
            })
            .collect();
        let healthy = thresholds.iter().all(|t| t.status != CheckStatus::Critical)
            && state.status != CheckStatus::Critical;
        Ok(Diagnostics {
            healthy,
            environment,
            system,
            latency,
            trends,
            thresholds,
            plugins,
            state,
            model: self.model_check(),
            config: ConfigCheck {
                source: self.config.source.clone(),
                valid: true,
                services: self.config.services.keys().cloned().collect(),
            },
        })
    }

    fn model_check(&self) -> ModelCheck {
        let ml = &self.config.ml_config;
        match self.model_status() {
            Ok(st) if st.decides == "model" => ModelCheck {
                method: "model".to_string(),
                detail: match &st.model {
                    Some(m) => format!(
                        "random forest trained on {} deployments {}{}; retrains every {} deployments",
                        m.samples,
                        super::learn::age(m),
                        m.oob_accuracy
                            .map(|a| format!(", out-of-bag accuracy {a:.2}"))
                            .unwrap_or_default(),
                        ml.retrain_frequency
                    ),
                    None => "trained".to_string(),
                },
            },
            Ok(st) => ModelCheck {
                method: "rules".to_string(),
                detail: match st.detail {
                    Some(why) => why,
                    None => format!(
                        "transparent rules choose the adaptive strategy: {} of the {} deployments the model needs (ml_config.min_training_samples)",
                        st.training_samples, ml.min_training_samples
                    ),
                },
            },
            Err(e) => ModelCheck {
                method: "rules".to_string(),
                detail: format!("the history cannot be read ({e}); rules decide"),
            },
        }
    }

    fn state_check(&self) -> StateCheck {
        let database = crate::history::database_path(&self.state_dir);
        let mut check = StateCheck {
            state_dir: self.state_dir.clone(),
            database: database.clone(),
            status: CheckStatus::Ok,
            deployments: 0,
            last_deployment: None,
            last_status: None,
            database_bytes: 0,
            message: String::new(),
        };
        if !database.exists() {
            check.message = "no history yet: the first deployment creates it".to_string();
            return check;
        }
        match History::open(&self.state_dir).and_then(|h| h.stats()) {
            Ok(stats) => {
                check.deployments = stats.deployments;
                check.database_bytes = stats.db_bytes;
                check.last_status = stats.last.as_ref().map(|d| d.status);
                check.last_deployment = stats.last.map(|d| d.id);
                check.message = format!("{} deployment(s) recorded", check.deployments);
            }
            Err(e) => {
                check.status = CheckStatus::Critical;
                check.message = e.to_string();
            }
        }
        check
    }

    fn threshold_checks(&self, s: &Snapshot, state: &StateCheck) -> Vec<ThresholdCheck> {
        let t = &self.config.thresholds;
        let mut checks = Vec::new();
        let cpu_status = if s.cpu_percent > t.high_cpu {
            CheckStatus::Caution
        } else {
            CheckStatus::Ok
        };
        checks.push(ThresholdCheck {
            key: "thresholds.high_cpu".into(),
            value: s.cpu_percent,
            threshold: t.high_cpu,
            status: cpu_status,
            message: match cpu_status {
                CheckStatus::Ok => format!("CPU {:.1}% is under {:.1}%", s.cpu_percent, t.high_cpu),
                _ => format!(
                    "CPU {:.1}% is over {:.1}%: aggressive becomes balanced outside local and development",
                    s.cpu_percent, t.high_cpu
                ),
            },
        });
        let mem_status = if s.memory_percent > t.critical_memory {
            CheckStatus::Critical
        } else if s.memory_percent > t.critical_memory - 10.0 {
            CheckStatus::Caution
        } else {
            CheckStatus::Ok
        };
        checks.push(ThresholdCheck {
            key: "thresholds.critical_memory".into(),
            value: s.memory_percent,
            threshold: t.critical_memory,
            status: mem_status,
            message: match mem_status {
                CheckStatus::Critical => format!(
                    "memory {:.1}% is over {:.1}%: deployments are blocked (--force overrides)",
                    s.memory_percent, t.critical_memory
                ),
                CheckStatus::Caution => format!(
                    "memory {:.1}% is within 10 points of {:.1}%",
                    s.memory_percent, t.critical_memory
                ),
                CheckStatus::Ok => format!(
                    "memory {:.1}% is under {:.1}%",
                    s.memory_percent, t.critical_memory
                ),
            },
        });
        let free = 100.0 - s.disk_percent;
        let disk_status = if free < t.min_free_disk_percent {
            CheckStatus::Critical
        } else if free < t.min_free_disk_percent * 2.0 {
            CheckStatus::Caution
        } else {
            CheckStatus::Ok
        };
        checks.push(ThresholdCheck {
            key: "thresholds.min_free_disk_percent".into(),
            value: free,
            threshold: t.min_free_disk_percent,
            status: disk_status,
            message: match disk_status {
                CheckStatus::Critical => format!(
                    "free disk {free:.1}% is under {:.1}%: deployments are blocked",
                    t.min_free_disk_percent
                ),
                CheckStatus::Caution => format!(
                    "free disk {free:.1}% is under twice {:.1}%",
                    t.min_free_disk_percent
                ),
                CheckStatus::Ok => format!(
                    "free disk {free:.1}% is over {:.1}%",
                    t.min_free_disk_percent
                ),
            },
        });
        let longest = self
            .history()
            .ok()
            .filter(|_| state.deployments > 0)
            .and_then(|h| h.list_deployments(50).ok())
            .and_then(|v| v.iter().filter_map(|d| d.duration_s).reduce(f64::max))
            .map(|s| s / 60.0)
            .unwrap_or(0.0);
        let max = f64::from(t.max_deployment_time);
        let time_status = if max > 0.0 && longest > max * 0.8 {
            CheckStatus::Caution
        } else {
            CheckStatus::Ok
        };
        checks.push(ThresholdCheck {
            key: "thresholds.max_deployment_time".into(),
            value: longest,
            threshold: max,
            status: time_status,
            message: format!(
                "the longest of the last 50 deployments took {longest:.1} min of the {max:.0} min deadline"
            ),
        });
        checks
    }
}
