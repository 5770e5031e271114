//! `system_impact` must tell the deployment's own processes from the rest of
//! the machine. Regression: a `sleep 90` deployment was reported as "high
//! (CPU +55.6)" while another build ran. These tests start a deploy-like
//! command that leaves a CPU burner running in the background (as a deploy
//! leaves a server), next to an unrelated CPU hog the test starts itself,
//! and check that the tracker counts the burner's CPU and memory and none of
//! the hog's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adeploy::config::CommandSpec;
use adeploy::exec::{DeploymentLog, RunOptions, run_command_tracked};
use adeploy::monitor::{ProcessTracker, ProcessTreeSampler, TrackingMode, summarize};

const BURNER: &str = r#"
import os, sys, time
data = b"x" * (64 << 20)          # 64 MiB, resident
end = time.time() + float(sys.argv[1])
x = 0
while time.time() < end:
    x += 1
t = os.times()
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write("%f" % (t.user + t.system))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
"#;

/// CPU seconds a process has used so far (`utime + stime`).
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (f[11] + f[12]) as f64 / 100.0
}

/// Runs `launch` (a shell command starting `python3 BURNER SECONDS OUT` in
/// the background) as a tracked deploy command while a hog runs, and checks
/// the attribution.
async fn own_cpu_is_the_burners_not_the_hogs(tracker: ProcessTracker, launch: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let burner = tmp.path().join("burn.py");
    std::fs::write(&burner, BURNER).unwrap();
    let out = tmp.path().join("cpu.txt");
    let log = DeploymentLog::create(&tmp.path().join("logs"), chrono::Local::now()).unwrap();

    // The unrelated load: a busy loop this test starts, not through adeploy.
    let mut hog = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let tracker = Arc::new(tracker);
    let sampler = ProcessTreeSampler::start(tracker.clone(), Duration::from_millis(100));
    let script = launch
        .replace("BURNER", &burner.display().to_string())
        .replace("OUT", &out.display().to_string());
    let opts = RunOptions::new("burner deploy", tmp.path(), &log);
    let result = run_command_tracked(&CommandSpec::Shell(script), &opts, Some(&tracker)).await;
    // The deploy command returns at once; the burner runs on, then writes
    // the CPU time it used (its own account, from the kernel).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !out.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more samples with only the hog running.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let samples = sampler.stop().await;
    let hog_cpu = cpu_seconds_of(hog.id());
    let _ = hog.kill();
    let _ = hog.wait();

    assert!(result.unwrap().success);
    let reported: f64 = std::fs::read_to_string(&out).unwrap().parse().unwrap();
    let own = summarize(&samples);
    let mode = tracker.mode();
    // What the burner used is counted (in process-tree mode, at most the
    // last sample interval's share of it can be lost when it exits) ...
    assert!(
        own.cpu_seconds >= reported - 0.15,
        "{mode:?}: counted {:.2} s of the burner's {reported:.2} s",
        own.cpu_seconds
    );
    // ... and the hog's CPU is not: it ran long enough that counting it
    // would break this bound.
    assert!(
        hog_cpu > 0.25 * reported + 0.1,
        "the hog barely ran ({hog_cpu:.2} s): the test cannot tell"
    );
    assert!(
        own.cpu_seconds <= 1.25 * reported + 0.1,
        "{mode:?}: counted {:.2} s, the burner used {reported:.2} s, the hog {hog_cpu:.2} s",
        own.cpu_seconds
    );
    assert!(own.peak_cpu_percent > 0.0, "{samples:?}");
    assert!(own.peak_rss_bytes >= 64 << 20, "{own:?}");
    let last = samples.last().unwrap();
    assert_eq!(
        (last.cpu_percent, last.processes, last.rss_bytes),
        (0.0, 0, 0),
        "{mode:?}: after the burner exited only the hog runs: {samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_own_processes_are_measured_apart_from_the_machine() {
    let tracker = ProcessTracker::new("own-cpu-test");
    // A cgroup holds even a process that leaves the session; the process
    // tree follows the process group.
    let launch = match tracker.mode() {
        TrackingMode::Cgroup { .. } => "setsid python3 BURNER 1.5 OUT > /dev/null 2>&1 &",
        _ => "nohup python3 BURNER 1.5 OUT > /dev/null 2>&1 &",
    };
    own_cpu_is_the_burners_not_the_hogs(tracker, launch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_tree_fallback_follows_the_process_group() {
    let tracker = ProcessTracker::process_tree();
    assert_eq!(tracker.mode(), TrackingMode::ProcessTree);
    own_cpu_is_the_burners_not_the_hogs(tracker, "nohup python3 BURNER 1.5 OUT > /dev/null 2>&1 &")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tracker_leaves_servers_running_and_removes_its_cgroup() {
    let tracker = ProcessTracker::new("leftover-test");
    let TrackingMode::Cgroup { path } = tracker.mode() else {
        // No cgroup v2 child on this machine: nothing to remove.
        assert_eq!(tracker.mode(), TrackingMode::ProcessTree);
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = DeploymentLog::create(&tmp.path().join("logs"), chrono::Local::now()).unwrap();
    let pidfile = tmp.path().join("pid");
    let script = format!(
        "sleep 30 > /dev/null 2>&1 & echo $! > {}",
        pidfile.display()
    );
    let opts = RunOptions::new("server deploy", tmp.path(), &log);
    run_command_tracked(&CommandSpec::Shell(script), &opts, Some(&tracker))
        .await
        .unwrap();
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let inside = std::fs::read_to_string(path.join("cgroup.procs")).unwrap();
    assert!(inside.lines().any(|l| l == pid.to_string()), "{inside}");
    drop(tracker);
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    assert!(alive, "the server keeps running");
    assert!(!path.exists(), "{} removed", path.display());
}
