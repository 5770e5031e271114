//! `adeploy diagnostics`: typed round trip of `--json`, exit code, `--root`.

use adeploy::engine::diagnostics::{CheckStatus, Diagnostics};

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
    assert_eq!(d.trends.len(), 4, "cpu, memory, disk, load");
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
