//! The deployment history: deployments, their decision logs and metric
//! samples, the audit log, and opaque blobs (the ML model), in one redb
//! database at `<state_dir>/deployment_data/deployment_history.db`.
//!
//! # Why every operation opens the database
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
//! do not wait for each other, only for a writer. (redb 4.3+ also has
//! multi-process modes built on byte-range locks; open-per-transaction keeps
//! the default whole-file mode, which works on every platform, and lets every
//! open repair a file a crash left behind.)
//!
//! # Why a separate run lock
//!
//! Because the database is closed between transactions, it cannot tell that a
//! deployment is in progress. [`RunLock`] is held for a whole run on
//! `deployment_data/run.lock` with an OS file lock, so one deployment writes a
//! state directory at a time and a second run waits (or fails with
//! [`HistoryError::Busy`], naming the holder's pid). The OS drops the lock when
//! its process dies, so a `running` record that nobody's lock covers was cut
//! off by a crash: [`History::recover_interrupted`] marks such records
//! `interrupted`, and [`History::is_writer_active`] lets read-only commands
//! tell the two cases apart without waiting.
//!
//! # Why JSON values, and what is never done to user data
//!
//! Records are serde structs stored as JSON, so a field can be added without a
//! migration (older binaries ignore it, newer ones default it). A `meta` table
//! carries a schema version for the changes that cannot be made that way; a
//! newer version gives [`HistoryError::Incompatible`]. A file that is not an
//! adeploy history (not redb, damaged, another program's redb file) gives
//! [`HistoryError::Corrupt`]. Neither is ever overwritten or deleted: the user
//! is told to move the file aside. A single record that no longer decodes is
//! reported with a `tracing` warning naming its key and skipped by listings.
//!
//! ```no_run
//! # fn demo() -> Result<(), adeploy::history::HistoryError> {
//! use std::path::Path;
//! use std::time::Duration;
//! use adeploy::history::{DeploymentRecord, DeploymentStatus, History, RunLock};
//!
//! let state_dir = Path::new("/var/lib/adeploy");
//! let lock = RunLock::acquire(state_dir, Duration::from_secs(30))?;
//! let history = History::open(state_dir)?;
//! for id in history.recover_interrupted(&lock)? {
//!     eprintln!("deployment {id} was interrupted by a crash");
//! }
//! let mut record = DeploymentRecord::running("deploy_20250101_120000", chrono::Utc::now());
//! history.put_deployment(&record)?;
//! record.finish(DeploymentStatus::Succeeded, chrono::Utc::now());
//! history.put_deployment(&record)?;
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{ReadOnlyTable, ReadableTable, ReadableTableMetadata};
use serde::Deserialize;

mod error;
mod lock;
mod records;
mod store;
#[cfg(test)]
mod tests;
mod user;

pub use error::{BoxedSource, HistoryError};
pub use lock::{LOCK_FILE, RunLock};
pub use records::{
    AuditEntry, DecisionRecord, DeploymentRecord, DeploymentStatus, FeatureContext, HistoryStats,
    MetricSample, StepRecord, StepStatus, step_label, steps_of_any_version,
};
pub use store::SCHEMA_VERSION;
pub use user::current_user;

use store::{
    AUDIT, BLOBS, DECISIONS, DEPLOYMENTS, DEPLOYMENTS_BY_START, Failure, SAMPLES, Store, decode,
    decode_or_skip, encode, read_table,
};

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

/// The deployment history of one state directory.
///
/// Cheap to clone and holds no open file: every method opens the database,
/// runs one transaction and closes it (see the module docs for why).
///
/// Methods block (on disk I/O, and while another process has the file open,
/// for up to the open timeout); async callers should use
/// `tokio::task::spawn_blocking`.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    open_timeout: Duration,
}

impl History {
    /// Opens the history of `state_dir`, creating the directories and the
    /// database if missing, and checks (or initialises) the schema version.
    /// Waits up to [`DEFAULT_OPEN_TIMEOUT`] for another process to close it.
    pub fn open(state_dir: &Path) -> Result<History, HistoryError> {
        History::open_with_timeout(state_dir, DEFAULT_OPEN_TIMEOUT)
    }

    /// [`History::open`] with another open timeout, which also applies to
    /// every later operation.
    pub fn open_with_timeout(state_dir: &Path, timeout: Duration) -> Result<History, HistoryError> {
        let dir = data_dir(state_dir);
        crate::fs::ensure_state_dir(state_dir)
            .and_then(|_| crate::fs::private_dir(&dir))
            .map_err(|source| HistoryError::Io {
                path: dir,
                action: "create the state directory",
                source,
            })?;
        // The database is created 0600 here (redb initialises an empty file):
        // it holds every deployment's decisions and the audit log.
        let path = database_path(state_dir);
        crate::fs::ensure_private_file(&path).map_err(|source| HistoryError::Io {
            path: path.clone(),
            action: "create the history database",
            source,
        })?;
        let history = History {
            path,
            open_timeout: timeout,
        };
        // Probe read-only first, so that a foreign or newer file is refused
        // without being opened for writing (only a file a crash left unclean
        // is opened writable, for redb to repair it). Only a new, empty
        // database gets a write transaction, which initialises the schema.
        let initialised = history
            .store()
            .read(|txn| Ok(read_table(txn, store::META)?.is_some()))?;
        if !initialised {
            history.store().write(|_| Ok(()))?;
        }
        Ok(history)
    }

