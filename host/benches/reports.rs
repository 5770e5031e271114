//! Report rendering costs: the HTML, JUnit and Markdown of a large report
//! (500 steps in 25 waves, 2,000 decisions, an hour of load samples at 1 s,
//! 20 metric verdicts of 1,000 samples each, process usage), and the history
//! analytics page over 100,000 deployments. After the criterion groups it
//! prints the size of each output (the pages must stay small whatever the
//! input).
//! Run: `cargo bench -p adeploy --bench reports`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use adeploy::history::{DeploymentRecord, DeploymentStatus};
use adeploy::report::render::{
    self, Document, Format, HistoryAnalytics, HistoryOptions, ModelPoint,
};
use chrono::{DateTime, Duration, Utc};
use criterion::Criterion;
use serde_json::json;

fn start() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn ts(s: f64) -> String {
    (start() + Duration::milliseconds((s * 1000.0) as i64)).to_rfc3339()
}

/// A report document with every section large.
fn large_report() -> Document {
    let mut steps = Vec::new();
    for i in 0..500 {
        let wave = i / 20;
        let t = wave as f64 * 140.0 + (i % 20) as f64 * 3.0;
        let failed = i == 487;
        steps.push(json!({
            "service": format!("svc-{:02}", i % 25),
            "host": format!("web-{:03}", i / 25),
            "wave": wave,
            "status": if i > 490 { "skipped" } else if failed { "failed" } else { "succeeded" },
            "started_at": if i > 490 { serde_json::Value::Null } else { ts(t).into() },
            "seconds": 25.0 + (i % 7) as f64,
            "message": if failed { "health check failed: HTTP 503" } else { "deployed and healthy" },
            "rolled_back": if i > 480 && i <= 490 { json!(true) } else { json!(null) },
            "rollback_message": null,
        }));
    }
    let decisions: Vec<_> = (0..2000)
        .map(|i| {
            json!({
                "timestamp": ts(i as f64 * 1.7),
                "decision_type": if i % 3 == 0 { "step_finished" } else { "strategy_decision" },
                "details": {"service": format!("svc-{}", i % 25), "seconds": 25.5, "message": "deployed and healthy", "candidates": [{"a": 1}, {"b": 2}]},
            })
        })
        .collect();
    let samples: Vec<_> = (0..3600)
        .map(|i| json!({"timestamp": ts(i as f64), "cpu_percent": 30.0 + (i % 50) as f64, "memory_percent": 40.0 + (i % 10) as f64}))
        .collect();
    let analysis: Vec<_> = (0..20)
        .map(|m| {
            json!({
                "service": format!("svc-{m:02}"), "metric": "error-rate", "verdict": if m == 3 { "fail" } else { "pass" },
                "max": 0.05,
                "samples": (0..1000).map(|k| json!({"timestamp": ts(k as f64 * 2.0), "value": 0.01 + (k % 7) as f64 * 0.001})).collect::<Vec<_>>(),
                "baseline": (0..1000).map(|k| 0.01 + (k % 5) as f64 * 0.001).collect::<Vec<_>>(),
            })
        })
        .collect();
    let process: Vec<_> = (0..3600)
        .map(|i| json!({"timestamp": ts(i as f64), "cpu_percent": (i % 80) as f64, "memory_bytes": 5.0e7 + i as f64 * 1e4}))
        .collect();
    Document::from_value(json!({
        "deployment_summary": {"id": "deploy_bench", "success": false, "status": "rolled_back", "duration_minutes": 60.0,
            "strategy_used": "conservative", "environment": "production", "services": (0..25).map(|i| format!("svc-{i:02}")).collect::<Vec<_>>(),
            "dry_run": false, "started_at": ts(0.0)},
        "decision_process": decisions,
        "steps": steps,
        "lessons_learned": ["svc-12 failed under conservative"],
        "recommendations": ["check svc-12's health endpoint"],
        "analysis": analysis,
        "resource_samples": samples,
        "process_usage": {"method": "cgroup", "samples": process},
    }))
    .unwrap()
}

/// 100,000 finished deployments over a year: 4 strategies × 4
/// environments, 3 of 30 services each, about 12% failing.
fn history(n: usize) -> Vec<DeploymentRecord> {
    let strategies = ["conservative", "balanced", "aggressive", "canary"];
    let envs = ["production", "staging", "development", "local"];
    (0..n)
        .map(|i| {
            let at = start() + Duration::seconds((i as i64) * 315);
            let ok = (i * 7919) % 100 >= 12;
            let services: Vec<String> = (0..3).map(|k| format!("svc-{:02}", (i + k * 7) % 30)).collect();
            let steps: Vec<_> = services
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let failed = !ok && k == 2;
                    json!({"service": s, "host": null, "wave": k + 1, "status": if failed { "failed" } else { "succeeded" },
                        "started_at": at.to_rfc3339(), "seconds": 20.0 + ((i + k) % 13) as f64,
                        "message": if failed { format!("health check failed: HTTP 503 from http://10.0.0.{}:8080/health", i % 250) } else { "deployed and healthy".into() },
                        "rolled_back": if ok { serde_json::Value::Null } else { json!(true) }, "rollback_message": null})
                })
                .collect();
            DeploymentRecord {
                finished_at: Some(at + Duration::seconds(75)),
                status: if ok { DeploymentStatus::Succeeded } else { DeploymentStatus::RolledBack },
                environment: envs[i % 4].into(),
                strategy: strategies[(i / 4) % 4].into(),
                services,
                deployment_size: "medium".into(),
                success: Some(ok),
                duration_s: Some(75.0),
                steps: serde_json::from_value(serde_json::Value::Array(steps)).unwrap_or_default(),
                ..DeploymentRecord::running(format!("deploy_{i}"), at)
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let doc = large_report();
    let mut g = c.benchmark_group("report");
    g.sample_size(20);
    for f in [Format::Html, Format::Junit, Format::Markdown] {
        g.bench_function(format!("large report as {f}"), |b| {
            b.iter(|| black_box(render::render_document(&doc, f)))
        });
    }
    g.finish();

    let records = history(100_000);
    let options = HistoryOptions {
        model: (1..=40)
            .map(|k| ModelPoint {
                trained_at: start() + Duration::days(k * 9),
                samples: k as usize * 2500,
                oob_accuracy: Some(0.6 + k as f64 * 0.005),
            })
            .collect(),
        ..HistoryOptions::default()
    };
    let mut g = c.benchmark_group("history");
    g.sample_size(10);
    g.bench_function("analytics of 100k deployments", |b| {
        b.iter(|| black_box(HistoryAnalytics::compute(&records, &options)))
    });
    g.bench_function("page of 100k deployments", |b| {
        b.iter(|| black_box(render::history_page(&records, &options)))
    });
    g.finish();

    for f in [Format::Html, Format::Junit, Format::Markdown] {
        println!(
            "size: large report as {f}: {} KiB",
            render::render_document(&doc, f).len() / 1024
        );
    }
    println!(
        "size: history page of 100k deployments: {} KiB",
        render::history_page(&records, &options).len() / 1024
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
