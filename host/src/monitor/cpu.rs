//! The machine's CPU utilisation: the share of all CPUs' time spent busy
//! between two readings of a kernel counter.
//!
//! Why not just sysinfo's figure: it reads `/proc/stat`, whose counters are
//! in USER_HZ ticks (10 ms per CPU), so a figure needs about 200 ms between
//! readings before the rounding is small (sysinfo's
//! `MINIMUM_CPU_UPDATE_INTERVAL`); a dry run spent most of its 0.22 s
//! waiting for it. The cgroup v2 root's `cpu.stat` (`usage_usec`) counts the
//! same busy time machine-wide in microseconds (the kernel sums its per-CPU
//! accounting, which advances every scheduler tick, 1–4 ms), so 50 ms
//! between readings give a figure as fine as 200 ms of `/proc/stat` did.
//! Where that file is not the machine's root (inside a container's cgroup
//! namespace its top level is the container's own cgroup, which has a
//! `cgroup.type` file: the real root has none) or cgroup v2 is not mounted,
//! `/proc/stat` and the 200 ms minimum remain. Either way the figure is a
//! measured utilisation over a stated window ([`CpuBasis`]), never a figure
//! since boot or an estimate from the load average.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which counter a CPU figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// `usage_usec` of the cgroup v2 root's `cpu.stat`, over wall time × CPUs.
    CgroupRoot,
    /// Busy over total ticks of `/proc/stat`'s `cpu` line.
    ProcStat,
}

impl CpuSource {
    /// The shortest window between two readings that gives a figure no
    /// coarser than 200 ms of `/proc/stat`.
    pub fn min_window(self) -> Duration {
        match self {
            CpuSource::CgroupRoot => Duration::from_millis(50),
            CpuSource::ProcStat => Duration::from_millis(200),
        }
    }

    /// `cgroup v2 cpu.stat` or `/proc/stat`.
    pub fn describe(self) -> &'static str {
        match self {
            CpuSource::CgroupRoot => "cgroup v2 root cpu.stat",
            CpuSource::ProcStat => "/proc/stat",
        }
    }
}

/// What a CPU figure is: its source and the window it was measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuBasis {
    pub source: CpuSource,
    /// Between the two readings the figure is the utilisation of.
    pub window: Duration,
}

impl std::fmt::Display for CpuBasis {
    /// `busy share of all CPUs over the last 62 ms (cgroup v2 root cpu.stat)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "busy share of all CPUs over the last {} ms ({})",
            self.window.as_millis(),
            self.source.describe()
        )
    }
}

/// One reading of the counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    at: Instant,
    /// Busy time: microseconds (cgroup) or ticks (`/proc/stat`).
    busy: u64,
    /// All time (busy + idle) in ticks; `None` for the cgroup counter,
    /// whose total is wall time × CPUs.
    total: Option<u64>,
}

impl Reading {
    /// When it was taken.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }
}

/// The counter this machine offers, chosen once.
#[derive(Debug, Clone)]
pub(crate) struct CpuCounter {
    source: CpuSource,
    /// The root `cpu.stat`, for [`CpuSource::CgroupRoot`].
    stat: Option<PathBuf>,
    /// Online CPUs (the `cpuN` lines of `/proc/stat`).
    cpus: f64,
}

impl CpuCounter {
    /// The finest machine-wide counter available.
    pub(crate) fn detect() -> CpuCounter {
        let cpus = online_cpus().unwrap_or(1).max(1) as f64;
        if let Some(root) = cgroup2_mount()
            && is_root_cgroup(&root)
            && read_usage_usec(&root.join("cpu.stat")).is_some()
        {
            return CpuCounter {
                source: CpuSource::CgroupRoot,
                stat: Some(root.join("cpu.stat")),
                cpus,
            };
        }
        CpuCounter::proc_stat()
    }

    /// `/proc/stat`, whatever else the machine has.
    pub(crate) fn proc_stat() -> CpuCounter {
        CpuCounter {
            source: CpuSource::ProcStat,
            stat: None,
            cpus: online_cpus().unwrap_or(1).max(1) as f64,
        }
    }

