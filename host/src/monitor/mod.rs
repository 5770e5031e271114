//! System metrics: CPU (total and per core), load, memory and swap, disk
//! space and I/O of the state directory's filesystem, process count, and
//! network latency (TCP connect time); trends over a window.
//!
//! Why one long-lived [`SystemMonitor`]: CPU usage is a difference between two
//! readings of a kernel counter ([`cpu`]: the cgroup v2 root's `cpu.stat`
//! where the machine has one, else `/proc/stat`), so the monitor takes the
//! first reading when it is created and remembers the last one; a sample
//! taken sooner than the counter's minimum window after it reuses the
//! previous figure instead of reporting a meaningless one, and the first
//! sample waits out only what is left of that window (50 ms with the cgroup
//! counter: create the monitor early, and the wait overlaps other work).
//! [`SystemMonitor::cpu_basis`] says what the figure is. For the same
//! reason it keeps the previous disk I/O counters (a rate needs two readings)
//! and the mount point holding the state directory (listing every mount on
//! each sample would be the most expensive part of it; see [`RELIST_EVERY`]).
//! The [`Sampler`] takes samples in the background during a deployment; they
//! go into the history and the report's `system_impact`. [`trend`] says
//! whether a metric is rising, steady or falling over those samples, and
//! [`measure_latency`] probes the configured endpoints.

pub mod cpu;
mod disk;
mod latency;
pub mod process;
mod trend;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use cpu::{CpuBasis, CpuSource};
pub use disk::RELIST_EVERY;
pub use latency::{EndpointLatency, measure_latency, median_latency};
pub use process::{
    OwnUsage, ProcessSample, ProcessTracker, ProcessTreeSampler, TrackingMode, summarize,
};
pub use trend::{
    Direction, Metric, STEADY_LOAD_PER_MIN, STEADY_PERCENT_PER_MIN, Trend, TrendReport,
    TrendVerdict, TrendWindow, assess, assess_all, recent_samples, trend, trends,
};

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
    /// Median TCP connect time to the configured endpoints, in milliseconds
    /// ([`median_latency`]); `None` when not measured (no endpoints, or a
    /// plain [`SystemMonitor::sample`]) or when no endpoint answered.
    pub network_latency_ms: Option<f64>,
}

/// The load averages as the kernel reports them (not divided by cores).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Over one minute.
    pub one: f64,
    /// Over five minutes.
    pub five: f64,
    /// Over fifteen minutes.
    pub fifteen: f64,
}

/// Everything the monitor reads, for diagnostics and reports
/// ([`SystemMonitor::detailed`]). Byte counts are bytes; percentages in
/// [`SystemDetail::snapshot`] are computed from the same readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemDetail {
    /// The summary figures, as [`SystemMonitor::sample`] returns them.
    pub snapshot: Snapshot,
    /// Utilisation of each logical core, 0..100, in the kernel's order.
    pub cpu_per_core: Vec<f64>,
    pub load_average: LoadAverage,
    /// Logical cores.
    pub cores: usize,
    /// Physical memory (`MemTotal` of `/proc/meminfo`).
    pub memory_total_bytes: u64,
    /// Memory in use: total − available (`MemAvailable`), so page cache that
    /// the kernel can reclaim counts as free.
    pub memory_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// Mount point of the filesystem holding the state directory (empty when
    /// no listed filesystem holds it).
    pub disk_mount: PathBuf,
    pub disk_total_bytes: u64,
    /// Space available to unprivileged users (what `df` shows as available).
    pub disk_available_bytes: u64,
    /// Bytes read per second since the previous `detailed()` call, from
    /// `/proc/diskstats`; `None` on the first call or when unavailable.
    pub disk_read_bytes_per_s: Option<f64>,
    /// Bytes written per second since the previous `detailed()` call.
    pub disk_write_bytes_per_s: Option<f64>,
    /// The block devices the I/O rates are for: the device of the state
    /// directory's filesystem, or every physical disk when that filesystem
    /// has no device of its own (tmpfs, overlay, btrfs).
    pub disk_io_devices: Vec<String>,
    /// Processes (not threads) running on the machine, kernel threads included.
    pub process_count: usize,
    /// What `snapshot.cpu_percent` is: its counter and window.
    #[serde(default)]
    pub cpu_basis: Option<CpuBasis>,
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
    /// When sysinfo's per-core figures (diagnostics only) were refreshed.
    last_refresh: Instant,
    /// Whether they ever covered sysinfo's minimum interval.
    per_core_ready: bool,
    cpu: cpu::CpuCounter,
    /// The reading the next CPU figure is measured from.
    cpu_from: Option<cpu::Reading>,
    last_cpu: f64,
    cpu_basis: Option<CpuBasis>,
    disk: disk::DiskState,
}

