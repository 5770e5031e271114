//! The history at 100,000 deployments, on both backends: `list` (newest 20,
//! after the check for interrupted deployments), `report ID` (one deployment
//! with its decisions and samples), what a deployment reads when it starts
//! (200 recent records + the aggregates + the model blob, turned into the
//! learning's `Past`; and, once, the whole-history read it replaced), and
//! the bytes one deployment costs.
//!
//! Run: `bench/history.sh` (starts a PostgreSQL 15 on a free loopback port,
//! passes it as `ADEPLOY_BENCH_PG_URL`, stops it afterwards). Without that
//! variable only redb is measured. `ADEPLOY_BENCH_DEPLOYMENTS` changes the
//! size (default 100,000).
//!
//! The 100,000 deployments are generated (seeded) in the shape of real
//! ones: a record with its features and steps, 12 decisions, 10 metric
//! samples, written through `import` in batches (one chunk per series).
//! The bytes of deployments written the way a live run writes them (three
//! decision appends and two sample appends each) are measured separately on
//! 1,000 deployments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use adeploy::config::HistoryUrl;
use adeploy::history::{
    DecisionRecord, DeploymentRecord, DeploymentStatus, HistoryBackend, HistoryStore, MetricSample,
    PgHistory,
};
use chrono::{DateTime, TimeZone, Utc};
use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const SERVICES: [&str; 6] = ["api", "web", "worker", "db-migrate", "cache", "gateway"];
const STRATEGIES: [&str; 3] = ["conservative", "balanced", "aggressive"];
const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}

fn id(i: usize) -> String {
    format!("deploy_{i:07}")
}

