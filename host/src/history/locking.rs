//! The deployment lock and the retraining lock, as the history hands them out.
//!
//! What a lock covers depends on where the history lives:
//! - redb (one state directory): the state directory's [`RunLock`], as
//!   before: one deploying run per state directory, whatever its services.
//! - PostgreSQL (shared by runners): one advisory lock per (environment,
//!   service), so runs whose service sets overlap in one environment
//!   serialise and disjoint ones run at once, on every machine. Advisory
//!   locks belong to the database session: a runner that dies, however it
//!   dies, loses its connection and with it its locks (the session asks the
//!   server for TCP keepalives, so even a machine that vanishes is noticed
//!   within about half a minute). See `postgres/lock.rs`.
//!
//! A lock is released when dropped. [`DeploymentLock::release`] also clears
//! the holder information others see right away.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::RunLock;
use super::postgres::LockSession;

/// What a deployment asks to lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    /// The environment deployed to.
    pub environment: String,
    /// The services deployed.
    pub services: Vec<String>,
    /// The deployment's id (recorded for others' messages, and the key by
    /// which a `running` record is known to be alive).
    pub deployment_id: String,
}

/// Who holds a lock, as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holder's deployment.
    pub deployment_id: String,
    /// The OS user that runs it (see [`current_user`](super::current_user)).
    pub user: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id on that machine.
    pub pid: u32,
    /// When it took the lock.
    pub since: DateTime<Utc>,
}

impl LockHolder {
    /// This process, for `deployment_id`, from now.
    pub fn me(deployment_id: &str) -> LockHolder {
        LockHolder {
            deployment_id: deployment_id.to_string(),
            user: super::current_user(),
            host: hostname(),
            pid: std::process::id(),
            since: Utc::now(),
        }
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deployment {} of {} on {} (pid {}) since {}",
            self.deployment_id,
            self.user,
            self.host,
            self.pid,
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// What a waiting run reports: who it waits for, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockWait {
    /// The holder, when known (the redb run lock of an older adeploy, or a
    /// holder that has not yet written its row, is unknown).
    pub holder: Option<LockHolder>,
    /// The requested services that are held.
    pub services: Vec<String>,
    /// How long this run has waited so far.
    pub waited: Duration,
}

impl fmt::Display for LockWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "waiting for the lock")?;
        if !self.services.is_empty() {
            write!(f, " of {}", self.services.join(", "))?;
        }
        match &self.holder {
            Some(holder) => write!(f, " held by {holder}"),
            None => write!(f, " held by another run"),
        }
    }
}

/// Proof that this run may deploy its services: see the module docs.
#[derive(Debug)]
pub struct DeploymentLock {
    pub(crate) inner: LockInner,
    pub(crate) request: LockRequest,
    pub(crate) holder: LockHolder,
}

#[derive(Debug)]
pub(crate) enum LockInner {
    Local(RunLock),
    Postgres(LockSession),
}

impl DeploymentLock {
    /// What was locked.
    pub fn request(&self) -> &LockRequest {
        &self.request
    }

    /// This run, as others see it while it holds the lock.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The state directory's run lock, for a redb history.
    pub fn run_lock(&self) -> Option<&RunLock> {
        match &self.inner {
            LockInner::Local(lock) => Some(lock),
            LockInner::Postgres(_) => None,
        }
    }

    /// Whether the lock is still held. A PostgreSQL lock is lost with its
    /// database session (a network failure); the deployment goes on (it
    /// must not abandon a half-rolled-out fleet), but others may now start.
    pub fn is_held(&self) -> bool {
        match &self.inner {
            LockInner::Local(_) => true,
            LockInner::Postgres(session) => session.is_alive(),
        }
    }

    /// Releases the lock and clears the holder information right away
    /// (dropping it releases it too; others then see a stale holder row,
    /// which they ignore because its session holds nothing).
    pub async fn release(self) {
        match self.inner {
            LockInner::Local(lock) => drop(lock),
            LockInner::Postgres(session) => session.release().await,
        }
    }
}

/// Proof that this process is the one retraining the model; others use the
/// newest stored model meanwhile. Released when dropped.
#[derive(Debug)]
pub struct RetrainLock {
    pub(crate) _inner: RetrainInner,
}

#[derive(Debug)]
pub(crate) enum RetrainInner {
    Local(#[allow(dead_code)] std::fs::File),
    Postgres(#[allow(dead_code)] LockSession),
}

/// This machine's name, for lock holders.
pub(crate) fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown-host".to_string())
}
