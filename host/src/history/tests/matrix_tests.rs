//! What every backend must do alike: each case runs on redb and on PostgreSQL.

use std::time::Duration;

use serde_json::json;

use super::*;

matrix!(
    deployment_round_trip_and_replace,
    list_is_newest_first_and_limited,
    all_deployments_are_finished_ones_oldest_first,
    decisions_keep_append_order_across_calls,
    samples_are_in_time_order_and_same_millisecond_ones_are_kept,
    a_non_finite_sample_value_reads_back_as_nan,
    audit_is_newest_first_limited_and_never_doubled,
    blobs_round_trip_and_delete,
    stats_count_and_show_the_latest,
    recover_interrupted_marks_only_running_deployments,
    undecodable_records_are_skipped_and_the_rest_listed,
    aggregates_follow_outcomes_and_replacements,
    the_window_is_the_newest_records_and_the_aggregates,
    the_aggregates_count_the_training_rows,
    detail_is_one_deployment_with_its_decisions_and_samples,
    downsampling_keeps_the_means_of_old_deployments_only,
    export_then_import_preserves_every_record_byte_for_byte,
    a_bad_import_line_is_named_and_stops_the_import,
    one_runner_retrains_at_a_time,
);

async fn deployment_round_trip_and_replace(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let mut rec = deployment("d1", 0, DeploymentStatus::Running);
    rec.log_path = Some(PathBuf::from("/tmp/deploy.log"));
    rec.steps = vec![step("api", 1, "deployed and healthy")];
    rec.summary = Some("first".into());
    history.put_deployment(&rec).await.unwrap();
    assert_eq!(
        history.get_deployment("d1").await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(history.get_deployment("nope").await.unwrap(), None);

    rec.finish(DeploymentStatus::Succeeded, at(90));
    history.put_deployment(&rec).await.unwrap();
    let got = history.get_deployment("d1").await.unwrap().unwrap();
    assert_eq!(got.status, DeploymentStatus::Succeeded);
    assert_eq!(got.success, Some(true));
    assert_eq!(got.duration_s, Some(90.0));
    assert_eq!(got.finished_at, Some(at(90)));
    // Replaced, not duplicated.
    assert_eq!(ids(&history.list_deployments(10).await.unwrap()), ["d1"]);
    // Another handle (another runner of this history) sees the same.
    let other = f.another().await;
    assert_eq!(other.get_deployment("d1").await.unwrap(), Some(got));
}

async fn list_is_newest_first_and_limited(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    for (id, started) in [("c", 30), ("a", 10), ("e", 50), ("b", 20), ("d", 40)] {
        history
            .put_deployment(&deployment(id, started, DeploymentStatus::Succeeded))
            .await
            .unwrap();
    }
    assert_eq!(
        ids(&history.list_deployments(10).await.unwrap()),
        ["e", "d", "c", "b", "a"]
    );
    assert_eq!(ids(&history.list_deployments(2).await.unwrap()), ["e", "d"]);
    assert!(history.list_deployments(0).await.unwrap().is_empty());

    // Replacing a record with a new start time moves it in the order.
    history
        .put_deployment(&deployment("a", 60, DeploymentStatus::Failed))
        .await
        .unwrap();
    assert_eq!(
        ids(&history.list_deployments(10).await.unwrap()),
        ["a", "e", "d", "c", "b"]
    );
    // Equal start times are ordered by id.
    history
        .put_deployment(&deployment("f", 60, DeploymentStatus::Failed))
        .await
        .unwrap();
    assert_eq!(ids(&history.list_deployments(2).await.unwrap()), ["f", "a"]);
}

async fn all_deployments_are_finished_ones_oldest_first(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    for (id, started, status) in [
        ("late", 30, DeploymentStatus::Failed),
        ("live", 40, DeploymentStatus::Running),
        ("early", 10, DeploymentStatus::Succeeded),
        ("mid", 20, DeploymentStatus::Interrupted),
    ] {
        history
            .put_deployment(&deployment(id, started, status))
            .await
            .unwrap();
    }
    assert_eq!(
        ids(&history.all_deployments().await.unwrap()),
        ["early", "mid", "late"]
    );
}

async fn decisions_keep_append_order_across_calls(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let decision = |n: i64, kind: &str| DecisionRecord {
        timestamp: at(n),
        decision_type: kind.into(),
        details: json!({ "n": n }),
    };
    // Appended out of timestamp order on purpose: the log keeps append order.
    let first = [decision(5, "environment_detected"), decision(1, "metrics")];
    let second = [decision(3, "strategy_selected")];
    history.append_decisions("d1", &first).await.unwrap();
    history
        .append_decisions("d2", &[decision(9, "other")])
        .await
        .unwrap();
    history.append_decisions("d1", &second).await.unwrap();
    history.append_decisions("d1", &[]).await.unwrap();
    // A second handle (a later process) continues the numbering.
    let later = f.another().await;
    later
        .append_decisions("d1", &[decision(0, "late")])
        .await
        .unwrap();

    let got = history.decisions("d1").await.unwrap();
    let expected: Vec<DecisionRecord> = first
        .iter()
        .chain(&second)
        .cloned()
        .chain([decision(0, "late")])
        .collect();
    assert_eq!(got, expected);
    assert_eq!(history.decisions("d2").await.unwrap().len(), 1);
    assert!(history.decisions("d3").await.unwrap().is_empty());
}

fn sample(n: i64, cpu: f64) -> MetricSample {
    MetricSample {
        timestamp: at(n),
        cpu_percent: cpu,
        memory_percent: 40.0,
        disk_percent: 70.0,
        load_per_core: 0.5,
        network_latency_ms: Some(1.5),
    }
}

async fn samples_are_in_time_order_and_same_millisecond_ones_are_kept(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    history
        .append_samples("d1", &[sample(2, 20.0), sample(1, 10.0)])
        .await
        .unwrap();
    history
        .append_samples("d1", &[sample(2, 21.0), sample(3, 30.0)])
        .await
        .unwrap();
    history
        .append_samples("other", &[sample(0, 1.0)])
        .await
        .unwrap();
    let cpus: Vec<f64> = history
        .samples("d1")
        .await
        .unwrap()
        .iter()
        .map(|s| s.cpu_percent)
        .collect();
    assert_eq!(cpus, [10.0, 20.0, 21.0, 30.0]);
    assert_eq!(history.samples("d1").await.unwrap()[0], sample(1, 10.0));
}

async fn a_non_finite_sample_value_reads_back_as_nan(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let sample = MetricSample {
        timestamp: at(0),
        cpu_percent: 5.0,
        memory_percent: 6.0,
        disk_percent: 7.0,
        load_per_core: f64::NAN,
        network_latency_ms: Some(f64::INFINITY),
    };
    history.append_samples("d1", &[sample]).await.unwrap();
    let got = history.samples("d1").await.unwrap();
    assert_eq!(got.len(), 1, "the sample must not be dropped");
    assert!(got[0].load_per_core.is_nan());
    assert_eq!(got[0].cpu_percent, 5.0);
    assert_eq!(got[0].network_latency_ms, None);
}

async fn audit_is_newest_first_limited_and_never_doubled(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let entry = |n: i64, action: &str| AuditEntry {
        timestamp: at(n),
        user: "ops".into(),
        action: action.into(),
        details: json!({ "n": n }),
    };
    history.append_audit(&entry(1, "deploy")).await.unwrap();
    history
        .append_audit(&entry(3, "model_retrain"))
        .await
        .unwrap();
    history.append_audit(&entry(2, "rollback")).await.unwrap();
    // Same millisecond as an earlier entry: kept, and ordered after it.
    history
        .append_audit(&entry(3, "deploy_again"))
        .await
        .unwrap();
    // The very same entry again (a journal replay): stored once.
    history
        .append_audit(&entry(3, "deploy_again"))
        .await
        .unwrap();

    let actions = |entries: Vec<AuditEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.action).collect()
    };
    assert_eq!(
        actions(history.audit(10).await.unwrap()),
        ["deploy_again", "model_retrain", "rollback", "deploy"]
    );
    assert_eq!(
        actions(history.audit(2).await.unwrap()),
        ["deploy_again", "model_retrain"]
    );
    assert_eq!(history.audit(10).await.unwrap()[3], entry(1, "deploy"));
}

