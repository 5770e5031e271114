//! The deployment history: deployments, their decision logs and metric
//! samples, the audit log, opaque blobs (the ML model), the aggregates the
//! learning reads, and the locks that keep two runs from deploying the same
//! services at once.
//!
//! # Two backends, one interface
//!
//! [`HistoryStore`] is what the engine talks to: an async facade over
//! - the embedded [`History`] (redb, one file in the state directory:
//!   `deployment_data/deployment_history.db`; the default), and
//! - [`PgHistory`] (PostgreSQL, shared by every runner that names the same
//!   `history.url` / `ADEPLOY_HISTORY_URL`).
//!
//! Both implement [`HistoryBackend`], so the compiler holds them to the
//! same surface, and the history tests run against both. The interface is
//! async because the engine runs on tokio and the PostgreSQL client is
//! async: a blocking facade over it would have to block inside the runtime,
//! which deadlocks a current-thread runtime and panics in `block_on`. The
//! redb side stays synchronous inside (an operation takes milliseconds) and
//! runs through [`tokio::task::block_in_place`] on a multi-threaded runtime.
//!
//! # Why every redb operation opens the database
//!
//! redb (in its default mode) lets one handle at a time have the file open,
//! and a second process gets "database already open". adeploy needs
//! `adeploy list` and `adeploy report` to work while a deployment is writing,
//! so no process keeps the database open: [`History`] holds only the path, and
//! each public method opens the file, runs one transaction and closes it,
//! which takes milliseconds. An open that finds the file busy retries with a
//! short backoff for up to [`DEFAULT_OPEN_TIMEOUT`] (see
//! [`History::with_open_timeout`]) and then fails with
//! [`HistoryError::Locked`] naming the file. Reads open read-only, so readers
//! do not wait for each other, only for a writer.
//!
//! # Locks
//!
//! With redb, [`RunLock`] is held for a whole run on
//! `deployment_data/run.lock` with an OS file lock, so one deployment writes a
//! state directory at a time and a second run waits (or fails with
//! [`HistoryError::Busy`], naming the holder). The OS drops the lock when
//! its process dies, so a `running` record that nobody's lock covers was cut
//! off by a crash: [`History::recover_interrupted`] marks such records
//! `interrupted`. With PostgreSQL, [`HistoryStore::lock_deployment`] takes
//! one advisory lock per (environment, service), so overlapping deployments
//! serialise across machines and disjoint ones run at once; a bounded wait
//! ends in [`HistoryError::DeploymentBusy`] naming the holder (see
//! `locking.rs` and `postgres/lock.rs`). Retraining takes
//! [`HistoryStore::try_lock_retrain`]: one runner retrains, the others read
//! the newest model blob.
//!
//! # Storage, and what is never done to user data
//!
//! Records are serde structs stored as compressed JSON (`codec.rs`), so a
//! field can be added without a migration (older binaries ignore it, newer
//! ones default it); decisions and samples are stored in chunks, one per
//! append. Schema changes that cannot be made that way are versioned: a
//! `meta` table in redb, `adeploy_schema_version` in PostgreSQL; a newer
//! version is refused ([`HistoryError::Incompatible`],
//! [`HistoryError::NewerSchema`]) and never touched. A redb file that is not
//! an adeploy history gives [`HistoryError::Corrupt`] and is never
//! overwritten or deleted. A single record that no longer decodes is
//! reported with a `tracing` warning naming its key and skipped by listings.
//! Metric samples of deployments older than `history.retention` are
//! downsampled by [`HistoryStore::downsample`].
//!
//! # Faults (PostgreSQL)
//!
//! The database unreachable at start: [`HistoryError::Unreachable`] naming
//! the URL with its password redacted. Lost during a run: writes go to the
//! local journal in the state directory (`journal.rs`) and are replayed,
//! idempotently, on the next connection or by [`HistoryStore::sync`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), adeploy::history::HistoryError> {
//! use std::path::Path;
//! use std::time::Duration;
//! use adeploy::config::HistoryConfig;
//! use adeploy::history::{
//!     DeploymentRecord, DeploymentStatus, HistoryBackend, HistoryStore, LockRequest,
//! };
//!
//! let state_dir = Path::new("/var/lib/adeploy");
//! let store = HistoryStore::open(&HistoryConfig::default(), state_dir).await?;
//! let request = LockRequest {
//!     environment: "staging".into(),
//!     services: vec!["api".into()],
//!     deployment_id: "deploy_20250101_120000".into(),
//! };
//! let lock = store
//!     .lock_deployment(&request, Duration::from_secs(30), &mut |wait| eprintln!("{wait}"))
//!     .await?;
//! for id in store.recover_interrupted(&lock).await? {
//!     eprintln!("deployment {id} was interrupted");
//! }
//! let mut record = DeploymentRecord::running("deploy_20250101_120000", chrono::Utc::now());
//! store.put_deployment(&record).await?;
//! record.finish(DeploymentStatus::Succeeded, chrono::Utc::now());
//! store.put_deployment(&record).await?;
//! lock.release().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod aggregate;
mod codec;
mod embedded;
mod error;
mod journal;
mod lock;
mod locking;
mod migrate;
mod postgres;
mod records;
mod store;
#[cfg(test)]
mod tests;
mod transfer;
mod user;

