//! redb-only behaviour: the file on disk (damaged, foreign, newer, held
//! open by another process, left by a crash, of schema version 1) and the
//! state directory's run lock.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::super::store::{BLOBS, META, V1_DECISIONS, V1_SAMPLES};
use super::*;

#[test]
fn open_creates_the_directories_and_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nested/state");
    let history = History::open(&state).unwrap();
    assert_eq!(
        history.path(),
        state.join("deployment_data/deployment_history.db")
    );
    assert!(history.path().is_file());
    assert!(history.list_deployments(10).unwrap().is_empty());
    // Opening again finds the schema it wrote.
    History::open(&state).unwrap();
}

#[test]
fn status_is_snake_case_json() {
    let text = serde_json::to_string(&DeploymentStatus::RolledBack).unwrap();
    assert_eq!(text, "\"rolled_back\"");
    let status: DeploymentStatus = serde_json::from_str("\"interrupted\"").unwrap();
    assert_eq!(status, DeploymentStatus::Interrupted);
    assert_eq!(DeploymentStatus::RolledBack.to_string(), "rolled_back");
}

#[test]
fn an_old_record_without_new_fields_still_decodes() {
    let old = json!({
        "id": "old", "started_at": "2024-01-01T00:00:00Z", "status": "failed",
    });
    let rec: DeploymentRecord = serde_json::from_value(old).unwrap();
    assert_eq!(rec.status, DeploymentStatus::Failed);
    assert!(rec.services.is_empty());
    assert!(rec.steps.is_empty());
    assert_eq!(rec.features, None);
}

#[test]
fn a_record_with_steps_and_features_in_extra_reads_them_into_the_typed_fields() {
    // Before `steps` and `features` were typed, they lived in `extra`, with
    // waves numbered from 0.
    let features = json!({
        "cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0,
        "load_per_core": 0.1, "network_latency_ms": null, "environment": "staging",
        "size_ordinal": 1.0, "service_count": 2.0, "hour": 3.0, "weekday": 4.0,
        "success_rate_overall": 0.5, "success_rate_strategy": 0.5,
        "recent_failures": 0.0, "mean_duration_min": 1.5,
    });
    let ok = "deployed and healthy";
    let old = json!({
        "id": "old", "started_at": "2024-01-01T00:00:00Z", "status": "succeeded",
        "extra": {
            "steps": [serde_json::to_value(step("db", 0, ok)).unwrap(), serde_json::to_value(step("api", 1, ok)).unwrap()],
            "features": features,
        },
    });
    let rec: DeploymentRecord = serde_json::from_value(old).unwrap();
    assert_eq!(rec.steps, [step("db", 1, ok), step("api", 2, ok)]);
    let f = rec.features.clone().unwrap();
    assert_eq!(
        (f.environment, f.mean_duration_min),
        (crate::config::Environment::Staging, 1.5)
    );
    // Written back, it is a record of this version and reads the same.
    let again: DeploymentRecord =
        serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
    assert_eq!(again, rec);
    let text = serde_json::to_string(&rec).unwrap();
    assert!(!text.contains("extra"), "{text}");
}

#[test]
fn recover_interrupted_refuses_the_lock_of_another_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    history
        .put_deployment(&deployment("crashed", 1, DeploymentStatus::Running))
        .unwrap();
    let lock = RunLock::acquire(other.path(), Duration::ZERO).unwrap();
    let err = history.recover_interrupted(&lock).unwrap_err();
    assert!(matches!(err, HistoryError::WrongLock { .. }), "{err}");
    let status = history.get_deployment("crashed").unwrap().unwrap().status;
    assert_eq!(status, DeploymentStatus::Running);
}