async fn blobs_round_trip_and_delete(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    assert_eq!(history.get_blob("model").await.unwrap(), None);
    history.put_blob("model", &[1, 2, 3]).await.unwrap();
    history.put_blob("model", &[4, 5]).await.unwrap();
    assert_eq!(history.get_blob("model").await.unwrap(), Some(vec![4, 5]));
    // The newest blob is what every runner reads.
    let other = f.another().await;
    assert_eq!(other.get_blob("model").await.unwrap(), Some(vec![4, 5]));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    other.put_blob("model", &big).await.unwrap();
    assert_eq!(history.get_blob("model").await.unwrap(), Some(big));
    assert!(history.delete_blob("model").await.unwrap());
    assert!(!history.delete_blob("model").await.unwrap());
    assert_eq!(history.get_blob("model").await.unwrap(), None);
}

async fn stats_count_and_show_the_latest(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let empty = history.stats().await.unwrap();
    assert_eq!(empty.deployments, 0);
    assert_eq!(empty.last, None);
    history
        .put_deployment(&deployment("old", 1, DeploymentStatus::Failed))
        .await
        .unwrap();
    history
        .put_deployment(&deployment("new", 2, DeploymentStatus::Succeeded))
        .await
        .unwrap();
    let stats = history.stats().await.unwrap();
    assert_eq!(stats.deployments, 2);
    assert_eq!(stats.last.map(|r| r.id), Some("new".to_owned()));
    assert!(stats.db_bytes > 0);
    match history.location() {
        HistoryLocation::Redb { path } => assert_eq!(stats.path, path),
        HistoryLocation::Postgres { url, .. } => {
            assert_eq!(stats.path, PathBuf::from(&url));
            assert!(url.starts_with("postgres://"), "{url}");
        }
    }
}