    pub(crate) fn source(&self) -> CpuSource {
        self.source
    }

    pub(crate) fn read(&self) -> Option<Reading> {
        let at = Instant::now();
        match (&self.source, &self.stat) {
            (CpuSource::CgroupRoot, Some(stat)) => Some(Reading {
                at,
                busy: read_usage_usec(stat)?,
                total: None,
            }),
            _ => {
                let (busy, total) = read_proc_stat()?;
                Some(Reading {
                    at,
                    busy,
                    total: Some(total),
                })
            }
        }
    }

    /// Percent of all CPUs busy between `a` and `b` (0..100), or `None`
    /// when no time passed between them.
    pub(crate) fn utilisation(&self, a: &Reading, b: &Reading) -> Option<f64> {
        let busy = b.busy.saturating_sub(a.busy) as f64;
        let total = match (a.total, b.total) {
            (Some(ta), Some(tb)) => tb.saturating_sub(ta) as f64,
            _ => b.at.saturating_duration_since(a.at).as_secs_f64() * 1e6 * self.cpus,
        };
        (total > 0.0).then(|| (busy / total * 100.0).clamp(0.0, 100.0))
    }
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid systems).
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let mount = fields.next()?;
        (root == "/").then(|| PathBuf::from(unescape_mount(mount)))
    })
}

/// Mount points escape spaces and the like as `\040`.
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(char::from(b)),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The top of the hierarchy is the machine's root cgroup only when it has
/// no `cgroup.type` (every non-root cgroup has one; a cgroup namespace shows
/// its own cgroup at the top).
fn is_root_cgroup(dir: &Path) -> bool {
    dir.join("cgroup.procs").exists() && !dir.join("cgroup.type").exists()
}

/// `usage_usec` of a `cpu.stat` file.
pub(crate) fn read_usage_usec(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// (busy, total) ticks of `/proc/stat`'s `cpu` line: busy = user + nice +
/// system + irq + softirq + steal; total = busy + idle + iowait.
fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let idle = at(3) + at(4);
    Some((busy, busy + idle))
}

/// The number of `cpuN` lines of `/proc/stat`.
pub(crate) fn online_cpus() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let n = text
        .lines()
        .filter(|l| {
            // `cpu0 …`, `cpu1 …`, not the `cpu  …` total.
            l.strip_prefix("cpu")
                .and_then(|rest| rest.split(' ').next())
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sources_measure_the_same_busy_share() {
        let fine = CpuCounter::detect();
        let coarse = CpuCounter::proc_stat();
        if fine.source() != CpuSource::CgroupRoot {
            // No cgroup v2 root here: the fallback is the only source.
            assert_eq!(fine.source(), CpuSource::ProcStat);
            assert_eq!(fine.source().min_window(), Duration::from_millis(200));
            return;
        }
        // Over the same second, with one thread busy for most of it, the
        // two counters must agree (rounding: 10 ms ticks of /proc/stat).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                x
            })
        };
        let (f0, c0) = (fine.read().unwrap(), coarse.read().unwrap());
        std::thread::sleep(Duration::from_millis(1000));
        let (f1, c1) = (fine.read().unwrap(), coarse.read().unwrap());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        let (a, b) = (
            fine.utilisation(&f0, &f1).unwrap(),
            coarse.utilisation(&c0, &c1).unwrap(),
        );
        assert!((a - b).abs() < 5.0, "cgroup {a:.1}% vs /proc/stat {b:.1}%");
        assert!(
            a >= 100.0 / fine.cpus - 10.0,
            "one busy thread shows: {a:.1}%"
        );
    }

    #[test]
    fn online_cpus_are_the_numbered_lines() {
        let text = std::fs::read_to_string("/proc/stat").unwrap();
        let numbered = text
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        assert_eq!(online_cpus(), Some(numbered));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount("/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
    }

    #[test]
    fn the_basis_says_what_the_figure_is() {
        let b = CpuBasis {
            source: CpuSource::CgroupRoot,
            window: Duration::from_millis(62),
        };
        assert_eq!(
            b.to_string(),
            "busy share of all CPUs over the last 62 ms (cgroup v2 root cpu.stat)"
        );
    }
}
