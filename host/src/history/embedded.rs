//! The embedded history: one redb file in the state directory.
//!
//! See the module docs of [`history`](super) for why every operation opens
//! the file, and `store.rs` for the table layout.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::aggregate::{
    self, Aggregates, Contribution, HistoryWindow, ServiceStats, StrategyStats,
};
use super::codec::{self, ChunkKind};
use super::store::{
    self, AGG_SERVICE, AGG_STRATEGY, AUDIT, BLOBS, CHUNKS, ChunkKey, ChunkValue, DEPLOYMENTS,
    DEPLOYMENTS_BY_START, Failure, RUNNING, Store, decode, decode_or_skip, read_table,
};
use super::transfer::{ExportSink, Item};
use super::{
    AuditEntry, DEFAULT_OPEN_TIMEOUT, DecisionRecord, DeploymentDetail, DeploymentRecord,
    DeploymentStatus, HistoryError, HistoryStats, MetricSample, RunLock, data_dir, database_path,
};

/// The deployment history of one state directory, in its redb file.
///
/// Cheap to clone and holds no open file: every method opens the database,
/// runs one transaction and closes it (see the module docs for why).
///
/// Methods block (on disk I/O, and while another process has the file open,
/// for up to the open timeout); async callers use
/// [`HistoryStore`](super::HistoryStore), which runs them on tokio's
/// blocking pool.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    open_timeout: Duration,
}

impl History {
    /// Opens the history of `state_dir`, creating the directories and the
    /// database if missing, and checks (or initialises, or migrates) the
    /// schema version. Waits up to [`DEFAULT_OPEN_TIMEOUT`] for another
    /// process to close it.
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
        // database, or one of an older schema, gets a write transaction,
        // which initialises or migrates the schema.
        let current = history.store().read(|txn| {
            let Some(meta) = read_table(txn, store::META)? else {
                return Ok(false);
            };
            Ok(meta.get("schema_version")?.map(|v| v.value()) == Some(store::SCHEMA_VERSION))
        })?;
        if !current {
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
        super::lock::writer_active(state_dir)
    }

    /// Inserts a deployment, or replaces the one with the same id, and
    /// updates the aggregates.
    pub fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let id = record.id.as_str();
        let json = serde_json::to_vec(record).map_err(|source| HistoryError::Encode {
            path: self.path.clone(),
            key: deployment_key(id),
            source,
        })?;
        self.store()
            .write(|txn| put_deployment_in(txn, &self.path, record, &json))
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

