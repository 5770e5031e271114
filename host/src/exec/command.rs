//! Running one command: `deploy`, `rollback`, a hook script or a health
//! check command.
//!
//! Why it is shaped this way:
//!
//! - **Completion is the main process exiting, not the pipes closing.** A
//!   deploy command like `python3 -m http.server 8080 &` leaves a server
//!   running that inherited our stdout/stderr pipes, so EOF may never come.
//!   After the main process exits the output is drained for at most
//!   [`DRAIN`]; then the command is complete. The output pumps are *not*
//!   stopped: they are detached and keep copying whatever the background
//!   process prints into the deployment log until it closes the pipes (or
//!   adeploy exits). Closing the read ends instead would make the server's
//!   next write fail with `EPIPE` — and kill it with `SIGPIPE` if it keeps the
//!   default disposition (C programs, or Go programs writing to fd 1/2). A
//!   server that must outlive adeploy itself should redirect its output
//!   (`nohup srv >srv.log 2>&1 &`).
//! - **Own process group.** The child is started with `process_group(0)`, so a
//!   timeout or cancellation can stop everything it started: `SIGTERM` to the
//!   group, then `SIGKILL` to whatever is left after [`GRACE`]. A command that
//!   exits normally is never signalled: its background processes are the
//!   deployment. If the future is dropped while the main process still runs,
//!   the group is killed (no orphans from an abandoned deploy).
//! - **Lines, bounded.** Output is split into lines (a line longer than
//!   [`MAX_LINE`] bytes is cut into pieces, invalid UTF-8 is replaced), each
//!   logged as `[<label>] stdout: …` / `stderr: …`; the last [`TAIL_LINES`]
//!   lines of both streams, in arrival order, are kept for error messages.
//!   Memory use does not depend on how much a command prints.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout_at};

use super::{DeploymentLog, ExecError, RunOptions, human};
use crate::config::CommandSpec;
use crate::monitor::ProcessTracker;

/// How long output is still collected after the main process exited.
pub const DRAIN: Duration = Duration::from_millis(200);
/// Time between `SIGTERM` and `SIGKILL` when a command is stopped.
pub const GRACE: Duration = Duration::from_secs(2);
/// Output lines kept in [`CommandOutcome::tail`].
pub const TAIL_LINES: usize = 20;
/// Longest output line, in bytes; longer lines are split.
pub const MAX_LINE: usize = 8 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// Exited with status 0, in time and not cancelled.
    pub success: bool,
    /// The exit status, when the main process exited by itself.
    pub code: Option<i32>,
    /// The signal that ended the main process.
    pub signal: Option<i32>,
    /// Stopped because it ran longer than [`RunOptions::timeout`].
    pub timed_out: bool,
    /// Stopped (or never started) because the deployment was cancelled.
    pub cancelled: bool,
    /// From start to completion (including stopping it and draining output).
    pub duration: Duration,
    /// The timeout the command ran under.
    pub timeout: Duration,
    /// The last [`TAIL_LINES`] lines of stdout and stderr, oldest first.
    pub tail: Vec<String>,
}