    /// Sets how long each operation waits for another process to close the
    /// database before failing with [`HistoryError::Locked`].
    #[must_use]
    pub fn with_open_timeout(mut self, timeout: Duration) -> History {
        self.open_timeout = timeout;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some process holds the run lock of `state_dir` right now
    /// (without waiting). Read-only commands use it to show a `running`
    /// deployment as running, or as interrupted when nobody holds the lock.
    pub fn is_writer_active(state_dir: &Path) -> bool {
        lock::writer_active(state_dir)
    }

    /// Inserts a deployment, or replaces the one with the same id.
    pub fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let id = record.id.as_str();
        let bytes = encode(&self.path, || deployment_key(id), record)?;
        self.store().write(|txn| {
            let mut deployments = txn.open_table(DEPLOYMENTS)?;
            let mut by_start = txn.open_table(DEPLOYMENTS_BY_START)?;
            let previous = deployments.get(id)?.map(|v| v.value().to_vec());
            if let Some(previous) = previous {
                match serde_json::from_slice::<StartedAt>(&previous) {
                    Ok(old) => {
                        by_start.remove((old.started_at.timestamp_millis(), id))?;
                    }
                    // Its index entry cannot be computed: find it by id.
                    Err(_) => by_start.retain(|(_, indexed), ()| indexed != id)?,
                }
            }
            deployments.insert(id, bytes.as_slice())?;
            by_start.insert((record.started_at.timestamp_millis(), id), ())?;
            Ok(())
        })
    }

