//! The commands as the seed and the README write them, and the request
//! options around them: a bare `--config` file name, `--set-version`,
//! per-environment settings (`environments.<env>`), and a missing config.

use std::path::Path;
use std::process::Output;

use crate::common::{World, adeploy, adeploy_command};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn list_json(cwd: &Path, state: &Path) -> serde_json::Value {
    let o = adeploy(&["list", "--json"], cwd, state);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Regression (issue 13, item 1): `adeploy --config my_config.yaml run
/// --services ...`, exactly as the seed writes it, from the config's
/// directory. A bare name's directory was taken as "", so every command
/// failed to start ("cannot start `true` in :") and the failed run went
/// into the history.
#[test]
fn the_seeds_bare_config_name_deploys_from_its_directory() {
    let w = World::new();
    let dir = w.dir.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    // Commands that work relative to the config's directory.
    std::fs::write(
        dir.join("my_config.yaml"),
        w.config_yaml(
            "  api:\n    deploy: 'echo deployed > api.marker'\n    rollback: 'rm -f api.marker'\n    health: {command: 'test -f api.marker'}\n    timeout_s: 20\n  web:\n    deploy: 'true'\n    depends_on: [api]\n    timeout_s: 20\n",
        ),
    )
    .unwrap();
    let state = w.state();
    let o = adeploy(
        &[
            "--config",
            "my_config.yaml",
            "run",
            "--services",
            "api",
            "web",
            "--environment",
            "development",
        ],
        &dir,
        &state,
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("api.marker")).unwrap(),
        "deployed\n",
        "the deploy command ran in the config's directory"
    );
    let list = list_json(&dir, &state);
    let deployments = list["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{list}");
    assert_eq!(deployments[0]["status"], "succeeded", "{list}");
    assert_eq!(deployments[0]["success"], true);
}

#[test]
fn set_version_is_checked_before_anything_is_written() {
    let w = World::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A health check that proves the version: it needs one.
    let services = format!(
        "  api:\n    deploy: 'true'\n    health:\n      http: 'http://127.0.0.1:{port}/health'\n      expect_body: 'version=${{ADEPLOY_VERSION}}'\n    timeout_s: 5\n  web:\n    deploy: 'true'\n    timeout_s: 5\n"
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let cwd = w.dir.path();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--config", cfg, "--services", "api", "web"];
        args.extend_from_slice(extra);
        adeploy(&args, cwd, &state)
    };
    let cases: [(&[&str], &str); 4] = [
        // No version for a check that compares it.
        (&[], "services.api.health.expect_body"),
        // A service the config does not define.
        (
            &["--set-version", "db=1.0"],
            "--set-version db: unknown service",
        ),
        // Not SERVICE=VERSION: refused by the argument parser.
        (&["--set-version", "api"], "\"api\" is not SERVICE=VERSION"),
        // The same service twice.
        (
            &["--set-version", "api=1.0", "--set-version", "api=2.0"],
            "--set-version api: given twice (1.0 and 2.0)",
        ),
    ];
    for (extra, says) in cases {
        let o = run(extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        // The first line says it (clap adds a hint line to its own).
        let first = stderr(&o).lines().next().unwrap_or_default().to_string();
        assert!(first.contains(says), "{extra:?}: {}", stderr(&o));
        assert!(!state.exists(), "{extra:?}: nothing written");
    }
    // With the version, the check has what it needs (a dry run plans it).
    let o = run(&["--set-version", "api=1.2.3", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `environments.<env>` changes the decision in that environment only, and
/// the decision log and `diagnostics` name what it changed.
#[test]
fn an_environment_override_changes_that_environment_only() {
    let w = World::new();
    let cfg = w.write_config_with(
        &w.service("api", &[], "{command: 'true'}"),
        "environments:\n  production:\n    thresholds:\n      critical_memory: 0.0\n  development:\n    experimental:\n      enable_canary_deployments: true\n",
    );
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let cwd = w.dir.path();
    let dry = |env: &str, strategy: &str| {
        adeploy(
            &[
                "run",
                "--config",
                cfg,
                "--services",
                "api",
                "--environment",
                env,
                "--strategy",
                strategy,
                "--dry-run",
                "--approve",
                "--json",
            ],
            cwd,
            &state,
        )
    };
    // Production's memory threshold of 0% refuses every deployment there...
    let o = dry("production", "conservative");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("memory") && stderr(&o).contains("thresholds.critical_memory 0.0%"),
        "{}",
        stderr(&o)
    );
    // ...and nowhere else.
    let o = dry("staging", "conservative");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let types: Vec<&str> = v["report"]["decision_process"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_type"].as_str().unwrap())
        .collect();
    assert!(!types.contains(&"environment_settings"), "{types:?}");

    // The canary exists where an environment turns it on...
    let o = dry("development", "canary");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let settings = v["report"]["decision_process"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["decision_type"] == "environment_settings")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(settings["details"]["environment"], "development");
    assert_eq!(
        settings["details"]["overrides"][0]["source"],
        "environments.development.experimental.enable_canary_deployments"
    );
    assert_eq!(v["report"]["deployment_summary"]["strategy_used"], "canary");
    // ...and is refused where it is off.
    let o = dry("staging", "canary");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "strategy 'canary' is experimental and off in staging (experimental.enable_canary_deployments)"
        ),
        "{}",
        stderr(&o)
    );
    // The adaptive choice does not offer it there either.
    let o = dry("staging", "adaptive");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(v["report"]["deployment_summary"]["strategy_used"], "canary");

    // diagnostics judges production's thresholds with its override.
    let o = adeploy_command(cwd, &state)
        .env("DEPLOYMENT_ENVIRONMENT", "production")
        .args(["diagnostics", "--json", "--config", cfg])
        .output()
        .unwrap();
    let d: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    assert_eq!(d["environment"]["environment"], "production", "{d}");
    assert_eq!(
        d["environment_settings"][0]["key"],
        "thresholds.critical_memory"
    );
    let memory = d["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "thresholds.critical_memory")
        .unwrap();
    assert_eq!(memory["threshold"], 0.0);
    assert_eq!(
        memory["source"],
        "environments.production.thresholds.critical_memory"
    );
    assert_eq!(memory["status"], "critical");
    assert_eq!(o.status.code(), Some(1), "a critical check exits 1");
    let o = adeploy_command(cwd, &state)
        .env("DEPLOYMENT_ENVIRONMENT", "production")
        .args(["diagnostics", "--config", cfg])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains(
            "environment settings (production):\n  thresholds.critical_memory = 0.0 (default"
        ),
        "{text}"
    );
}

/// Regression (issue 13, item 9): the missing-config error repeated its
/// cause ("No such file or directory" twice).
#[test]
fn a_missing_config_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = adeploy(
        &["--config", "nope.yaml", "run", "--services", "api"],
        dir.path(),
        &dir.path().join("state"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(
        err,
        "error: nope.yaml: cannot read config: No such file or directory (os error 2)\n"
    );
}