/// What one reading under the lock produced.
struct Reading {
    snapshot: Snapshot,
    load: LoadAverage,
    space: Option<disk::Space>,
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
/// let detail = monitor.detailed();
/// println!("{} processes, {} of {} bytes free on {}", detail.process_count,
///     detail.disk_available_bytes, detail.disk_total_bytes, detail.disk_mount.display());
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
    /// A monitor whose disk figures are for the filesystem holding `disk_path`
    /// (which need not exist yet: its nearest existing ancestor decides).
    pub fn new(disk_path: &Path) -> Result<SystemMonitor, MonitorError> {
        SystemMonitor::with_cpu_counter(disk_path, cpu::CpuCounter::detect())
    }

    /// Like [`SystemMonitor::new`], reading CPU time from `/proc/stat` even
    /// where a finer counter exists (tests, comparisons).
    pub fn with_proc_stat(disk_path: &Path) -> Result<SystemMonitor, MonitorError> {
        SystemMonitor::with_cpu_counter(disk_path, cpu::CpuCounter::proc_stat())
    }

    fn with_cpu_counter(
        disk_path: &Path,
        counter: cpu::CpuCounter,
    ) -> Result<SystemMonitor, MonitorError> {
        // The first CPU reading, as early as possible: the first figure is
        // measured from here.
        let cpu_from = counter.read();
        let mut sys =
            sysinfo::System::new().map_err(|e| MonitorError::Unavailable(e.to_string()))?;
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let cores = sys.cpus().len().max(1) as f64;
        Ok(SystemMonitor {
            state: Mutex::new(State {
                sys,
                last_refresh: Instant::now(),
                per_core_ready: false,
                cpu: counter,
                cpu_from,
                last_cpu: f64::NAN,
                cpu_basis: None,
                disk: disk::DiskState::new(disk_path),
            }),
            disk_path: disk_path.to_path_buf(),
            cores,
        })
    }

    /// Takes a snapshot now. The first call waits out the rest of the CPU
    /// counter's minimum window ([`CpuSource::min_window`]: 50 ms with the
    /// cgroup v2 root's counter, 200 ms with `/proc/stat`) since
    /// [`SystemMonitor::new`]; later calls do not wait.
    pub fn sample(&self) -> Snapshot {
        let mut st = self.lock();
        self.read(&mut st).snapshot
    }

    /// What the CPU figure of the last sample is (its counter and window);
    /// `None` before the first sample.
    pub fn cpu_basis(&self) -> Option<CpuBasis> {
        self.lock().cpu_basis
    }

    /// The machine's memory in bytes (what memory shares are of).
    pub fn total_memory_bytes(&self) -> u64 {
        self.lock().sys.total_memory()
    }

    /// The counter CPU figures come from.
    pub fn cpu_source(&self) -> CpuSource {
        self.lock().cpu.source()
    }