#[test]
fn a_second_run_lock_is_busy_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!History::is_writer_active(dir.path()));
    let first = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    assert!(History::is_writer_active(dir.path()));
    assert_eq!(
        std::fs::read_to_string(first.path()).unwrap().trim(),
        std::process::id().to_string()
    );

    let wait = Duration::from_millis(300);
    let start = Instant::now();
    let err = RunLock::acquire(dir.path(), wait).unwrap_err();
    let waited = start.elapsed();
    assert!(waited >= wait, "gave up after {waited:?}");
    assert!(waited < wait + Duration::from_secs(5), "took {waited:?}");
    let HistoryError::Busy { pid, .. } = &err else {
        panic!("expected Busy, got {err}");
    };
    assert_eq!(*pid, Some(std::process::id()));
    let message = err.to_string();
    assert!(
        message.contains(&format!("another adeploy run (pid {})", std::process::id())),
        "{message}"
    );
    assert!(message.contains("--state-dir"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );

    drop(first);
    assert!(!History::is_writer_active(dir.path()));
    let second = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    assert_eq!(second.state_dir(), dir.path());
}

#[test]
fn a_waiting_run_lock_gets_it_when_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let first = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
    });
    let start = Instant::now();
    let second = RunLock::acquire(dir.path(), Duration::from_secs(20));
    assert!(second.is_ok(), "{:?}", second.err());
    assert!(start.elapsed() >= Duration::from_millis(150));
    releaser.join().unwrap();
}

#[test]
fn a_garbage_file_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = History::open(dir.path()).unwrap_err();
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it aside"), "{message}");
    assert!(std::fs::read(&path).unwrap() == garbage, "the file changed");
}

#[test]
fn a_redb_file_of_another_program_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    put_raw(&path, |txn| {
        let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("users");
        txn.open_table(table).unwrap().insert(1, 2).unwrap();
    });
    let before = std::fs::read(&path).unwrap();

    let err = History::open(dir.path()).unwrap_err();
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("users"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn a_newer_schema_is_incompatible_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    history
        .put_deployment(&deployment("d1", 1, DeploymentStatus::Succeeded))
        .unwrap();
    put_raw(history.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
    });
    let before = std::fs::read(history.path()).unwrap();

    let err = History::open(dir.path()).unwrap_err();
    assert!(matches!(err, HistoryError::Incompatible { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&history.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{message}"
    );
    // Reads through an existing handle refuse it too, and neither they nor
    // `open` change a byte (both only ever open it read-only).
    assert!(matches!(
        history.list_deployments(10),
        Err(HistoryError::Incompatible { .. })
    ));
    assert!(
        std::fs::read(history.path()).unwrap() == before,
        "the file changed"
    );

    // A write refuses it before touching any record (redb may still update
    // its own bookkeeping on a writable open, so compare contents, not bytes).
    assert!(matches!(
        history.put_blob("x", b"y"),
        Err(HistoryError::Incompatible { .. })
    ));
    let db = redb::ReadOnlyDatabase::open(history.path()).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION + 1));
    assert!(matches!(txn.open_table(BLOBS).unwrap().get("x"), Ok(None)));
    let deployments = txn.open_table(DEPLOYMENTS).unwrap();
    assert!(deployments.get("d1").unwrap().is_some());
}

/// Set in the child process of [`open_waits_for_another_process`]: the
/// database to hold open and the file to create once it is held.
const HOLD_DB_ENV: &str = "ADEPLOY_TEST_HOLD_DB";
const HOLD_READY_ENV: &str = "ADEPLOY_TEST_HOLD_READY";
const HOLD_FOR: Duration = Duration::from_millis(1500);

/// Not a test: the body of the child process that
/// [`open_waits_for_another_process`] starts (by re-running this test binary
/// with `--ignored --exact`). Holds the database open the way another adeploy
/// process would, for [`HOLD_FOR`].
#[test]
#[ignore = "helper process for open_waits_for_another_process"]
fn hold_database_open_helper() {
    let (Some(db), Some(ready)) = (
        std::env::var_os(HOLD_DB_ENV),
        std::env::var_os(HOLD_READY_ENV),
    ) else {
        return;
    };
    let held = redb::Database::create(&db).unwrap();
    std::fs::write(&ready, b"held").unwrap();
    std::thread::sleep(HOLD_FOR);
    drop(held);
}