    /// A deployment with its decision log and metric samples, read in one
    /// transaction (what `adeploy report ID` needs).
    pub fn detail(&self, id: &str) -> Result<Option<DeploymentDetail>, HistoryError> {
        let found = self.store().read(|txn| {
            let Some(table) = read_table(txn, DEPLOYMENTS)? else {
                return Ok(None);
            };
            let Some(bytes) = table.get(id)?.map(|v| v.value().to_vec()) else {
                return Ok(None);
            };
            let chunks = read_table(txn, CHUNKS)?;
            let decisions = match &chunks {
                Some(c) => chunk_records(c, id, ChunkKind::Decisions, &self.path)?,
                None => Vec::new(),
            };
            let samples = match &chunks {
                Some(c) => chunk_records(c, id, ChunkKind::Samples, &self.path)?,
                None => Vec::new(),
            };
            Ok(Some((bytes, decisions, samples)))
        })?;
        let Some((bytes, decisions, samples)) = found else {
            return Ok(None);
        };
        Ok(Some(DeploymentDetail {
            record: decode(&self.path, || deployment_key(id), &bytes)?,
            decisions: decode_series(&self.path, id, ChunkKind::Decisions, &decisions),
            samples: sorted_samples(decode_series(&self.path, id, ChunkKind::Samples, &samples)),
        }))
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

    /// The newest `recent` deployments and the aggregates over the whole
    /// history, in one transaction: what the start of a deployment reads.
    pub fn window(&self, recent: usize) -> Result<HistoryWindow, HistoryError> {
        let recent = self.list_deployments(recent)?;
        Ok(HistoryWindow {
            recent,
            aggregates: self.aggregates()?,
        })
    }

    /// The aggregates over the whole history.
    pub fn aggregates(&self) -> Result<Aggregates, HistoryError> {
        self.store().read(|txn| {
            let mut out = Aggregates::default();
            if let Some(table) = read_table(txn, AGG_STRATEGY)? {
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let (strategy, environment) = key.value();
                    let name = format!("aggregates_by_strategy/{strategy}/{environment}");
                    out.by_strategy.extend(decode_or_skip::<StrategyStats>(
                        &self.path,
                        &name,
                        value.value(),
                    ));
                }
            }
            if let Some(table) = read_table(txn, AGG_SERVICE)? {
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let (service, environment) = key.value();
                    let name = format!("aggregates_by_service/{service}/{environment}");
                    out.by_service.extend(decode_or_skip::<ServiceStats>(
                        &self.path,
                        &name,
                        value.value(),
                    ));
                }
            }
            Ok(out)
        })
    }

    /// Appends to a deployment's decision log, numbered after the entries
    /// already there.
    pub fn append_decisions(
        &self,
        deployment_id: &str,
        decisions: &[DecisionRecord],
    ) -> Result<(), HistoryError> {
        self.append_series(deployment_id, ChunkKind::Decisions, decisions, None)
            .map(|_| ())
    }

    /// A deployment's decision log, in append order (undecodable entries skipped).
    pub fn decisions(&self, deployment_id: &str) -> Result<Vec<DecisionRecord>, HistoryError> {
        let raw = self.series(deployment_id, ChunkKind::Decisions)?;
        Ok(decode_series(
            &self.path,
            deployment_id,
            ChunkKind::Decisions,
            &raw,
        ))
    }

    /// Stores metric samples of a deployment. Samples with the same
    /// millisecond are all kept.
    pub fn append_samples(
        &self,
        deployment_id: &str,
        samples: &[MetricSample],
    ) -> Result<(), HistoryError> {
        self.append_series(deployment_id, ChunkKind::Samples, samples, None)
            .map(|_| ())
    }

    /// A deployment's metric samples, oldest first (undecodable ones skipped;
    /// equal timestamps in append order).
    pub fn samples(&self, deployment_id: &str) -> Result<Vec<MetricSample>, HistoryError> {
        let raw = self.series(deployment_id, ChunkKind::Samples)?;
        Ok(sorted_samples(decode_series(
            &self.path,
            deployment_id,
            ChunkKind::Samples,
            &raw,
        )))
    }

    /// Appends records of one series as a chunk starting at `first_seq`
    /// (`None`: after the entries already there). A chunk whose first
    /// number is already covered is not stored again (a replay); returns
    /// the first number used, or `None` when nothing was stored.
    pub(crate) fn append_series<T: serde::Serialize>(
        &self,
        deployment_id: &str,
        kind: ChunkKind,
        records: &[T],
        first_seq: Option<u64>,
    ) -> Result<Option<u64>, HistoryError> {
        if records.is_empty() {
            return Ok(None);
        }
        let json = records
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| HistoryError::Encode {
                path: self.path.clone(),
                key: format!("{}/{deployment_id}", kind.name()),
                source,
            })?;
        self.store().write(|txn| {
            let mut table = txn.open_table(CHUNKS)?;
            append_chunk_in(
                &mut table,
                &self.path,
                deployment_id,
                kind,
                first_seq,
                &json,
            )
        })
    }

    /// The raw JSON of a series with its sequence numbers.
    fn series(
        &self,
        deployment_id: &str,
        kind: ChunkKind,
    ) -> Result<Vec<(u64, Box<RawValue>)>, HistoryError> {
        self.store().read(|txn| match read_table(txn, CHUNKS)? {
            Some(table) => chunk_records(&table, deployment_id, kind, &self.path),
            None => Ok(Vec::new()),
        })
    }

    /// Appends one entry to the audit log. An entry identical to one already
    /// stored for the same millisecond is not stored twice (a replay).
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), HistoryError> {
        let ms = entry.timestamp.timestamp_millis();
        let json = serde_json::to_vec(entry).map_err(|source| HistoryError::Encode {
            path: self.path.clone(),
            key: format!("audit_log/{ms}"),
            source,
        })?;
        self.store()
            .write(|txn| append_audit_in(txn, &self.path, ms, &json).map(|_| ()))
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
        // The `running` index, not every record: recovery runs at the start
        // of every deployment and in every `list`.
        let running: Vec<DeploymentRecord> = self.store().read(|txn| {
            let (Some(index), Some(table)) =
                (read_table(txn, RUNNING)?, read_table(txn, DEPLOYMENTS)?)
            else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for entry in index.iter()? {
                let (key, _) = entry?;
                let id = key.value();
                if let Some(value) = table.get(id)?
                    && let Some(record) = decode_or_skip::<DeploymentRecord>(
                        &self.path,
                        &deployment_key(id),
                        value.value(),
                    )
                    && record.status == DeploymentStatus::Running
                {
                    out.push(record);
                }
            }
            Ok(out)
        })?;
        let mut ids = Vec::with_capacity(running.len());
        for record in running {
            let record = mark_interrupted(record);
            self.put_deployment(&record)?;
            tracing::warn!(deployment_id = %record.id, pid = record.pid, "marked a deployment cut off by a crash as interrupted");
            ids.push(record.id);
        }
        Ok(ids)
    }

    /// Stores (or replaces) an opaque blob under `name`.
    pub fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        let stored = codec::compress(bytes);
        self.store().write(|txn| {
            txn.open_table(BLOBS)?.insert(name, stored.as_slice())?;
            Ok(())
        })
    }

    /// The blob stored under `name`, if any.
    pub fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        let stored = self.store().read(|txn| {
            let Some(table) = read_table(txn, BLOBS)? else {
                return Ok(None);
            };
            Ok(table.get(name)?.map(|v| v.value().to_vec()))
        })?;
        stored
            .map(|bytes| {
                codec::decompress(&bytes).map_err(|reason| HistoryError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("blob {name}: {reason}"),
                })
            })
            .transpose()
    }

    /// Deletes the blob stored under `name`; returns whether there was one.
    pub fn delete_blob(&self, name: &str) -> Result<bool, HistoryError> {
        self.store()
            .write(|txn| Ok(txn.open_table(BLOBS)?.remove(name)?.is_some()))
    }

    /// Reduces the metric samples of every deployment that started before
    /// `before` to at most `keep` (means over equal slices of the samples,
    /// in time order). Returns how many deployments were reduced.
    pub fn downsample(&self, before: DateTime<Utc>, keep: usize) -> Result<usize, HistoryError> {
        let keep = keep.max(1);
        let ids: Vec<String> = self.store().read(|txn| {
            let (Some(by_start), Some(chunks)) = (
                read_table(txn, DEPLOYMENTS_BY_START)?,
                read_table(txn, CHUNKS)?,
            ) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for entry in by_start.range(..(before.timestamp_millis(), ""))? {
                let key = entry?.0;
                let id = key.value().1;
                let (count, _) = series_size(&chunks, id, ChunkKind::Samples)?;
                if count > keep {
                    out.push(id.to_owned());
                }
            }
            Ok(out)
        })?;
        for id in &ids {
            let samples = self.samples(id)?;
            let reduced = super::downsample(&samples, keep);
            let json = reduced
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| HistoryError::Encode {
                    path: self.path.clone(),
                    key: format!("metric_samples/{id}"),
                    source,
                })?;
            self.store().write(|txn| {
                let mut table = txn.open_table(CHUNKS)?;
                let kind = ChunkKind::Samples.code();
                let mut span = 0;
                let mut old = Vec::new();
                for entry in table.range((id.as_str(), kind, 0)..=(id.as_str(), kind, u64::MAX))? {
                    let (key, value) = entry?;
                    let first = key.value().2;
                    span = span.max(first.saturating_add(value.value().0));
                    old.push(first);
                }
                for first in old {
                    table.remove((id.as_str(), kind, first))?;
                }
                let body = codec::encode_chunk(json.iter().map(Vec::as_slice));
                table.insert(
                    (id.as_str(), kind, 0),
                    (span.max(1), json.len() as u64, body.as_slice()),
                )?;
                Ok(())
            })?;
        }
        Ok(ids.len())
    }

    /// Shrinks the file to what its records need (after an import, a
    /// downsampling, or to measure it). Takes as long as rewriting the file.
    pub fn compact(&self) -> Result<bool, HistoryError> {
        self.store().compact()
    }

    /// Writes every record to `sink`, in the export order (see `transfer.rs`).
    pub(crate) fn export_to(&self, sink: &mut ExportSink<'_>) -> Result<(), HistoryError> {
        self.store().read(|txn| {
            if let (Some(by_start), Some(records)) = (
                read_table(txn, DEPLOYMENTS_BY_START)?,
                read_table(txn, DEPLOYMENTS)?,
            ) {
                for entry in by_start.iter()? {
                    let key = entry?.0;
                    let id = key.value().1;
                    let Some(value) = records.get(id)? else {
                        continue;
                    };
                    let json = self.raw(value.value(), &deployment_key(id))?;
                    sink.deployment(&json)?;
                }
            }
            if let Some(chunks) = read_table(txn, CHUNKS)? {
                for entry in chunks.iter()? {
                    let (key, value) = entry?;
                    let (id, code, first) = key.value();
                    let Some(kind) = ChunkKind::from_code(code) else {
                        continue;
                    };
                    let name = format!("{}/{id}#{first}", kind.name());
                    match codec::decode_chunk(value.value().2) {
                        Ok(records) => {
                            for (i, record) in records.iter().enumerate() {
                                sink.series(kind, id, first + i as u64, record.get().as_bytes())?;
                            }
                        }
                        Err(reason) => {
                            tracing::warn!(path = %self.path.display(), key = %name, %reason, "not exporting a chunk that cannot be decoded");
                        }
                    }
                }
            }
            if let Some(audit) = read_table(txn, AUDIT)? {
                for entry in audit.iter()? {
                    let (key, value) = entry?;
                    let (ms, n) = key.value();
                    let json = self.raw(value.value(), &format!("audit_log/{ms}#{n}"))?;
                    sink.audit(&json)?;
                }
            }
            if let Some(blobs) = read_table(txn, BLOBS)? {
                for entry in blobs.iter()? {
                    let (key, value) = entry?;
                    let name = key.value();
                    let bytes = codec::decompress(value.value()).map_err(|reason| {
                        Failure::History(HistoryError::Corrupt {
                            path: self.path.clone(),
                            reason: format!("blob {name}: {reason}"),
                        })
                    })?;
                    sink.blob(name, &bytes)?;
                }
            }
            Ok(())
        })
    }

    /// Stores imported (or journaled) items in one transaction. Idempotent:
    /// deployments replace by id, chunks already covered and audit entries
    /// already present are skipped.
    pub(crate) fn apply_items(&self, items: &[Item]) -> Result<(), HistoryError> {
        if items.is_empty() {
            return Ok(());
        }
        self.store().write(|txn| {
            for item in items {
                match item {
                    Item::Deployment { json, record } => {
                        put_deployment_in(txn, &self.path, record, json)?;
                    }
                    Item::Chunk {
                        deployment_id,
                        kind,
                        first_seq,
                        records,
                    } => {
                        let mut table = txn.open_table(CHUNKS)?;
                        append_chunk_in(
                            &mut table,
                            &self.path,
                            deployment_id,
                            *kind,
                            Some(*first_seq),
                            records,
                        )?;
                    }
                    Item::Audit { json, ts_ms } => {
                        append_audit_in(txn, &self.path, *ts_ms, json)?;
                    }
                    Item::Blob { name, bytes } => {
                        let stored = codec::compress(bytes);
                        txn.open_table(BLOBS)?
                            .insert(name.as_str(), stored.as_slice())?;
                    }
                    Item::DeleteBlob { name } => {
                        txn.open_table(BLOBS)?.remove(name.as_str())?;
                    }
                }
            }
            Ok(())
        })
    }

    fn raw(&self, stored: &[u8], key: &str) -> Result<Vec<u8>, Failure> {
        codec::decompress(stored).map_err(|reason| {
            Failure::History(HistoryError::Corrupt {
                path: self.path.clone(),
                reason: format!("{key}: {reason}"),
            })
        })
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

/// `record` marked interrupted now, with a note naming the pid that wrote it.
pub(crate) fn mark_interrupted(mut record: DeploymentRecord) -> DeploymentRecord {
    let note = format!(
        "interrupted: the adeploy run (pid {}) stopped before the deployment finished; found by pid {}",
        record.pid,
        std::process::id()
    );
    record.summary = Some(match record.summary.take() {
        Some(summary) if !summary.is_empty() => format!("{summary}; {note}"),
        _ => note,
    });
    record.status = DeploymentStatus::Interrupted;
    record.finished_at = Some(Utc::now());
    record
}

#[derive(Clone, Copy)]
enum Order {
    NewestFirst,
    OldestFirst,
}

/// Stores `record` (whose JSON is `json`), replacing its index entry and its
/// contribution to the aggregates.
fn put_deployment_in(
    txn: &WriteTransaction,
    path: &Path,
    record: &DeploymentRecord,
    json: &[u8],
) -> Result<(), Failure> {
    let id = record.id.as_str();
    let mut deployments = txn.open_table(DEPLOYMENTS)?;
    let mut by_start = txn.open_table(DEPLOYMENTS_BY_START)?;
    let previous = deployments.get(id)?.map(|v| v.value().to_vec());
    let mut old_contribution = None;
    if let Some(previous) = previous {
        match codec::decode_record::<StartedAt>(&previous) {
            Ok(old) => {
                by_start.remove((old.started_at.timestamp_millis(), id))?;
            }
            // Its index entry cannot be computed: find it by id.
            Err(_) => by_start.retain(|(_, indexed), ()| indexed != id)?,
        }
        old_contribution = codec::decode_record::<DeploymentRecord>(&previous)
            .ok()
            .as_ref()
            .and_then(Contribution::of);
    }
    let stored = codec::compress(json);
    deployments.insert(id, stored.as_slice())?;
    by_start.insert((record.started_at.timestamp_millis(), id), ())?;
    let mut running = txn.open_table(RUNNING)?;
    if record.status == DeploymentStatus::Running {
        running.insert(id, ())?;
    } else {
        running.remove(id)?;
    }
    let new_contribution = Contribution::of(record);
    if old_contribution != new_contribution {
        update_aggregates(
            txn,
            path,
            old_contribution.as_ref(),
            new_contribution.as_ref(),
        )?;
    }
    Ok(())
}

fn update_aggregates(
    txn: &WriteTransaction,
    path: &Path,
    old: Option<&Contribution>,
    new: Option<&Contribution>,
) -> Result<(), Failure> {
    let (strategies, services) = aggregate::touched_keys(old, new);
    let mut table = txn.open_table(AGG_STRATEGY)?;
    for (strategy, environment) in &strategies {
        let key = (strategy.as_str(), environment.as_str());
        let row = table
            .get(key)?
            .and_then(|v| serde_json::from_slice::<StrategyStats>(v.value()).ok());
        let row = aggregate::apply_strategy(
            row,
            strategy,
            environment,
            aggregate::for_strategy(old, strategy, environment),
            aggregate::for_strategy(new, strategy, environment),
        );
        table.insert(key, json_bytes(path, &row)?.as_slice())?;
    }
    let mut table = txn.open_table(AGG_SERVICE)?;
    for (service, environment) in &services {
        let key = (service.as_str(), environment.as_str());
        let row = table
            .get(key)?
            .and_then(|v| serde_json::from_slice::<ServiceStats>(v.value()).ok());
        let row = aggregate::apply_service(
            row,
            service,
            environment,
            aggregate::for_service(old, service, environment),
            aggregate::for_service(new, service, environment),
        );
        table.insert(key, json_bytes(path, &row)?.as_slice())?;
    }
    Ok(())
}

fn json_bytes<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(value).map_err(|source| {
        Failure::History(HistoryError::Encode {
            path: path.to_path_buf(),
            key: "aggregates".to_string(),
            source,
        })
    })
}