    /// Takes a detailed reading now: the snapshot plus per-core CPU, load
    /// averages, memory and swap in bytes, disk space and I/O rates, and the
    /// process count. Costs more than [`SystemMonitor::sample`] (it lists
    /// `/proc` and reads `/proc/diskstats`); meant for diagnostics, not for
    /// every background sample.
    pub fn detailed(&self) -> SystemDetail {
        let mut st = self.lock();
        let reading = self.read(&mut st);
        // Per-core figures come from sysinfo (`/proc/stat`), which needs its
        // own minimum interval: waited out once, on the first call.
        let since = st.last_refresh.elapsed();
        if !st.per_core_ready && since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        if st.last_refresh.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            st.sys.refresh_cpu_usage();
            st.last_refresh = Instant::now();
            st.per_core_ready = true;
        }
        let io = st.disk.io_rates();
        let sys = &st.sys;
        let memory_total_bytes = sys.total_memory();
        let swap_total_bytes = sys.total_swap();
        let (disk_mount, disk_total_bytes, disk_available_bytes) = match reading.space {
            Some(space) => (space.mount, space.total, space.available),
            None => (PathBuf::new(), 0, 0),
        };
        let cpu_per_core = sys
            .cpus()
            .iter()
            .map(|c| f64::from(c.usage()).clamp(0.0, 100.0))
            .collect();
        let cores = sys.cpus().len();
        SystemDetail {
            snapshot: reading.snapshot,
            cpu_per_core,
            load_average: reading.load,
            cores,
            memory_total_bytes,
            memory_used_bytes: memory_total_bytes.saturating_sub(sys.available_memory()),
            swap_total_bytes,
            swap_used_bytes: swap_total_bytes.saturating_sub(sys.free_swap()),
            disk_mount,
            disk_total_bytes,
            disk_available_bytes,
            disk_read_bytes_per_s: io.read_bytes_per_s,
            disk_write_bytes_per_s: io.write_bytes_per_s,
            disk_io_devices: io.devices,
            process_count: process_count(&mut st.sys),
            cpu_basis: st.cpu_basis,
        }
    }

    /// The state, even if a panic elsewhere poisoned the lock (every field
    /// is valid on its own: the worst case is one stale figure).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One reading under the lock: CPU (if due), memory, load, disk space.
    fn read(&self, st: &mut State) -> Reading {
        // The first CPU figure needs two readings a minimum window apart:
        // wait out the rest of it once, rather than report 0.
        let min = st.cpu.source().min_window();
        if st.last_cpu.is_nan()
            && let Some(from) = &st.cpu_from
        {
            let since = from.at().elapsed();
            if since < min {
                std::thread::sleep(min - since);
            }
        }
        match st.cpu_from {
            Some(from) if from.at().elapsed() >= min => {
                if let Some(now) = st.cpu.read() {
                    if let Some(u) = st.cpu.utilisation(&from, &now) {
                        st.last_cpu = u;
                        st.cpu_basis = Some(CpuBasis {
                            source: st.cpu.source(),
                            window: now.at().saturating_duration_since(from.at()),
                        });
                    }
                    st.cpu_from = Some(now);
                }
            }
            Some(_) => {}
            None => st.cpu_from = st.cpu.read(),
        }
        st.sys.refresh_memory();
        let total = st.sys.total_memory().max(1) as f64;
        let used = total - st.sys.available_memory() as f64;
        let memory = (used / total * 100.0).clamp(0.0, 100.0);
        let load = sysinfo::System::load_average()
            .map(|l| LoadAverage {
                one: l.one,
                five: l.five,
                fifteen: l.fifteen,
            })
            .unwrap_or_default();
        let space = st.disk.space();
        let cpu = if st.last_cpu.is_finite() {
            st.last_cpu.clamp(0.0, 100.0)
        } else {
            0.0
        };
        Reading {
            snapshot: Snapshot {
                timestamp: Utc::now(),
                cpu_percent: cpu,
                memory_percent: memory,
                disk_percent: space.as_ref().map_or(0.0, disk::Space::percent_used),
                load_per_core: load.one / self.cores,
                network_latency_ms: None,
            },
            load,
            space,
        }
    }
}