async fn recover_interrupted_marks_only_running_deployments(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    let mut crashed = deployment("crashed", 1, DeploymentStatus::Running);
    crashed.pid = 4242;
    crashed.summary = Some("deploying api".into());
    history.put_deployment(&crashed).await.unwrap();
    history
        .put_deployment(&deployment("also_crashed", 2, DeploymentStatus::Running))
        .await
        .unwrap();
    for (id, status) in [
        ("ok", DeploymentStatus::Succeeded),
        ("bad", DeploymentStatus::Failed),
        ("undone", DeploymentStatus::RolledBack),
    ] {
        history
            .put_deployment(&deployment(id, 3, status))
            .await
            .unwrap();
    }

    let request = LockRequest {
        environment: "staging".into(),
        services: vec!["api".into()],
        deployment_id: "mine".into(),
    };
    let lock = history
        .lock_deployment(&request, Duration::ZERO, &mut |_| {})
        .await
        .unwrap();
    // This run's own running record is never taken for a crashed one.
    history
        .put_deployment(&deployment("mine", 4, DeploymentStatus::Running))
        .await
        .unwrap();
    let before = Utc::now();
    let mut recovered = history.recover_interrupted(&lock).await.unwrap();
    recovered.sort();
    let expected: &[&str] = match kind {
        // The state directory's run lock proves every other running record dead…
        Kind::Redb => &["also_crashed", "crashed", "mine"],
        // …a PostgreSQL history knows each runner's own lock.
        Kind::Postgres => &["also_crashed", "crashed"],
    };
    assert_eq!(recovered, expected);

    let got = history.get_deployment("crashed").await.unwrap().unwrap();
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
        let rec = history.get_deployment(id).await.unwrap().unwrap();
        assert_eq!(rec.status, status, "{id}");
        assert_eq!(rec.finished_at, None, "{id}");
    }
    // Nothing left to recover.
    assert!(history.recover_interrupted(&lock).await.unwrap().is_empty());
    lock.release().await;
}