    /// The deployment with this id, if any. A stored record that no longer
    /// decodes is an error ([`HistoryError::Undecodable`]), not `None`.
    pub fn get_deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, HistoryError> {
        let bytes = self.store().read(|txn| {
            let Some(table) = read_table(txn, DEPLOYMENTS)? else {
                return Ok(None);
            };
            Ok(table.get(id)?.map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|bytes| decode(&self.path, || deployment_key(id), &bytes))
            .transpose()
    }

    /// Up to `limit` deployments, most recently started first.
    pub fn list_deployments(&self, limit: usize) -> Result<Vec<DeploymentRecord>, HistoryError> {
        self.deployments_in_start_order(Order::NewestFirst, limit, |_| true)
    }

    /// Every finished deployment (status other than `running`), oldest first:
    /// the training data of the ML module.
    pub fn all_deployments(&self) -> Result<Vec<DeploymentRecord>, HistoryError> {
        self.deployments_in_start_order(Order::OldestFirst, usize::MAX, |record| {
            record.status.is_finished()
        })
    }

    /// Appends to a deployment's decision log, numbered after the entries
    /// already there.
    pub fn append_decisions(
        &self,
        deployment_id: &str,
        decisions: &[DecisionRecord],
    ) -> Result<(), HistoryError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let encoded = decisions
            .iter()
            .map(|d| encode(&self.path, || format!("decisions/{deployment_id}"), d))
            .collect::<Result<Vec<_>, _>>()?;
        self.store().write(|txn| {
            let mut table = txn.open_table(DECISIONS)?;
            let mut seq = {
                let mut existing = table.range((deployment_id, 0)..=(deployment_id, u64::MAX))?;
                match existing.next_back() {
                    Some(entry) => next_number(entry?.0.value().1, &self.path)?,
                    None => 0,
                }
            };
            for bytes in &encoded {
                table.insert((deployment_id, seq), bytes.as_slice())?;
                seq = next_number(seq, &self.path)?;
            }
            Ok(())
        })
    }

    /// A deployment's decision log, in append order (undecodable entries skipped).
    pub fn decisions(&self, deployment_id: &str) -> Result<Vec<DecisionRecord>, HistoryError> {
        self.store().read(|txn| {
            let Some(table) = read_table(txn, DECISIONS)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for entry in table.range((deployment_id, 0)..=(deployment_id, u64::MAX))? {
                let (key, value) = entry?;
                let (_, seq) = key.value();
                let name = format!("decisions/{deployment_id}#{seq}");
                out.extend(decode_or_skip(&self.path, &name, value.value()));
            }
            Ok(out)
        })
    }

    /// Stores metric samples of a deployment. Samples with the same
    /// millisecond are all kept.
    pub fn append_samples(
        &self,
        deployment_id: &str,
        samples: &[MetricSample],
    ) -> Result<(), HistoryError> {
        if samples.is_empty() {
            return Ok(());
        }
        let encoded = samples
            .iter()
            .map(|s| {
                let bytes = encode(&self.path, || format!("metric_samples/{deployment_id}"), s)?;
                Ok((s.timestamp.timestamp_millis(), bytes))
            })
            .collect::<Result<Vec<_>, HistoryError>>()?;
        self.store().write(|txn| {
            let mut table = txn.open_table(SAMPLES)?;
            for (ms, bytes) in &encoded {
                let n = {
                    let mut same_ms =
                        table.range((deployment_id, *ms, 0)..=(deployment_id, *ms, u64::MAX))?;
                    match same_ms.next_back() {
                        Some(entry) => next_number(entry?.0.value().2, &self.path)?,
                        None => 0,
                    }
                };
                table.insert((deployment_id, *ms, n), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// A deployment's metric samples, oldest first (undecodable ones skipped).
    pub fn samples(&self, deployment_id: &str) -> Result<Vec<MetricSample>, HistoryError> {
        self.store().read(|txn| {
            let Some(table) = read_table(txn, SAMPLES)? else {
                return Ok(Vec::new());
            };
            let range = (deployment_id, i64::MIN, 0)..=(deployment_id, i64::MAX, u64::MAX);
            let mut out = Vec::new();
            for entry in table.range(range)? {
                let (key, value) = entry?;
                let (_, ms, n) = key.value();
                let name = format!("metric_samples/{deployment_id}@{ms}#{n}");
                out.extend(decode_or_skip(&self.path, &name, value.value()));
            }
            Ok(out)
        })
    }

    /// Appends one entry to the audit log.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), HistoryError> {
        let ms = entry.timestamp.timestamp_millis();
        let bytes = encode(&self.path, || format!("audit_log/{ms}"), entry)?;
        self.store().write(|txn| {
            let mut table = txn.open_table(AUDIT)?;
            let n = {
                let mut same_ms = table.range((ms, 0)..=(ms, u64::MAX))?;
                match same_ms.next_back() {
                    Some(entry) => next_number(entry?.0.value().1, &self.path)?,
                    None => 0,
                }
            };
            table.insert((ms, n), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Up to `limit` audit entries, newest first (undecodable ones skipped).
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, HistoryError> {
        self.store().read(|txn| {
            let Some(table) = read_table(txn, AUDIT)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for entry in table.iter()?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry?;
                let (ms, n) = key.value();
                let name = format!("audit_log/{ms}#{n}");
                out.extend(decode_or_skip(&self.path, &name, value.value()));
            }
            Ok(out)
        })
    }

    /// Size and contents at a glance, for `adeploy diagnostics`.
    pub fn stats(&self) -> Result<HistoryStats, HistoryError> {
        let (deployments, last) = self.store().read(|txn| {
            let (Some(by_start), Some(records)) = (
                read_table(txn, DEPLOYMENTS_BY_START)?,
                read_table(txn, DEPLOYMENTS)?,
            ) else {
                return Ok((0, None));
            };
            let mut last = None;
            for entry in by_start.iter()?.rev() {
                let key = entry?.0;
                let (_, id) = key.value();
                if let Some(record) = load_deployment(&records, id, &self.path)? {
                    last = Some(record);
                    break;
                }
            }
            Ok((records.len()?, last))
        })?;
        let db_bytes = fs::metadata(&self.path)
            .map_err(|source| HistoryError::Io {
                path: self.path.clone(),
                action: "read the size of the history database",
                source,
            })?
            .len();
        Ok(HistoryStats {
            deployments,
            last,
            db_bytes,
            path: self.path.clone(),
        })
    }

    /// Marks every `running` deployment `interrupted` (finished now, with a
    /// note in its summary) and returns their ids.
    ///
    /// Requires the run lock of this state directory: holding it proves that
    /// no live process is writing those deployments, so they were cut off by a
    /// crash. Call it right after acquiring the lock, before recording a new
    /// `running` deployment.
    pub fn recover_interrupted(&self, lock: &RunLock) -> Result<Vec<String>, HistoryError> {
        self.check_lock(lock)?;
        let now = Utc::now();
        let me = std::process::id();
        self.store().write(|txn| {
            let mut table = txn.open_table(DEPLOYMENTS)?;
            let mut cut_off = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let id = key.value();
                let Some(record) =
                    decode_or_skip::<DeploymentRecord>(&self.path, &deployment_key(id), value.value())
                else {
                    continue;
                };
                if record.status == DeploymentStatus::Running {
                    cut_off.push((id.to_owned(), record));
                }
            }
            let mut ids = Vec::with_capacity(cut_off.len());
            for (id, mut record) in cut_off {
                let note = format!(
                    "interrupted: the adeploy run (pid {}) stopped before the deployment finished; found by pid {me}",
                    record.pid
                );
                record.summary = Some(match record.summary.take() {
                    Some(summary) if !summary.is_empty() => format!("{summary}; {note}"),
                    _ => note,
                });
                record.status = DeploymentStatus::Interrupted;
                record.finished_at = Some(now);
                let bytes = encode(&self.path, || deployment_key(&id), &record)?;
                table.insert(id.as_str(), bytes.as_slice())?;
                tracing::warn!(deployment_id = %id, pid = record.pid, "marked a deployment cut off by a crash as interrupted");
                ids.push(id);
            }
            Ok(ids)
        })
    }

    /// Stores (or replaces) an opaque blob under `name`.
    pub fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        self.store().write(|txn| {
            txn.open_table(BLOBS)?.insert(name, bytes)?;
            Ok(())
        })
    }

    /// The blob stored under `name`, if any.
    pub fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        self.store().read(|txn| {
            let Some(table) = read_table(txn, BLOBS)? else {
                return Ok(None);
            };
            Ok(table.get(name)?.map(|v| v.value().to_vec()))
        })
    }

    /// Deletes the blob stored under `name`; returns whether there was one.
    pub fn delete_blob(&self, name: &str) -> Result<bool, HistoryError> {
        self.store()
            .write(|txn| Ok(txn.open_table(BLOBS)?.remove(name)?.is_some()))
    }

    fn store(&self) -> Store<'_> {
        Store {
            path: &self.path,
            timeout: self.open_timeout,
        }
    }

    fn deployments_in_start_order(
        &self,
        order: Order,
        limit: usize,
        keep: impl Fn(&DeploymentRecord) -> bool,
    ) -> Result<Vec<DeploymentRecord>, HistoryError> {
        self.store().read(|txn| {
            let (Some(by_start), Some(records)) = (
                read_table(txn, DEPLOYMENTS_BY_START)?,
                read_table(txn, DEPLOYMENTS)?,
            ) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            let mut entries = by_start.iter()?;
            while out.len() < limit {
                let entry = match order {
                    Order::NewestFirst => entries.next_back(),
                    Order::OldestFirst => entries.next(),
                };
                let Some(entry) = entry else { break };
                let key = entry?.0;
                let (_, id) = key.value();
                if let Some(record) = load_deployment(&records, id, &self.path)?
                    && keep(&record)
                {
                    out.push(record);
                }
            }
            Ok(out)
        })
    }

    /// Holding *a* run lock is not enough: it must guard this database.
    fn check_lock(&self, lock: &RunLock) -> Result<(), HistoryError> {
        let ours = self.path.parent().map(canonical);
        let held = lock.path().parent().map(canonical);
        if ours.is_some() && ours == held {
            Ok(())
        } else {
            Err(HistoryError::WrongLock {
                path: self.path.clone(),
                lock_path: lock.path().to_path_buf(),
            })
        }
    }
}

#[derive(Clone, Copy)]
enum Order {
    NewestFirst,
    OldestFirst,
}

/// Decodes the stored bytes of deployment `id` as [`History::get_deployment`]
/// does: a record that does not decode is [`HistoryError::Undecodable`],
/// naming `path` (the database file) and the record's key. For tools that
/// inspect records outside a database, and for the fuzz targets.
pub fn decode_deployment(
    path: &Path,
    id: &str,
    bytes: &[u8],
) -> Result<DeploymentRecord, HistoryError> {
    decode(path, || deployment_key(id), bytes)
}

/// The one field needed to find an old record's index entry, decoded on its
/// own so that a record damaged elsewhere still gets its entry replaced.
#[derive(Deserialize)]
struct StartedAt {
    started_at: DateTime<Utc>,
}

fn deployment_key(id: &str) -> String {
    format!("deployments/{id}")
}

/// Reads one deployment for a listing: `None` (with a warning) if it does
/// not decode or its index entry is stale.
fn load_deployment(
    records: &ReadOnlyTable<&'static str, &'static [u8]>,
    id: &str,
    path: &Path,
) -> Result<Option<DeploymentRecord>, Failure> {
    match records.get(id)? {
        Some(value) => Ok(decode_or_skip(path, &deployment_key(id), value.value())),
        None => {
            tracing::warn!(path = %path.display(), deployment_id = %id, "index entry without a deployment record; skipped");
            Ok(None)
        }
    }
}

/// The number after `n`; u64 never runs out in practice, but an overflow must
/// not wrap around onto existing entries.
fn next_number(n: u64, path: &Path) -> Result<u64, Failure> {
    n.checked_add(1).ok_or_else(|| {
        Failure::History(HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason: "an entry number reached u64::MAX".to_owned(),
        })
    })
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
