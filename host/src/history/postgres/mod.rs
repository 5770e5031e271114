//! The PostgreSQL history: shared by every runner that names the same URL.
//!
//! Why tokio-postgres with a deadpool pool (and not sqlx): adeploy needs a
//! handful of fixed statements, explicit ownership of the sessions that hold
//! advisory locks (a lock lives exactly as long as its session, so those
//! sessions must never go back to a pool), and a small build on a 2-core
//! machine. tokio-postgres gives sessions as plain values, deadpool-postgres
//! adds reconnection and a bounded pool for everything else, and neither
//! brings macros, compile-time query checking or other databases' drivers.
//!
//! Records are stored as in redb: compressed JSON (`codec.rs`), decisions
//! and samples in chunks keyed by (deployment, series, first sequence
//! number), with the columns that listings, recovery and the aggregates need
//! beside the body. Every write is an idempotent upsert, which is what lets
//! the journal (`journal.rs`) replay without duplicating: when a write finds
//! the database unreachable (connection refused, lost, or silent for
//! [`OP_TIMEOUT`]), it goes to the journal instead, and so does every later
//! write until a replay has emptied the journal, so the order of writes is
//! kept. Reads need the database and fail with [`HistoryError::Unreachable`].

mod connect;
mod lock;
mod schema;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::{Object, Pool};
use futures_util::{StreamExt, pin_mut};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;

pub(crate) use connect::Connector;
pub(crate) use lock::LockSession;
pub use schema::PG_SCHEMA_VERSION;

use super::aggregate::{
    self, Aggregates, Contribution, HistoryWindow, ServiceStats, StrategyStats,
};
use super::codec::{self, ChunkKind};
use super::embedded::{decode_series, mark_interrupted, sorted_samples};
use super::journal::Journal;
use super::transfer::{ExportSink, Item};
use super::{
    AuditEntry, DecisionRecord, DeploymentDetail, DeploymentLock, DeploymentRecord,
    DeploymentStatus, HistoryError, HistoryStats, LockHolder, LockInner, LockRequest, LockWait,
    MetricSample, RetrainInner, RetrainLock,
};
use crate::config::{HistoryUrl, PasswordSource};

/// A statement (or a transaction) that takes longer than this is taken as
/// a lost connection.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(20);
/// While writes go to the journal, a replay is tried after this pause,
/// doubling after each failed try up to [`REPLAY_MAX`] (a database that
/// does not answer costs a deployment's writes a connect timeout per try).
const REPLAY_FIRST: Duration = Duration::from_secs(5);
const REPLAY_MAX: Duration = Duration::from_secs(120);

/// Why an operation failed: the database is out of reach (journal the
/// write), or anything else (report it).
enum Failure {
    Offline(String),
    Other(HistoryError),
}

impl From<HistoryError> for Failure {
    fn from(err: HistoryError) -> Self {
        Failure::Other(err)
    }
}

/// The PostgreSQL history of one URL, with the journal of one state directory.
#[derive(Debug)]
pub struct PgHistory {
    connector: Connector,
    pool: Pool,
    journal: Journal,
    writes: Mutex<WriteState>,
}

/// Serialises this process's writes (their order is what the journal keeps)
/// and remembers where each series continues.
#[derive(Debug, Default)]
struct WriteState {
    next_seq: HashMap<(String, ChunkKind), u64>,
    last_replay: Option<Instant>,
    replay_pause: Option<Duration>,
}

impl PgHistory {
    /// Connects (failing with [`HistoryError::Unreachable`]), checks or
    /// migrates the schema, and replays the journal of `state_dir` if it
    /// holds anything (a failed replay is a warning: it is tried again).
    pub async fn connect(
        url: &HistoryUrl,
        password: Option<&PasswordSource>,
        state_dir: &Path,
    ) -> Result<PgHistory, HistoryError> {
        PgHistory::connect_with_env(url, password, state_dir, &|v| std::env::var(v).ok()).await
    }

