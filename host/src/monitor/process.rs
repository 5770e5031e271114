//! The deployment's own processes: what adeploy started and everything they
//! started, measured apart from the rest of the machine.
//!
//! Why: `system_impact` compared the machine's peak load with its baseline,
//! so a `sleep 90` deployment was reported as "high (CPU +55.6)" while a
//! build ran next to it. A [`ProcessTracker`] knows which processes are the
//! deployment's, and a [`ProcessTreeSampler`] records their CPU and memory
//! ([`ProcessSample`]) alongside the machine's [`Snapshot`](super::Snapshot)s.
//!
//! Two ways to know, chosen when the tracker is created ([`TrackingMode`]):
//!
//! - **A cgroup v2 child** of adeploy's own cgroup, where cgroup v2 is
//!   mounted and adeploy may create one (root, or a delegated cgroup). Every
//!   command is moved into it between `fork` and `exec`, so all it starts
//!   stays inside, including daemons that leave the session or double-fork,
//!   and the kernel's `usage_usec` counts processes that already exited.
//!   When the tracker is dropped, the processes still running (servers a
//!   deploy left behind) are moved back to adeploy's cgroup and the child is
//!   removed.
//! - **The process tree, via `/proc`**, everywhere else: the commands'
//!   process groups (every command runs in its own), sessions led by a
//!   tracked process, and descendants of tracked processes, remembered by
//!   pid and start time. CPU is the sum of `utime + stime + cutime + cstime`
//!   deltas, so children a tracked process reaped are counted, once. A
//!   process that both leaves the process group (`setsid`) and loses its
//!   tracked parent before the first sample sees it escapes this mode, and
//!   the last fraction of a sample interval of a process reaped outside the
//!   tree is lost; the cgroup mode has neither gap.
//!
//! CPU is reported as a share of the whole machine (all CPUs, 0..100), the
//! same unit as the machine's figure, so the two can be compared; memory is
//! the summed resident set size (a page shared by two processes counts
//! twice, as `ps` would show it).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on
/// every Linux architecture adeploy builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// How a tracker knows the deployment's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
#[non_exhaustive]
pub enum TrackingMode {
    /// Everything in this cgroup v2 directory.
    Cgroup { path: PathBuf },
    /// Process groups, sessions and descendants, via `/proc`.
    ProcessTree,
}

/// One reading of the deployment's own processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub timestamp: DateTime<Utc>,
    /// CPU used since the previous sample, as a share of all the machine's
    /// CPUs (0..100).
    pub cpu_percent: f64,
    /// CPU seconds used since tracking began.
    pub cpu_seconds: f64,
    /// Summed resident set size of the processes alive now.
    pub rss_bytes: u64,
    /// Processes alive now.
    pub processes: usize,
}

/// A summary of a deployment's own processes over its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnUsage {
    pub samples: usize,
    /// Mean of the samples' CPU share of the machine.
    pub mean_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    /// CPU seconds over the whole deployment.
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub peak_processes: usize,
}

/// Mean and peaks of `samples` (zeros when empty).
pub fn summarize(samples: &[ProcessSample]) -> OwnUsage {
    let n = samples.len();
    OwnUsage {
        samples: n,
        mean_cpu_percent: if n == 0 {
            0.0
        } else {
            samples.iter().map(|s| s.cpu_percent).sum::<f64>() / n as f64
        },
        peak_cpu_percent: samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max),
        cpu_seconds: samples.last().map_or(0.0, |s| s.cpu_seconds),
        peak_rss_bytes: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        peak_processes: samples.iter().map(|s| s.processes).max().unwrap_or(0),
    }
}