#[test]
fn open_waits_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    history
        .put_deployment(&deployment("d1", 1, DeploymentStatus::Succeeded))
        .unwrap();
    let ready = dir.path().join("ready");

    let mut child = helper_process(module_path!(), "hold_database_open_helper")
        .env(HOLD_DB_ENV, history.path())
        .env(HOLD_READY_ENV, &ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the holder process exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the holder never opened the db");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held_since = Instant::now();

    // A short wait gives up, naming the file.
    let err = History::open_with_timeout(dir.path(), Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, HistoryError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&history.path().display().to_string()),
        "{err}"
    );
    // So does an operation on a handle with a short timeout.
    let impatient = history
        .clone()
        .with_open_timeout(Duration::from_millis(100));
    assert!(matches!(
        impatient.list_deployments(1),
        Err(HistoryError::Locked { .. })
    ));

    // A long enough wait succeeds once the holder lets go.
    let patient = History::open_with_timeout(dir.path(), Duration::from_secs(30)).unwrap();
    let waited = held_since.elapsed();
    assert!(
        waited >= HOLD_FOR - Duration::from_millis(300),
        "opened after {waited:?}, while the other process still held the database"
    );
    assert_eq!(ids(&patient.list_deployments(10).unwrap()), ["d1"]);
    assert!(child.wait().unwrap().success());
}

/// Set in the child process of [`a_crashed_run_is_recovered`]: its state dir.
const CRASH_STATE_ENV: &str = "ADEPLOY_TEST_CRASH_STATE";

/// Not a test: the child process of [`a_crashed_run_is_recovered`]. Starts a
/// deployment, commits to the database and dies with both the run lock and
/// the database still open, as a killed adeploy would (no destructor runs).
#[test]
#[ignore = "helper process for a_crashed_run_is_recovered"]
fn crash_while_running_helper() {
    let Some(state) = std::env::var_os(CRASH_STATE_ENV) else {
        return;
    };
    let state = PathBuf::from(state);
    let _lock = RunLock::acquire(&state, Duration::ZERO).unwrap();
    let history = History::open(&state).unwrap();
    history
        .put_deployment(&deployment("crashed", 1, DeploymentStatus::Running))
        .unwrap();
    let db = redb::Database::create(history.path()).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(BLOBS)
        .unwrap()
        .insert("committed", b"before the crash".as_slice())
        .unwrap();
    txn.commit().unwrap();
    std::process::exit(0);
}

#[test]
fn a_crashed_run_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let status = helper_process(module_path!(), "crash_while_running_helper")
        .env(CRASH_STATE_ENV, dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the helper failed: {status}");
    let path = database_path(dir.path());
    // The scenario is real: the file needs a repair a read-only open refuses.
    assert!(matches!(
        redb::ReadOnlyDatabase::open(&path),
        Err(redb::DatabaseError::RepairAborted)
    ));
    // The dead process's run lock went with it.
    assert!(!History::is_writer_active(dir.path()));

    let history = History::open(dir.path()).unwrap();
    let listed = history.list_deployments(10).unwrap();
    assert_eq!(ids(&listed), ["crashed"]);
    assert_eq!(listed[0].status, DeploymentStatus::Running);
    assert_eq!(
        history.get_blob("committed").unwrap().as_deref(),
        Some(b"before the crash".as_slice())
    );

    let lock = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    assert_eq!(history.recover_interrupted(&lock).unwrap(), ["crashed"]);
    let status = history.get_deployment("crashed").unwrap().unwrap().status;
    assert_eq!(status, DeploymentStatus::Interrupted);
}