    /// [`PgHistory::connect`] with `env` for environment variables.
    pub async fn connect_with_env(
        url: &HistoryUrl,
        password: Option<&PasswordSource>,
        state_dir: &Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<PgHistory, HistoryError> {
        let connector = Connector::new(url, password, env)?;
        let pool = connector.pool()?;
        let history = PgHistory {
            journal: Journal::new(state_dir),
            connector,
            pool,
            writes: Mutex::new(WriteState::default()),
        };
        let mut client = history.client().await.map_err(|f| history.reading(f))?;
        schema::ensure(&mut client, &history.connector.url).await?;
        drop(client);
        if history.journal.has_pending() {
            let mut state = history.writes.lock().await;
            if let Err(err) = history.replay(&mut state).await {
                tracing::warn!(url = %history.connector.url, %err, "cannot replay the history journal yet; it is kept and tried again");
            }
        }
        Ok(history)
    }

    /// The URL with its password redacted.
    pub fn url(&self) -> &str {
        &self.connector.url
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, HistoryError> {
        let client = self.client().await.map_err(|f| self.reading(f))?;
        schema::current_version(&client, self.url()).await
    }

    async fn client(&self) -> Result<Object, Failure> {
        match tokio::time::timeout(OP_TIMEOUT, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => Err(Failure::Offline(crate::config::redact_url(
                &err.to_string(),
            ))),
            Err(_) => Err(Failure::Offline(format!(
                "no connection within {} s",
                OP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Sorts a client error: the server refusing a statement is an error to
    /// report; anything about the connection means the database is out of reach.
    fn sort(&self, action: &'static str) -> impl Fn(tokio_postgres::Error) -> Failure + '_ {
        move |e| {
            let connection_level = match e.code() {
                None => true,
                Some(code) => {
                    *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CRASH_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                }
            };
            if connection_level {
                Failure::Offline(crate::config::redact_url(&e.to_string()))
            } else {
                Failure::Other(HistoryError::Postgres {
                    url: self.connector.url.clone(),
                    action,
                    source: Box::new(e),
                })
            }
        }
    }

    /// A failure of a read, as the caller sees it.
    fn reading(&self, failure: Failure) -> HistoryError {
        match failure {
            Failure::Offline(reason) => HistoryError::Unreachable {
                url: self.connector.url.clone(),
                source: reason.into(),
            },
            Failure::Other(err) => err,
        }
    }

    /// Awaits one statement with the timeout, sorting its failure.
    async fn timed<T>(
        &self,
        action: &'static str,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(result) => result.map_err(self.sort(action)),
            Err(_) => Err(Failure::Offline(format!(
                "no answer within {} s",
                OP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A pooled connection for a read.
    async fn reader(&self) -> Result<Object, HistoryError> {
        self.client().await.map_err(|f| self.reading(f))
    }

    // ---- writes -----------------------------------------------------------

    /// Stores `items` in one transaction, or journals them when the database
    /// is out of reach (see the module docs).
    async fn write(&self, state: &mut WriteState, items: Vec<Item>) -> Result<(), HistoryError> {
        if self.journal.has_pending() {
            let pause = state.replay_pause.unwrap_or(REPLAY_FIRST);
            let due = state.last_replay.is_none_or(|t| t.elapsed() >= pause);
            if due {
                match self.replay(state).await {
                    Ok(_) => state.replay_pause = None,
                    Err(err) => {
                        state.replay_pause = Some((pause * 2).min(REPLAY_MAX));
                        tracing::debug!(url = %self.url(), %err, "history still unreachable");
                    }
                }
            }
            if self.journal.has_pending() {
                return self.journal.append(&items);
            }
        }
        match self.apply(&items).await {
            Ok(()) => Ok(()),
            Err(Failure::Offline(reason)) => {
                tracing::warn!(url = %self.url(), %reason, journal = %self.journal.path().display(), "history database unreachable; recording to the local journal until it is back");
                state.last_replay = Some(Instant::now());
                self.journal.append(&items)
            }
            Err(Failure::Other(err)) => Err(err),
        }
    }

    async fn replay(&self, state: &mut WriteState) -> Result<usize, HistoryError> {
        state.last_replay = Some(Instant::now());
        let applied = self
            .journal
            .replay(|items| async move { self.apply(&items).await.map_err(|f| self.reading(f)) })
            .await?;
        if applied > 0 {
            tracing::info!(url = %self.url(), items = applied, "replayed the history journal");
        }
        Ok(applied)
    }

    /// Stores items in one transaction.
    async fn apply(&self, items: &[Item]) -> Result<(), Failure> {
        tokio::time::timeout(OP_TIMEOUT, async {
            let mut client = self.client().await?;
            let tx = client
                .transaction()
                .await
                .map_err(self.sort("start a transaction"))?;
            for item in items {
                self.apply_one(&tx, item).await?;
            }
            tx.commit().await.map_err(self.sort("commit"))
        })
        .await
        .unwrap_or_else(|_| {
            Err(Failure::Offline(format!(
                "no answer within {} s",
                OP_TIMEOUT.as_secs()
            )))
        })
    }

    async fn apply_one(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        item: &Item,
    ) -> Result<(), Failure> {
        match item {
            Item::Deployment { json, record } => self.put_deployment_tx(tx, record, json).await,
            Item::Chunk {
                deployment_id,
                kind,
                first_seq,
                records,
            } => {
                let span = records.len() as i64;
                let first = i64::try_from(*first_seq).map_err(|_| {
                    Failure::Other(HistoryError::Settings {
                        url: self.url().to_string(),
                        reason: format!("sequence number {first_seq} out of range"),
                    })
                })?;
                let body = codec::encode_chunk(records.iter().map(Vec::as_slice));
                tx.execute(
                    "INSERT INTO adeploy_chunks (deployment_id, kind, first_seq, span, records, body) \
                     SELECT $1::text, $2::smallint, $3::bigint, $4::bigint, $5::integer, $6::bytea \
                     WHERE NOT EXISTS ( \
                       SELECT 1 FROM adeploy_chunks WHERE deployment_id = $1::text \
                       AND kind = $2::smallint AND first_seq < $3::bigint + $4::bigint \
                       AND first_seq + span > $3::bigint) \
                     ON CONFLICT DO NOTHING",
                    &[
                        deployment_id,
                        &i16::from(kind.code()),
                        &first,
                        &span,
                        &(span as i32),
                        &body,
                    ],
                )
                .await
                .map_err(self.sort("store decisions or samples"))?;
                Ok(())
            }
            Item::Audit { json, ts_ms } => {
                let digest = Sha256::digest(json).to_vec();
                tx.execute(
                    "INSERT INTO adeploy_audit (ts_ms, digest, body) VALUES ($1, $2, $3) \
                     ON CONFLICT (ts_ms, digest) DO NOTHING",
                    &[ts_ms, &digest, &codec::compress(json)],
                )
                .await
                .map_err(self.sort("append to the audit log"))?;
                Ok(())
            }
            Item::Blob { name, bytes } => {
                tx.execute(
                    "INSERT INTO adeploy_blobs (name, body, updated_at) VALUES ($1, $2, now()) \
                     ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = now()",
                    &[name, &codec::compress(bytes)],
                )
                .await
                .map_err(self.sort("store a blob"))?;
                Ok(())
            }
            Item::DeleteBlob { name } => {
                tx.execute("DELETE FROM adeploy_blobs WHERE name = $1", &[name])
                    .await
                    .map_err(self.sort("delete a blob"))?;
                Ok(())
            }
        }
    }

    /// Upserts a deployment and moves its contribution to the aggregates.
    async fn put_deployment_tx(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        record: &DeploymentRecord,
        json: &[u8],
    ) -> Result<(), Failure> {
        let old = tx
            .query_opt(
                "SELECT counted, strategy, environment, services, success, duration_s, started_ms, \
                 has_features FROM adeploy_deployments WHERE id = $1 FOR UPDATE",
                &[&record.id],
            )
            .await
            .map_err(self.sort("read a deployment"))?
            .and_then(|row| {
                let counted: bool = row.get(0);
                counted.then(|| Contribution {
                    strategy: row.get(1),
                    environment: row.get(2),
                    services: row.get(3),
                    success: row.get::<_, Option<bool>>(4).unwrap_or(false),
                    duration_s: row.get::<_, Option<f64>>(5).unwrap_or(0.0),
                    started_ms: row.get(6),
                    has_features: row.get(7),
                })
            });
        let new = Contribution::of(record);
        let mut services = record.services.clone();
        services.sort();
        services.dedup();
        tx.execute(
            "INSERT INTO adeploy_deployments (id, started_ms, status, counted, strategy, environment, \
             services, success, duration_s, body, has_features) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, status = excluded.status, \
             counted = excluded.counted, strategy = excluded.strategy, environment = excluded.environment, \
             services = excluded.services, success = excluded.success, duration_s = excluded.duration_s, \
             body = excluded.body, has_features = excluded.has_features",
            &[
                &record.id,
                &record.started_at.timestamp_millis(),
                &record.status.as_str(),
                &new.is_some(),
                &record.strategy,
                &record.environment,
                &services,
                &record.success,
                &new.as_ref().map(|c| c.duration_s).or(record.duration_s),
                &codec::compress(json),
                &record.features.is_some(),
            ],
        )
        .await
        .map_err(self.sort("store a deployment"))?;
        if old != new {
            self.update_aggregates(tx, old.as_ref(), new.as_ref())
                .await?;
        }
        Ok(())
    }

    /// Read-modify-write of the touched aggregate rows, each locked first
    /// (an empty row is inserted if missing, so there is always a row to
    /// lock), in key order, so concurrent runners never lose an update.
    async fn update_aggregates(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        old: Option<&Contribution>,
        new: Option<&Contribution>,
    ) -> Result<(), Failure> {
        let (strategies, services) = aggregate::touched_keys(old, new);
        for (strategy, environment) in &strategies {
            tx.execute(
                "INSERT INTO adeploy_agg_strategy (strategy, environment, deployments, successes, \
                 duration_s_total) VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING",
                &[strategy, environment],
            )
            .await
            .map_err(self.sort("update the aggregates"))?;
            let row = tx
                .query_one(
                    "SELECT deployments, successes, duration_s_total, last_started_ms, with_features \
                     FROM adeploy_agg_strategy WHERE strategy = $1 AND environment = $2 FOR UPDATE",
                    &[strategy, environment],
                )
                .await
                .map_err(self.sort("update the aggregates"))?;
            let current = StrategyStats {
                strategy: strategy.clone(),
                environment: environment.clone(),
                deployments: row.get::<_, i64>(0).max(0) as u64,
                successes: row.get::<_, i64>(1).max(0) as u64,
                duration_s_total: row.get(2),
                last_started_at: row.get::<_, Option<i64>>(3).and_then(from_ms),
                with_features: row.get::<_, i64>(4).max(0) as u64,
            };
            let next = aggregate::apply_strategy(
                Some(current),
                strategy,
                environment,
                aggregate::for_strategy(old, strategy, environment),
                aggregate::for_strategy(new, strategy, environment),
            );
            tx.execute(
                "UPDATE adeploy_agg_strategy SET deployments = $3, successes = $4, \
                 duration_s_total = $5, last_started_ms = $6, with_features = $7 \
                 WHERE strategy = $1 AND environment = $2",
                &[
                    strategy,
                    environment,
                    &(next.deployments as i64),
                    &(next.successes as i64),
                    &next.duration_s_total,
                    &next.last_started_at.map(|t| t.timestamp_millis()),
                    &(next.with_features as i64),
                ],
            )
            .await
            .map_err(self.sort("update the aggregates"))?;
        }
        for (service, environment) in &services {
            tx.execute(
                "INSERT INTO adeploy_agg_service (service, environment, deployments, successes, \
                 consecutive_failures) VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING",
                &[service, environment],
            )
            .await
            .map_err(self.sort("update the aggregates"))?;
            let row = tx
                .query_one(
                    "SELECT deployments, successes, consecutive_failures, last_started_ms, last_success \
                     FROM adeploy_agg_service WHERE service = $1 AND environment = $2 FOR UPDATE",
                    &[service, environment],
                )
                .await
                .map_err(self.sort("update the aggregates"))?;
            let current = ServiceStats {
                service: service.clone(),
                environment: environment.clone(),
                deployments: row.get::<_, i64>(0).max(0) as u64,
                successes: row.get::<_, i64>(1).max(0) as u64,
                consecutive_failures: row.get::<_, i64>(2).max(0) as u64,
                last_started_at: row.get::<_, Option<i64>>(3).and_then(from_ms),
                last_success: row.get(4),
            };
            let next = aggregate::apply_service(
                Some(current),
                service,
                environment,
                aggregate::for_service(old, service, environment),
                aggregate::for_service(new, service, environment),
            );
            tx.execute(
                "UPDATE adeploy_agg_service SET deployments = $3, successes = $4, \
                 consecutive_failures = $5, last_started_ms = $6, last_success = $7 \
                 WHERE service = $1 AND environment = $2",
                &[
                    service,
                    environment,
                    &(next.deployments as i64),
                    &(next.successes as i64),
                    &(next.consecutive_failures as i64),
                    &next.last_started_at.map(|t| t.timestamp_millis()),
                    &next.last_success,
                ],
            )
            .await
            .map_err(self.sort("update the aggregates"))?;
        }
        Ok(())
    }

    pub(crate) async fn put_deployment(
        &self,
        record: &DeploymentRecord,
    ) -> Result<(), HistoryError> {
        let json =
            serde_json::to_vec(record).map_err(|source| self.encode_error(&record.id, source))?;
        let mut state = self.writes.lock().await;
        self.write(
            &mut state,
            vec![Item::Deployment {
                json,
                record: Box::new(record.clone()),
            }],
        )
        .await
    }

    pub(crate) async fn append_series<T: serde::Serialize>(
        &self,
        deployment_id: &str,
        kind: ChunkKind,
        records: &[T],
    ) -> Result<(), HistoryError> {
        if records.is_empty() {
            return Ok(());
        }
        let json = records
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| {
                self.encode_error(&format!("{}/{deployment_id}", kind.name()), source)
            })?;
        let mut state = self.writes.lock().await;
        let key = (deployment_id.to_string(), kind);
        let first = match state.next_seq.get(&key) {
            Some(next) => *next,
            None => match self.next_seq(deployment_id, kind).await {
                Ok(next) => next,
                // Out of reach and never seen: number after anything a
                // runner could have stored (microseconds since the epoch),
                // so the order holds and a replay stays idempotent.
                Err(Failure::Offline(_)) => Utc::now().timestamp_micros().max(0) as u64,
                Err(Failure::Other(err)) => return Err(err),
            },
        };
        state
            .next_seq
            .insert(key, first.saturating_add(json.len() as u64));
        self.write(
            &mut state,
            vec![Item::Chunk {
                deployment_id: deployment_id.to_string(),
                kind,
                first_seq: first,
                records: json,
            }],
        )
        .await
    }

    async fn next_seq(&self, deployment_id: &str, kind: ChunkKind) -> Result<u64, Failure> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(first_seq + span), 0)::bigint FROM adeploy_chunks \
                 WHERE deployment_id = $1 AND kind = $2",
                &[&deployment_id, &i16::from(kind.code())],
            )
            .await
            .map_err(self.sort("number decisions or samples"))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    pub(crate) async fn append_audit(&self, entry: &AuditEntry) -> Result<(), HistoryError> {
        let json =
            serde_json::to_vec(entry).map_err(|source| self.encode_error("audit_log", source))?;
        let mut state = self.writes.lock().await;
        self.write(
            &mut state,
            vec![Item::Audit {
                json,
                ts_ms: entry.timestamp.timestamp_millis(),
            }],
        )
        .await
    }

    pub(crate) async fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        let mut state = self.writes.lock().await;
        self.write(
            &mut state,
            vec![Item::Blob {
                name: name.to_string(),
                bytes: bytes.to_vec(),
            }],
        )
        .await
    }

    pub(crate) async fn delete_blob(&self, name: &str) -> Result<bool, HistoryError> {
        let existed = self.get_blob(name).await?.is_some();
        let mut state = self.writes.lock().await;
        self.write(
            &mut state,
            vec![Item::DeleteBlob {
                name: name.to_string(),
            }],
        )
        .await?;
        Ok(existed)
    }

    /// Replays the journal now; returns how many items were stored.
    pub(crate) async fn sync(&self) -> Result<usize, HistoryError> {
        let mut state = self.writes.lock().await;
        let replayed = self.replay(&mut state).await?;
        state.replay_pause = None;
        Ok(replayed)
    }

    /// Items waiting in the journal.
    pub(crate) fn journal_pending(&self) -> usize {
        self.journal.pending_items()
    }

    /// The local journal's file (in the state directory).
    pub fn journal_path(&self) -> std::path::PathBuf {
        self.journal.path()
    }

    fn encode_error(&self, key: &str, source: serde_json::Error) -> HistoryError {
        HistoryError::Encode {
            path: self.url().into(),
            key: key.to_string(),
            source,
        }
    }

    fn location(&self) -> std::path::PathBuf {
        self.url().into()
    }

    // ---- reads ------------------------------------------------------------

    pub(crate) async fn get_deployment(
        &self,
        id: &str,
    ) -> Result<Option<DeploymentRecord>, HistoryError> {
        let c = self.reader().await?;
        let body = self
            .timed(
                "read a deployment",
                c.query_opt("SELECT body FROM adeploy_deployments WHERE id = $1", &[&id]),
            )
            .await
            .map_err(|f| self.reading(f))?
            .map(|r| r.get::<_, Vec<u8>>(0));
        body.map(|b| super::embedded::decode_deployment(&self.location(), id, &b))
            .transpose()
    }

    pub(crate) async fn detail(&self, id: &str) -> Result<Option<DeploymentDetail>, HistoryError> {
        let Some(record) = self.get_deployment(id).await? else {
            return Ok(None);
        };
        Ok(Some(DeploymentDetail {
            record,
            decisions: self.decisions(id).await?,
            samples: self.samples(id).await?,
        }))
    }

    /// Up to `limit` decodable deployments in start order, pages of rows at a
    /// time (a record that does not decode is skipped, not counted).
    async fn deployments_in_order(
        &self,
        newest_first: bool,
        limit: usize,
        finished_only: bool,
    ) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let page = limit.clamp(1, 1000) as i64;
        let mut out = Vec::new();
        let mut after: Option<(i64, String)> = None;
        let location = self.location();
        while out.len() < limit {
            let (cmp, order) = if newest_first {
                ("<", "DESC")
            } else {
                (">", "ASC")
            };
            let status = if finished_only {
                "AND status <> 'running'"
            } else {
                ""
            };
            let sql = format!(
                "SELECT id, body, started_ms FROM adeploy_deployments \
                 WHERE ($1::bigint IS NULL OR (started_ms, id) {cmp} ($1, $2)) {status} \
                 ORDER BY started_ms {order}, id {order} LIMIT $3"
            );
            let (ms, last_id) = match &after {
                Some((ms, id)) => (Some(*ms), id.clone()),
                None => (None, String::new()),
            };
            let c = self.reader().await?;
            let rows = self
                .timed("list deployments", c.query(&sql, &[&ms, &last_id, &page]))
                .await
                .map_err(|f| self.reading(f))?;
            let fetched = rows.len();
            for row in rows {
                let id: String = row.get(0);
                let body: Vec<u8> = row.get(1);
                after = Some((row.get(2), id.clone()));
                if out.len() < limit
                    && let Some(record) = super::store_decode_or_skip::<DeploymentRecord>(
                        &location,
                        &super::embedded::deployment_key(&id),
                        &body,
                    )
                {
                    out.push(record);
                }
            }
            if (fetched as i64) < page {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) async fn list_deployments(
        &self,
        limit: usize,
    ) -> Result<Vec<DeploymentRecord>, HistoryError> {
        self.deployments_in_order(true, limit, false).await
    }

    pub(crate) async fn all_deployments(&self) -> Result<Vec<DeploymentRecord>, HistoryError> {
        self.deployments_in_order(false, usize::MAX, true).await
    }

    pub(crate) async fn aggregates(&self) -> Result<Aggregates, HistoryError> {
        let c = self.reader().await?;
        let strategies = self
            .timed(
                "read the aggregates",
                c.query(
                    "SELECT strategy, environment, deployments, successes, duration_s_total, \
                     last_started_ms, with_features FROM adeploy_agg_strategy \
                     ORDER BY strategy, environment",
                    &[],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?;
        let services = self
            .timed(
                "read the aggregates",
                c.query(
                    "SELECT service, environment, deployments, successes, consecutive_failures, \
                     last_started_ms, last_success FROM adeploy_agg_service ORDER BY service, environment",
                    &[],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?;
        {
            Ok(Aggregates {
                by_strategy: strategies
                    .iter()
                    .map(|r| StrategyStats {
                        strategy: r.get(0),
                        environment: r.get(1),
                        deployments: r.get::<_, i64>(2).max(0) as u64,
                        successes: r.get::<_, i64>(3).max(0) as u64,
                        duration_s_total: r.get(4),
                        last_started_at: r.get::<_, Option<i64>>(5).and_then(from_ms),
                        with_features: r.get::<_, i64>(6).max(0) as u64,
                    })
                    .collect(),
                by_service: services
                    .iter()
                    .map(|r| ServiceStats {
                        service: r.get(0),
                        environment: r.get(1),
                        deployments: r.get::<_, i64>(2).max(0) as u64,
                        successes: r.get::<_, i64>(3).max(0) as u64,
                        consecutive_failures: r.get::<_, i64>(4).max(0) as u64,
                        last_started_at: r.get::<_, Option<i64>>(5).and_then(from_ms),
                        last_success: r.get(6),
                    })
                    .collect(),
            })
        }
    }

    pub(crate) async fn window(&self, recent: usize) -> Result<HistoryWindow, HistoryError> {
        Ok(HistoryWindow {
            recent: self.list_deployments(recent).await?,
            aggregates: self.aggregates().await?,
        })
    }

    async fn series(
        &self,
        deployment_id: &str,
        kind: ChunkKind,
    ) -> Result<Vec<(u64, Box<serde_json::value::RawValue>)>, HistoryError> {
        let c = self.reader().await?;
        let rows = self
            .timed(
                "read decisions or samples",
                c.query(
                    "SELECT first_seq, body FROM adeploy_chunks \
                     WHERE deployment_id = $1 AND kind = $2 ORDER BY first_seq",
                    &[&deployment_id, &i16::from(kind.code())],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?;
        let mut out = Vec::new();
        for row in rows {
            let first = row.get::<_, i64>(0).max(0) as u64;
            let body: Vec<u8> = row.get(1);
            match codec::decode_chunk(&body) {
                Ok(records) => out.extend(
                    records
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| (first + i as u64, r)),
                ),
                Err(reason) => {
                    tracing::warn!(url = %self.url(), key = %format!("{}/{deployment_id}#{first}", kind.name()), %reason, "skipping history records that cannot be decoded")
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn decisions(&self, id: &str) -> Result<Vec<DecisionRecord>, HistoryError> {
        let raw = self.series(id, ChunkKind::Decisions).await?;
        Ok(decode_series(
            &self.location(),
            id,
            ChunkKind::Decisions,
            &raw,
        ))
    }

    pub(crate) async fn samples(&self, id: &str) -> Result<Vec<MetricSample>, HistoryError> {
        let raw = self.series(id, ChunkKind::Samples).await?;
        Ok(sorted_samples(decode_series(
            &self.location(),
            id,
            ChunkKind::Samples,
            &raw,
        )))
    }

    pub(crate) async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, HistoryError> {
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.reader().await?;
        let rows = self
            .timed(
                "read the audit log",
                c.query(
                    "SELECT ts_ms, body FROM adeploy_audit ORDER BY ts_ms DESC, id DESC LIMIT $1",
                    &[&limit_sql],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?;
        let location = self.location();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let ms: i64 = r.get(0);
                let body: Vec<u8> = r.get(1);
                super::store_decode_or_skip(&location, &format!("audit_log/{ms}"), &body)
            })
            .collect())
    }

    pub(crate) async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        let c = self.reader().await?;
        let body = self
            .timed(
                "read a blob",
                c.query_opt("SELECT body FROM adeploy_blobs WHERE name = $1", &[&name]),
            )
            .await
            .map_err(|f| self.reading(f))?
            .map(|r| r.get::<_, Vec<u8>>(0));
        body.map(|b| {
            codec::decompress(&b).map_err(|reason| HistoryError::Corrupt {
                path: self.location(),
                reason: format!("blob {name}: {reason}"),
            })
        })
        .transpose()
    }

    pub(crate) async fn stats(&self) -> Result<HistoryStats, HistoryError> {
        let c = self.reader().await?;
        let row = self
            .timed(
                "measure the history",
                c.query_one(
                    "SELECT (SELECT count(*) FROM adeploy_deployments), \
                         (SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint \
                            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE c.relkind = 'r' AND c.relname LIKE 'adeploy\\_%' \
                            AND n.nspname = ANY (current_schemas(false)))",
                    &[],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?;
        let (deployments, bytes) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        let last = self.list_deployments(1).await?.into_iter().next();
        Ok(HistoryStats {
            deployments: deployments.max(0) as u64,
            last,
            db_bytes: bytes.max(0) as u64,
            path: self.location(),
        })
    }

    /// See [`History::downsample`](super::History::downsample).
    pub(crate) async fn downsample(
        &self,
        before: DateTime<Utc>,
        keep: usize,
    ) -> Result<usize, HistoryError> {
        let keep = keep.max(1);
        let before_ms = before.timestamp_millis();
        let keep_sql = keep as i64;
        let c = self.reader().await?;
        let ids: Vec<String> = self
            .timed(
                "find samples to downsample",
                c.query(
                    "SELECT c.deployment_id FROM adeploy_chunks c \
                     JOIN adeploy_deployments d ON d.id = c.deployment_id \
                     WHERE c.kind = 2 AND d.started_ms < $1 \
                     GROUP BY c.deployment_id HAVING SUM(c.records) > $2",
                    &[&before_ms, &keep_sql],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(c);
        for id in &ids {
            let samples = self.samples(id).await?;
            let reduced = super::downsample(&samples, keep);
            let json = reduced
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| self.encode_error(&format!("metric_samples/{id}"), source))?;
            let body = codec::encode_chunk(json.iter().map(Vec::as_slice));
            let count = json.len() as i32;
            let mut client = self.reader().await?;
            let result: Result<(), Failure> = async {
                let tx = self
                    .timed("downsample samples", client.transaction())
                    .await?;
                // The new chunk covers every number the old ones did, so a
                // late journal replay of one of them is still recognised.
                let span: i64 = self
                    .timed(
                        "downsample samples",
                        tx.query_one(
                            "SELECT COALESCE(MAX(first_seq + span), 1)::bigint FROM adeploy_chunks \
                             WHERE deployment_id = $1 AND kind = 2",
                            &[id],
                        ),
                    )
                    .await?
                    .get(0);
                self.timed(
                    "downsample samples",
                    tx.execute(
                        "DELETE FROM adeploy_chunks WHERE deployment_id = $1 AND kind = 2",
                        &[id],
                    ),
                )
                .await?;
                self.timed(
                    "downsample samples",
                    tx.execute(
                        "INSERT INTO adeploy_chunks (deployment_id, kind, first_seq, span, records, body) \
                         VALUES ($1, 2, 0, $2, $3, $4)",
                        &[id, &span.max(1), &count, &body],
                    ),
                )
                .await?;
                self.timed("downsample samples", tx.commit()).await
            }
            .await;
            result.map_err(|f| self.reading(f))?;
        }
        Ok(ids.len())
    }

    // ---- export / import ----------------------------------------------------

    pub(crate) async fn export_to(&self, sink: &mut ExportSink<'_>) -> Result<(), HistoryError> {
        let client = self.client().await.map_err(|f| self.reading(f))?;
        let location = self.location();
        let no_params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];

        let rows = client
            .query_raw(
                "SELECT body FROM adeploy_deployments ORDER BY started_ms, id",
                no_params,
            )
            .await
            .map_err(|e| self.reading(self.sort("export deployments")(e)))?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| self.reading(self.sort("export deployments")(e)))?;
            let json = self.raw(&row.get::<_, Vec<u8>>(0))?;
            sink.deployment(&json)?;
        }

        let rows = client
            .query_raw(
                "SELECT deployment_id, kind, first_seq, body FROM adeploy_chunks \
                 ORDER BY deployment_id, kind, first_seq",
                no_params,
            )
            .await
            .map_err(|e| self.reading(self.sort("export decisions and samples")(e)))?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row =
                row.map_err(|e| self.reading(self.sort("export decisions and samples")(e)))?;
            let id: String = row.get(0);
            let Some(kind) = u8::try_from(row.get::<_, i16>(1))
                .ok()
                .and_then(ChunkKind::from_code)
            else {
                continue;
            };
            let first = row.get::<_, i64>(2).max(0) as u64;
            match codec::decode_chunk(&row.get::<_, Vec<u8>>(3)) {
                Ok(records) => {
                    for (i, record) in records.iter().enumerate() {
                        sink.series(kind, &id, first + i as u64, record.get().as_bytes())?;
                    }
                }
                Err(reason) => {
                    tracing::warn!(path = %location.display(), key = %format!("{}/{id}#{first}", kind.name()), %reason, "not exporting a chunk that cannot be decoded")
                }
            }
        }

        let rows = client
            .query_raw(
                "SELECT body FROM adeploy_audit ORDER BY ts_ms, id",
                no_params,
            )
            .await
            .map_err(|e| self.reading(self.sort("export the audit log")(e)))?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| self.reading(self.sort("export the audit log")(e)))?;
            let json = self.raw(&row.get::<_, Vec<u8>>(0))?;
            sink.audit(&json)?;
        }

        let rows = client
            .query("SELECT name, body FROM adeploy_blobs ORDER BY name", &[])
            .await
            .map_err(|e| self.reading(self.sort("export blobs")(e)))?;
        for row in rows {
            let name: String = row.get(0);
            let bytes = self.raw(&row.get::<_, Vec<u8>>(1))?;
            sink.blob(&name, &bytes)?;
        }
        Ok(())
    }

    fn raw(&self, stored: &[u8]) -> Result<Vec<u8>, HistoryError> {
        codec::decompress(stored).map_err(|reason| HistoryError::Corrupt {
            path: self.location(),
            reason,
        })
    }

    /// Stores imported items directly (an import needs the database).
    pub(crate) async fn apply_items(&self, items: &[Item]) -> Result<(), HistoryError> {
        self.apply(items).await.map_err(|f| self.reading(f))
    }

    // ---- locks --------------------------------------------------------------

    pub(crate) async fn lock_deployment(
        &self,
        request: &LockRequest,
        wait: Duration,
        on_wait: &mut (dyn FnMut(&LockWait) + Send),
    ) -> Result<DeploymentLock, HistoryError> {
        let holder = LockHolder::me(&request.deployment_id);
        let session = LockSession::open(&self.connector).await?;
        session
            .lock_services(request, &holder, wait, on_wait)
            .await?;
        Ok(DeploymentLock {
            inner: LockInner::Postgres(session),
            request: request.clone(),
            holder,
        })
    }

    pub(crate) async fn try_lock_retrain(&self) -> Result<Option<RetrainLock>, HistoryError> {
        let session = LockSession::open(&self.connector).await?;
        Ok(session.try_retrain().await?.then_some(RetrainLock {
            _inner: RetrainInner::Postgres(session),
        }))
    }

    /// Marks `running` deployments whose runner is gone `interrupted`,
    /// testing each one's key on `session` (never `own`, which this session
    /// holds itself).
    pub(crate) async fn recover_with(
        &self,
        session: &LockSession,
        own: Option<&str>,
    ) -> Result<Vec<String>, HistoryError> {
        let c = self.reader().await?;
        let ids: Vec<String> = self
            .timed(
                "find running deployments",
                c.query(
                    "SELECT id FROM adeploy_deployments WHERE status = 'running' ORDER BY id",
                    &[],
                ),
            )
            .await
            .map_err(|f| self.reading(f))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(c);
        let mut recovered = Vec::new();
        for id in ids {
            if own == Some(id.as_str()) || !session.is_abandoned(&id).await? {
                continue;
            }
            let Some(record) = self.get_deployment(&id).await? else {
                continue;
            };
            if record.status != DeploymentStatus::Running {
                continue;
            }
            let record = mark_interrupted(record);
            self.put_deployment(&record).await?;
            tracing::warn!(deployment_id = %id, "marked a deployment whose runner is gone as interrupted");
            recovered.push(id);
        }
        Ok(recovered)
    }

    pub(crate) async fn recover_abandoned(&self) -> Result<Vec<String>, HistoryError> {
        let session = LockSession::open(&self.connector).await?;
        let recovered = self.recover_with(&session, None).await;
        session.release().await;
        recovered
    }

    /// Runs SQL directly, for tests that damage or inspect the database.
    #[cfg(test)]
    pub(crate) async fn execute_raw(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, HistoryError> {
        let client = self.client().await.map_err(|f| self.reading(f))?;
        client
            .execute(sql, params)
            .await
            .map_err(|e| self.reading(self.sort("run a test statement")(e)))
    }
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}
