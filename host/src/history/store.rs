//! One database open per transaction: opening with retry, the schema check,
//! the table layout, and the mapping of redb's errors onto [`HistoryError`].
//!
//! Everything redb-specific lives here, so `mod.rs` reads as the list of
//! operations and a change of storage engine stays inside this file.

use std::any::Any;
use std::fmt::Display;
use std::fs;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use redb::{
    Builder, CommitError, Database, DatabaseError, Key, ReadOnlyDatabase, ReadOnlyTable,
    ReadTransaction, ReadableDatabase, ReadableTable, StorageError, TableDefinition, TableError,
    TableHandle, TransactionError, Value, WriteTransaction,
};
use serde::de::DeserializeOwned;

use super::HistoryError;

/// Schema version written by (and the newest readable by) this adeploy.
///
/// Bump it only for a change an older binary would misread; adding a JSON
/// field with a default is not such a change. Version 2 compresses values
/// (zstd), stores decisions and samples in chunks, and adds the aggregates;
/// version 3 counts the deployments with recorded features in the
/// aggregates and indexes the `running` ones. An older file is migrated on
/// its first write open.
pub const SCHEMA_VERSION: u64 = 3;

// Table layout. Values are JSON (compressed from version 2 on); keys are
// chosen so that the common reads are ranges: newest-first listings iterate
// backwards, per-deployment reads scan one key prefix. The trailing integer
// of the chunk and audit keys orders (and disambiguates) entries with equal
// prefixes.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// deployment id → `DeploymentRecord`
pub(super) const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
/// (started_at ms, deployment id) → (), the index behind newest-first listings
pub(super) const DEPLOYMENTS_BY_START: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("deployments_by_start");
/// deployment id → (), for the deployments whose record says `running`: what
/// recovery looks at without reading every record (version 3).
pub(super) const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("running_deployments");
/// (deployment id, kind, first seq) → (span, records, compressed JSON
/// array): the decision log and the metric samples, one chunk per append. A
/// chunk covers the sequence numbers `first..first + span` and holds
/// `records` of them (fewer once downsampled).
pub(super) const CHUNKS: TableDefinition<ChunkKey<'static>, ChunkValue<'static>> =
    TableDefinition::new("record_chunks");
/// (deployment id, kind code, first seq)
pub(super) type ChunkKey<'a> = (&'a str, u8, u64);
/// (span, records, compressed JSON array)
pub(super) type ChunkValue<'a> = (u64, u64, &'a [u8]);
/// (timestamp ms, n) → `AuditEntry`
pub(super) const AUDIT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("audit_log");
/// name → opaque bytes (the ML model), compressed
pub(super) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// (strategy, environment) → `StrategyStats` JSON
pub(super) const AGG_STRATEGY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("aggregates_by_strategy");
/// (service, environment) → `ServiceStats` JSON
pub(super) const AGG_SERVICE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("aggregates_by_service");

// Version 1 tables, read only by the migration to version 2.
/// (deployment id, seq) → `DecisionRecord`
pub(super) const V1_DECISIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("decisions");
/// (deployment id, timestamp ms, n) → `MetricSample`
pub(super) const V1_SAMPLES: TableDefinition<(&str, i64, u64), &[u8]> =
    TableDefinition::new("metric_samples");

const SCHEMA_KEY: &str = "schema_version";

/// redb caches pages up to this size per open; the history is small and each
/// open lives for one transaction, so the default (1 GiB) would be pointless.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Why a transaction failed: redb's error (mapped with the path at the end)
/// or one of ours. Lets transaction bodies use `?` on every redb error type.
pub(super) enum Failure {
    Redb(redb::Error),
    History(HistoryError),
}

macro_rules! failure_from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Failure {
            fn from(err: $ty) -> Self {
                Failure::Redb(err.into())
            }
        }
    )*};
}
failure_from_redb!(
    redb::Error,
    StorageError,
    TableError,
    TransactionError,
    CommitError,
    DatabaseError
);

impl From<HistoryError> for Failure {
    fn from(err: HistoryError) -> Self {
        Failure::History(err)
    }
}

/// The database file and how long to wait for it: all a transaction needs.
pub(super) struct Store<'a> {
    pub(super) path: &'a Path,
    pub(super) timeout: Duration,
}

/// A read needs a writable open when the file must first be repaired (after
/// a crash) or created; otherwise a read-only open, which other readers share.
enum ReadHandle {
    ReadOnly(ReadOnlyDatabase),
    Writable(Database),
}

impl ReadHandle {
    fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        match self {
            ReadHandle::ReadOnly(db) => db.begin_read(),
            ReadHandle::Writable(db) => db.begin_read(),
        }
    }

    fn close(self) -> Result<(), DatabaseError> {
        match self {
            ReadHandle::ReadOnly(db) => db.close(),
            ReadHandle::Writable(db) => db.close(),
        }
    }
}