impl CommandOutcome {
    /// One line for messages: `exit status 3`, `killed by signal 9 (SIGKILL)`,
    /// `timed out after 30 s`, `cancelled`.
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out after {}", human(self.timeout))
        } else if self.cancelled {
            "cancelled".to_string()
        } else if let Some(sig) = self.signal {
            match signal_name(sig) {
                Some(name) => format!("killed by signal {sig} ({name})"),
                None => format!("killed by signal {sig}"),
            }
        } else if let Some(code) = self.code {
            format!("exit status {code}")
        } else {
            "ended with an unknown status".to_string()
        }
    }

    /// The last non-empty output line, if any (often the error message).
    pub fn last_line(&self) -> Option<&str> {
        self.tail
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }

    fn not_started(timeout: Duration) -> Self {
        CommandOutcome {
            success: false,
            code: None,
            signal: None,
            timed_out: false,
            cancelled: true,
            duration: Duration::ZERO,
            timeout,
            tail: Vec::new(),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// Runs `spec` to completion (see the module docs for what completion
/// means), logging its output to `opts.log`.
///
/// `Err` only when the command cannot be attempted: an empty command
/// ([`ExecError::Invalid`]) or a program that cannot be started
/// ([`ExecError::Spawn`]). A failing, timed-out or cancelled command is an
/// `Ok` outcome with `success == false`.
pub async fn run_command(
    spec: &CommandSpec,
    opts: &RunOptions<'_>,
) -> Result<CommandOutcome, ExecError> {
    run_command_tracked(spec, opts, opts.tracker).await
}

/// [`run_command`], with the command (and everything it starts) counted as
/// the deployment's own by `tracker` (see [`ProcessTracker`]) instead of
/// `opts.tracker`.
pub async fn run_command_tracked(
    spec: &CommandSpec,
    opts: &RunOptions<'_>,
    tracker: Option<&ProcessTracker>,
) -> Result<CommandOutcome, ExecError> {
    let label = opts.label;
    let shown = spec.to_string();
    let invalid = |reason: &str| ExecError::Invalid {
        label: label.to_string(),
        what: "command",
        reason: reason.to_string(),
    };
    let mut cmd = match spec {
        CommandSpec::Shell(script) => {
            if script.trim().is_empty() {
                return Err(invalid("the command is empty"));
            }
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(script);
            cmd
        }
        CommandSpec::Argv(argv) => match argv.split_first() {
            Some((program, args)) if !program.is_empty() => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            _ => return Err(invalid("the argument list is empty")),
        },
    };
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)))
        .current_dir(opts.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(t) = tracker {
        t.prepare(&mut cmd);
    }

    if opts.is_cancelled() {
        opts.log
            .line(label, &format!("not run (cancelled): {shown}"));
        return Ok(CommandOutcome::not_started(opts.timeout));
    }

    let started = Instant::now();
    opts.log.line(
        label,
        &format!("run: {shown} (timeout {})", human(opts.timeout)),
    );
    let mut child = cmd.spawn().map_err(|source| {
        opts.log
            .line(label, &format!("cannot start `{shown}`: {source}"));
        ExecError::Spawn {
            label: label.to_string(),
            command: shown.clone(),
            cwd: opts.cwd.display().to_string(),
            source,
        }
    })?;
    if let (Some(t), Some(pid)) = (tracker, child.id()) {
        t.track(pid);
    }
    let mut group = GroupGuard {
        pgid: child.id(),
        armed: true,
    };

    let tail: Tail = Arc::default();
    let mut pumps: Vec<JoinHandle<()>> = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        pumps.push(spawn_pump(out, "stdout", opts, &tail));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(spawn_pump(err, "stderr", opts, &tail));
    }

    enum Ended {
        Exited(io::Result<ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let ended = tokio::select! {
        biased;
        status = child.wait() => Ended::Exited(status),
        () = sleep(opts.timeout) => Ended::TimedOut,
        () = opts.cancelled() => Ended::Cancelled,
    };
    let (timed_out, cancelled) = match ended {
        Ended::Exited(_) => (false, false),
        Ended::TimedOut => (true, false),
        Ended::Cancelled => (false, true),
    };
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::TimedOut | Ended::Cancelled => {
            let why = if timed_out {
                format!("timed out after {}", human(opts.timeout))
            } else {
                "cancelled".to_string()
            };
            opts.log
                .line(label, &format!("{why}: stopping its process group"));
            terminate(&mut child, group.pgid).await
        }
    };
    let status = status.map_err(|source| ExecError::Wait {
        label: label.to_string(),
        command: shown.clone(),
        source,
    })?;
    // The main process is gone (and, if we stopped it, its group too): from
    // here on nothing is signalled, whatever happens to this future.
    group.armed = false;

    let drain_until = Instant::now() + DRAIN;
    for pump in &mut pumps {
        // A pump still running after the drain period belongs to a background
        // process; dropping its handle detaches it (see the module docs).
        let _ = timeout_at(drain_until, pump).await;
    }
    let tail: Vec<String> = tail
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();

    let outcome = CommandOutcome {
        success: status.success() && !timed_out && !cancelled,
        code: status.code(),
        signal: status.signal(),
        timed_out,
        cancelled,
        duration: started.elapsed(),
        timeout: opts.timeout,
        tail,
    };
    opts.log.line(
        label,
        &format!(
            "{} after {}",
            outcome.describe(),
            human(Duration::from_millis(
                u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX)
            ))
        ),
    );
    Ok(outcome)
}

