//! Running a service's commands and checking its health.
//!
//! This is the only module that starts processes or talks to a deployed
//! service. It is deliberately small and policy-free: the engine decides *what*
//! to run and *when* to give up; `exec` runs one thing and says precisely what
//! happened, in a value the engine can put in a report.
//!
//! - [`log`]: the per-deployment log file every command's output goes to.
//! - [`command`]: [`run_command`] runs a `deploy`/`rollback`/hook command in
//!   its own process group, with a timeout and cancellation that stop the
//!   whole group, and treats "the main process exited" as completion — deploy
//!   commands routinely leave a server running in the background, holding the
//!   output pipes open forever.
//! - [`env`]: [`command_env`] builds a command's environment (`ADEPLOY_*`
//!   context, versions, the service's `env`).
//! - [`health`]: [`probe`] takes one sample of an HTTP, TCP or command health
//!   check; [`validate`] turns samples into a verdict (N consecutive healthy
//!   samples, then a soak period during which one failure is fatal).
//!
//! Shape decisions:
//!
//! - **Outcomes are values, errors are for the caller's mistakes.** A command
//!   that exits 3, times out or is cancelled yields a [`CommandOutcome`], and an
//!   unhealthy service a [`ProbeResult`]/[`HealthOutcome`]; [`ExecError`] is
//!   reserved for things retrying cannot fix: an invalid spec or a program that
//!   cannot be started.
//! - **Cancellation is a `watch::Receiver<bool>`** (`true` = stop): it needs no
//!   extra dependency, many commands can watch one sender, and a late
//!   subscriber still sees the current value.
//! - **One options struct** ([`RunOptions`]) carries the label, environment,
//!   working directory, timeout, log and cancellation, so health checks that
//!   run commands reuse exactly the context of the service's deploy command.
//!
//! Only Unix is supported (process groups and signals).

pub mod command;
pub mod container;
pub mod env;
pub mod health;
pub mod log;
pub mod ssh;

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::monitor::ProcessTracker;

pub use command::{CommandOutcome, run_command, run_command_tracked};
pub use env::{CommandContext, command_env};
pub use health::{
    HealthOutcome, HealthPolicy, ProbeRecord, ProbeResult, check_spec, probe, validate,
};
pub use log::DeploymentLog;

/// Everything [`run_command`], [`probe`] and [`validate`] need besides the
/// spec itself.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Names the command in the log and in errors, e.g. `api-service deploy`.
    pub label: &'a str,
    /// Added to (and overriding) the inherited environment: the `ADEPLOY_*`
    /// context variables and the service's `env`.
    pub env: &'a [(String, String)],
    /// Working directory of the command.
    pub cwd: &'a Path,
    /// Hard limit of one command run. Health probes use the spec's
    /// `timeout_ms` instead.
    pub timeout: Duration,
    /// Where output and results are written.
    pub log: &'a DeploymentLog,
    /// Becomes `true` when the deployment is cancelled.
    pub cancel: Option<&'a watch::Receiver<bool>>,
    /// Counts the command (and all it starts) as the deployment's own (see
    /// [`ProcessTracker`]); health commands run with these options too.
    pub tracker: Option<&'a ProcessTracker>,
}

impl<'a> RunOptions<'a> {
    /// Options with no extra environment, a 60 s timeout and no cancellation.
    pub fn new(label: &'a str, cwd: &'a Path, log: &'a DeploymentLog) -> Self {
        RunOptions {
            label,
            env: &[],
            cwd,
            timeout: Duration::from_secs(60),
            log,
            cancel: None,
            tracker: None,
        }
    }

    /// True when cancellation has already been requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when cancellation is requested; never, if there is no
    /// receiver or its sender is gone without cancelling.
    pub(crate) async fn cancelled(&self) {
        if let Some(rx) = self.cancel {
            let mut rx = rx.clone();
            if rx.wait_for(|stop| *stop).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Why a command or health check could not even be attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The spec is unusable (empty argv, no or several health check kinds, a
    /// malformed URL or address).
    #[error("{label}: invalid {what}: {reason}")]
    Invalid {
        label: String,
        /// `command` or `health check`.
        what: &'static str,
        reason: String,
    },
    /// The program could not be started (not found, not executable, the
    /// working directory does not exist, …).
    #[error("{label}: cannot start `{command}` in {cwd}: {source}")]
    Spawn {
        label: String,
        command: String,
        cwd: String,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for a started process failed (should not happen).
    #[error("{label}: lost track of `{command}`: {source}")]
    Wait {
        label: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// True for mistakes in the configuration (exit code 2) rather than
    /// failures of the deployment itself.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ExecError::Invalid { .. } => true,
            ExecError::Spawn { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            ExecError::Wait { .. } => false,
        }
    }
}

/// `30 s`, `1.5 s`, `200 ms`: how durations appear in messages.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_millis(200)), "200 ms");
    }

    #[tokio::test]
    async fn cancellation_follows_the_watch_channel() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let (tx, rx) = watch::channel(false);
        let mut opts = RunOptions::new("t", tmp.path(), &log);
        assert!(!opts.is_cancelled());
        opts.cancel = Some(&rx);
        assert!(!opts.is_cancelled());
        tx.send_replace(true);
        assert!(opts.is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), opts.cancelled())
            .await
            .unwrap();
    }
}