/// Stores one chunk; see [`History::append_series`].
fn append_chunk_in(
    table: &mut Table<ChunkKey<'static>, ChunkValue<'static>>,
    path: &Path,
    deployment_id: &str,
    kind: ChunkKind,
    first_seq: Option<u64>,
    records: &[Vec<u8>],
) -> Result<Option<u64>, Failure> {
    let code = kind.code();
    let span = records.len() as u64;
    let first = match first_seq {
        Some(first) => {
            // Covered by a chunk that starts at or before it, or overlapping
            // one that starts inside it: already stored.
            let before = table
                .range((deployment_id, code, 0)..=(deployment_id, code, first))?
                .next_back();
            if let Some(entry) = before {
                let (key, value) = entry?;
                if key.value().2.saturating_add(value.value().0) > first {
                    return Ok(None);
                }
            }
            let end = first.saturating_add(span);
            if table
                .range((deployment_id, code, first)..(deployment_id, code, end))?
                .next()
                .is_some()
            {
                return Ok(None);
            }
            first
        }
        None => {
            let last = table
                .range((deployment_id, code, 0)..=(deployment_id, code, u64::MAX))?
                .next_back();
            match last {
                Some(entry) => {
                    let (key, value) = entry?;
                    key.value()
                        .2
                        .checked_add(value.value().0)
                        .ok_or_else(|| overflow(path))?
                }
                None => 0,
            }
        }
    };
    first.checked_add(span).ok_or_else(|| overflow(path))?;
    let body = codec::encode_chunk(records.iter().map(Vec::as_slice));
    table.insert((deployment_id, code, first), (span, span, body.as_slice()))?;
    Ok(Some(first))
}

