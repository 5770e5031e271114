//! Tests on real redb files in temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::store::{DECISIONS, DEPLOYMENTS, DEPLOYMENTS_BY_START, META};
use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn deployment(id: &str, started: i64, status: DeploymentStatus) -> DeploymentRecord {
    DeploymentRecord {
        environment: "staging".into(),
        strategy: "balanced".into(),
        services: vec!["api".into(), "web".into()],
        deployment_size: "medium".into(),
        status,
        ..DeploymentRecord::running(id, at(started))
    }
}

fn ids(records: &[DeploymentRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// Writes raw bytes into a table, bypassing the JSON encoding.
fn put_raw(path: &Path, write: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    write(&txn);
    txn.commit().unwrap();
}

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
fn deployment_round_trip_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let mut rec = deployment("d1", 0, DeploymentStatus::Running);
    rec.log_path = Some(PathBuf::from("/tmp/deploy.log"));
    rec.steps = vec![step("api", 1)];
    rec.summary = Some("first".into());
    history.put_deployment(&rec).unwrap();
    assert_eq!(history.get_deployment("d1").unwrap(), Some(rec.clone()));
    assert_eq!(history.get_deployment("nope").unwrap(), None);

    rec.finish(DeploymentStatus::Succeeded, at(90));
    history.put_deployment(&rec).unwrap();
    let got = history.get_deployment("d1").unwrap().unwrap();
    assert_eq!(got.status, DeploymentStatus::Succeeded);
    assert_eq!(got.success, Some(true));
    assert_eq!(got.duration_s, Some(90.0));
    assert_eq!(got.finished_at, Some(at(90)));
    // Replaced, not duplicated.
    assert_eq!(ids(&history.list_deployments(10).unwrap()), ["d1"]);
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

fn step(service: &str, wave: u32) -> StepRecord {
    StepRecord {
        service: service.into(),
        host: None,
        wave,
        status: StepStatus::Succeeded,
        started_at: Some(at(1)),
        seconds: 0.5,
        message: "deployed and healthy".into(),
        rolled_back: None,
        rollback_message: None,
    }
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
    let old = json!({
        "id": "old", "started_at": "2024-01-01T00:00:00Z", "status": "succeeded",
        "extra": {
            "steps": [serde_json::to_value(step("db", 0)).unwrap(), serde_json::to_value(step("api", 1)).unwrap()],
            "features": features,
        },
    });
    let rec: DeploymentRecord = serde_json::from_value(old).unwrap();
    assert_eq!(rec.steps, [step("db", 1), step("api", 2)]);
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
fn list_is_newest_first_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    for (id, started) in [("c", 30), ("a", 10), ("e", 50), ("b", 20), ("d", 40)] {
        history
            .put_deployment(&deployment(id, started, DeploymentStatus::Succeeded))
            .unwrap();
    }
    assert_eq!(
        ids(&history.list_deployments(10).unwrap()),
        ["e", "d", "c", "b", "a"]
    );
    assert_eq!(ids(&history.list_deployments(2).unwrap()), ["e", "d"]);
    assert!(history.list_deployments(0).unwrap().is_empty());

    // Replacing a record with a new start time moves it in the order.
    history
        .put_deployment(&deployment("a", 60, DeploymentStatus::Failed))
        .unwrap();
    assert_eq!(
        ids(&history.list_deployments(10).unwrap()),
        ["a", "e", "d", "c", "b"]
    );
}

#[test]
fn all_deployments_are_finished_ones_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    history
        .put_deployment(&deployment("late", 30, DeploymentStatus::Failed))
        .unwrap();
    history
        .put_deployment(&deployment("live", 40, DeploymentStatus::Running))
        .unwrap();
    history
        .put_deployment(&deployment("early", 10, DeploymentStatus::Succeeded))
        .unwrap();
    history
        .put_deployment(&deployment("mid", 20, DeploymentStatus::Interrupted))
        .unwrap();
    assert_eq!(
        ids(&history.all_deployments().unwrap()),
        ["early", "mid", "late"]
    );
}

#[test]
fn decisions_keep_append_order_across_calls() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let decision = |n: i64, kind: &str| DecisionRecord {
        timestamp: at(n),
        decision_type: kind.into(),
        details: json!({ "n": n }),
    };
    // Appended out of timestamp order on purpose: the log keeps append order.
    let first = [decision(5, "environment_detected"), decision(1, "metrics")];
    let second = [decision(3, "strategy_selected")];
    history.append_decisions("d1", &first).unwrap();
    history
        .append_decisions("d2", &[decision(9, "other")])
        .unwrap();
    history.append_decisions("d1", &second).unwrap();
    history.append_decisions("d1", &[]).unwrap();

    let got = history.decisions("d1").unwrap();
    let expected: Vec<DecisionRecord> = first.iter().chain(&second).cloned().collect();
    assert_eq!(got, expected);
    assert_eq!(history.decisions("d2").unwrap().len(), 1);
    assert!(history.decisions("d3").unwrap().is_empty());
}