#[test]
fn a_damaged_database_is_an_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    for i in 0..200 {
        let rec = deployment(&format!("d{i}"), i, DeploymentStatus::Succeeded);
        history.put_deployment(&rec).unwrap();
    }
    let good = std::fs::read(history.path()).unwrap();
    let open_and_list = || History::open(dir.path()).and_then(|h| h.list_deployments(1000));

    // Truncated anywhere: refused as corrupt, and not "repaired" away.
    for cut in [100, 4096, 5000, good.len() / 2, good.len() - 4096] {
        std::fs::write(history.path(), &good[..cut]).unwrap();
        match open_and_list() {
            Err(HistoryError::Corrupt { .. }) => {}
            other => panic!("cut at {cut}: expected Corrupt, got {other:?}"),
        }
        let now = std::fs::read(history.path()).unwrap();
        assert!(now == good[..cut], "cut at {cut}: the file changed");
    }
    // Scrambled pages: redb may panic on some of these; the history must
    // answer with Corrupt (or read what is still readable) instead.
    for at in [600, 4096 + 100, good.len() / 2, good.len() - 3000] {
        let mut bad = good.clone();
        for byte in &mut bad[at..at + 64] {
            *byte ^= 0x5a;
        }
        std::fs::write(history.path(), &bad).unwrap();
        match open_and_list() {
            Ok(listed) => assert!(listed.len() <= 200),
            Err(HistoryError::Corrupt { .. }) => {}
            Err(other) => panic!("scrambled at {at}: expected Corrupt, got {other}"),
        }
    }
}

#[test]
fn a_schema_1_file_is_migrated_keeping_every_record() {
    // A history as adeploy wrote it before schema version 2: plain JSON,
    // one row per decision and per sample.
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let a = finished("a", 10, false, 30);
    let b = finished("b", 20, true, 30);
    let decision = |n: i64| DecisionRecord {
        timestamp: at(n),
        decision_type: format!("d{n}"),
        details: json!({"n": n}),
    };
    let sample = |n: i64| MetricSample {
        timestamp: at(n),
        cpu_percent: n as f64,
        memory_percent: 1.0,
        disk_percent: 2.0,
        load_per_core: 0.1,
        network_latency_ms: None,
    };
    put_raw(&path, |txn| {
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        let mut deployments = txn.open_table(super::super::store::DEPLOYMENTS).unwrap();
        let mut by_start = txn
            .open_table(super::super::store::DEPLOYMENTS_BY_START)
            .unwrap();
        for r in [&a, &b] {
            let json = serde_json::to_vec(r).unwrap();
            deployments.insert(r.id.as_str(), json.as_slice()).unwrap();
            by_start
                .insert((r.started_at.timestamp_millis(), r.id.as_str()), ())
                .unwrap();
        }
        let mut decisions = txn.open_table(V1_DECISIONS).unwrap();
        for seq in 0..3u64 {
            let json = serde_json::to_vec(&decision(seq as i64)).unwrap();
            decisions.insert(("a", seq), json.as_slice()).unwrap();
        }
        let mut samples = txn.open_table(V1_SAMPLES).unwrap();
        for n in [3i64, 1, 2] {
            let json = serde_json::to_vec(&sample(n)).unwrap();
            samples
                .insert(("a", at(n).timestamp_millis(), 0), json.as_slice())
                .unwrap();
        }
        txn.open_table(super::super::store::AUDIT)
            .unwrap()
            .insert(
                (5, 0),
                br#"{"timestamp":"2024-01-01T00:00:00Z","user":"u","action":"deploy"}"#.as_slice(),
            )
            .unwrap();
        txn.open_table(BLOBS)
            .unwrap()
            .insert("strategy_model", b"plain model".as_slice())
            .unwrap();
    });

    let history = History::open(dir.path()).unwrap();
    assert_eq!(ids(&history.list_deployments(10).unwrap()), ["b", "a"]);
    assert_eq!(history.get_deployment("a").unwrap(), Some(a));
    assert_eq!(
        history.decisions("a").unwrap(),
        [decision(0), decision(1), decision(2)]
    );
    assert_eq!(
        history.samples("a").unwrap(),
        [sample(1), sample(2), sample(3)]
    );
    assert_eq!(history.audit(10).unwrap()[0].action, "deploy");
    assert_eq!(
        history.get_blob("strategy_model").unwrap().as_deref(),
        Some(b"plain model".as_slice())
    );
    // The aggregates were built from the records, and new appends continue
    // the migrated numbering.
    let agg = history.aggregates().unwrap();
    assert_eq!((agg.deployments(), agg.successes()), (2, 1));
    history.append_decisions("a", &[decision(9)]).unwrap();
    assert_eq!(history.decisions("a").unwrap().len(), 4);
    // The file is at the current version, and the version 1 tables are gone.
    let db = redb::ReadOnlyDatabase::open(history.path()).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION));
    assert!(txn.open_table(V1_DECISIONS).is_err());
}