/// What [`ProcessTracker::sample`] remembers between samples.
#[derive(Debug, Default)]
struct State {
    /// Commands started through the tracker: (pid = their process group, start time).
    roots: Vec<(u32, u64)>,
    /// Process-tree mode: members at the last sample, by pid.
    known: HashMap<u32, Proc>,
    /// Process groups and sessions whose leader was ever a member.
    groups: HashSet<u32>,
    sessions: HashSet<u32>,
    /// CPU ticks counted so far (process-tree mode).
    ticks: f64,
    /// The cgroup could not hold a command: fell back to the process tree.
    degraded: bool,
    /// Re-read every member's total without counting it once (after a fallback).
    rebaseline: bool,
    last: Option<(Instant, f64)>,
}

/// The cgroup v2 child a tracker owns.
#[derive(Debug)]
struct Cgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, for the child side of `fork`.
    procs: CString,
    /// This cgroup's path as `/proc/<pid>/cgroup` shows it (`0::<rel>`).
    relative: String,
    /// Where processes go back to when the tracker is dropped.
    parent_procs: PathBuf,
}

/// Knows which processes belong to a deployment. Share it (`Arc`) between
/// the commands ([`crate::exec::command::run_command_tracked`]) and a
/// [`ProcessTreeSampler`].
#[derive(Debug)]
pub struct ProcessTracker {
    cgroup: Option<Cgroup>,
    cpus: f64,
    started: Instant,
    state: Mutex<State>,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl ProcessTracker {
    /// A tracker for deployment `name`: a cgroup v2 child of adeploy's own
    /// cgroup where possible, else the process tree.
    pub fn new(name: &str) -> ProcessTracker {
        let cgroup = create_cgroup(name);
        if cgroup.is_none() {
            tracing::debug!("no cgroup v2 child available: tracking the process tree via /proc");
        }
        ProcessTracker::with(cgroup)
    }

    /// A tracker that uses the process tree even where a cgroup is possible.
    pub fn process_tree() -> ProcessTracker {
        ProcessTracker::with(None)
    }

    fn with(cgroup: Option<Cgroup>) -> ProcessTracker {
        ProcessTracker {
            cgroup,
            cpus: super::cpu::online_cpus().unwrap_or(1).max(1) as f64,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// How this tracker knows its processes (a cgroup that could not hold a
    /// command falls back to the process tree).
    pub fn mode(&self) -> TrackingMode {
        match &self.cgroup {
            Some(c) if !self.lock().degraded => TrackingMode::Cgroup {
                path: c.dir.clone(),
            },
            _ => TrackingMode::ProcessTree,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `cmd` join the tracker's cgroup between `fork` and `exec` (a
    /// no-op in process-tree mode). Call before spawning, then [`track`](Self::track).
    pub fn prepare(&self, cmd: &mut tokio::process::Command) {
        if let Some(c) = &self.cgroup {
            join_cgroup_on_exec(cmd, c.procs.clone());
        }
    }

    /// Records a started command (its pid is its process group: commands
    /// run with `process_group(0)`). In cgroup mode, checks that it landed
    /// in the cgroup, and falls back to the process tree if not.
    pub fn track(&self, pid: u32) {
        let start = read_stat(pid).map_or(0, |s| s.starttime);
        let mut st = self.lock();
        st.roots.push((pid, start));
        st.groups.insert(pid);
        if let Some(c) = &self.cgroup
            && !st.degraded
        {
            let inside = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|t| {
                    t.lines()
                        .any(|l| l.strip_prefix("0::") == Some(c.relative.as_str()))
                })
                .unwrap_or(true); // already gone: cannot tell, assume the write worked
            if !inside {
                tracing::debug!(
                    cgroup = %c.dir.display(),
                    "a command did not join the cgroup: tracking the process tree via /proc"
                );
                st.degraded = true;
                st.rebaseline = true;
            }
        }
    }

    /// Reads the deployment's processes now: CPU since the previous call (or
    /// since the tracker was created), memory and count now.
    pub fn sample(&self) -> ProcessSample {
        let now = Instant::now();
        let mut st = self.lock();
        let (cpu_seconds, rss_bytes, processes) = match &self.cgroup {
            Some(c) if !st.degraded => {
                let usage = super::cpu::read_usage_usec(&c.dir.join("cpu.stat")).unwrap_or(0);
                let pids = cgroup_pids(&c.dir);
                let rss = pids.iter().filter_map(|&p| rss_of(p)).sum();
                (usage as f64 / 1e6, rss, pids.len())
            }
            _ => self.sample_tree(&mut st),
        };
        let (since, before) = st.last.unwrap_or((self.started, 0.0));
        let wall = now.saturating_duration_since(since).as_secs_f64();
        let cpu_percent = if wall > 0.0 {
            ((cpu_seconds - before).max(0.0) / (wall * self.cpus) * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        };
        st.last = Some((now, cpu_seconds));
        ProcessSample {
            timestamp: Utc::now(),
            cpu_percent,
            cpu_seconds,
            rss_bytes,
            processes,
        }
    }

    /// Process-tree mode: the members now, the CPU ticks they added.
    fn sample_tree(&self, st: &mut State) -> (f64, u64, usize) {
        let all: Vec<Proc> = list_pids().into_iter().filter_map(read_stat).collect();
        let mut members: HashMap<u32, Proc> = HashMap::new();
        for p in &all {
            let known = st
                .known
                .get(&p.pid)
                .is_some_and(|k| k.starttime == p.starttime);
            let root = st
                .roots
                .iter()
                .any(|&(pid, start)| pid == p.pid && (start == 0 || start == p.starttime));
            if known || root || st.groups.contains(&p.pgrp) || st.sessions.contains(&p.session) {
                members.insert(p.pid, *p);
            }
        }
        // Descendants of members, to a fixpoint.
        loop {
            let before = members.len();
            for p in &all {
                if !members.contains_key(&p.pid) && members.contains_key(&p.ppid) {
                    members.insert(p.pid, *p);
                }
            }
            if members.len() == before {
                break;
            }
        }
        for p in members.values() {
            if p.pgrp == p.pid {
                st.groups.insert(p.pid);
            }
            if p.session == p.pid {
                st.sessions.insert(p.pid);
            }
        }
        let mut delta: i64 = 0;
        if !std::mem::take(&mut st.rebaseline) {
            for p in members.values() {
                delta += match st.known.get(&p.pid) {
                    Some(k) if k.starttime == p.starttime => {
                        i64::try_from(p.ticks.saturating_sub(k.ticks)).unwrap_or(0)
                    }
                    _ => i64::try_from(p.ticks).unwrap_or(0),
                };
            }
            // A member that vanished was reaped: if by a member, that
            // member's cutime/cstime now holds its whole total, of which
            // the part seen before is already counted.
            for (pid, k) in &st.known {
                let gone = members.get(pid).is_none_or(|p| p.starttime != k.starttime);
                let reaped_inside = members
                    .get(&k.ppid)
                    .is_some_and(|parent| st.known.contains_key(&parent.pid));
                if gone && reaped_inside {
                    delta -= i64::try_from(k.ticks).unwrap_or(0);
                }
            }
        }
        st.ticks += delta.max(0) as f64;
        let running: Vec<u32> = members
            .values()
            .filter(|p| !p.zombie)
            .map(|p| p.pid)
            .collect();
        let rss = running.iter().filter_map(|&p| rss_of(p)).sum();
        let count = running.len();
        st.known = members;
        (st.ticks / TICKS_PER_SECOND, rss, count)
    }
}

impl Drop for ProcessTracker {
    fn drop(&mut self) {
        let Some(c) = &self.cgroup else { return };
        // Servers a deployment left running stay running, in adeploy's cgroup.
        for pid in cgroup_pids(&c.dir) {
            let _ = std::fs::write(&c.parent_procs, pid.to_string());
        }
        if let Err(e) = std::fs::remove_dir(&c.dir) {
            tracing::debug!(cgroup = %c.dir.display(), %e, "cannot remove the deployment's cgroup");
        }
    }
}

/// The fields of `/proc/<pid>/stat` a tracker needs.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    session: u32,
    /// utime + stime + cutime + cstime, in ticks.
    ticks: u64,
    starttime: u64,
    /// Exited, not yet reaped: its CPU still counts, it is not running.
    zombie: bool,
}

fn read_stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the
    // fields start after the last ')'.
    let (_, rest) = text.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let id = |i: usize| f.get(i).and_then(|v| v.parse::<u32>().ok());
    Some(Proc {
        pid,
        zombie: matches!(f.first(), Some(&("Z" | "X"))),
        ppid: id(1)?,
        pgrp: id(2)?,
        session: id(3)?,
        ticks: num(11)? + num(12)? + num(13)? + num(14)?,
        starttime: num(19)?,
    })
}

fn list_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Resident set size in bytes (`VmRSS`); `None` for a zombie or a process gone.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn cgroup_pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// A new cgroup v2 directory under adeploy's own cgroup, if cgroup v2 is
/// mounted and adeploy may create one.
fn create_cgroup(name: &str) -> Option<Cgroup> {
    let mount = super::cpu::cgroup2_mount()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own_rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    let parent = mount.join(own_rel.trim_start_matches('/'));
    remove_stale_cgroups(&parent);
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let leaf = format!(
        "adeploy-{safe}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let dir = parent.join(&leaf);
    if let Err(e) = std::fs::create_dir(&dir) {
        tracing::debug!(cgroup = %dir.display(), %e, "cannot create a cgroup for the deployment");
        return None;
    }
    let procs = CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .ok();
    let Some(procs) = procs else {
        let _ = std::fs::remove_dir(&dir);
        return None;
    };
    let relative = if own_rel == "/" {
        format!("/{leaf}")
    } else {
        format!("{}/{leaf}", own_rel.trim_end_matches('/'))
    };
    Some(Cgroup {
        parent_procs: parent.join("cgroup.procs"),
        dir,
        procs,
        relative,
    })
}

/// Removes the empty `adeploy-*-PID-N` cgroups of adeploy processes that
/// are gone (a crash skips [`ProcessTracker`]'s drop).
fn remove_stale_cgroups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("adeploy-") else {
            continue;
        };
        let mut parts = rest.rsplitn(3, '-');
        let (_seq, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && cgroup_pids(&e.path()).is_empty() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Between `fork` and `exec`, the child writes "0" (itself) into `procs`.
#[allow(unsafe_code)]
fn join_cgroup_on_exec(cmd: &mut tokio::process::Command, procs: CString) {
    let hook = move || {
        // SAFETY: runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: open(2), write(2) and
        // close(2) are, and nothing here allocates (the path was converted
        // to a C string before fork). A failure leaves the child where it
        // is; `ProcessTracker::track` notices and falls back.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls (above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Samples a [`ProcessTracker`] in the background until stopped.
#[derive(Debug)]
pub struct ProcessTreeSampler {
    samples: Arc<Mutex<Vec<ProcessSample>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProcessTreeSampler {
    /// Samples `tracker` every `interval` (first sample after one interval:
    /// a CPU share needs time to pass).
    pub fn start(tracker: Arc<ProcessTracker>, interval: Duration) -> ProcessTreeSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let done = tokio::select! {
                    _ = tokio::time::sleep(interval) => false,
                    _ = stopped.changed() => true,
                };
                let t = tracker.clone();
                if let Ok(sample) = tokio::task::spawn_blocking(move || t.sample()).await {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(sample);
                }
                if done {
                    break;
                }
            }
        });
        ProcessTreeSampler {
            samples,
            stop,
            task,
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Vec<ProcessSample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops sampling (after one last sample) and returns every sample.
    pub async fn stop(self) -> Vec<ProcessSample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