#[test]
fn samples_are_in_time_order_and_same_millisecond_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let sample = |n: i64, cpu: f64| MetricSample {
        timestamp: at(n),
        cpu_percent: cpu,
        memory_percent: 40.0,
        disk_percent: 70.0,
        load_per_core: 0.5,
        network_latency_ms: Some(1.5),
    };
    history
        .append_samples("d1", &[sample(2, 20.0), sample(1, 10.0)])
        .unwrap();
    history
        .append_samples("d1", &[sample(2, 21.0), sample(3, 30.0)])
        .unwrap();
    history.append_samples("other", &[sample(0, 1.0)]).unwrap();
    let cpus: Vec<f64> = history
        .samples("d1")
        .unwrap()
        .iter()
        .map(|s| s.cpu_percent)
        .collect();
    assert_eq!(cpus, [10.0, 20.0, 21.0, 30.0]);
    assert_eq!(history.samples("d1").unwrap()[0], sample(1, 10.0));
}

#[test]
fn a_non_finite_sample_value_reads_back_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let sample = MetricSample {
        timestamp: at(0),
        cpu_percent: 5.0,
        memory_percent: 6.0,
        disk_percent: 7.0,
        load_per_core: f64::NAN,
        network_latency_ms: Some(f64::INFINITY),
    };
    history.append_samples("d1", &[sample]).unwrap();
    let got = history.samples("d1").unwrap();
    assert_eq!(got.len(), 1, "the sample must not be dropped");
    assert!(got[0].load_per_core.is_nan());
    assert_eq!(got[0].cpu_percent, 5.0);
    assert_eq!(got[0].network_latency_ms, None);
}

#[test]
fn audit_is_newest_first_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let entry = |n: i64, action: &str| AuditEntry {
        timestamp: at(n),
        user: "ops".into(),
        action: action.into(),
        details: json!({ "n": n }),
    };
    history.append_audit(&entry(1, "deploy")).unwrap();
    history.append_audit(&entry(3, "model_retrain")).unwrap();
    history.append_audit(&entry(2, "rollback")).unwrap();
    // Same millisecond as an earlier entry: kept, and ordered after it.
    history.append_audit(&entry(3, "deploy_again")).unwrap();

    let actions = |entries: Vec<AuditEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.action).collect()
    };
    assert_eq!(
        actions(history.audit(10).unwrap()),
        ["deploy_again", "model_retrain", "rollback", "deploy"]
    );
    assert_eq!(
        actions(history.audit(2).unwrap()),
        ["deploy_again", "model_retrain"]
    );
    assert_eq!(history.audit(10).unwrap()[3], entry(1, "deploy"));
}

#[test]
fn blobs_round_trip_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    assert_eq!(history.get_blob("model").unwrap(), None);
    history.put_blob("model", &[1, 2, 3]).unwrap();
    history.put_blob("model", &[4, 5]).unwrap();
    assert_eq!(history.get_blob("model").unwrap(), Some(vec![4, 5]));
    assert!(history.delete_blob("model").unwrap());
    assert!(!history.delete_blob("model").unwrap());
    assert_eq!(history.get_blob("model").unwrap(), None);
}

#[test]
fn stats_count_and_show_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let empty = history.stats().unwrap();
    assert_eq!(empty.deployments, 0);
    assert_eq!(empty.last, None);
    history
        .put_deployment(&deployment("old", 1, DeploymentStatus::Failed))
        .unwrap();
    history
        .put_deployment(&deployment("new", 2, DeploymentStatus::Succeeded))
        .unwrap();
    let stats = history.stats().unwrap();
    assert_eq!(stats.deployments, 2);
    assert_eq!(stats.last.map(|r| r.id), Some("new".to_owned()));
    assert_eq!(stats.path, history.path());
    assert!(stats.db_bytes > 0);
}

