//! The PostgreSQL schema and its versioned migrations.
//!
//! `adeploy_schema_version` holds one row per applied migration. At start a
//! runner reads the highest version with a plain `SELECT` (so a role that
//! may only read and write rows can use a database someone else migrated).
//! Newer than this build knows: [`HistoryError::NewerSchema`], nothing is
//! touched. Older: the missing migrations run in one transaction under a
//! transaction-scoped advisory lock, so two runners starting at once never
//! both migrate; the second finds the work done.
//!
//! Why hand-written SQL and not a migration crate: one ordered list of
//! statements and a version table is all adeploy needs, and the check must
//! refuse a newer schema with adeploy's own error (exit 2), which the
//! migration crates do not do on their own.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::history::HistoryError;

/// The newest schema version this adeploy knows.
pub const PG_SCHEMA_VERSION: i64 = 2;

/// Advisory lock key (transaction scope) that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6164_6570_6c6f_7931; // "adeploy1"

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
/// Identifiers are `COLLATE "C"`, so that listings and exports order ids by
/// bytes, as the redb backend does.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE adeploy_deployments (
    id          text COLLATE "C" PRIMARY KEY,
    started_ms  bigint NOT NULL,
    status      text NOT NULL,
    counted     boolean NOT NULL,
    strategy    text NOT NULL,
    environment text NOT NULL,
    services    text[] NOT NULL,
    success     boolean,
    duration_s  double precision,
    body        bytea NOT NULL
);
CREATE INDEX adeploy_deployments_by_start ON adeploy_deployments (started_ms, id);
CREATE INDEX adeploy_deployments_running ON adeploy_deployments (id) WHERE status = 'running';

CREATE TABLE adeploy_chunks (
    deployment_id text COLLATE "C" NOT NULL,
    kind          smallint NOT NULL,
    first_seq     bigint NOT NULL,
    span          bigint NOT NULL,
    records       integer NOT NULL,
    body          bytea NOT NULL,
    PRIMARY KEY (deployment_id, kind, first_seq)
);

CREATE TABLE adeploy_audit (
    id     bigserial PRIMARY KEY,
    ts_ms  bigint NOT NULL,
    digest bytea NOT NULL,
    body   bytea NOT NULL,
    UNIQUE (ts_ms, digest)
);

CREATE TABLE adeploy_blobs (
    name       text COLLATE "C" PRIMARY KEY,
    body       bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE adeploy_agg_strategy (
    strategy         text COLLATE "C" NOT NULL,
    environment      text COLLATE "C" NOT NULL,
    deployments      bigint NOT NULL,
    successes        bigint NOT NULL,
    duration_s_total double precision NOT NULL,
    last_started_ms  bigint,
    PRIMARY KEY (strategy, environment)
);

CREATE TABLE adeploy_agg_service (
    service              text COLLATE "C" NOT NULL,
    environment          text COLLATE "C" NOT NULL,
    deployments          bigint NOT NULL,
    successes            bigint NOT NULL,
    consecutive_failures bigint NOT NULL,
    last_started_ms      bigint,
    last_success         boolean,
    PRIMARY KEY (service, environment)
);

CREATE TABLE adeploy_locks (
    lock_key      bigint PRIMARY KEY,
    environment   text NOT NULL,
    service       text NOT NULL,
    deployment_id text NOT NULL,
    holder_user   text NOT NULL,
    holder_host   text NOT NULL,
    holder_pid    bigint NOT NULL,
    since         timestamptz NOT NULL,
    backend_pid   integer NOT NULL
);
"#,
    // 2: the aggregates count the deployments whose record holds its feature
    // context (the model's training rows); `has_features` is filled in from
    // the records by `backfill_features` in the same transaction.
    r#"
ALTER TABLE adeploy_deployments ADD COLUMN has_features boolean NOT NULL DEFAULT false;
ALTER TABLE adeploy_agg_strategy ADD COLUMN with_features bigint NOT NULL DEFAULT 0;
"#,
];

