//! PostgreSQL-only behaviour, against a real server: reaching it (and
//! failing to, without leaking the password), the schema version, runners
//! in other processes writing and locking at once, a runner killed while it
//! holds its lock, the server stopping in the middle of a run, migration
//! from redb.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::config::PasswordSource;
use adeploy_fixtures::pg_server::{self, PW_PASSWORD, PW_USER, PgServer};

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn shared_database() -> String {
    tokio::task::spawn_blocking(|| pg_server::shared().create_database())
        .await
        .unwrap()
}

async fn connect_env(
    url: &str,
    password: Option<&PasswordSource>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<HistoryStore, HistoryError> {
    let state = tempfile::tempdir().unwrap();
    PgHistory::connect_with_env(&HistoryUrl::new(url), password, state.path(), env)
        .await
        .map(HistoryStore::postgres)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_named_with_its_password_redacted() {
    let port = closed_port();
    let url = format!("postgres://ci:hunter2-secret@127.0.0.1:{port}/adeploy?sslmode=disable");
    let start = Instant::now();
    let err = connect_env(&url, None, &|_| None).await.unwrap_err();
    assert!(matches!(err, HistoryError::Unreachable { .. }), "{err}");
    assert!(err.needs_operator());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "postgres://ci:[redacted]@127.0.0.1:{port}/adeploy?sslmode=disable: cannot reach the history database"
        )),
        "{message}"
    );
    for shown in [message, format!("{err:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(start.elapsed() < Duration::from_secs(30));

    // A bad URL is a settings error, also redacted.
    let err = connect_env("postgres://ci:hunter2-secret@db:notaport/x", None, &|_| {
        None
    })
    .await
    .unwrap_err();
    assert!(matches!(err, HistoryError::Settings { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_comes_from_the_environment_and_never_shows() {
    let server = pg_server::shared();
    let url = server.create_database();
    let database = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let without = server.url(PW_USER, None, &database);

    // No password anywhere: the server refuses, and the message says where
    // a password can come from.
    let err = connect_env(&without, None, &|_| None).await.unwrap_err();
    assert!(matches!(err, HistoryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("PGPASSWORD"), "{err}");

    // A wrong one: refused, and not shown.
    let wrong = server.url(PW_USER, Some("wrong-pw-value"), &database);
    let err = connect_env(&wrong, None, &|_| None).await.unwrap_err();
    assert!(
        !format!("{err} {err:?}").contains("wrong-pw-value"),
        "{err}"
    );

    // From PGPASSWORD, from history.password.from_env, from a password file.
    let pgpassword = |v: &str| (v == "PGPASSWORD").then(|| PW_PASSWORD.to_string());
    let store = connect_env(&without, None, &pgpassword).await.unwrap();
    store.put_blob("x", b"y").await.unwrap();
    let source = PasswordSource {
        from_env: "ADEPLOY_TEST_DB_PW".into(),
    };
    let from_env = |v: &str| (v == "ADEPLOY_TEST_DB_PW").then(|| PW_PASSWORD.to_string());
    connect_env(&without, Some(&source), &from_env)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        format!("127.0.0.1:{}:*:{PW_USER}:{PW_PASSWORD}\n", server.port),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = file.display().to_string();
    let pgpass = |v: &str| (v == "PGPASSFILE").then(|| path.clone());
    let store = connect_env(&without, None, &pgpass).await.unwrap();
    assert_eq!(store.get_blob("x").await.unwrap(), Some(b"y".to_vec()));
    // The location never shows a password either.
    let with = server.url(PW_USER, Some(PW_PASSWORD), &database);
    let store = connect_env(&with, None, &|_| None).await.unwrap();
    let shown = format!("{} {:?}", store.location(), store.location());
    assert!(!shown.contains(PW_PASSWORD), "{shown}");
    assert!(shown.contains(&format!("{PW_USER}:[redacted]@")), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let url = shared_database().await;
    let store = connect_env(&url, None, &|_| None).await.unwrap();
    store
        .put_deployment(&deployment("d1", 1, DeploymentStatus::Succeeded))
        .await
        .unwrap();
    let pg = store.as_postgres().unwrap();
    assert_eq!(pg.schema_version().await.unwrap(), PG_SCHEMA_VERSION);
    pg.execute_raw(
        "INSERT INTO adeploy_schema_version (version, applied_by) VALUES ($1, 'adeploy 99')",
        &[&(PG_SCHEMA_VERSION as i32 + 1)],
    )
    .await
    .unwrap();

    let err = connect_env(&url, None, &|_| None).await.unwrap_err();
    assert!(matches!(err, HistoryError::NewerSchema { .. }), "{err}");
    assert!(err.needs_operator());
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "schema is at version {}, this adeploy knows versions up to {PG_SCHEMA_VERSION}",
            PG_SCHEMA_VERSION + 1
        )),
        "{message}"
    );
    assert!(
        message.starts_with("postgres://postgres@127.0.0.1:"),
        "{message}"
    );
    // Untouched: the record is still there, the version row too.
    assert_eq!(ids(&store.list_deployments(10).await.unwrap()), ["d1"]);
    assert_eq!(pg.schema_version().await.unwrap(), PG_SCHEMA_VERSION + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_gets_its_training_rows_counted() {
    let url = shared_database().await;
    let store = connect_env(&url, None, &|_| None).await.unwrap();
    store
        .put_deployment(&featured(finished("a", 10, true, 30)))
        .await
        .unwrap();
    store
        .put_deployment(&finished("b", 20, false, 30))
        .await
        .unwrap();
    store
        .put_deployment(&featured(finished("c", 30, false, 30)))
        .await
        .unwrap();
    // Back to version 1, as a database that adeploy 0.1 phase 1 created.
    let pg = store.as_postgres().unwrap();
    pg.execute_raw(
        "ALTER TABLE adeploy_deployments DROP COLUMN has_features",
        &[],
    )
    .await
    .unwrap();
    pg.execute_raw(
        "ALTER TABLE adeploy_agg_strategy DROP COLUMN with_features",
        &[],
    )
    .await
    .unwrap();
    pg.execute_raw("DELETE FROM adeploy_schema_version WHERE version > 1", &[])
        .await
        .unwrap();
    drop(store);

    let store = connect_env(&url, None, &|_| None).await.unwrap();
    assert_eq!(
        store.as_postgres().unwrap().schema_version().await.unwrap(),
        PG_SCHEMA_VERSION
    );
    let agg = store.aggregates().await.unwrap();
    assert_eq!(
        (agg.deployments(), agg.successes(), agg.with_features()),
        (3, 1, 2)
    );
    // Later writes keep it up to date.
    store
        .put_deployment(&finished("a", 10, true, 30))
        .await
        .unwrap();
    assert_eq!(store.aggregates().await.unwrap().with_features(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_starting_at_once_migrate_a_new_database_once() {
    let url = shared_database().await;
    let connects = (0..4).map(|_| connect_env(&url, None, &|_| None));
    let stores = futures_util::future::join_all(connects).await;
    for store in &stores {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let store = stores.into_iter().next().unwrap().unwrap();
    let pg = store.as_postgres().unwrap();
    let rows = pg
        .execute_raw(
            "UPDATE adeploy_schema_version SET applied_by = applied_by",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows, PG_SCHEMA_VERSION as u64);
}

// ---- runners in other processes ------------------------------------------

const URL_ENV: &str = "ADEPLOY_TEST_PG_URL";
const STATE_ENV: &str = "ADEPLOY_TEST_PG_STATE";
const NAME_ENV: &str = "ADEPLOY_TEST_PG_NAME";
const READY_ENV: &str = "ADEPLOY_TEST_PG_READY";
const WRITES: usize = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Not a test: a runner process of [`two_processes_write_at_once`].
#[test]
#[ignore = "helper process for two_processes_write_at_once"]
fn concurrent_writer_helper() {
    let (Ok(url), Ok(state), Ok(name)) = (
        std::env::var(URL_ENV),
        std::env::var(STATE_ENV),
        std::env::var(NAME_ENV),
    ) else {
        return;
    };
    runtime().block_on(async {
        let store = Fixture::connect(&url, Path::new(&state)).await;
        for i in 0..WRITES {
            let id = format!("{name}-{i:03}");
            let started = i as i64 * 10;
            store
                .put_deployment(&deployment(&id, started, DeploymentStatus::Running))
                .await
                .unwrap();
            let decisions: Vec<DecisionRecord> = (0..3)
                .map(|n| DecisionRecord {
                    timestamp: at(started + n),
                    decision_type: format!("step{n}"),
                    details: json!({ "writer": name }),
                })
                .collect();
            store.append_decisions(&id, &decisions[..1]).await.unwrap();
            store.append_decisions(&id, &decisions[1..]).await.unwrap();
            store
                .put_deployment(&finished(&id, started, i % 4 != 0, 5))
                .await
                .unwrap();
            store
                .append_audit(&AuditEntry {
                    timestamp: at(started),
                    user: name.clone(),
                    action: "deploy".into(),
                    details: json!({ "id": id }),
                })
                .await
                .unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_at_once_and_nothing_is_lost() {
    let url = shared_database().await;
    let mut children = Vec::new();
    let mut dirs = Vec::new();
    for name in ["east", "west"] {
        let state = tempfile::tempdir().unwrap();
        children.push(
            helper_process(module_path!(), "concurrent_writer_helper")
                .env(URL_ENV, &url)
                .env(STATE_ENV, state.path())
                .env(NAME_ENV, name)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        dirs.push(state);
    }
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "a writer failed: {status}");
    }
    // A third runner, from a state directory of its own, sees both.
    let store = Fixture::connect(&url, tempfile::tempdir().unwrap().path()).await;
    let listed = store.list_deployments(usize::MAX).await.unwrap();
    assert_eq!(listed.len(), 2 * WRITES);
    for r in &listed {
        assert!(r.status.is_finished(), "{}", r.id);
        let decisions = store.decisions(&r.id).await.unwrap();
        let types: Vec<&str> = decisions.iter().map(|d| d.decision_type.as_str()).collect();
        assert_eq!(types, ["step0", "step1", "step2"], "{}", r.id);
    }
    // Both runners updated the same aggregate rows: no update was lost.
    let agg = store.aggregates().await.unwrap();
    assert_eq!(agg.deployments(), 2 * WRITES as u64);
    assert_eq!(agg.successes(), 2 * (WRITES - WRITES / 4) as u64);
    let api = agg.by_service.iter().find(|s| s.service == "api").unwrap();
    assert_eq!(api.deployments, 2 * WRITES as u64);
    assert_eq!(store.audit(usize::MAX).await.unwrap().len(), 2 * WRITES);
}

fn request(environment: &str, services: &[&str], id: &str) -> LockRequest {
    LockRequest {
        environment: environment.into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        deployment_id: id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_deployments_serialise_and_disjoint_ones_overlap() {
    let url = shared_database().await;
    let state = tempfile::tempdir().unwrap();
    let runner = |_: ()| Fixture::connect(&url, state.path());
    let (a, b, c, d) = (
        runner(()).await,
        runner(()).await,
        runner(()).await,
        runner(()).await,
    );

    let held_a = a
        .lock_deployment(
            &request("staging", &["api", "web"], "deploy_a"),
            Duration::ZERO,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(held_a.is_held());
    let a_since = Instant::now();

    // B overlaps on `web`: it waits, and hears who it waits for.
    let waits = Arc::new(Mutex::new(Vec::<LockWait>::new()));
    let seen = waits.clone();
    let b_task = tokio::spawn(async move {
        let lock = b
            .lock_deployment(
                &request("staging", &["web", "db"], "deploy_b"),
                Duration::from_secs(30),
                &mut |w| seen.lock().unwrap().push(w.clone()),
            )
            .await
            .unwrap();
        (lock, Instant::now(), b)
    });

    // C (disjoint services) and D (same services, another environment) do not wait.
    let held_c = c
        .lock_deployment(
            &request("staging", &["queue"], "deploy_c"),
            Duration::ZERO,
            &mut |_| {},
        )
        .await
        .unwrap();
    let held_d = d
        .lock_deployment(
            &request("production", &["api", "web"], "deploy_d"),
            Duration::ZERO,
            &mut |_| {},
        )
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!b_task.is_finished(), "B got `web` while A held it");
    let released_a = Instant::now();
    held_a.release().await;
    let (held_b, b_acquired, b) = b_task.await.unwrap();
    assert!(b_acquired >= released_a);
    assert!(released_a - a_since >= Duration::from_millis(1200));

    let waits = waits.lock().unwrap().clone();
    assert!(!waits.is_empty());
    let holder = waits[0].holder.clone().expect("the holder is named");
    assert_eq!(holder.deployment_id, "deploy_a");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.host, crate::history::locking::hostname());
    assert_eq!(waits[0].services, ["web"]);
    assert!(
        waits[0]
            .to_string()
            .contains("held by deployment deploy_a of"),
        "{}",
        waits[0]
    );

    // A bounded wait against B ends in a refusal that names B.
    let start = Instant::now();
    let err = a
        .lock_deployment(
            &request("staging", &["db"], "deploy_e"),
            Duration::from_millis(400),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(400));
    let HistoryError::DeploymentBusy {
        services, holder, ..
    } = &err
    else {
        panic!("expected DeploymentBusy, got {err}");
    };
    assert_eq!(services, &["db"]);
    assert_eq!(
        holder.as_ref().map(|h| h.deployment_id.as_str()),
        Some("deploy_b")
    );
    assert!(err.needs_operator());
    let message = err.to_string();
    assert!(
        message.starts_with("staging: db is being deployed by deployment deploy_b of"),
        "{message}"
    );
    assert!(message.contains("--lock-timeout"), "{message}");

    for lock in [held_b, held_c, held_d] {
        lock.release().await;
    }
    drop(b);
}

/// Not a test: a runner that takes a lock, records its deployment as
/// running, says it is ready, and waits to be killed.
#[test]
#[ignore = "helper process for a_runner_killed_while_holding_its_lock_is_recovered_from"]
fn lock_holder_helper() {
    let (Ok(url), Ok(state), Ok(ready)) = (
        std::env::var(URL_ENV),
        std::env::var(STATE_ENV),
        std::env::var(READY_ENV),
    ) else {
        return;
    };
    runtime().block_on(async {
        let store = Fixture::connect(&url, Path::new(&state)).await;
        let _lock = store
            .lock_deployment(
                &request("production", &["api"], "killed_run"),
                Duration::ZERO,
                &mut |_| {},
            )
            .await
            .unwrap();
        store
            .put_deployment(&deployment("killed_run", 1, DeploymentStatus::Running))
            .await
            .unwrap();
        std::fs::write(&ready, b"locked").unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_while_holding_its_lock_is_recovered_from() {
    let url = shared_database().await;
    let state = tempfile::tempdir().unwrap();
    let ready = state.path().join("ready");
    let mut child = helper_process(module_path!(), "lock_holder_helper")
        .env(URL_ENV, &url)
        .env(STATE_ENV, state.path().join("child"))
        .env(READY_ENV, &ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the holder exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the holder never took its lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let store = Fixture::connect(&url, state.path()).await;
    let err = store
        .lock_deployment(
            &request("production", &["api", "web"], "next"),
            Duration::ZERO,
            &mut |_| {},
        )
        .await
        .unwrap_err();
    let HistoryError::DeploymentBusy {
        holder: Some(holder),
        ..
    } = &err
    else {
        panic!("expected DeploymentBusy with a holder, got {err}");
    };
    assert_eq!(holder.deployment_id, "killed_run");
    assert_eq!(holder.pid, child.id());
    // Alive: its running record is not taken for an abandoned one.
    assert!(store.recover_abandoned().await.unwrap().is_empty());

    // SIGKILL: no destructor, no goodbye to the server.
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    let lock = store
        .lock_deployment(
            &request("production", &["api", "web"], "next"),
            Duration::from_secs(30),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(
        store.recover_interrupted(&lock).await.unwrap(),
        ["killed_run"]
    );
    let rec = store.get_deployment("killed_run").await.unwrap().unwrap();
    assert_eq!(rec.status, DeploymentStatus::Interrupted);
    lock.release().await;
}

// ---- the server going away mid-run ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_run_loses_and_doubles_nothing() {
    let server = Arc::new(tokio::task::spawn_blocking(PgServer::start).await.unwrap());
    let url = server.create_database();
    let state = tempfile::tempdir().unwrap();
    let store = Fixture::connect(&url, state.path()).await;
    let decision = |n: i64| DecisionRecord {
        timestamp: at(n),
        decision_type: format!("d{n}"),
        details: json!({ "n": n }),
    };
    let sample = |n: i64| MetricSample {
        timestamp: at(n),
        cpu_percent: n as f64,
        memory_percent: 1.0,
        disk_percent: 2.0,
        load_per_core: 0.1,
        network_latency_ms: None,
    };
    let mut run = deployment("run", 0, DeploymentStatus::Running);
    store.put_deployment(&run).await.unwrap();
    store
        .append_decisions("run", &[decision(0), decision(1)])
        .await
        .unwrap();

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();

    // The deployment goes on: every write succeeds, into the journal.
    store
        .append_decisions("run", &[decision(2), decision(3)])
        .await
        .unwrap();
    store
        .append_samples("run", &[sample(3), sample(4)])
        .await
        .unwrap();
    store.append_decisions("run", &[decision(5)]).await.unwrap();
    run.finish(DeploymentStatus::Succeeded, at(60));
    store.put_deployment(&run).await.unwrap();
    store
        .append_decisions("fresh", &[decision(7)])
        .await
        .unwrap();
    store
        .append_audit(&AuditEntry {
            timestamp: at(61),
            user: "ops".into(),
            action: "deploy".into(),
            details: json!({}),
        })
        .await
        .unwrap();
    store
        .put_blob("strategy_model", b"trained offline")
        .await
        .unwrap();
    let journal = data_dir(state.path()).join(JOURNAL_FILE);
    assert!(journal.exists());
    let HistoryLocation::Postgres {
        journal_pending,
        url: shown,
    } = store.location()
    else {
        panic!("not a PostgreSQL location");
    };
    assert_eq!(journal_pending, 7);
    // Reads need the database, and say so naming it.
    let err = store.list_deployments(1).await.unwrap_err();
    assert!(matches!(err, HistoryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().starts_with(&shown), "{err}");

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();
    let kept = std::fs::read(&journal).unwrap();
    let report = store.sync().await.unwrap();
    assert_eq!(
        report,
        SyncReport {
            replayed: 7,
            pending: 0
        }
    );
    assert!(!journal.exists());

    let check = async |store: &HistoryStore, deployments: u64| {
        let got = store.get_deployment("run").await.unwrap().unwrap();
        assert_eq!(got.status, DeploymentStatus::Succeeded);
        let types: Vec<String> = store
            .decisions("run")
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.decision_type)
            .collect();
        assert_eq!(types, ["d0", "d1", "d2", "d3", "d5"]);
        assert_eq!(store.samples("run").await.unwrap(), [sample(3), sample(4)]);
        assert_eq!(store.decisions("fresh").await.unwrap(), [decision(7)]);
        assert_eq!(store.audit(10).await.unwrap().len(), 1);
        assert_eq!(
            store.get_blob("strategy_model").await.unwrap().as_deref(),
            Some(b"trained offline".as_slice())
        );
        let agg = store.aggregates().await.unwrap();
        assert_eq!(
            (agg.deployments(), agg.successes()),
            (deployments, deployments)
        );
    };
    check(&store, 1).await;

    // A replay cut short after storing (killed before deleting the file)
    // is repeated: nothing is doubled.
    std::fs::write(&journal, &kept).unwrap();
    assert_eq!(store.sync().await.unwrap().replayed, 7);
    check(&store, 1).await;

    // The next runner of this state directory replays on connecting.
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    store
        .put_deployment(&finished("later", 100, true, 5))
        .await
        .unwrap();
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();
    let next = Fixture::connect(&url, state.path()).await;
    assert!(next.get_deployment("later").await.unwrap().is_some());
    assert!(!journal.exists());
    check(&next, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_history_migrates_to_postgres() {
    let local = Fixture::new(Kind::Redb).await;
    for i in 0..20 {
        let id = format!("d{i:02}");
        local
            .store
            .put_deployment(&finished(&id, i * 10, i % 3 != 0, 7))
            .await
            .unwrap();
        local
            .store
            .append_decisions(
                &id,
                &[DecisionRecord {
                    timestamp: at(i * 10),
                    decision_type: "plan".into(),
                    details: json!({ "i": i }),
                }],
            )
            .await
            .unwrap();
    }
    local
        .store
        .put_blob("strategy_model", b"model")
        .await
        .unwrap();
    let pg = Fixture::new(Kind::Postgres).await;
    let summary = local.store.migrate_to(&pg.store).await.unwrap();
    assert_eq!(
        (summary.deployments, summary.decisions, summary.blobs),
        (20, 20, 1)
    );
    assert_eq!(
        pg.store.list_deployments(100).await.unwrap(),
        local.store.list_deployments(100).await.unwrap()
    );
    assert_eq!(
        pg.store.aggregates().await.unwrap(),
        local.store.aggregates().await.unwrap()
    );
    assert_eq!(
        pg.store.detail("d07").await.unwrap(),
        local.store.detail("d07").await.unwrap()
    );
    // Migrating again (after an interruption, say) doubles nothing.
    local.store.migrate_to(&pg.store).await.unwrap();
    assert_eq!(pg.store.stats().await.unwrap().deployments, 20);
    assert_eq!(pg.store.decisions("d07").await.unwrap().len(), 1);
}
