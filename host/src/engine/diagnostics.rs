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
use crate::config::{Override, Thresholds};
use crate::detect::{DetectedEnvironment, EnvironmentDetector};
use crate::history::{DeploymentRecord, DeploymentStatus, HistoryBackend, HistoryLocation};
use crate::monitor::{self, EndpointLatency, Snapshot, SystemDetail, TrendReport, TrendWindow};
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
    /// Where the threshold in force is set: the key itself, or the detected
    /// environment's override (`environments.production.thresholds.high_cpu`).
    #[serde(default)]
    pub source: String,
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
    /// The embedded database file, or the PostgreSQL URL (password redacted).
    pub database: PathBuf,
    /// Where the history lives (and, for PostgreSQL, how many writes wait in
    /// the local journal).
    pub history: HistoryLocation,
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
    /// Each metric's trend over `monitoring.trend_window_s`: the samples the
    /// history stored in that window plus a few live ones, or "not enough
    /// data" below `trend_min_samples` / `trend_min_span_s`.
    pub trends: Vec<TrendReport>,
    /// What `environments.<env>` changes for the detected environment (the
    /// thresholds below are judged with it).
    #[serde(default)]
    pub environment_settings: Vec<Override>,
    pub thresholds: Vec<ThresholdCheck>,
    pub plugins: Vec<PluginCheck>,
    pub state: StateCheck,
    pub model: ModelCheck,
    pub config: ConfigCheck,
    /// Per container service (and fleet host): what runs against what the
    /// history says was deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerCheck>,
}

/// A container service on one machine: running containers against the
/// history's last successful deployment of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerCheck {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `podman` or `docker` (none: none is available).
    pub runtime: Option<String>,
    /// What the newest successful deployment of the service put out here.
    pub deployed: Option<DeployedContainer>,
    /// The service's containers (adeploy's, and any under its names).
    pub containers: Vec<FoundContainer>,
    /// ok: as deployed; caution: drift, or a container adeploy did not start.
    pub status: CheckStatus,
    pub message: String,
}

/// A container the history records as deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedContainer {
    pub deployment_id: String,
    pub name: String,
    pub image: String,
    pub id: Option<String>,
    pub digest: Option<String>,
}

/// A container the runtime has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundContainer {
    pub name: String,
    pub id: String,
    pub image: String,
    pub digest: String,
    /// `running`, `exited`, ...
    pub status: String,
    /// When it last started.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The deployment that started it (its label); none: not adeploy's.
    pub deployment: Option<String>,
    /// Started by adeploy (it has the `adeploy.service` label).
    pub owned: bool,
}

/// The live samples diagnostics adds to the history's for the trends (two
/// seconds: not a trend by themselves, see [`TrendWindow`]).
const TREND_SAMPLES: usize = 8;
const TREND_INTERVAL: Duration = Duration::from_millis(250);