#[test]
fn a_schema_2_file_gets_its_training_rows_counted_and_its_running_deployments_indexed() {
    // Version 2 aggregates had no `with_features`, and there was no index
    // of running deployments: the migration to 3 rebuilds both.
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    history
        .put_deployment(&featured(finished("a", 10, true, 30)))
        .unwrap();
    history
        .put_deployment(&finished("b", 20, false, 30))
        .unwrap();
    history
        .put_deployment(&featured(finished("c", 30, true, 30)))
        .unwrap();
    history
        .put_deployment(&deployment("cut-off", 40, DeploymentStatus::Running))
        .unwrap();
    let path = history.path().to_path_buf();
    put_raw(&path, |txn| {
        let running: redb::TableDefinition<&str, ()> =
            redb::TableDefinition::new("running_deployments");
        txn.delete_table(running).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
        let mut table = txn.open_table(super::super::store::AGG_STRATEGY).unwrap();
        let v2 = br#"{"strategy":"balanced","environment":"staging","deployments":3,"successes":2,"duration_s_total":90.0,"last_started_at":null}"#;
        table
            .insert(("balanced", "staging"), v2.as_slice())
            .unwrap();
    });
    let history = History::open(dir.path()).unwrap();
    let agg = history.aggregates().unwrap();
    assert_eq!(
        (agg.deployments(), agg.successes(), agg.with_features()),
        (3, 2, 2)
    );
    assert_eq!(agg.by_service.len(), 2, "{:?}", agg.by_service);
    let lock = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    assert_eq!(history.recover_interrupted(&lock).unwrap(), ["cut-off"]);
    assert_eq!(
        history.recover_interrupted(&lock).unwrap(),
        Vec::<String>::new()
    );
    let db = redb::ReadOnlyDatabase::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_names_the_holder_of_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = HistoryStore::open_local(dir.path()).await.unwrap();
    let request = |id: &str| LockRequest {
        environment: "staging".into(),
        services: vec!["api".into()],
        deployment_id: id.into(),
    };
    let first = store
        .lock_deployment(&request("first"), Duration::ZERO, &mut |_| {})
        .await
        .unwrap();
    let mut seen = Vec::new();
    let err = store
        .lock_deployment(&request("second"), Duration::from_millis(200), &mut |w| {
            seen.push(w.clone())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, HistoryError::Busy { .. }), "{err}");
    assert!(err.needs_operator());
    assert_eq!(seen.len(), 1, "{seen:?}");
    let holder = seen[0].holder.clone().unwrap();
    assert_eq!(holder.deployment_id, "first");
    assert_eq!(holder.pid, std::process::id());
    assert!(seen[0].to_string().contains("held by deployment first of"));
    first.release().await;
    store
        .lock_deployment(&request("second"), Duration::ZERO, &mut |_| {})
        .await
        .unwrap();
}