impl Store<'_> {
    /// Opens the database, runs `body` in one read transaction, closes it.
    pub(super) fn read<T>(
        &self,
        body: impl FnOnce(&ReadTransaction) -> Result<T, Failure>,
    ) -> Result<T, HistoryError> {
        self.guarded(|| {
            let db = self.open_for_read()?;
            let result = (|| {
                let txn = db.begin_read()?;
                check_schema_read(&txn, self.path)?;
                body(&txn)
            })();
            self.close_quietly(db.close());
            result.map_err(|failure| self.map(failure))
        })
    }

    /// Opens the database, runs `body` in one write transaction and commits it
    /// if `body` succeeds (nothing is written otherwise), closes it.
    pub(super) fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, HistoryError> {
        self.guarded(|| {
            let db = self.open_for_write()?;
            let result = (|| {
                let txn = db.begin_write()?;
                ensure_schema(&txn, self.path)?;
                let out = body(&txn)?;
                txn.commit()?;
                Ok(out)
            })();
            self.close_quietly(db.close());
            result.map_err(|failure| self.map(failure))
        })
    }

    /// Opens the database for writing and gives back the space of freed
    /// pages (redb grows its file in steps and reuses freed pages, but only
    /// compaction shrinks it). Returns whether anything was compacted.
    pub(super) fn compact(&self) -> Result<bool, HistoryError> {
        self.guarded(|| {
            let mut db = self.open_for_write()?;
            let result = db
                .compact()
                .map_err(|e| map_redb(self.path, redb::Error::from(e)));
            self.close_quietly(db.close());
            result
        })
    }

    /// redb documents that an altered file "may panic" on a plain open. A
    /// panic must not take the deployment (or `adeploy list`) down: it becomes
    /// `Corrupt`, naming the file. The handle is dropped during unwinding, so
    /// no broken state survives the call.
    fn guarded<T>(&self, op: impl FnOnce() -> Result<T, HistoryError>) -> Result<T, HistoryError> {
        catch_unwind(AssertUnwindSafe(op)).unwrap_or_else(|payload| {
            Err(HistoryError::Corrupt {
                path: self.path.to_path_buf(),
                reason: format!(
                    "the storage engine panicked reading it: {}",
                    panic_message(payload.as_ref())
                ),
            })
        })
    }

    fn open_for_write(&self) -> Result<Database, HistoryError> {
        self.retry(|| builder().create(self.path))
    }

    fn open_for_read(&self) -> Result<ReadHandle, HistoryError> {
        self.retry(|| {
            let fresh = match fs::metadata(self.path) {
                Ok(meta) => meta.len() == 0,
                Err(err) if err.kind() == ErrorKind::NotFound => true,
                Err(err) => return Err(err.into()),
            };
            if fresh {
                // Removed since `History::open`, or never initialised: start empty.
                return builder().create(self.path).map(ReadHandle::Writable);
            }
            match builder().open_read_only(self.path) {
                Ok(db) => Ok(ReadHandle::ReadOnly(db)),
                // Left unclean by a crash: only a writable open repairs it.
                Err(DatabaseError::RepairAborted) => {
                    builder().create(self.path).map(ReadHandle::Writable)
                }
                Err(err) => Err(err),
            }
        })
    }

    /// Retries `open` while another handle has the file open, with a backoff
    /// from 5 ms to 100 ms, until the timeout.
    fn retry<T>(
        &self,
        mut open: impl FnMut() -> Result<T, DatabaseError>,
    ) -> Result<T, HistoryError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(5);
        let mut announced = false;
        loop {
            match open() {
                Ok(handle) => return Ok(handle),
                // LockProtocolMismatch: an adeploy built with another redb
                // generation has it open, which is the same situation.
                Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch) => {
                    let waited = start.elapsed();
                    if waited >= self.timeout {
                        return Err(HistoryError::Locked {
                            path: self.path.to_path_buf(),
                            waited,
                        });
                    }
                    if !announced {
                        announced = true;
                        tracing::debug!(
                            path = %self.path.display(),
                            "history database in use by another process; waiting"
                        );
                    }
                    std::thread::sleep(delay.min(self.timeout - waited));
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(err) => return Err(map_redb(self.path, err.into())),
            }
        }
    }

    fn close_quietly(&self, result: Result<(), DatabaseError>) {
        // The transaction is committed (or was read-only) by now; a failed
        // close costs a repair on the next open, not data.
        if let Err(err) = result {
            tracing::warn!(path = %self.path.display(), %err, "closing the history database failed");
        }
    }

    fn map(&self, failure: Failure) -> HistoryError {
        match failure {
            Failure::Redb(err) => map_redb(self.path, err),
            Failure::History(err) => err,
        }
    }
}

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// Sorts redb's errors into what the user must do about them.
fn map_redb(path: &Path, err: redb::Error) -> HistoryError {
    let path = path.to_path_buf();
    match err {
        redb::Error::Corrupted(reason) => HistoryError::Corrupt { path, reason },
        // redb reports "not a redb database" (wrong magic number) as
        // InvalidData, and a file shorter than its header as UnexpectedEof.
        redb::Error::Io(err)
            if matches!(
                err.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ) =>
        {
            HistoryError::Corrupt {
                path,
                reason: err.to_string(),
            }
        }
        redb::Error::Io(source) => HistoryError::Io {
            path,
            action: "read or write the history database",
            source,
        },
        redb::Error::UpgradeRequired(version) => HistoryError::Incompatible {
            path,
            detail: format!("redb file format version {version}, which needs a manual upgrade"),
        },
        err @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => HistoryError::Corrupt {
            path,
            reason: format!("its tables do not have adeploy's layout: {err}"),
        },
        other => HistoryError::Database {
            path,
            source: Box::new(other),
        },
    }
}

