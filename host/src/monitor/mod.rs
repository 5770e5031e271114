//! System metrics: CPU, memory, disk space of the state directory's
//! filesystem, and load, sampled with `sysinfo`.
//!
//! Why one long-lived [`SystemMonitor`]: CPU usage is a difference between two
//! refreshes, so the monitor keeps its `sysinfo::System` and remembers when it
//! last refreshed; a sample taken sooner than sysinfo's minimum interval reuses
//! the previous CPU figure instead of reporting a meaningless one. The
//! [`Sampler`] takes samples in the background during a deployment; they go
//! into the history and the report's `system_impact`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One reading of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub timestamp: DateTime<Utc>,
    /// Total CPU utilisation, 0..100.
    pub cpu_percent: f64,
    /// Memory in use, 0..100.
    pub memory_percent: f64,
    /// Space in use on the state directory's filesystem, 0..100.
    pub disk_percent: f64,
    /// One-minute load average divided by the number of cores.
    pub load_per_core: f64,
    /// Median TCP connect time to the configured endpoints (not measured yet).
    pub network_latency_ms: Option<f64>,
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    #[error("system metrics are not available on this machine: {0}")]
    Unavailable(String),
}

struct State {
    sys: sysinfo::System,
    last_refresh: Instant,
    last_cpu: f64,
}

/// Reads the machine's load. Cheap to share (`Arc`), safe to call from any thread.
///
/// ```
/// use adeploy::monitor::SystemMonitor;
///
/// let monitor = SystemMonitor::new(std::path::Path::new("/")).unwrap();
/// let now = monitor.sample();
/// assert!((0.0..=100.0).contains(&now.memory_percent));
/// println!("CPU {:.0}%, memory {:.0}%, disk {:.0}%", now.cpu_percent, now.memory_percent, now.disk_percent);
/// ```
pub struct SystemMonitor {
    state: Mutex<State>,
    disk_path: PathBuf,
    cores: f64,
}

impl std::fmt::Debug for SystemMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemMonitor")
            .field("disk_path", &self.disk_path)
            .finish_non_exhaustive()
    }
}

impl SystemMonitor {
    /// A monitor whose disk figure is for the filesystem holding `disk_path`.
    pub fn new(disk_path: &Path) -> Result<SystemMonitor, MonitorError> {
        let mut sys =
            sysinfo::System::new().map_err(|e| MonitorError::Unavailable(e.to_string()))?;
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let cores = sys.cpus().len().max(1) as f64;
        Ok(SystemMonitor {
            state: Mutex::new(State {
                sys,
                last_refresh: Instant::now(),
                last_cpu: f64::NAN,
            }),
            disk_path: disk_path.to_path_buf(),
            cores,
        })
    }

    /// Takes a snapshot now.
    pub fn sample(&self) -> Snapshot {
        let (cpu, memory) = match self.state.lock() {
            Ok(mut st) => {
                // The first CPU figure needs two refreshes a minimum interval
                // apart: wait out the rest of it once, rather than report 0.
                if st.last_cpu.is_nan() {
                    let since = st.last_refresh.elapsed();
                    if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
                        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
                    }
                }
                if st.last_refresh.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
                    st.sys.refresh_cpu_usage();
                    st.last_refresh = Instant::now();
                    st.last_cpu = f64::from(st.sys.global_cpu_usage());
                }
                st.sys.refresh_memory();
                let total = st.sys.total_memory().max(1) as f64;
                let used = total - st.sys.available_memory() as f64;
                (st.last_cpu, (used / total * 100.0).clamp(0.0, 100.0))
            }
            Err(_) => (0.0, 0.0),
        };
        let load = sysinfo::System::load_average()
            .map(|l| l.one / self.cores)
            .unwrap_or(0.0);
        Snapshot {
            timestamp: Utc::now(),
            cpu_percent: cpu.clamp(0.0, 100.0),
            memory_percent: memory,
            disk_percent: disk_percent(&self.disk_path),
            load_per_core: load,
            network_latency_ms: None,
        }
    }
}

/// Percent used of the filesystem holding `path` (the longest matching mount point).
fn disk_percent(path: &Path) -> f64 {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() else {
        return 0.0;
    };
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| {
            let total = d.total_space().max(1) as f64;
            ((total - d.available_space() as f64) / total * 100.0).clamp(0.0, 100.0)
        })
        .unwrap_or(0.0)
}

/// Samples in the background until stopped.
#[derive(Debug)]
pub struct Sampler {
    samples: Arc<Mutex<Vec<Snapshot>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `monitor` every `interval` (first sample immediately).
    pub fn start(monitor: Arc<SystemMonitor>, interval: Duration) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let m = monitor.clone();
                if let Ok(s) = tokio::task::spawn_blocking(move || m.sample()).await
                    && let Ok(mut v) = sink.lock()
                {
                    v.push(s);
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Sampler {
            samples,
            stop,
            task,
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops sampling and returns every sample.
    pub async fn stop(self) -> Vec<Snapshot> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl From<&Snapshot> for crate::history::MetricSample {
    fn from(s: &Snapshot) -> Self {
        crate::history::MetricSample {
            timestamp: s.timestamp,
            cpu_percent: s.cpu_percent,
            memory_percent: s.memory_percent,
            disk_percent: s.disk_percent,
            load_per_core: s.load_per_core,
            network_latency_ms: s.network_latency_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_values_are_in_range() {
        let m = SystemMonitor::new(Path::new("/")).unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let s = m.sample();
        for v in [s.cpu_percent, s.memory_percent, s.disk_percent] {
            assert!((0.0..=100.0).contains(&v), "{s:?}");
        }
        assert!(s.memory_percent > 0.0, "some memory is always in use");
        assert!(
            s.disk_percent > 0.0,
            "the root filesystem holds this test binary"
        );
        assert!(s.load_per_core >= 0.0);
    }

    #[tokio::test]
    async fn sampler_collects_until_stopped() {
        let m = Arc::new(SystemMonitor::new(Path::new("/")).unwrap());
        let sampler = Sampler::start(m, Duration::from_millis(20));
        // The first sample waits out sysinfo's minimum CPU interval (200 ms).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let samples = sampler.stop().await;
        assert!(samples.len() >= 2, "{}", samples.len());
        assert!(samples.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
}