/// Checks the schema version and applies missing migrations.
pub(crate) async fn ensure(client: &mut Client, url: &str) -> Result<(), HistoryError> {
    let found = current_version(client, url).await?;
    if found > PG_SCHEMA_VERSION {
        return Err(newer(url, found));
    }
    if found == PG_SCHEMA_VERSION {
        return Ok(());
    }
    let fail = |action: &'static str| {
        move |e: tokio_postgres::Error| HistoryError::Postgres {
            url: url.to_string(),
            action,
            source: Box::new(e),
        }
    };
    let tx = client
        .transaction()
        .await
        .map_err(fail("start the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail("lock the schema for its migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS adeploy_schema_version (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now(),
            applied_by text NOT NULL
        )",
    )
    .await
    .map_err(fail("create the schema version table"))?;
    // Another runner may have migrated while this one waited for the lock.
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM adeploy_schema_version",
            &[],
        )
        .await
        .map_err(fail("read the schema version"))?;
    let found: i64 = row.get(0);
    if found > PG_SCHEMA_VERSION {
        return Err(newer(url, found));
    }
    let by = format!("adeploy {}", env!("CARGO_PKG_VERSION"));
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= found {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(fail("apply a schema migration"))?;
        if version == 2 {
            backfill_features(&tx, url).await?;
        }
        tx.execute(
            "INSERT INTO adeploy_schema_version (version, applied_by) VALUES ($1, $2)",
            &[&(version as i32), &by],
        )
        .await
        .map_err(fail("record the schema version"))?;
        tracing::info!(url = %url, version, "migrated the history schema");
    }
    tx.commit()
        .await
        .map_err(fail("commit the schema migration"))
}

/// Migration 2's data step: `has_features` of every counted deployment from
/// its record, then `with_features` of every strategy aggregate. The
/// records are compressed JSON, so this is done here rather than in SQL.
async fn backfill_features(
    tx: &tokio_postgres::Transaction<'_>,
    url: &str,
) -> Result<(), HistoryError> {
    let fail = |action: &'static str| {
        move |e: tokio_postgres::Error| HistoryError::Postgres {
            url: url.to_string(),
            action,
            source: Box::new(e),
        }
    };
    let rows = tx
        .query(
            "SELECT id, body FROM adeploy_deployments WHERE counted",
            &[],
        )
        .await
        .map_err(fail("read the deployments to migrate"))?;
    let with: Vec<String> = rows
        .iter()
        .filter(|row| {
            crate::history::codec::decode_record::<crate::history::DeploymentRecord>(
                &row.get::<_, Vec<u8>>(1),
            )
            .is_ok_and(|r| r.features.is_some())
        })
        .map(|row| row.get(0))
        .collect();
    tx.execute(
        "UPDATE adeploy_deployments SET has_features = true WHERE id = ANY($1)",
        &[&with],
    )
    .await
    .map_err(fail("mark the deployments with features"))?;
    tx.execute(
        "UPDATE adeploy_agg_strategy a SET with_features = (SELECT count(*) FROM adeploy_deployments d          WHERE d.counted AND d.has_features AND d.strategy = a.strategy AND d.environment = a.environment)",
        &[],
    )
    .await
    .map_err(fail("count the deployments with features"))?;
    Ok(())
}

/// The highest applied version; 0 for a database adeploy never used.
pub(crate) async fn current_version(client: &Client, url: &str) -> Result<i64, HistoryError> {
    match client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM adeploy_schema_version",
            &[],
        )
        .await
    {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(HistoryError::Postgres {
            url: url.to_string(),
            action: "read the schema version",
            source: Box::new(e),
        }),
    }
}

fn newer(url: &str, found: i64) -> HistoryError {
    HistoryError::NewerSchema {
        url: url.to_string(),
        found,
        supported: PG_SCHEMA_VERSION,
    }
}