/// A read accepts an empty database (no tables at all: nothing written yet)
/// as the current schema, but not a redb file of another program.
fn check_schema_read(txn: &ReadTransaction, path: &Path) -> Result<(), Failure> {
    match txn.open_table(META) {
        Ok(meta) => check_version(meta.get(SCHEMA_KEY)?.map(|v| v.value()), path),
        Err(TableError::TableDoesNotExist(_)) => {
            let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
            if tables.is_empty() {
                Ok(())
            } else {
                Err(foreign(path, &tables))
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// A write initialises an empty database (meta and every table), and refuses
/// anything but adeploy's schema at a version it knows.
fn ensure_schema(txn: &WriteTransaction, path: &Path) -> Result<(), Failure> {
    let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    if tables.iter().any(|name| name == META.name()) {
        let found = txn.open_table(META)?.get(SCHEMA_KEY)?.map(|v| v.value());
        check_version(found, path)?;
        match found {
            // Version 1 → 2 builds the aggregates as version 3 has them.
            Some(1) => super::migrate::v1_to_v2(txn, path)?,
            Some(2) => super::migrate::v2_to_v3(txn, path)?,
            _ => return Ok(()),
        }
        txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        return Ok(());
    }
    if !tables.is_empty() {
        return Err(foreign(path, &tables));
    }
    txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
    create_tables(txn)
}

/// Creates every table of the current schema (a no-op for existing ones).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), Failure> {
    txn.open_table(DEPLOYMENTS)?;
    txn.open_table(DEPLOYMENTS_BY_START)?;
    txn.open_table(RUNNING)?;
    txn.open_table(CHUNKS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(BLOBS)?;
    txn.open_table(AGG_STRATEGY)?;
    txn.open_table(AGG_SERVICE)?;
    Ok(())
}

fn check_version(found: Option<u64>, path: &Path) -> Result<(), Failure> {
    match found {
        Some(version) if version > SCHEMA_VERSION => Err(HistoryError::Incompatible {
            path: path.to_path_buf(),
            detail: format!(
                "schema version {version}; this adeploy reads versions up to {SCHEMA_VERSION}"
            ),
        }
        .into()),
        Some(version) if version >= 1 => Ok(()),
        _ => Err(HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("its meta table has no valid {SCHEMA_KEY}"),
        }
        .into()),
    }
}

fn foreign(path: &Path, tables: &[String]) -> Failure {
    HistoryError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "a redb database without adeploy's schema version, holding tables {}",
            tables.join(", ")
        ),
    }
    .into()
}

/// Opens a table for reading; `None` if it was never created.
pub(super) fn read_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, Failure> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Decodes a record for a listing: one that no longer decodes is reported and
/// skipped, so a single bad record never hides the rest of the history.
pub(super) fn decode_or_skip<T: DeserializeOwned>(
    path: &Path,
    key: &dyn Display,
    bytes: &[u8],
) -> Option<T> {
    match super::codec::decode_record(bytes) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(
                path = %path.display(),
                key = %key,
                %err,
                "skipping a history record that cannot be decoded"
            );
            None
        }
    }
}

/// Decodes a record asked for by key: failure is an error naming the key.
pub(super) fn decode<T: DeserializeOwned>(
    path: &Path,
    key: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T, HistoryError> {
    super::codec::decode_record(bytes).map_err(|source| HistoryError::Undecodable {
        path: path.to_path_buf(),
        key: key(),
        source,
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}