/// Appends an audit entry after the others of its millisecond, unless an
/// identical one is there. Returns whether it was stored.
fn append_audit_in(
    txn: &WriteTransaction,
    path: &Path,
    ms: i64,
    json: &[u8],
) -> Result<bool, Failure> {
    let mut table = txn.open_table(AUDIT)?;
    let mut next = 0;
    for entry in table.range((ms, 0)..=(ms, u64::MAX))? {
        let (key, value) = entry?;
        if codec::decompress(value.value()).is_ok_and(|existing| existing == json) {
            return Ok(false);
        }
        next = key.value().1.checked_add(1).ok_or_else(|| overflow(path))?;
    }
    let stored = codec::compress(json);
    table.insert((ms, next), stored.as_slice())?;
    Ok(true)
}

/// The records of one series of a deployment with their sequence numbers.
fn chunk_records(
    table: &ReadOnlyTable<ChunkKey<'static>, ChunkValue<'static>>,
    deployment_id: &str,
    kind: ChunkKind,
    path: &Path,
) -> Result<Vec<(u64, Box<RawValue>)>, Failure> {
    let code = kind.code();
    let mut out = Vec::new();
    for entry in table.range((deployment_id, code, 0)..=(deployment_id, code, u64::MAX))? {
        let (key, value) = entry?;
        let first = key.value().2;
        match codec::decode_chunk(value.value().2) {
            Ok(records) => out.extend(
                records
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (first + i as u64, r)),
            ),
            Err(reason) => tracing::warn!(
                path = %path.display(),
                key = %format!("{}/{deployment_id}#{first}", kind.name()),
                %reason,
                "skipping history records that cannot be decoded"
            ),
        }
    }
    Ok(out)
}