/// One deployment as the engine records it.
fn deployment(
    i: usize,
    rng: &mut StdRng,
) -> (DeploymentRecord, Vec<DecisionRecord>, Vec<MetricSample>) {
    let start = i as i64 * 600_000;
    let services: Vec<String> = SERVICES[..rng.gen_range(1..=3)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let strategy = STRATEGIES[rng.gen_range(0..3)];
    let environment = ENVIRONMENTS[rng.gen_range(0..3)];
    let success = rng.gen_bool(0.85);
    let steps: Vec<serde_json::Value> = services
        .iter()
        .map(|s| {
            json!({"service": s, "host": null, "wave": 1,
                "status": if success { "succeeded" } else { "failed" },
                "started_at": at(start + 400).to_rfc3339(), "seconds": rng.gen_range(0.5..30.0),
                "message": if success { "deployed and healthy" } else { "health check failed: HTTP 503" },
                "rolled_back": if success { None } else { Some(true) }, "rollback_message": null})
        })
        .collect();
    let mut record = DeploymentRecord {
        environment: environment.into(),
        strategy: strategy.into(),
        services: services.clone(),
        deployment_size: "medium".into(),
        log_path: Some(format!("/var/lib/adeploy/deployment_logs/deploy_{i}.log").into()),
        report_path: Some(
            format!(
                "/var/lib/adeploy/deployment_reports/deployment_report_{}.json",
                id(i)
            )
            .into(),
        ),
        summary: Some(format!(
            "{} service(s) deployed with {strategy}",
            services.len()
        )),
        features: serde_json::from_value(json!({
                "cpu_percent": rng.gen_range(0.0..100.0), "memory_percent": rng.gen_range(0.0..100.0),
                "disk_percent": rng.gen_range(30.0..90.0), "load_per_core": rng.gen_range(0.0..2.0),
                "network_latency_ms": rng.gen_range(1.0..50.0), "environment": environment,
                "size_ordinal": 1.0, "service_count": services.len() as f64,
                "hour": rng.gen_range(0..24) as f64, "weekday": rng.gen_range(0..7) as f64,
                "success_rate_overall": rng.gen_range(0.5..1.0),
                "success_rate_strategy": rng.gen_range(0.5..1.0),
                "recent_failures": rng.gen_range(0..4) as f64, "mean_duration_min": rng.gen_range(0.1..5.0),
        }))
        .ok(),
        steps: serde_json::from_value(serde_json::Value::Array(steps)).unwrap_or_default(),
        ..DeploymentRecord::running(id(i), at(start))
    };
    let status = if success {
        DeploymentStatus::Succeeded
    } else {
        DeploymentStatus::RolledBack
    };
    record.finish(status, at(start + rng.gen_range(5_000..300_000)));
    let mut t = start;
    let mut decision = |kind: &str, details: serde_json::Value, rng: &mut StdRng| {
        t += rng.gen_range(1..500);
        DecisionRecord {
            timestamp: at(t),
            decision_type: kind.into(),
            details,
        }
    };
    let decisions = vec![
        decision(
            "environment_detected",
            json!({"confidence": 1.0, "environment": environment, "evidence": ["ADEPLOY_ENV=staging"], "notes": [], "source": "detector"}),
            rng,
        ),
        decision(
            "system_metrics",
            json!({"cpu_percent": rng.gen_range(0.0..100.0), "disk_percent": 76.28386747064907, "load_per_core": 1.12, "memory_percent": 3.454062640829567, "network_latency_ms": null}),
            rng,
        ),
        decision(
            "history_loaded",
            json!({"deployments": i, "in_environment": i / 3, "model": "random_forest", "recent_success_rate": 0.85, "training_samples": i}),
            rng,
        ),
        decision(
            "strategy_predicted",
            json!({"candidates": [{"strategy": "balanced", "p_success": 0.9}, {"strategy": "aggressive", "p_success": 0.8}], "confidence": 0.72, "method": "model", "reasons": ["the model prefers balanced in staging at this load"], "strategy": strategy}),
            rng,
        ),
        decision("safety_override", json!({"applied": false}), rng),
        decision(
            "resources_calculated",
            json!({"limits": {"concurrency": 4, "cpu_limit": 0.7, "memory_limit": 0.7}, "strategy": strategy}),
            rng,
        ),
        decision(
            "validation",
            json!({"forced": false, "passed": true, "problems": []}),
            rng,
        ),
        decision(
            "plan",
            json!({"concurrency": 4, "health_checks": true, "interval_ms": 500, "max_failures": 0, "notes": ["1 wave of all steps, 4 at a time; each step still waits for its dependencies"], "waves": [services]}),
            rng,
        ),
        decision(
            "hook",
            json!({"details": {}, "failure_count": 0, "hook": "http-smoke", "message": "no checks for pre-deployment", "ok": true, "phase": "pre-deployment"}),
            rng,
        ),
        decision(
            "step_finished",
            json!({"host": null, "message": "deployed and healthy", "seconds": 0.002339477, "service": services[0], "status": "succeeded", "wave": 1}),
            rng,
        ),
        decision(
            "hook",
            json!({"details": {}, "failure_count": 0, "hook": "http-smoke", "message": "no checks for post-deployment", "ok": true, "phase": "post-deployment"}),
            rng,
        ),
        decision(
            "deployment_finished",
            json!({"message": "deployed and healthy", "status": status.as_str(), "success": success}),
            rng,
        ),
    ];
    let samples = (0..10)
        .map(|n| MetricSample {
            timestamp: at(start + n * 1000),
            cpu_percent: rng.gen_range(0.0..100.0),
            memory_percent: rng.gen_range(0.0..100.0),
            disk_percent: 76.3,
            load_per_core: rng.gen_range(0.0..2.0),
            network_latency_ms: Some(rng.gen_range(1.0..50.0)),
        })
        .collect();
    (record, decisions, samples)
}

/// Writes deployments `range` as an export (JSON Lines) into `out`.
fn export_lines(range: std::ops::Range<usize>, out: &mut Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(range.start as u64);
    writeln!(out, r#"{{"format":"adeploy-history","version":1}}"#).unwrap();
    let mut series = Vec::new();
    for i in range {
        let (record, decisions, samples) = deployment(i, &mut rng);
        writeln!(
            out,
            r#"{{"type":"deployment","record":{}}}"#,
            serde_json::to_string(&record).unwrap()
        )
        .unwrap();
        series.push((record.id, decisions, samples));
    }
    for (id, decisions, samples) in series {
        for (seq, d) in decisions.iter().enumerate() {
            writeln!(
                out,
                r#"{{"type":"decision","deployment_id":"{id}","seq":{seq},"record":{}}}"#,
                serde_json::to_string(d).unwrap()
            )
            .unwrap();
        }
        for (seq, s) in samples.iter().enumerate() {
            writeln!(
                out,
                r#"{{"type":"sample","deployment_id":"{id}","seq":{seq},"record":{}}}"#,
                serde_json::to_string(s).unwrap()
            )
            .unwrap();
        }
    }
}

/// Fills `store` with `n` deployments through `import`; prints the time.
async fn fill(store: &HistoryStore, n: usize, name: &str) {
    let started = Instant::now();
    let mut buf = Vec::new();
    for from in (0..n).step_by(2000) {
        buf.clear();
        export_lines(from..(from + 2000).min(n), &mut buf);
        store
            .import(&mut buf.as_slice(), "generated")
            .await
            .unwrap();
    }
    println!(
        "{name}: generated {n} deployments in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Writes `n` deployments the way a live run does: the record, three
/// decision appends, two sample appends, the final record.
async fn write_live(store: &HistoryStore, n: usize) {
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..n {
        let (record, decisions, samples) = deployment(i, &mut rng);
        let mut running = record.clone();
        running.status = DeploymentStatus::Running;
        running.finished_at = None;
        running.success = None;
        store.put_deployment(&running).await.unwrap();
        store
            .append_decisions(&record.id, &decisions[..7])
            .await
            .unwrap();
        store
            .append_decisions(&record.id, &decisions[7..10])
            .await
            .unwrap();
        store
            .append_samples(&record.id, &samples[..5])
            .await
            .unwrap();
        store
            .append_samples(&record.id, &samples[5..])
            .await
            .unwrap();
        store
            .append_decisions(&record.id, &decisions[10..])
            .await
            .unwrap();
        store.put_deployment(&record).await.unwrap();
    }
}

/// The uncompressed JSON of one generated deployment, for comparison.
fn json_bytes_per_deployment() -> usize {
    let mut buf = Vec::new();
    export_lines(0..1000, &mut buf);
    buf.len() / 1000
}

async fn open(kind: &str, state: &std::path::Path, url: Option<&str>) -> HistoryStore {
    match (kind, url) {
        ("redb", _) => HistoryStore::open_local(state).await.unwrap(),
        (_, Some(url)) => HistoryStore::postgres(
            PgHistory::connect(&HistoryUrl::new(url), None, state)
                .await
                .unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// The bytes per deployment once the file (redb: compaction) or the tables
/// (PostgreSQL: `VACUUM FULL`, which returns dead row versions) hold only live data.
fn report_compacted(rt: &tokio::runtime::Runtime, store: &HistoryStore, kind: &str, n: usize) {
    match store.as_local() {
        Some(local) => {
            local.compact().unwrap();
        }
        None => {
            let pg = store.as_postgres().unwrap().url().to_string();
            let (client, connection) = rt
                .block_on(tokio_postgres::connect(&pg, tokio_postgres::NoTls))
                .unwrap();
            rt.spawn(connection);
            rt.block_on(client.batch_execute("VACUUM FULL")).unwrap();
        }
    }
    let bytes = rt.block_on(store.stats()).unwrap().db_bytes;
    println!(
        "{kind}: {n} deployments, compacted: {bytes} bytes, {} bytes per deployment",
        bytes / n as u64
    );
}

/// Deployments with an outcome among the `n` generated (all finished).
fn past_total(n: usize) -> usize {
    n
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let n: usize = std::env::var("ADEPLOY_BENCH_DEPLOYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pg_base = std::env::var("ADEPLOY_BENCH_PG_URL").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if pg_base.is_none() {
        println!("ADEPLOY_BENCH_PG_URL is not set: measuring redb only (bench/history.sh sets it)");
    }
    println!(
        "uncompressed JSON of one generated deployment (record + 12 decisions + 10 samples): {} bytes",
        json_bytes_per_deployment()
    );
    let mut backends = vec!["redb"];
    if pg_base.is_some() {
        backends.push("postgres");
    }
    for kind in backends {
        // Live-written bytes on 1,000 deployments, in a history of their own.
        let live_state = tempfile::tempdir().unwrap();
        let live_url = pg_base.as_ref().map(|u| format!("{u}/adeploy_bench_live"));
        let store = rt.block_on(open(kind, live_state.path(), live_url.as_deref()));
        rt.block_on(write_live(&store, 1000));
        let live = rt.block_on(store.stats()).unwrap();
        println!(
            "{kind}: 1000 deployments written as a live run writes them: {} bytes, {} bytes per deployment",
            live.db_bytes,
            live.db_bytes / 1000
        );
        report_compacted(&rt, &store, kind, 1000);

        let state = tempfile::tempdir().unwrap();
        let url = pg_base.as_ref().map(|u| format!("{u}/adeploy_bench"));
        let store = rt.block_on(open(kind, state.path(), url.as_deref()));
        rt.block_on(fill(&store, n, kind));
        let stats = rt.block_on(store.stats()).unwrap();
        println!(
            "{kind}: {} deployments imported: {} bytes, {} bytes per deployment",
            stats.deployments,
            stats.db_bytes,
            stats.db_bytes / stats.deployments.max(1)
        );

        report_compacted(&rt, &store, kind, n);

        let mut g = c.benchmark_group(format!("history_{kind}_{n}"));
        g.sample_size(30).measurement_time(Duration::from_secs(10));
        g.bench_function("list_newest_20", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(store.list_deployments(20).await.unwrap()) })
        });
        let mut rng = StdRng::seed_from_u64(99);
        g.bench_function("report_one_deployment", |b| {
            b.to_async(&rt).iter(|| {
                let wanted = id(rng.gen_range(0..n));
                let store = &store;
                async move {
                    let detail = store.detail(&wanted).await.unwrap().unwrap();
                    assert_eq!(detail.decisions.len(), 12);
                    black_box(detail)
                }
            })
        });
        g.bench_function("window_200_and_aggregates", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(store.window(200).await.unwrap()) })
        });
        g.bench_function("list_with_recovery", |b| {
            b.to_async(&rt).iter(|| async {
                store.recover_abandoned().await.unwrap();
                black_box(store.list_deployments(20).await.unwrap())
            })
        });
        g.bench_function("start_of_run_read", |b| {
            b.to_async(&rt).iter(|| async {
                let window = store.window(200).await.unwrap();
                let model = store.get_blob("strategy_model").await.unwrap();
                let past = adeploy::engine::learn::Past::from_window(&window);
                assert_eq!(past.deployments(), past_total(n));
                black_box((past, model))
            })
        });
        g.finish();
        // What the start of a deployment read before: every record, decoded
        // into the learning's outcomes. Once, timed (seconds at 100,000).
        let t = Instant::now();
        let all = rt.block_on(store.list_deployments(usize::MAX)).unwrap();
        let outcomes = adeploy::engine::learn::outcomes(&all);
        println!(
            "{kind}: start of a deployment before the window (every record decoded, {} outcomes): {:.0} ms",
            outcomes.len(),
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    c.final_summary();
}