pub use aggregate::{Aggregates, HistoryWindow, ServiceStats, StrategyStats};
pub use embedded::{History, decode_deployment};
pub use error::{BoxedSource, HistoryError};
pub use journal::JOURNAL_FILE;
pub use lock::{LOCK_FILE, RETRAIN_LOCK_FILE, RunLock};
pub use locking::{DeploymentLock, LockHolder, LockRequest, LockWait, RetrainLock};
pub use postgres::{PG_SCHEMA_VERSION, PgHistory};
pub use records::{
    AuditEntry, ContainerRef, ContainerStep, DecisionRecord, DeploymentRecord, DeploymentStatus,
    FeatureContext, HistoryStats, MetricSample, PhaseKind, PhaseStatus, ProbeMark, StepPhase,
    StepRecord, StepStatus, step_label, steps_of_any_version,
};
pub use store::SCHEMA_VERSION;
pub use transfer::{EXPORT_FORMAT, EXPORT_VERSION, TransferSummary};
pub use user::current_user;

use codec::ChunkKind;
use locking::{LockInner, RetrainInner};
use transfer::ExportSink;

use crate::config::HistoryConfig;

/// Directory under the state directory that holds the database and the run lock.
pub const DATA_DIR: &str = "deployment_data";
/// File name of the database inside [`DATA_DIR`].
pub const DB_FILE: &str = "deployment_history.db";
/// How long an operation waits for another process to close the database.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `<state_dir>/deployment_data`.
pub fn data_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DATA_DIR)
}

/// `<state_dir>/deployment_data/deployment_history.db`.
pub fn database_path(state_dir: &Path) -> PathBuf {
    data_dir(state_dir).join(DB_FILE)
}

/// Reads JSON Lines written by an export without storing anything: what
/// an import would store, or the first bad line it would stop at (an import
/// stores in batches, so checking first keeps a bad file from being half
/// imported).
pub async fn check_import(
    input: &mut (dyn BufRead + Send),
    name: &str,
) -> Result<TransferSummary, HistoryError> {
    transfer::import_lines(input, name, |_items| async { Ok(()) }).await
}

/// Writes waiting in the local journal of `state_dir` for a PostgreSQL
/// history to come back (0 without a journal).
pub fn journal_pending(state_dir: &Path) -> usize {
    journal::Journal::new(state_dir).pending_items()
}

/// One deployment with its decision log and metric samples: what
/// `adeploy report ID` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentDetail {
    /// The deployment.
    pub record: DeploymentRecord,
    /// Its decision log, in append order.
    pub decisions: Vec<DecisionRecord>,
    /// Its metric samples, oldest first.
    pub samples: Vec<MetricSample>,
}

/// Where a history lives, for `model status`, `diagnostics` and messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryLocation {
    /// The embedded redb file.
    Redb {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// Writes waiting in the local journal for the database to come back.
        journal_pending: usize,
    },
}