#[test]
fn recover_interrupted_marks_only_running_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let mut crashed = deployment("crashed", 1, DeploymentStatus::Running);
    crashed.pid = 4242;
    crashed.summary = Some("deploying api".into());
    history.put_deployment(&crashed).unwrap();
    history
        .put_deployment(&deployment("also_crashed", 2, DeploymentStatus::Running))
        .unwrap();
    for (id, status) in [
        ("ok", DeploymentStatus::Succeeded),
        ("bad", DeploymentStatus::Failed),
        ("undone", DeploymentStatus::RolledBack),
    ] {
        history.put_deployment(&deployment(id, 3, status)).unwrap();
    }

    let lock = RunLock::acquire(dir.path(), Duration::ZERO).unwrap();
    let before = Utc::now();
    let mut recovered = history.recover_interrupted(&lock).unwrap();
    recovered.sort();
    assert_eq!(recovered, ["also_crashed", "crashed"]);

    let got = history.get_deployment("crashed").unwrap().unwrap();
    assert_eq!(got.status, DeploymentStatus::Interrupted);
    assert!(got.finished_at.is_some_and(|t| t >= before));
    let summary = got.summary.unwrap();
    assert!(
        summary.starts_with("deploying api; interrupted"),
        "{summary}"
    );
    assert!(summary.contains("pid 4242"), "{summary}");
    for (id, status) in [
        ("ok", DeploymentStatus::Succeeded),
        ("bad", DeploymentStatus::Failed),
        ("undone", DeploymentStatus::RolledBack),
    ] {
        let rec = history.get_deployment(id).unwrap().unwrap();
        assert_eq!(rec.status, status, "{id}");
        assert_eq!(rec.finished_at, None, "{id}");
    }
    // Nothing left to recover.
    assert!(history.recover_interrupted(&lock).unwrap().is_empty());
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
    assert!(matches!(
        txn.open_table(super::store::BLOBS).unwrap().get("x"),
        Ok(None)
    ));
    let deployments = txn.open_table(DEPLOYMENTS).unwrap();
    assert!(deployments.get("d1").unwrap().is_some());
}

#[test]
fn undecodable_records_are_skipped_and_the_rest_listed() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    for (id, started) in [("a", 1), ("c", 3)] {
        history
            .put_deployment(&deployment(id, started, DeploymentStatus::Succeeded))
            .unwrap();
    }
    let decision = DecisionRecord {
        timestamp: at(0),
        decision_type: "good".into(),
        details: json!(null),
    };
    history
        .append_decisions("a", std::slice::from_ref(&decision))
        .unwrap();
    // A damaged deployment "b" between the two, and a damaged decision.
    put_raw(history.path(), |txn| {
        let started = at(2).timestamp_millis();
        txn.open_table(DEPLOYMENTS)
            .unwrap()
            .insert("b", b"{not json".as_slice())
            .unwrap();
        txn.open_table(DEPLOYMENTS_BY_START)
            .unwrap()
            .insert((started, "b"), ())
            .unwrap();
        txn.open_table(DECISIONS)
            .unwrap()
            .insert(("a", 1), br#"{"timestamp": 5}"#.as_slice())
            .unwrap();
    });

    assert_eq!(ids(&history.list_deployments(10).unwrap()), ["c", "a"]);
    // The limit counts records returned, not records skipped.
    assert_eq!(ids(&history.list_deployments(2).unwrap()), ["c", "a"]);
    assert_eq!(ids(&history.all_deployments().unwrap()), ["a", "c"]);
    assert_eq!(history.decisions("a").unwrap(), [decision]);
    assert_eq!(history.stats().unwrap().deployments, 3);

    // Asked for by id, the damaged record is an error naming it, not `None`.
    let err = history.get_deployment("b").unwrap_err();
    assert!(matches!(err, HistoryError::Undecodable { .. }), "{err}");
    assert!(err.to_string().contains("deployments/b"), "{err}");

    // Replacing the damaged record repairs its index entry too.
    history
        .put_deployment(&deployment("b", 4, DeploymentStatus::Failed))
        .unwrap();
    assert_eq!(ids(&history.list_deployments(10).unwrap()), ["b", "c", "a"]);
}

/// This test binary, set to run only the ignored helper test `name`.
fn helper_process(name: &str) -> Command {
    // `module_path!()` is `adeploy::history::tests`; test names omit the crate.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        &format!("{module}::{name}"),
        "--exact",
        "--ignored",
        "--test-threads=1",
    ]);
    command
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

    let mut child = helper_process("hold_database_open_helper")
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
    txn.open_table(super::store::BLOBS)
        .unwrap()
        .insert("committed", b"before the crash".as_slice())
        .unwrap();
    txn.commit().unwrap();
    std::process::exit(0);
}

#[test]
fn a_crashed_run_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let status = helper_process("crash_while_running_helper")
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
