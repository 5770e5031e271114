//! Metric analysis through the binary, with a real Prometheus (the helpers
//! of host/tests/all/prometheus_support.rs): `run --json` carries the
//! verdicts; a bad version exits 1, rolled back, with the failing metric in
//! the report and in `list`; a malformed query exits 2 before anything runs;
//! `adeploy analyze ID --config looser.yaml` says the looser rule would
//! have passed it; `--dry-run` prints the analysis plan.

use std::path::{Path, PathBuf};

use crate::common::adeploy;
use crate::prometheus_support::{analysed_config, metrics_world};

/// Writes the analysed config for deploying `version` (its
/// `services.api.version`) as `NAME.yaml`.
fn config_for(dir: &Path, name: &str, base: &str, version: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        base.replace("    version: v1\n", &format!("    version: {version}\n")),
    )
    .unwrap();
    path
}

fn run(dir: &Path, state: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "run",
        "--services",
        "api",
        "--strategy",
        "conservative",
        "--environment",
        "staging",
    ];
    args.extend_from_slice(extra);
    adeploy(&args, dir, state)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_binary_runs_analysis_rolls_back_on_a_bad_metric_and_replays_with_a_looser_rule() {
    let (service, _load, prometheus) = metrics_world();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let order = dir.path().join("order.txt");
    let base = analysed_config(&service, &prometheus.endpoint(), &order, 0.05, "pass");

    // v1, then a good v2: both pass; `run --json` has the verdicts.
    let v1 = config_for(dir.path(), "v1", &base, "v1");
    let out = run(dir.path(), &state, &v1, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = config_for(dir.path(), "v2", &base, "v2");
    let out = run(dir.path(), &state, &v2, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = &json(&out)["report"];
    let analysis = report["analysis"].as_array().unwrap();
    assert_eq!(analysis.len(), 2, "{analysis:?}");
    for v in analysis {
        assert_eq!(v["verdict"], "pass", "{v}");
        assert!(v["samples"].as_array().unwrap().len() >= 4, "{v}");
    }
    assert!(analysis[1]["comparison"]["p_value"].is_number());

    // The dry run prints the analysis plan and the provider's check.
    let v3 = config_for(dir.path(), "v3", &base, "v3");
    let out = run(dir.path(), &state, &v3, &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("analysis of api: 5 sample(s) 1 s apart after health"),
        "{text}"
    );
    assert!(text.contains("error-rate (prometheus): max 0.05"), "{text}");
    assert!(text.contains("query ok (result-type=vector"), "{text}");

    // v3 serves 30 % errors: exit 1, rolled back, the metric named.
    let out = run(dir.path(), &state, &v3, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out)["report"].clone();
    assert_eq!(report["deployment_summary"]["status"], "rolled_back");
    let bad_id = report["deployment_summary"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(report["analysis"][0]["metric"], "error-rate");
    assert_eq!(report["analysis"][0]["verdict"], "fail");
    let message = report["steps"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("analysis failed: metric 'error-rate' failed"),
        "{message}"
    );
    // `list` names it.
    let out = adeploy(&["list"], dir.path(), &state);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(&bad_id)).unwrap();
    assert!(line.contains("rolled_back"), "{text}");
    assert!(line.contains("error-rate"), "{text}");
    let out = adeploy(&["list", "--json"], dir.path(), &state);
    let listed = json(&out);
    assert!(
        listed["deployments"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("error-rate")
    );

    // Would a looser rule have passed it? `analyze` says so (exit 0); with
    // the rules it ran under, it fails again (exit 1).
    let loose = dir.path().join("loose.yaml");
    std::fs::write(
        &loose,
        analysed_config(&service, &prometheus.endpoint(), &order, 0.5, "pass"),
    )
    .unwrap();
    let out = adeploy(
        &[
            "analyze",
            &bad_id,
            "--config",
            loose.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
        &state,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = json(&out);
    assert_eq!(again["recorded_verdict"], "fail");
    assert_eq!(again["verdict"], "pass");
    assert_eq!(again["metrics"][0]["metric"], "error-rate");
    assert_eq!(again["metrics"][0]["changed"], true);
    let out = adeploy(
        &["analyze", &bad_id, "--config", v3.to_str().unwrap()],
        dir.path(),
        &state,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("api error-rate: fail → fail"), "{text}");
    let out = adeploy(&["analyze", "deploy_nope"], dir.path(), &state);
    assert_eq!(out.status.code(), Some(2));

    // A malformed query: exit 2 naming the service and metric, before
    // anything runs: nothing deployed, nothing recorded.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        base.replace(
            "query: 'sum(rate(http_requests_total",
            "query: 'sum(rate(http_requests_total[",
        ),
    )
    .unwrap();
    let deployments = |state: &Path| {
        let out = adeploy(&["list", "--json"], dir.path(), state);
        json(&out)["deployments"].as_array().unwrap().len()
    };
    let before = (
        std::fs::read_to_string(&order).unwrap(),
        deployments(&state),
    );
    for extra in [&["--dry-run"][..], &[]] {
        let out = run(dir.path(), &state, &broken, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("services.api.analysis: metric 'error-rate': provider 'prometheus' rejects the query"),
            "{stderr}"
        );
        // The decisions taken so far, then one error line, last.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert_eq!(stderr.lines().last(), errors.first().copied(), "{stderr}");
    }
    assert_eq!(
        (
            std::fs::read_to_string(&order).unwrap(),
            deployments(&state)
        ),
        before
    );
}
