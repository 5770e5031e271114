//! Tests on real redb files in temporary directories and a real PostgreSQL
//! server started by the tests (`adeploy_fixtures::pg_server`, shared with
//! the CLI's tests).
//!
//! `matrix_tests.rs` holds the behaviour both backends must share; each of its
//! cases runs once per backend (the [`matrix!`] macro writes the two test
//! functions). `embedded_tests.rs` and `pg_tests.rs` hold what only one
//! backend has: damaged redb files, locks across processes, the journal.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};

use super::store::{CHUNKS, DEPLOYMENTS, DEPLOYMENTS_BY_START};
use super::*;
use crate::config::HistoryUrl;
use adeploy_fixtures::pg_server;

mod embedded_tests;
mod matrix_tests;
mod pg_tests;

pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

pub(crate) fn deployment(id: &str, started: i64, status: DeploymentStatus) -> DeploymentRecord {
    DeploymentRecord {
        environment: "staging".into(),
        strategy: "balanced".into(),
        services: vec!["api".into(), "web".into()],
        deployment_size: "medium".into(),
        status,
        ..DeploymentRecord::running(id, at(started))
    }
}

/// A finished record with an outcome (it counts in the aggregates).
pub(crate) fn finished(id: &str, started: i64, success: bool, duration: i64) -> DeploymentRecord {
    let mut r = deployment(id, started, DeploymentStatus::Running);
    let status = if success {
        DeploymentStatus::Succeeded
    } else {
        DeploymentStatus::RolledBack
    };
    r.finish(status, at(started + duration));
    r
}

/// `record` with a feature context (a training row of the model).
pub(crate) fn featured(mut record: DeploymentRecord) -> DeploymentRecord {
    record.features = Some(FeatureContext {
        cpu_percent: 10.0,
        memory_percent: 20.0,
        disk_percent: 30.0,
        load_per_core: 0.2,
        network_latency_ms: None,
        environment: crate::config::Environment::Staging,
        size_ordinal: 1.0,
        service_count: 2.0,
        hour: 12.0,
        weekday: 2.0,
        success_rate_overall: 0.5,
        success_rate_strategy: 0.5,
        recent_failures: 0.0,
        mean_duration_min: 1.0,
        service_success_min: None,
        image_bucket: None,
        image_success_min: None,
        service_success_product: None,
    });
    record
}

pub(crate) fn ids(records: &[DeploymentRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// Writes raw bytes into a redb table, bypassing the encoding.
pub(crate) fn put_raw(path: &Path, write: impl FnOnce(&::redb::WriteTransaction)) {
    let db = ::redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    write(&txn);
    txn.commit().unwrap();
}

/// This test binary, set to run only the ignored helper test `module::name`.
pub(crate) fn helper_process(module: &str, name: &str) -> Command {
    // `module_path!()` is `adeploy::history::tests::…`; test names omit the crate.
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        &format!("{module}::{name}"),
        "--exact",
        "--ignored",
        "--test-threads=1",
    ]);
    command
}

/// Which backend a matrix case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Redb,
    Postgres,
}

/// A fresh, empty history of one backend: a redb file in a temporary state
/// directory, or a new database on the shared test server (with the same
/// kind of temporary state directory for its journal).
pub(crate) struct Fixture {
    pub(crate) store: HistoryStore,
    pub(crate) kind: Kind,
    pub(crate) state: tempfile::TempDir,
    pub(crate) url: Option<String>,
}

impl Fixture {
    pub(crate) async fn new(kind: Kind) -> Fixture {
        let state = tempfile::tempdir().unwrap();
        match kind {
            Kind::Redb => Fixture {
                store: HistoryStore::open_local(state.path()).await.unwrap(),
                kind,
                state,
                url: None,
            },
            Kind::Postgres => {
                let url = tokio::task::spawn_blocking(|| pg_server::shared().create_database())
                    .await
                    .unwrap();
                let store = Fixture::connect(&url, state.path()).await;
                Fixture {
                    store,
                    kind,
                    state,
                    url: Some(url),
                }
            }
        }
    }

    /// Another connection to the same history (another runner).
    pub(crate) async fn another(&self) -> HistoryStore {
        match &self.url {
            Some(url) => Fixture::connect(url, self.state.path()).await,
            None => HistoryStore::open_local(self.state.path()).await.unwrap(),
        }
    }

    pub(crate) async fn connect(url: &str, state: &Path) -> HistoryStore {
        let pg = PgHistory::connect_with_env(&HistoryUrl::new(url), None, state, &|_| None)
            .await
            .unwrap();
        HistoryStore::postgres(pg)
    }

    /// Stores `bytes` as deployment `id` (started at `started` seconds),
    /// bypassing the encoding: a damaged record.
    pub(crate) async fn put_raw_deployment(&self, id: &str, started: i64, bytes: &[u8]) {
        let ms = at(started).timestamp_millis();
        match self.kind {
            Kind::Redb => {
                let path = self.store.as_local().unwrap().path().to_path_buf();
                put_raw(&path, |txn| {
                    txn.open_table(DEPLOYMENTS)
                        .unwrap()
                        .insert(id, bytes)
                        .unwrap();
                    txn.open_table(DEPLOYMENTS_BY_START)
                        .unwrap()
                        .insert((ms, id), ())
                        .unwrap();
                });
            }
            Kind::Postgres => {
                let services: Vec<String> = Vec::new();
                self.store
                    .as_postgres()
                    .unwrap()
                    .execute_raw(
                        "INSERT INTO adeploy_deployments (id, started_ms, status, counted, strategy, \
                         environment, services, body) VALUES ($1, $2, 'succeeded', false, '', '', $3, $4)",
                        &[&id, &ms, &services, &bytes],
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// Stores `bytes` as the decision chunk of `id` starting at `first`.
    pub(crate) async fn put_raw_decisions(&self, id: &str, first: u64, span: u64, bytes: &[u8]) {
        match self.kind {
            Kind::Redb => {
                let path = self.store.as_local().unwrap().path().to_path_buf();
                put_raw(&path, |txn| {
                    txn.open_table(CHUNKS)
                        .unwrap()
                        .insert((id, 1u8, first), (span, span, bytes))
                        .unwrap();
                });
            }
            Kind::Postgres => {
                self.store
                    .as_postgres()
                    .unwrap()
                    .execute_raw(
                        "INSERT INTO adeploy_chunks (deployment_id, kind, first_seq, span, records, body) \
                         VALUES ($1, 1, $2, $3, $4, $5)",
                        &[&id, &(first as i64), &(span as i64), &(span as i32), &bytes],
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// Writes one test per backend for each `async fn name(kind: Kind)` listed.
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Redb).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use matrix;

/// A finished step of `service` in `wave` (from 1) with `message`.
pub(crate) fn step(service: &str, wave: u32, message: &str) -> StepRecord {
    StepRecord {
        service: service.into(),
        host: None,
        wave,
        status: StepStatus::Succeeded,
        started_at: Some(at(1)),
        seconds: 0.5,
        message: message.into(),
        rolled_back: None,
        rollback_message: None,
        version: None,
        previous_version: None,
        phases: Vec::new(),
        container: None,
    }
}