async fn undecodable_records_are_skipped_and_the_rest_listed(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    for (id, started) in [("a", 1), ("c", 3)] {
        history
            .put_deployment(&deployment(id, started, DeploymentStatus::Succeeded))
            .await
            .unwrap();
    }
    let decision = DecisionRecord {
        timestamp: at(0),
        decision_type: "good".into(),
        details: json!(null),
    };
    history
        .append_decisions("a", std::slice::from_ref(&decision))
        .await
        .unwrap();
    // A damaged deployment "b" between the two, a chunk with one damaged
    // decision, and a chunk that is not even a JSON array.
    f.put_raw_deployment("b", 2, b"{not json").await;
    f.put_raw_decisions(
        "a",
        1,
        2,
        br#"[{"timestamp": 5}, {"timestamp":"2024-01-01T00:00:00Z","decision_type":"also good"}]"#,
    )
    .await;
    f.put_raw_decisions("a", 3, 1, b"\x28\xb5\x2f\xfd garbage")
        .await;

    assert_eq!(
        ids(&history.list_deployments(10).await.unwrap()),
        ["c", "a"]
    );
    // The limit counts records returned, not records skipped.
    assert_eq!(ids(&history.list_deployments(2).await.unwrap()), ["c", "a"]);
    assert_eq!(ids(&history.all_deployments().await.unwrap()), ["a", "c"]);
    let types: Vec<String> = history
        .decisions("a")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.decision_type)
        .collect();
    assert_eq!(types, ["good", "also good"]);
    assert_eq!(history.stats().await.unwrap().deployments, 3);

    // Asked for by id, the damaged record is an error naming it, not `None`.
    let err = history.get_deployment("b").await.unwrap_err();
    assert!(matches!(err, HistoryError::Undecodable { .. }), "{err}");
    assert!(err.to_string().contains("deployments/b"), "{err}");

    // Replacing the damaged record repairs its index entry too.
    history
        .put_deployment(&deployment("b", 4, DeploymentStatus::Failed))
        .await
        .unwrap();
    assert_eq!(
        ids(&history.list_deployments(10).await.unwrap()),
        ["b", "c", "a"]
    );
}

async fn aggregates_follow_outcomes_and_replacements(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    // Running and dry-run records do not count.
    history
        .put_deployment(&deployment("r", 1, DeploymentStatus::Running))
        .await
        .unwrap();
    let mut dry = finished("dry", 2, true, 5);
    dry.dry_run = true;
    history.put_deployment(&dry).await.unwrap();
    assert_eq!(history.aggregates().await.unwrap(), Aggregates::default());

    history
        .put_deployment(&finished("a", 10, true, 60))
        .await
        .unwrap();
    history
        .put_deployment(&finished("b", 20, false, 30))
        .await
        .unwrap();
    history
        .put_deployment(&finished("c", 30, false, 30))
        .await
        .unwrap();
    let mut other = finished("d", 40, true, 100);
    other.strategy = "conservative".into();
    other.services = vec!["db".into()];
    history.put_deployment(&other).await.unwrap();
    // Stored again (a journal replay, an import): counted once.
    history
        .put_deployment(&finished("c", 30, false, 30))
        .await
        .unwrap();

    let agg = history.aggregates().await.unwrap();
    assert_eq!(agg.deployments(), 4);
    assert_eq!(agg.successes(), 2);
    let balanced = agg
        .by_strategy
        .iter()
        .find(|s| s.strategy == "balanced")
        .unwrap();
    assert_eq!((balanced.deployments, balanced.successes), (3, 1));
    assert_eq!(balanced.duration_s_total, 120.0);
    assert_eq!(balanced.last_started_at, Some(at(30)));
    assert_eq!(balanced.mean_duration_s(), Some(40.0));
    let api = agg.by_service.iter().find(|s| s.service == "api").unwrap();
    assert_eq!((api.deployments, api.successes), (3, 1));
    assert_eq!(api.consecutive_failures, 2);
    assert_eq!(api.last_success, Some(false));
    let db = agg.by_service.iter().find(|s| s.service == "db").unwrap();
    assert_eq!((db.deployments, db.consecutive_failures), (1, 0));

    // A record that changes its outcome moves its contribution.
    history
        .put_deployment(&finished("c", 30, true, 10))
        .await
        .unwrap();
    let agg = history.aggregates().await.unwrap();
    let balanced = agg
        .by_strategy
        .iter()
        .find(|s| s.strategy == "balanced")
        .unwrap();
    assert_eq!((balanced.deployments, balanced.successes), (3, 2));
    assert_eq!(balanced.duration_s_total, 100.0);
    let api = agg.by_service.iter().find(|s| s.service == "api").unwrap();
    assert_eq!(
        (api.consecutive_failures, api.last_success),
        (0, Some(true))
    );
    // And a second runner's handle sees the same counters.
    assert_eq!(f.another().await.aggregates().await.unwrap(), agg);
}