type Tail = Arc<Mutex<VecDeque<String>>>;

fn spawn_pump<R>(
    reader: R,
    stream: &'static str,
    opts: &RunOptions<'_>,
    tail: &Tail,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let label = opts.label.to_string();
    let log = opts.log.clone();
    let tail = Arc::clone(tail);
    tokio::spawn(pump(reader, stream, label, log, tail))
}

/// Copies `reader` line by line into the log and the tail until EOF.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: &'static str,
    label: String,
    log: DeploymentLog,
    tail: Tail,
) {
    let emit = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        log.line(&label, &format!("{stream}: {text}"));
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.to_string());
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&pending[start..start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            emit(&pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
}

/// Stops a command that ran too long or was cancelled: `SIGTERM` to its
/// group, `SIGKILL` to what is left of it after [`GRACE`]. Returns the main
/// process's status.
async fn terminate(child: &mut Child, pgid: Option<u32>) -> io::Result<ExitStatus> {
    let grace = Instant::now() + GRACE;
    match pgid {
        Some(pgid) => {
            let _ = signal_group(pgid, libc::SIGTERM);
        }
        None => child.start_kill()?,
    }
    let status = match timeout_at(grace, child.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => None,
    };
    if let Some(pgid) = pgid {
        // Give the rest of the group the same grace period. Once the main
        // process is reaped and the group is empty, its id may be reused:
        // only signal a group that still exists.
        while group_exists(pgid) && Instant::now() < grace {
            sleep(Duration::from_millis(20)).await;
        }
        if group_exists(pgid) {
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
    match status {
        Some(status) => Ok(status),
        None => {
            if pgid.is_none() {
                child.start_kill()?;
            }
            child.wait().await
        }
    }
}

/// Kills the process group if the command future is dropped while its main
/// process is still running.
#[derive(Debug)]
struct GroupGuard {
    pgid: Option<u32>,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed
            && let Some(pgid) = self.pgid
        {
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// True while at least one process is in group `pgid` (zombies included).
fn group_exists(pgid: u32) -> bool {
    match signal_group(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// `kill(-pgid, sig)`: sends `sig` (0 = only check) to every process of the
/// group `pgid`.
#[allow(unsafe_code)]
fn signal_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process group id"))?;
    // SAFETY: kill(2) takes no pointers and has no memory-safety
    // preconditions. `pgid > 1` keeps the negated id from meaning "every
    // process we may signal" (-1) or "our own group" (0); `pgid` is the id of
    // a group created for our child by `process_group(0)`.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tokio::sync::watch;

    fn new_log(dir: &Path) -> DeploymentLog {
        DeploymentLog::create(&dir.join("logs"), chrono::Local::now()).unwrap()
    }

    fn shell(s: &str) -> CommandSpec {
        CommandSpec::Shell(s.to_string())
    }

    fn argv(v: &[&str]) -> CommandSpec {
        CommandSpec::Argv(v.iter().map(|s| s.to_string()).collect())
    }

    fn read_log(log: &DeploymentLog) -> String {
        std::fs::read_to_string(log.path()).unwrap()
    }

    /// Alive and not a zombie (an orphan's zombie may linger if PID 1 does
    /// not reap).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next()),
                Some('Z' | 'X') | None
            ),
            Err(_) => false,
        }
    }

    async fn read_pid(path: &Path) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "no pid in {}", path.display());
            sleep(Duration::from_millis(20)).await;
        }
    }

    async fn gone_soon(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn kill9(pid: i32) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }

    #[tokio::test]
    async fn shell_command_sees_the_env_and_its_output_is_logged() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let env = vec![("ADEPLOY_SERVICE".to_string(), "api-service".to_string())];
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api-service deploy", tmp.path(), &log)
        };
        let out = run_command(
            &shell("echo \"service=$ADEPLOY_SERVICE\"; echo oops >&2; pwd; printf no-newline"),
            &opts,
        )
        .await
        .unwrap();
        assert!(out.success, "{out:?}");
        assert_eq!(out.code, Some(0));
        assert_eq!(out.describe(), "exit status 0");
        assert!(
            out.tail.contains(&"service=api-service".to_string()),
            "{out:?}"
        );
        assert!(out.tail.contains(&"oops".to_string()));
        assert!(out.tail.contains(&"no-newline".to_string()));
        let cwd = tmp.path().canonicalize().unwrap();
        assert!(out.tail.contains(&cwd.display().to_string()), "{out:?}");

        let text = read_log(&log);
        assert!(
            text.contains("[api-service deploy] stdout: service=api-service\n"),
            "{text}"
        );
        assert!(text.contains("[api-service deploy] stderr: oops\n"));
        assert!(text.contains("[api-service deploy] stdout: no-newline\n"));
        assert!(text.contains("[api-service deploy] exit status 0 after"));
        for line in text.lines() {
            let (stamp, rest) = line.split_once(' ').unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
                "{line}"
            );
            assert!(rest.starts_with("[api-service deploy] "), "{line}");
        }
    }

    #[tokio::test]
    async fn argv_runs_without_a_shell() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let env = vec![("ADEPLOY_SERVICE".to_string(), "db".to_string())];
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("db deploy", tmp.path(), &log)
        };
        let out = run_command(&argv(&["printenv", "ADEPLOY_SERVICE"]), &opts)
            .await
            .unwrap();
        assert!(out.success);
        assert_eq!(out.tail, ["db"]);
        let out = run_command(&argv(&["echo", "$ADEPLOY_SERVICE", "a;b"]), &opts)
            .await
            .unwrap();
        assert_eq!(out.tail, ["$ADEPLOY_SERVICE a;b"]);
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_exit_code_and_output() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let opts = RunOptions::new("api rollback", tmp.path(), &log);
        let out = run_command(&shell("echo 'migration failed' >&2; exit 3"), &opts)
            .await
            .unwrap();
        assert!(!out.success);
        assert_eq!(out.code, Some(3));
        assert_eq!(out.signal, None);
        assert!(!out.timed_out && !out.cancelled);
        assert_eq!(out.describe(), "exit status 3");
        assert_eq!(out.last_line(), Some("migration failed"));
        assert!(read_log(&log).contains("[api rollback] exit status 3 after"));
    }

    #[tokio::test]
    async fn the_tail_keeps_the_last_lines_only() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let opts = RunOptions::new("seq", tmp.path(), &log);
        let out = run_command(&argv(&["seq", "1", "100"]), &opts)
            .await
            .unwrap();
        assert_eq!(out.tail.len(), TAIL_LINES);
        assert_eq!(out.tail.first().map(String::as_str), Some("81"));
        assert_eq!(out.tail.last().map(String::as_str), Some("100"));
        assert_eq!(read_log(&log).matches("[seq] stdout: ").count(), 100);
    }

    #[tokio::test]
    async fn long_lines_are_split() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let opts = RunOptions::new("long", tmp.path(), &log);
        let script = format!("head -c {} /dev/zero | tr '\\0' x; echo", MAX_LINE * 2 + 10);
        let out = run_command(&shell(&script), &opts).await.unwrap();
        let lens: Vec<usize> = out.tail.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let pidfile = tmp.path().join("pid");
        let opts = RunOptions {
            timeout: Duration::from_millis(500),
            ..RunOptions::new("slow deploy", tmp.path(), &log)
        };
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let out = run_command(&shell(&script), &opts).await.unwrap();
        assert!(out.timed_out && !out.success, "{out:?}");
        assert_eq!(out.describe(), "timed out after 500 ms");
        assert_eq!(out.signal, Some(libc::SIGTERM));
        let pid = read_pid(&pidfile).await;
        assert!(gone_soon(pid).await, "background sleep {pid} survived");
        assert!(read_log(&log).contains("[slow deploy] timed out after 500 ms: stopping"));
    }

    #[tokio::test]
    async fn sigterm_is_followed_by_sigkill() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let pidfile = tmp.path().join("pid");
        let opts = RunOptions {
            timeout: Duration::from_millis(300),
            ..RunOptions::new("stubborn", tmp.path(), &log)
        };
        // The ignored SIGTERM is inherited by the background sleep as well.
        let script = format!(
            "trap '' TERM; sleep 30 & echo $! > {}; wait",
            pidfile.display()
        );
        let out = run_command(&shell(&script), &opts).await.unwrap();
        assert!(out.timed_out, "{out:?}");
        assert_eq!(out.signal, Some(libc::SIGKILL));
        assert!(out.duration >= GRACE);
        let pid = read_pid(&pidfile).await;
        assert!(gone_soon(pid).await, "background sleep {pid} survived");
    }

    #[tokio::test]
    async fn cancellation_stops_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let pidfile = tmp.path().join("pid");
        let (tx, rx) = watch::channel(false);
        let opts = RunOptions {
            cancel: Some(&rx),
            ..RunOptions::new("cancel me", tmp.path(), &log)
        };
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let canceller = tokio::spawn(async move {
            sleep(Duration::from_millis(300)).await;
            tx.send_replace(true);
            tx
        });
        let out = run_command(&shell(&script), &opts).await.unwrap();
        assert!(out.cancelled && !out.timed_out && !out.success, "{out:?}");
        assert_eq!(out.describe(), "cancelled");
        let pid = read_pid(&pidfile).await;
        assert!(gone_soon(pid).await);

        // Already cancelled: the command does not even start.
        let _tx = canceller.await.unwrap();
        let marker = tmp.path().join("ran");
        let out = run_command(&shell(&format!("touch {}", marker.display())), &opts)
            .await
            .unwrap();
        assert!(out.cancelled && !out.success);
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn a_background_server_keeps_running_and_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let pidfile = tmp.path().join("pid");
        let opts = RunOptions {
            timeout: Duration::from_secs(20),
            ..RunOptions::new("web deploy", tmp.path(), &log)
        };
        // The background process holds stdout and stderr open and prints
        // after the command has returned.
        let script = format!(
            "(sleep 1; echo late-line; exec sleep 30) & echo $! > {}; echo started",
            pidfile.display()
        );
        let started = Instant::now();
        let out = run_command(&shell(&script), &opts).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(out.success, "{out:?}");
        assert_eq!(out.tail, ["started"]);
        let pid = read_pid(&pidfile).await;
        assert!(alive(pid), "the background process was killed");

        // Its output still reaches the log (the pipe was not closed on it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !read_log(&log).contains("[web deploy] stdout: late-line") {
            assert!(Instant::now() < deadline, "{}", read_log(&log));
            sleep(Duration::from_millis(50)).await;
        }
        assert!(alive(pid));
        kill9(pid);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let opts = RunOptions::new("api deploy", tmp.path(), &log);
        let err = run_command(&argv(&["/nonexistent/adeploy-deploy", "x"]), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
        assert!(err.is_bad_input());
        let msg = err.to_string();
        assert!(
            msg.contains("api deploy") && msg.contains("/nonexistent/adeploy-deploy x"),
            "{msg}"
        );

        let missing = tmp.path().join("no-such-dir");
        let opts = RunOptions::new("api deploy", &missing, &log);
        let err = run_command(&shell("true"), &opts).await.unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[tokio::test]
    async fn empty_commands_are_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let opts = RunOptions::new("api deploy", tmp.path(), &log);
        for spec in [argv(&[]), argv(&[""]), shell("  ")] {
            let err = run_command(&spec, &opts).await.unwrap_err();
            assert!(matches!(err, ExecError::Invalid { .. }), "{err:?}");
            assert!(
                err.to_string().starts_with("api deploy: invalid command"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let log = new_log(tmp.path());
        let pidfile = tmp.path().join("pid");
        let opts = RunOptions::new("abandoned", tmp.path(), &log);
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let spec = shell(&script);
        let run = run_command(&spec, &opts);
        let abandoned = tokio::time::timeout(Duration::from_millis(500), run).await;
        assert!(abandoned.is_err());
        let pid = read_pid(&pidfile).await;
        assert!(gone_soon(pid).await);
    }
}