impl Engine {
    /// Examines everything a deployment depends on. Samples the machine for
    /// about two seconds; the trends add the samples the history stored
    /// over `monitoring.trend_window_s`.
    pub async fn diagnostics(&self) -> Result<Diagnostics, EngineError> {
        if !self.plugins_loaded {
            return Err(EngineError::QueriesOnly {
                what: "run diagnostics",
            });
        }
        let environment = EnvironmentDetector::new(&self.plugins, &self.config)
            .detect(None)
            .await?;
        let effective = self.config.for_environment(environment.environment);
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
        let window = TrendWindow::from_config(m);
        let mut series = self.stored_samples(&window).await;
        series.extend(samples.iter().copied());
        let trends = monitor::assess_all(&series, &window);
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

        let (state, recent) = self.state_check().await;
        let containers = self.container_checks(&recent).await;
        let thresholds = self.threshold_checks(
            &effective.thresholds,
            &effective.overrides,
            &system.snapshot,
            &recent,
        );
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
            environment_settings: effective.overrides,
            thresholds,
            plugins,
            state,
            model: self.model_check().await,
            config: ConfigCheck {
                source: self.config.source.clone(),
                valid: true,
                services: self.config.services.keys().cloned().collect(),
            },
            containers,
        })
    }

    /// [`ContainerCheck`]s of every container service of the config.
    async fn container_checks(&self, recent: &[DeploymentRecord]) -> Vec<ContainerCheck> {
        use super::execute::container::ContainerJob;
        let mut out = Vec::new();
        let control = self.state_dir.join("ssh");
        let control = control.is_dir().then_some(control);
        for (name, service) in &self.config.services {
            if service.target != crate::config::TargetKind::Container {
                continue;
            }
            let hosts: Vec<Option<String>> = if service.is_fleet() {
                self.config.hosts_of(name).into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            for host in hosts {
                let Some(job) = ContainerJob::of(
                    &self.config,
                    name,
                    service,
                    host.as_deref(),
                    "",
                    control.as_deref(),
                ) else {
                    continue;
                };
                out.push(container_check(&job, name, host, recent).await);
            }
        }
        out
    }

    async fn model_check(&self) -> ModelCheck {
        let ml = &self.config.ml_config;
        match self.model_status().await {
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

    /// The history's state, and its newest 50 deployments.
    async fn state_check(&self) -> (StateCheck, Vec<DeploymentRecord>) {
        let database = crate::history::database_path(&self.state_dir);
        let mut check = StateCheck {
            state_dir: self.state_dir.clone(),
            database: database.clone(),
            history: match self.config.history.effective_url() {
                Some(url) => HistoryLocation::Postgres {
                    url: url.redacted(),
                    journal_pending: 0,
                },
                None => HistoryLocation::Redb {
                    path: database.clone(),
                },
            },
            status: CheckStatus::Ok,
            deployments: 0,
            last_deployment: None,
            last_status: None,
            database_bytes: 0,
            message: String::new(),
        };
        let history = match self.existing_history().await {
            Ok(Some(history)) => history,
            Ok(None) => {
                check.message = "no history yet: the first deployment creates it".to_string();
                return (check, Vec::new());
            }
            Err(e) => {
                check.status = CheckStatus::Critical;
                check.message = e.to_string();
                return (check, Vec::new());
            }
        };
        check.history = history.location();
        let read = async {
            Ok::<_, crate::history::HistoryError>((
                history.stats().await?,
                history.list_deployments(50).await?,
            ))
        };
        match read.await {
            Ok((stats, recent)) => {
                check.database = stats.path;
                check.deployments = stats.deployments;
                check.database_bytes = stats.db_bytes;
                check.last_status = stats.last.as_ref().map(|d| d.status);
                check.last_deployment = stats.last.map(|d| d.id);
                check.message = format!("{} deployment(s) recorded", check.deployments);
                if let HistoryLocation::Postgres {
                    journal_pending, ..
                } = &check.history
                    && *journal_pending > 0
                {
                    check.status = CheckStatus::Caution;
                    check.message.push_str(&format!(
                        "; {journal_pending} write(s) wait in the local journal: `adeploy state sync` sends them"
                    ));
                }
                (check, recent)
            }
            Err(e) => {
                check.status = CheckStatus::Critical;
                check.message = e.to_string();
                (check, Vec::new())
            }
        }
    }

    /// The machine's samples the history stored within the trend window
    /// (none without a history, or when it cannot be read: the trends then
    /// say how little they rest on).
    async fn stored_samples(&self, window: &TrendWindow) -> Vec<Snapshot> {
        let read = async {
            match self.existing_history().await? {
                Some(history) => {
                    Ok(monitor::recent_samples(history, window.window, chrono::Utc::now()).await?)
                }
                None => Ok::<_, EngineError>(Vec::new()),
            }
        };
        match read.await {
            Ok(samples) => samples,
            Err(e) => {
                tracing::warn!("trends without the history's samples: {e}");
                Vec::new()
            }
        }
    }

    fn threshold_checks(
        &self,
        t: &Thresholds,
        overrides: &[Override],
        s: &Snapshot,
        recent: &[DeploymentRecord],
    ) -> Vec<ThresholdCheck> {
        let mut checks = Vec::new();
        let cpu_status = if s.cpu_percent > t.high_cpu {
            CheckStatus::Caution
        } else {
            CheckStatus::Ok
        };
        checks.push(ThresholdCheck {
            key: "thresholds.high_cpu".into(),
            source: source_of(overrides, "thresholds.high_cpu"),
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
            source: source_of(overrides, "thresholds.critical_memory"),
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
            source: source_of(overrides, "thresholds.min_free_disk_percent"),
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
        let longest = recent
            .iter()
            .filter_map(|d| d.duration_s)
            .reduce(f64::max)
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
            source: source_of(overrides, "thresholds.max_deployment_time"),
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

/// Where the value of `key` in force is set: an environment's override, or
/// the key itself.
fn source_of(overrides: &[Override], key: &str) -> String {
    overrides
        .iter()
        .find(|o| o.key == key)
        .map_or_else(|| key.to_string(), |o| o.source.clone())
}

/// One container service on one machine.
async fn container_check(
    job: &super::execute::container::ContainerJob,
    service: &str,
    host: Option<String>,
    recent: &[DeploymentRecord],
) -> ContainerCheck {
    use crate::exec::container::LABEL_DEPLOYMENT;
    let deployed = recent
        .iter()
        .filter(|r| r.status == DeploymentStatus::Succeeded)
        .find_map(|r| {
            r.steps
                .iter()
                .find(|s| s.service == service && s.host == host && s.container.is_some())
                .and_then(|s| s.container.as_ref())
                .map(|c| DeployedContainer {
                    deployment_id: r.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    id: c.id.clone(),
                    digest: c.digest.clone(),
                })
        });
    let mut check = ContainerCheck {
        service: service.to_string(),
        host: host.clone(),
        runtime: None,
        deployed,
        containers: Vec::new(),
        status: CheckStatus::Ok,
        message: String::new(),
    };
    let runtime = match job.runtime().await {
        Ok(r) => r,
        Err(e) => {
            check.status = CheckStatus::Caution;
            check.message = e.to_string();
            return check;
        }
    };
    check.runtime = Some(runtime.program().to_string());
    let found = match job.mine(&runtime).await {
        Ok(f) => f,
        Err(e) => {
            check.status = CheckStatus::Caution;
            check.message = e.to_string();
            return check;
        }
    };
    check.containers = found
        .iter()
        .map(|c| FoundContainer {
            name: c.name.clone(),
            id: c.id.clone(),
            image: c.image.clone(),
            digest: c.image_id.clone(),
            status: c.status.clone(),
            since: c.started_at,
            deployment: c.label(LABEL_DEPLOYMENT).map(str::to_string),
            owned: c.owned_by(service),
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    for c in check.containers.iter().filter(|c| !c.owned) {
        notes.push(format!(
            "{} ({}) was not started by adeploy (no adeploy.service label): a deployment under that name refuses; remove or rename it",
            c.name, c.status
        ));
    }
    let running: Vec<&FoundContainer> = check
        .containers
        .iter()
        .filter(|c| c.owned && c.status == "running")
        .collect();
    match &check.deployed {
        Some(d) => {
            let serving = running
                .iter()
                .find(|c| Some(&c.id) == d.id.as_ref() && Some(&c.digest) == d.digest.as_ref());
            if serving.is_some() {
                notes.insert(
                    0,
                    format!(
                        "{} runs as deployed ({}, {})",
                        d.name,
                        d.image,
                        d.digest.as_deref().unwrap_or("no digest")
                    ),
                );
            } else {
                check.status = CheckStatus::Caution;
                notes.insert(
                    0,
                    format!(
                        "drift: the history says {} ({}, {}) was deployed by {}, but it does not run; running: {}",
                        d.name,
                        d.image,
                        d.digest.as_deref().unwrap_or("no digest"),
                        d.deployment_id,
                        if running.is_empty() {
                            "nothing".to_string()
                        } else {
                            running
                                .iter()
                                .map(|c| format!("{} ({})", c.name, c.digest))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                );
            }
        }
        None if !running.is_empty() => {
            check.status = CheckStatus::Caution;
            notes.insert(
                0,
                "drift: containers of this service run, but no successful deployment of it is in the recent history".to_string(),
            );
        }
        None => notes.insert(0, "not deployed yet".to_string()),
    }
    if check.containers.iter().any(|c| !c.owned) {
        check.status = CheckStatus::Caution;
    }
    check.message = notes.join("; ");
    check
}