async fn the_window_is_the_newest_records_and_the_aggregates(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    for i in 0..30 {
        history
            .put_deployment(&finished(&format!("d{i:02}"), i * 100, i % 3 != 0, 50))
            .await
            .unwrap();
    }
    let window = history.window(5).await.unwrap();
    assert_eq!(ids(&window.recent), ["d29", "d28", "d27", "d26", "d25"]);
    assert_eq!(window.aggregates.deployments(), 30);
    assert_eq!(window.aggregates.successes(), 20);
    assert_eq!(window.aggregates.with_features(), 0);
}

async fn the_aggregates_count_the_training_rows(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    for i in 0..10 {
        let record = finished(&format!("d{i}"), i * 100, true, 50);
        let record = if i < 7 { featured(record) } else { record };
        history.put_deployment(&record).await.unwrap();
    }
    // Not counted: still running (no outcome yet).
    history
        .put_deployment(&featured(deployment(
            "running",
            5_000,
            DeploymentStatus::Running,
        )))
        .await
        .unwrap();
    let agg = history.aggregates().await.unwrap();
    assert_eq!((agg.deployments(), agg.with_features()), (10, 7));
    // Replacing a record replaces its contribution.
    history
        .put_deployment(&finished("d0", 0, true, 50))
        .await
        .unwrap();
    history
        .put_deployment(&featured(finished("d9", 900, false, 50)))
        .await
        .unwrap();
    let agg = history.aggregates().await.unwrap();
    assert_eq!((agg.deployments(), agg.with_features()), (10, 7));
    assert_eq!(agg.successes(), 9);
}

async fn detail_is_one_deployment_with_its_decisions_and_samples(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    assert_eq!(history.detail("d1").await.unwrap(), None);
    let rec = finished("d1", 0, true, 10);
    history.put_deployment(&rec).await.unwrap();
    let decisions = [DecisionRecord {
        timestamp: at(1),
        decision_type: "plan".into(),
        details: json!({"waves": 2}),
    }];
    history.append_decisions("d1", &decisions).await.unwrap();
    history
        .append_samples("d1", &[sample(2, 2.0), sample(1, 1.0)])
        .await
        .unwrap();
    history.append_decisions("d2", &decisions).await.unwrap();
    let detail = history.detail("d1").await.unwrap().unwrap();
    assert_eq!(detail.record, rec);
    assert_eq!(detail.decisions, decisions);
    assert_eq!(detail.samples, [sample(1, 1.0), sample(2, 2.0)]);
}

async fn downsampling_keeps_the_means_of_old_deployments_only(kind: Kind) {
    let f = Fixture::new(kind).await;
    let history = &f.store;
    history
        .put_deployment(&finished("old", 0, true, 100))
        .await
        .unwrap();
    history
        .put_deployment(&finished("new", 10_000, true, 100))
        .await
        .unwrap();
    let series: Vec<MetricSample> = (0..100).map(|i| sample(i, i as f64)).collect();
    history.append_samples("old", &series[..60]).await.unwrap();
    history.append_samples("old", &series[60..]).await.unwrap();
    history.append_samples("new", &series).await.unwrap();

    let reduced = history.downsample(at(5_000), 4).await.unwrap();
    assert_eq!(reduced, 1);
    let old = history.samples("old").await.unwrap();
    let cpus: Vec<f64> = old.iter().map(|s| s.cpu_percent).collect();
    assert_eq!(cpus, [12.0, 37.0, 62.0, 87.0]);
    assert_eq!(old[1].timestamp, at(25));
    assert_eq!(old[0].network_latency_ms, Some(1.5));
    assert_eq!(history.samples("new").await.unwrap().len(), 100);
    // Nothing left to do the second time.
    assert_eq!(history.downsample(at(5_000), 4).await.unwrap(), 0);
}

/// Fills a history with one of everything, including a record whose step
/// message needs escaping.
async fn fill(history: &HistoryStore) {
    history
        .put_deployment(&finished("b", 20, true, 5))
        .await
        .unwrap();
    history
        .put_deployment(&finished("a", 10, false, 5))
        .await
        .unwrap();
    let mut running = deployment("c", 30, DeploymentStatus::Running);
    running.steps = vec![step("web", 2, "x\ny é✓ \u{1b}[31m")];
    history.put_deployment(&running).await.unwrap();
    history
        .append_decisions(
            "a",
            &[DecisionRecord {
                timestamp: at(11),
                decision_type: "plan".into(),
                details: json!({"unicode": "é✓", "n": 1e300}),
            }],
        )
        .await
        .unwrap();
    history
        .append_samples("a", &[sample(12, 1.0), sample(13, f64::NAN)])
        .await
        .unwrap();
    history
        .append_audit(&AuditEntry {
            timestamp: at(14),
            user: "ops".into(),
            action: "deploy".into(),
            details: json!({}),
        })
        .await
        .unwrap();
    history
        .put_blob("strategy_model", b"\x00\x01model")
        .await
        .unwrap();
}