impl fmt::Display for HistoryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryLocation::Redb { path } => write!(f, "redb {}", path.display()),
            HistoryLocation::Postgres {
                url,
                journal_pending,
            } => {
                write!(f, "PostgreSQL {url}")?;
                if *journal_pending > 0 {
                    write!(
                        f,
                        " ({journal_pending} write(s) waiting in the local journal)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// What a replay of the journal did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Items stored from the journal.
    pub replayed: usize,
    /// Items still waiting (the database went away again).
    pub pending: usize,
}

/// The operations every history backend provides. [`HistoryStore`] is the
/// usual way to call them; the trait makes the two backends answer to one
/// surface (and lets the tests run the same cases on both).
pub trait HistoryBackend: Send + Sync {
    /// Where this history lives.
    fn location(&self) -> HistoryLocation;
    /// Inserts a deployment, or replaces the one with the same id.
    fn put_deployment(
        &self,
        record: &DeploymentRecord,
    ) -> impl Future<Output = Result<(), HistoryError>> + Send;
    /// The deployment with this id, if any (undecodable: an error).
    fn get_deployment(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeploymentRecord>, HistoryError>> + Send;
    /// A deployment with its decisions and samples.
    fn detail(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeploymentDetail>, HistoryError>> + Send;
    /// Up to `limit` deployments, newest first.
    fn list_deployments(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeploymentRecord>, HistoryError>> + Send;
    /// Every finished deployment, oldest first (training data).
    fn all_deployments(
        &self,
    ) -> impl Future<Output = Result<Vec<DeploymentRecord>, HistoryError>> + Send;
    /// The newest `recent` deployments and the aggregates.
    fn window(
        &self,
        recent: usize,
    ) -> impl Future<Output = Result<HistoryWindow, HistoryError>> + Send;
    /// Appends to a deployment's decision log.
    fn append_decisions(
        &self,
        deployment_id: &str,
        decisions: &[DecisionRecord],
    ) -> impl Future<Output = Result<(), HistoryError>> + Send;
    /// A deployment's decision log, in append order.
    fn decisions(
        &self,
        deployment_id: &str,
    ) -> impl Future<Output = Result<Vec<DecisionRecord>, HistoryError>> + Send;
    /// Stores metric samples of a deployment.
    fn append_samples(
        &self,
        deployment_id: &str,
        samples: &[MetricSample],
    ) -> impl Future<Output = Result<(), HistoryError>> + Send;
    /// A deployment's metric samples, oldest first.
    fn samples(
        &self,
        deployment_id: &str,
    ) -> impl Future<Output = Result<Vec<MetricSample>, HistoryError>> + Send;
    /// Appends one entry to the audit log.
    fn append_audit(
        &self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<(), HistoryError>> + Send;
    /// Up to `limit` audit entries, newest first.
    fn audit(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, HistoryError>> + Send;
    /// Stores (or replaces) a blob.
    fn put_blob(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), HistoryError>> + Send;
    /// The blob stored under `name`.
    fn get_blob(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, HistoryError>> + Send;
    /// Deletes a blob; whether there was one.
    fn delete_blob(&self, name: &str) -> impl Future<Output = Result<bool, HistoryError>> + Send;
    /// Size and contents at a glance.
    fn stats(&self) -> impl Future<Output = Result<HistoryStats, HistoryError>> + Send;
    /// Downsamples the samples of deployments started before `before`.
    fn downsample(
        &self,
        before: DateTime<Utc>,
        keep: usize,
    ) -> impl Future<Output = Result<usize, HistoryError>> + Send;
    /// Takes the deployment lock of `request` (see the module docs).
    fn lock_deployment(
        &self,
        request: &LockRequest,
        wait: Duration,
        on_wait: &mut (dyn FnMut(&LockWait) + Send),
    ) -> impl Future<Output = Result<DeploymentLock, HistoryError>> + Send;
    /// Marks `running` deployments whose runner is gone `interrupted`,
    /// holding `lock`.
    fn recover_interrupted(
        &self,
        lock: &DeploymentLock,
    ) -> impl Future<Output = Result<Vec<String>, HistoryError>> + Send;
    /// Marks abandoned `running` deployments `interrupted` without holding a
    /// lock (for `list`): only those provably abandoned.
    fn recover_abandoned(&self) -> impl Future<Output = Result<Vec<String>, HistoryError>> + Send;
    /// Takes the retraining lock without waiting.
    fn try_lock_retrain(
        &self,
    ) -> impl Future<Output = Result<Option<RetrainLock>, HistoryError>> + Send;
    /// Replays the local journal now.
    fn sync(&self) -> impl Future<Output = Result<SyncReport, HistoryError>> + Send;
    /// Writes every record as JSON Lines.
    fn export(
        &self,
        out: &mut (dyn Write + Send),
        name: &str,
    ) -> impl Future<Output = Result<TransferSummary, HistoryError>> + Send;
    /// Reads JSON Lines written by `export` (idempotent).
    fn import(
        &self,
        input: &mut (dyn BufRead + Send),
        name: &str,
    ) -> impl Future<Output = Result<TransferSummary, HistoryError>> + Send;
}

/// The history the engine uses: the embedded redb file or PostgreSQL,
/// chosen by the `history:` settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HistoryStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Redb(Local),
    Postgres(Arc<PgHistory>),
}

/// The redb backend as a [`HistoryBackend`]: the blocking [`History`] plus
/// its state directory (for its locks).
#[derive(Debug, Clone)]
struct Local {
    history: History,
    state_dir: PathBuf,
}

impl HistoryStore {
    /// Opens the history `settings` name for `state_dir`: PostgreSQL when a
    /// URL is set (`ADEPLOY_HISTORY_URL` wins over `history.url`), else the
    /// redb file in the state directory.
    pub async fn open(
        settings: &HistoryConfig,
        state_dir: &Path,
    ) -> Result<HistoryStore, HistoryError> {
        match settings.effective_url() {
            Some(url) => {
                let pg = PgHistory::connect(&url, settings.password.as_ref(), state_dir).await?;
                Ok(HistoryStore::postgres(pg))
            }
            None => HistoryStore::open_local(state_dir).await,
        }
    }

    /// The redb history of `state_dir`.
    pub async fn open_local(state_dir: &Path) -> Result<HistoryStore, HistoryError> {
        let history = blocking(|| History::open(state_dir))?;
        Ok(HistoryStore::local(history, state_dir))
    }

    /// Wraps an open redb history of `state_dir`.
    pub fn local(history: History, state_dir: &Path) -> HistoryStore {
        HistoryStore {
            backend: Backend::Redb(Local {
                history,
                state_dir: state_dir.to_path_buf(),
            }),
        }
    }

    /// Wraps a connected PostgreSQL history.
    pub fn postgres(history: PgHistory) -> HistoryStore {
        HistoryStore {
            backend: Backend::Postgres(Arc::new(history)),
        }
    }

    /// The redb history, when that is the backend.
    pub fn as_local(&self) -> Option<&History> {
        match &self.backend {
            Backend::Redb(local) => Some(&local.history),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL history, when that is the backend.
    pub fn as_postgres(&self) -> Option<&PgHistory> {
        match &self.backend {
            Backend::Redb(_) => None,
            Backend::Postgres(pg) => Some(pg),
        }
    }

    /// The aggregates over the whole history.
    pub async fn aggregates(&self) -> Result<Aggregates, HistoryError> {
        match &self.backend {
            Backend::Redb(l) => blocking(|| l.history.aggregates()),
            Backend::Postgres(pg) => pg.aggregates().await,
        }
    }

    /// Copies every record of this history into `target` (export → import
    /// without a file): `adeploy state migrate --to URL`.
    pub async fn migrate_to(&self, target: &HistoryStore) -> Result<TransferSummary, HistoryError> {
        let mut buffer = Vec::new();
        self.export(&mut buffer, "migration").await?;
        let mut input = std::io::Cursor::new(buffer);
        target.import(&mut input, "migration").await
    }
}

macro_rules! dispatch {
    ($self:ident, $local:ident => $on_local:expr, $pg:ident => $on_pg:expr) => {
        match &$self.backend {
            Backend::Redb($local) => $on_local,
            Backend::Postgres($pg) => $on_pg,
        }
    };
}

impl HistoryBackend for HistoryStore {
    fn location(&self) -> HistoryLocation {
        dispatch!(self,
            l => HistoryLocation::Redb { path: l.history.path().to_path_buf() },
            pg => HistoryLocation::Postgres { url: pg.url().to_string(), journal_pending: pg.journal_pending() })
    }

    async fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        dispatch!(self, l => blocking(|| l.history.put_deployment(record)), pg => pg.put_deployment(record).await)
    }

    async fn get_deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.get_deployment(id)), pg => pg.get_deployment(id).await)
    }

    async fn detail(&self, id: &str) -> Result<Option<DeploymentDetail>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.detail(id)), pg => pg.detail(id).await)
    }

    async fn list_deployments(&self, limit: usize) -> Result<Vec<DeploymentRecord>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.list_deployments(limit)), pg => pg.list_deployments(limit).await)
    }

    async fn all_deployments(&self) -> Result<Vec<DeploymentRecord>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.all_deployments()), pg => pg.all_deployments().await)
    }

    async fn window(&self, recent: usize) -> Result<HistoryWindow, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.window(recent)), pg => pg.window(recent).await)
    }

    async fn append_decisions(
        &self,
        deployment_id: &str,
        decisions: &[DecisionRecord],
    ) -> Result<(), HistoryError> {
        dispatch!(self,
            l => blocking(|| l.history.append_decisions(deployment_id, decisions)),
            pg => pg.append_series(deployment_id, ChunkKind::Decisions, decisions).await)
    }

    async fn decisions(&self, deployment_id: &str) -> Result<Vec<DecisionRecord>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.decisions(deployment_id)), pg => pg.decisions(deployment_id).await)
    }

    async fn append_samples(
        &self,
        deployment_id: &str,
        samples: &[MetricSample],
    ) -> Result<(), HistoryError> {
        dispatch!(self,
            l => blocking(|| l.history.append_samples(deployment_id, samples)),
            pg => pg.append_series(deployment_id, ChunkKind::Samples, samples).await)
    }

    async fn samples(&self, deployment_id: &str) -> Result<Vec<MetricSample>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.samples(deployment_id)), pg => pg.samples(deployment_id).await)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), HistoryError> {
        dispatch!(self, l => blocking(|| l.history.append_audit(entry)), pg => pg.append_audit(entry).await)
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.audit(limit)), pg => pg.audit(limit).await)
    }

    async fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        dispatch!(self, l => blocking(|| l.history.put_blob(name, bytes)), pg => pg.put_blob(name, bytes).await)
    }

    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.get_blob(name)), pg => pg.get_blob(name).await)
    }

    async fn delete_blob(&self, name: &str) -> Result<bool, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.delete_blob(name)), pg => pg.delete_blob(name).await)
    }

    async fn stats(&self) -> Result<HistoryStats, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.stats()), pg => pg.stats().await)
    }

    async fn downsample(&self, before: DateTime<Utc>, keep: usize) -> Result<usize, HistoryError> {
        dispatch!(self, l => blocking(|| l.history.downsample(before, keep)), pg => pg.downsample(before, keep).await)
    }

    async fn lock_deployment(
        &self,
        request: &LockRequest,
        wait: Duration,
        on_wait: &mut (dyn FnMut(&LockWait) + Send),
    ) -> Result<DeploymentLock, HistoryError> {
        match &self.backend {
            Backend::Redb(l) => {
                let holder = LockHolder::me(&request.deployment_id);
                let start = std::time::Instant::now();
                let lock = blocking(|| {
                    RunLock::acquire_as(&l.state_dir, wait, Some(&holder), &mut |found| {
                        on_wait(&LockWait {
                            holder: found,
                            services: Vec::new(),
                            waited: start.elapsed(),
                        })
                    })
                })?;
                Ok(DeploymentLock {
                    inner: LockInner::Local(lock),
                    request: request.clone(),
                    holder,
                })
            }
            Backend::Postgres(pg) => pg.lock_deployment(request, wait, on_wait).await,
        }
    }

    async fn recover_interrupted(
        &self,
        lock: &DeploymentLock,
    ) -> Result<Vec<String>, HistoryError> {
        match (&self.backend, &lock.inner) {
            (Backend::Redb(l), LockInner::Local(run)) => {
                blocking(|| l.history.recover_interrupted(run))
            }
            (Backend::Postgres(pg), LockInner::Postgres(session)) => {
                pg.recover_with(session, Some(&lock.request.deployment_id))
                    .await
            }
            _ => Err(HistoryError::Settings {
                url: self.location().to_string(),
                reason: "the lock passed in belongs to another kind of history; take the lock of this history first".to_string(),
            }),
        }
    }

    async fn recover_abandoned(&self) -> Result<Vec<String>, HistoryError> {
        match &self.backend {
            Backend::Redb(l) => blocking(|| match RunLock::acquire(&l.state_dir, Duration::ZERO) {
                Ok(lock) => l.history.recover_interrupted(&lock),
                Err(HistoryError::Busy { .. }) => Ok(Vec::new()),
                Err(err) => Err(err),
            }),
            Backend::Postgres(pg) => pg.recover_abandoned().await,
        }
    }

    async fn try_lock_retrain(&self) -> Result<Option<RetrainLock>, HistoryError> {
        match &self.backend {
            Backend::Redb(l) => Ok(
                lock::try_retrain_lock(&l.state_dir)?.map(|file| RetrainLock {
                    _inner: RetrainInner::Local(file),
                }),
            ),
            Backend::Postgres(pg) => pg.try_lock_retrain().await,
        }
    }

    async fn sync(&self) -> Result<SyncReport, HistoryError> {
        match &self.backend {
            Backend::Redb(_) => Ok(SyncReport::default()),
            Backend::Postgres(pg) => {
                let replayed = pg.sync().await?;
                Ok(SyncReport {
                    replayed,
                    pending: pg.journal_pending(),
                })
            }
        }
    }

    async fn export(
        &self,
        out: &mut (dyn Write + Send),
        name: &str,
    ) -> Result<TransferSummary, HistoryError> {
        let mut sink = ExportSink::new(out, name)?;
        dispatch!(self, l => blocking(|| l.history.export_to(&mut sink))?, pg => pg.export_to(&mut sink).await?);
        sink.finish()
    }

    async fn import(
        &self,
        input: &mut (dyn BufRead + Send),
        name: &str,
    ) -> Result<TransferSummary, HistoryError> {
        transfer::import_lines(input, name, |items| async move {
            dispatch!(self, l => blocking(|| l.history.apply_items(&items)), pg => pg.apply_items(&items).await)
        })
        .await
    }
}