/// Processes on the machine: the numeric entries of `/proc` (threads are not
/// listed there), else sysinfo's process list.
fn process_count(sys: &mut sysinfo::System) -> usize {
    match std::fs::read_dir("/proc") {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count(),
        Err(_) => {
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::All,
                true,
                sysinfo::ProcessRefreshKind::nothing(),
            );
            sys.processes().len()
        }
    }
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
        Sampler::start_with_latency(monitor, interval, Vec::new(), Duration::ZERO)
    }

    /// Like [`Sampler::start`], and each sample's `network_latency_ms` is the
    /// median TCP connect time to `endpoints` ([`measure_latency`] under
    /// `timeout`, run alongside the sample; `None` if no endpoint answered).
    /// With no endpoints this is [`Sampler::start`].
    pub fn start_with_latency(
        monitor: Arc<SystemMonitor>,
        interval: Duration,
        endpoints: Vec<String>,
        timeout: Duration,
    ) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let m = monitor.clone();
                let sample = tokio::task::spawn_blocking(move || m.sample());
                let latency = async {
                    if endpoints.is_empty() {
                        None
                    } else {
                        median_latency(&measure_latency(&endpoints, timeout).await)
                    }
                };
                let (sample, latency) = tokio::join!(sample, latency);
                if let Ok(mut s) = sample
                    && let Ok(mut v) = sink.lock()
                {
                    s.network_latency_ms = latency;
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

impl From<&crate::history::MetricSample> for Snapshot {
    fn from(s: &crate::history::MetricSample) -> Self {
        Snapshot {
            timestamp: s.timestamp,
            cpu_percent: s.cpu_percent,
            memory_percent: s.memory_percent,
            disk_percent: s.disk_percent,
            load_per_core: s.load_per_core,
            network_latency_ms: s.network_latency_ms,
        }
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
    use std::sync::atomic::{AtomicBool, Ordering};

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

    #[test]
    fn detailed_values_are_in_range() {
        let dir = tempfile::tempdir().unwrap();
        // The state directory need not exist yet.
        let m = SystemMonitor::new(&dir.path().join("not-yet")).unwrap();
        let d = m.detailed();
        assert!(d.cores >= 1);
        assert_eq!(d.cpu_per_core.len(), d.cores);
        for v in d.cpu_per_core.iter().chain([&d.snapshot.cpu_percent]) {
            assert!((0.0..=100.0).contains(v), "{d:?}");
        }
        let l = d.load_average;
        assert!(l.one >= 0.0 && l.five >= 0.0 && l.fifteen >= 0.0, "{l:?}");
        assert!((d.snapshot.load_per_core - l.one / d.cores as f64).abs() < 1e-9);

        assert!(d.memory_total_bytes > 0);
        assert!(0 < d.memory_used_bytes && d.memory_used_bytes <= d.memory_total_bytes);
        let percent = d.memory_used_bytes as f64 / d.memory_total_bytes as f64 * 100.0;
        assert!((percent - d.snapshot.memory_percent).abs() < 1e-6, "{d:?}");
        assert!(d.swap_used_bytes <= d.swap_total_bytes);

        let canonical = dir.path().canonicalize().unwrap();
        assert!(
            canonical.starts_with(&d.disk_mount),
            "{} holds {}",
            d.disk_mount.display(),
            canonical.display()
        );
        assert!(d.disk_total_bytes > 0);
        assert!(d.disk_available_bytes <= d.disk_total_bytes);
        let used = 100.0 * (1.0 - d.disk_available_bytes as f64 / d.disk_total_bytes as f64);
        assert!((used - d.snapshot.disk_percent).abs() < 1.0, "{d:?}");
        assert!(d.process_count > 0);

        let json = serde_json::to_string(&d).unwrap();
        let back: SystemDetail = serde_json::from_str(&json).unwrap();
        // serde_json may round the last digit of a float: compare the rest exactly.
        assert_eq!(back.memory_total_bytes, d.memory_total_bytes);
        assert_eq!(back.disk_mount, d.disk_mount);
        assert_eq!(back.process_count, d.process_count);
        assert_eq!(back.snapshot.timestamp, d.snapshot.timestamp);
        assert_eq!(back.cpu_per_core.len(), d.cpu_per_core.len());
        assert!((back.snapshot.memory_percent - d.snapshot.memory_percent).abs() < 1e-9);
    }

    #[test]
    fn memory_total_is_memtotal_of_proc_meminfo() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        let m = SystemMonitor::new(Path::new("/")).unwrap();
        assert_eq!(m.detailed().memory_total_bytes, kib * 1024);
    }

    #[test]
    fn cpu_rises_under_a_busy_loop() {
        let m = SystemMonitor::new(Path::new("/")).unwrap();
        m.sample(); // the first CPU figure
        std::thread::sleep(Duration::from_millis(300));
        let before = m.sample().cpu_percent;

        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(1500);
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    x
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(250));
        m.sample(); // start the measured interval with both threads spinning
        std::thread::sleep(Duration::from_millis(900));
        let during = m.sample().cpu_percent;
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        assert!(
            during > before + 20.0 || during > 80.0,
            "before {before:.1}%, during {during:.1}%"
        );
    }

    #[test]
    fn the_first_cpu_figure_covers_the_counters_minimum_window() {
        for m in [
            SystemMonitor::new(Path::new("/")).unwrap(),
            SystemMonitor::with_proc_stat(Path::new("/")).unwrap(),
        ] {
            assert_eq!(m.cpu_basis(), None);
            let s = m.sample();
            let basis = m.cpu_basis().unwrap();
            assert_eq!(basis.source, m.cpu_source());
            assert!(basis.window >= basis.source.min_window(), "{basis:?}");
            assert!((0.0..=100.0).contains(&s.cpu_percent));
            // A sample within the window reuses the figure (and its basis).
            let again = m.sample();
            if m.cpu_basis() == Some(basis) {
                assert_eq!(again.cpu_percent, s.cpu_percent);
            }
        }
        assert_eq!(
            SystemMonitor::with_proc_stat(Path::new("/"))
                .unwrap()
                .cpu_source(),
            CpuSource::ProcStat
        );
    }

    #[test]
    fn process_count_sees_a_new_child() {
        let m = SystemMonitor::new(Path::new("/")).unwrap();
        assert!(m.detailed().process_count > 0);
        // Other processes on the machine come and go: a few attempts.
        let mut seen = Vec::new();
        for _ in 0..5 {
            let before = m.detailed().process_count;
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            let with_child = m.detailed().process_count;
            child.kill().unwrap();
            child.wait().unwrap();
            if with_child > before {
                return;
            }
            seen.push((before, with_child));
        }
        panic!("the count never grew with a child: {seen:?}");
    }

    #[test]
    fn disk_rates_need_two_readings() {
        let m = SystemMonitor::new(Path::new("/")).unwrap();
        let first = m.detailed();
        assert_eq!(first.disk_read_bytes_per_s, None);
        assert_eq!(first.disk_write_bytes_per_s, None);
        assert!(!first.disk_io_devices.is_empty(), "{first:?}");
        std::thread::sleep(Duration::from_millis(50));
        let second = m.detailed();
        let read = second.disk_read_bytes_per_s.unwrap();
        let write = second.disk_write_bytes_per_s.unwrap();
        assert!(read >= 0.0 && write >= 0.0 && read.is_finite() && write.is_finite());
        assert_eq!(second.disk_io_devices, first.disk_io_devices);
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
        assert!(samples.iter().all(|s| s.network_latency_ms.is_none()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampler_measures_latency_to_the_endpoints() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let m = Arc::new(SystemMonitor::new(Path::new("/")).unwrap());
        let sampler = Sampler::start_with_latency(
            m,
            Duration::from_millis(20),
            vec![endpoint],
            Duration::from_secs(2),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let samples = sampler.stop().await;
        assert!(!samples.is_empty());
        for s in &samples {
            let ms = s.network_latency_ms.unwrap();
            assert!((0.0..2000.0).contains(&ms), "{s:?}");
        }
    }
}