/// How many records a series holds and how many chunks.
fn series_size(
    table: &ReadOnlyTable<ChunkKey<'static>, ChunkValue<'static>>,
    deployment_id: &str,
    kind: ChunkKind,
) -> Result<(usize, usize), Failure> {
    let code = kind.code();
    let mut records = 0;
    let mut chunks = 0;
    for entry in table.range((deployment_id, code, 0)..=(deployment_id, code, u64::MAX))? {
        let (_, value) = entry?;
        chunks += 1;
        records += value.value().1 as usize;
    }
    Ok((records, chunks))
}

/// Decodes the records of a series, skipping (with a warning) those that no
/// longer decode.
pub(crate) fn decode_series<T: serde::de::DeserializeOwned>(
    path: &Path,
    deployment_id: &str,
    kind: ChunkKind,
    raw: &[(u64, Box<RawValue>)],
) -> Vec<T> {
    raw.iter()
        .filter_map(|(seq, json)| match serde_json::from_str(json.get()) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(
                    path = %path.display(),
                    key = %format!("{}/{deployment_id}#{seq}", kind.name()),
                    %err,
                    "skipping a history record that cannot be decoded"
                );
                None
            }
        })
        .collect()
}

/// Samples in time order; equal timestamps keep their append order.
pub(crate) fn sorted_samples(mut samples: Vec<MetricSample>) -> Vec<MetricSample> {
    samples.sort_by_key(|s| s.timestamp);
    samples
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

pub(crate) fn deployment_key(id: &str) -> String {
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

/// u64 never runs out in practice, but an overflow must not wrap around onto
/// existing entries.
fn overflow(path: &Path) -> Failure {
    Failure::History(HistoryError::Corrupt {
        path: path.to_path_buf(),
        reason: "an entry number reached u64::MAX".to_owned(),
    })
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
