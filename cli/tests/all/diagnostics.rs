//! `adeploy diagnostics`: typed round trip of `--json`, exit code, `--root`.

use adeploy::engine::diagnostics::{CheckStatus, Diagnostics};
use adeploy::history::{DeploymentRecord, DeploymentStatus, History, MetricSample};
use adeploy::monitor::TrendVerdict;

use crate::common::{adeploy, adeploy_command};

#[test]
fn diagnostics_json_round_trips_and_examines_another_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(".dockerenv"), "").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "environment_detection:\n  process_patterns: {development: []}\n",
    )
    .unwrap();
    let o = adeploy_command(dir.path(), &dir.path().join("state"))
        .args([
            "diagnostics",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            "--hostname",
            "web-prod-1",
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let d: Diagnostics =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // Exit code follows health.
    let critical = d
        .thresholds
        .iter()
        .any(|t| t.status == CheckStatus::Critical)
        || d.state.status == CheckStatus::Critical;
    assert_eq!(d.healthy, !critical);
    assert_eq!(
        o.status.code(),
        Some(if d.healthy { 0 } else { 1 }),
        "{stderr}"
    );
    // The hostname (production, weight 3) outweighs the marker under --root
    // (development, 2): agreement 3/5, support 3 of the 8 one piece from
    // every method would give.
    assert_eq!(
        d.environment.environment,
        adeploy::config::Environment::Production
    );
    assert!(
        (d.environment.confidence - 0.6 * 3.0 / 8.0).abs() < 1e-9,
        "{:?}",
        d.environment
    );
    assert_eq!(
        d.environment.evidence.len(),
        2,
        "{:?}",
        d.environment.evidence
    );
    // Every threshold of the config is judged.
    let keys: Vec<&str> = d.thresholds.iter().map(|t| t.key.as_str()).collect();
    for k in [
        "thresholds.high_cpu",
        "thresholds.critical_memory",
        "thresholds.min_free_disk_percent",
        "thresholds.max_deployment_time",
    ] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    assert_eq!(d.plugins.len(), 6, "the six built-ins");
    assert!(d.system.memory_total_bytes > 0 && d.system.cores > 0);
    // Two seconds of live samples and no history: no trend is made up.
    let metrics: Vec<&str> = d.trends.iter().map(|t| t.metric.as_str()).collect();
    assert_eq!(metrics, ["cpu", "memory", "disk", "load"]);
    for t in &d.trends {
        assert!(
            matches!(t.verdict, TrendVerdict::NotEnoughData { .. }),
            "{t}"
        );
        assert!(t.span_s < 60.0 && t.samples <= 8, "{t}");
    }
    assert_eq!(d.state.deployments, 0);
    assert_eq!(d.model.method, "rules");
    assert!(d.config.services.contains(&"api-service".to_string()));
}

#[test]
fn diagnostics_with_a_missing_root_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let o = adeploy(
        &["diagnostics", "--root", "/definitely/not/here"],
        dir.path(),
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--root /definitely/not/here: not a directory")
    );
}

/// Regression (issue 13, item 5): diagnostics fitted CPU slopes of −810 and
/// +2,894 points/min to two seconds of samples. Trends now rest on the
/// samples the history stored over `monitoring.trend_window_s` plus live
/// ones, and say how many over how long.
#[test]
fn diagnostics_trends_come_from_the_stored_samples_over_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let history = History::open(&state).unwrap();
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::minutes(10);
    let record = DeploymentRecord {
        finished_at: Some(now),
        status: DeploymentStatus::Succeeded,
        success: Some(true),
        ..DeploymentRecord::running("deploy_1", start)
    };
    history.put_deployment(&record).unwrap();
    // Disk +1 point per minute for ten minutes, one sample every 30 s.
    let samples: Vec<MetricSample> = (0..=20)
        .map(|i| MetricSample {
            timestamp: start + chrono::Duration::seconds(30 * i),
            cpu_percent: 20.0,
            memory_percent: 40.0,
            disk_percent: 30.0 + 0.5 * i as f64,
            load_per_core: 0.2,
            network_latency_ms: None,
        })
        .collect();
    history.append_samples("deploy_1", &samples).unwrap();
    drop(history);
    let o = adeploy_command(dir.path(), &state)
        .args(["diagnostics", "--json"])
        .output()
        .unwrap();
    let d: Diagnostics = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let disk = d.trends.iter().find(|t| t.metric == "disk").unwrap();
    assert!(disk.samples >= 21, "{disk}");
    assert!(disk.span_s >= 590.0, "{disk}");
    assert_eq!(disk.window_s, 900.0);
    // The live samples of this machine's disk sit elsewhere; the stored ten
    // minutes dominate the fit only if they agree, so check the shape, not
    // the slope's value.
    assert!(matches!(disk.verdict, TrendVerdict::Trend { .. }), "{disk}");
    let text = adeploy_command(dir.path(), &state)
        .args(["diagnostics"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("trend disk"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(" over 10.") && line.contains(" min (") && line.ends_with(" samples)"),
        "{line}"
    );
}