/// Runs a blocking redb operation: through `block_in_place` on a
/// multi-threaded runtime (other tasks move to another worker meanwhile),
/// inline elsewhere (a current-thread runtime, or no runtime).
fn blocking<T>(op: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(op)
        }
        _ => op(),
    }
}

/// Reduces `samples` (in time order) to at most `keep`: the means over
/// `keep` slices of nearly equal length, each stamped with its slice's
/// first timestamp. Non-finite values are left out of the means.
pub(crate) fn downsample(samples: &[MetricSample], keep: usize) -> Vec<MetricSample> {
    let keep = keep.max(1);
    if samples.len() <= keep {
        return samples.to_vec();
    }
    let mean = |values: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = values
            .filter(|v| v.is_finite())
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    (0..keep)
        .map(|i| {
            let slice = &samples[i * samples.len() / keep..(i + 1) * samples.len() / keep];
            MetricSample {
                timestamp: slice[0].timestamp,
                cpu_percent: mean(&mut slice.iter().map(|s| s.cpu_percent)).unwrap_or(f64::NAN),
                memory_percent: mean(&mut slice.iter().map(|s| s.memory_percent))
                    .unwrap_or(f64::NAN),
                disk_percent: mean(&mut slice.iter().map(|s| s.disk_percent)).unwrap_or(f64::NAN),
                load_per_core: mean(&mut slice.iter().map(|s| s.load_per_core)).unwrap_or(f64::NAN),
                network_latency_ms: mean(&mut slice.iter().filter_map(|s| s.network_latency_ms)),
            }
        })
        .collect()
}

/// [`store::decode_or_skip`] for either backend (`path` names the file or URL).
pub(crate) fn store_decode_or_skip<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &dyn fmt::Display,
    bytes: &[u8],
) -> Option<T> {
    store::decode_or_skip(path, key, bytes)
}