async fn export(history: &HistoryStore) -> Vec<u8> {
    let mut out = Vec::new();
    history.export(&mut out, "export").await.unwrap();
    out
}

async fn export_then_import_preserves_every_record_byte_for_byte(kind: Kind) {
    let source = Fixture::new(kind).await;
    fill(&source.store).await;
    // A record with a field unknown to this adeploy, imported as text.
    let future = r#"{"format":"adeploy-history","version":1}
{"type":"deployment","record":{"id":"f","started_at":"2023-11-14T22:13:40Z","status":"succeeded","from_the_future":{"k":[1,2]}}}
"#;
    source
        .store
        .import(&mut future.as_bytes(), "future.jsonl")
        .await
        .unwrap();
    let first = export(&source.store).await;
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.starts_with("{\"format\":\"adeploy-history\",\"version\":1}\n"));
    assert!(text.contains(r#""from_the_future":{"k":[1,2]}"#), "{text}");
    assert_eq!(text.lines().count(), 1 + 4 + 1 + 2 + 1 + 1, "{text}");

    // Into an empty history of either backend, and out again: same bytes.
    for target_kind in [Kind::Redb, Kind::Postgres] {
        let target = Fixture::new(target_kind).await;
        let summary = target
            .store
            .import(&mut first.as_slice(), "export.jsonl")
            .await
            .unwrap();
        assert_eq!(
            summary,
            TransferSummary {
                deployments: 4,
                decisions: 1,
                samples: 2,
                audit: 1,
                blobs: 1
            }
        );
        assert_eq!(
            String::from_utf8(export(&target.store).await).unwrap(),
            text,
            "{kind:?} → {target_kind:?}"
        );
        // Importing again changes nothing.
        target
            .store
            .import(&mut first.as_slice(), "export.jsonl")
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(export(&target.store).await).unwrap(),
            text
        );
        assert_eq!(
            target.store.aggregates().await.unwrap(),
            source.store.aggregates().await.unwrap()
        );
        assert_eq!(
            target.store.get_blob("strategy_model").await.unwrap(),
            Some(b"\x00\x01model".to_vec())
        );
    }
}

async fn a_bad_import_line_is_named_and_stops_the_import(kind: Kind) {
    let f = Fixture::new(kind).await;
    let cases: [(&str, &str); 4] = [
        (
            "{\"type\":\"deployment\",\"record\":{}}\n",
            "export.jsonl:1: an export starts with the header line",
        ),
        (
            "{\"format\":\"adeploy-history\",\"version\":1}\n{\"type\":\"deployment\",\"record\":{\"id\":1}}\n",
            "export.jsonl:2: not a deployment record",
        ),
        (
            "{\"format\":\"adeploy-history\",\"version\":99}\n",
            "export.jsonl:1: written by a newer adeploy",
        ),
        (
            "{\"format\":\"adeploy-history\",\"version\":1}\n\nnot json\n",
            "export.jsonl:3: not a history line",
        ),
    ];
    for (input, expected) in cases {
        let err = f
            .store
            .import(&mut input.as_bytes(), "export.jsonl")
            .await
            .unwrap_err();
        assert!(matches!(err, HistoryError::BadLine { .. }), "{err}");
        assert!(err.needs_operator());
        assert!(err.to_string().starts_with(expected), "{err}");
    }
    assert!(f.store.list_deployments(10).await.unwrap().is_empty());
}

async fn one_runner_retrains_at_a_time(kind: Kind) {
    let f = Fixture::new(kind).await;
    let other = f.another().await;
    let first = f.store.try_lock_retrain().await.unwrap();
    assert!(first.is_some());
    assert!(other.try_lock_retrain().await.unwrap().is_none());
    drop(first);
    // Released with the lock (a PostgreSQL session closes asynchronously).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if other.try_lock_retrain().await.unwrap().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
