//! `adeploy run`, `list`, `report` as a user runs them: exit codes, bad input,
//! a crash in the middle, and the README's demo.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::World;
use crate::common::{adeploy, adeploy_command};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn list_json(cwd: &Path, state: &Path) -> serde_json::Value {
    let o = adeploy(&["list", "--json"], cwd, state);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn run_list_and_report_with_exit_codes() {
    let w = World::new();
    let ok = w.service("api", &[], "{command: 'true'}");
    let bad = w
        .service("web", &["api"], "{command: 'false'}")
        .replace("timeout_s: 20", "timeout_s: 1");
    let cfg = w.write_config(&(ok + &bad));
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg,
            "--services",
            "api",
            "--environment",
            "staging",
            "--json",
        ],
        w.dir.path(),
        &state,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["report"]["deployment_summary"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["report"]["deployment_summary"]["success"], true);

    let o = adeploy(
        &[
            "run",
            "--config",
            cfg,
            "--services",
            "api",
            "web",
            "--strategy",
            "balanced",
            "--environment",
            "staging",
        ],
        w.dir.path(),
        &state,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed, rolled-back deployment exits 1: {}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAILED") && out.contains("rolled back"),
        "{out}"
    );

    let list = list_json(w.dir.path(), &state);
    let deployments = list["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[0]["status"], "rolled_back", "newest first");
    assert_eq!(deployments[1]["id"], id.as_str());

    let o = adeploy(&["report", &id], w.dir.path(), &state);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("environment staging (from --environment)")
    );
    let o = adeploy(&["report", "deploy_0"], w.dir.path(), &state);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no deployment 'deploy_0'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let w = World::new();
    let state = w.state();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let cfg = cfg.to_str().unwrap();
    let malformed = w.dir.path().join("malformed.yaml");
    std::fs::write(&malformed, "services:\n  api:\n    deploy: [unclosed\n").unwrap();
    let unknown_key = w.dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown_key,
        "services:\n  api:\n    deploy: 'true'\n    helth: {command: 'true'}\n",
    )
    .unwrap();
    let bad_dep = w.dir.path().join("dep.yaml");
    std::fs::write(
        &bad_dep,
        "services:\n  api:\n    deploy: 'true'\n    depends_on: [db]\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "--config",
                malformed.to_str().unwrap(),
                "--services",
                "api",
            ],
            "malformed.yaml:",
        ),
        (
            vec![
                "run",
                "--config",
                unknown_key.to_str().unwrap(),
                "--services",
                "api",
            ],
            "unknown.yaml:4:5: services.api: unknown field `helth`",
        ),
        (
            vec![
                "run",
                "--config",
                bad_dep.to_str().unwrap(),
                "--services",
                "api",
            ],
            "dep.yaml:4:5: services.api.depends_on: unknown service 'db'",
        ),
        (
            vec!["run", "--config", cfg, "--services", "nope"],
            "unknown service 'nope'",
        ),
        (
            vec![
                "run",
                "--config",
                cfg,
                "--services",
                "api",
                "--strategy",
                "yolo",
            ],
            "unknown strategy 'yolo'",
        ),
        (
            vec![
                "run",
                "--config",
                cfg,
                "--services",
                "api",
                "--deployment-size",
                "huge",
            ],
            "invalid value 'huge'",
        ),
        (
            vec!["run", "--config", cfg, "--services", "api", "--interactive"],
            "--interactive needs a terminal",
        ),
    ];
    for (args, expect) in cases {
        let o = adeploy(&args, w.dir.path(), &state);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        !state.join("deployment_data/deployment_history.db").exists(),
        "nothing written to history"
    );
}

#[test]
fn sigkill_mid_deployment_leaves_it_interrupted_and_the_database_usable() {
    let w = World::new();
    let started = w.dir.path().join("started");
    let pgid = w.dir.path().join("pgid");
    let services = format!(
        "  slow:\n    deploy: 'echo $$ > {}; touch {}; sleep 60'\n    rollback: 'true'\n",
        pgid.display(),
        started.display()
    );
    let cfg = w.write_config(&services);
    let state = w.state();
    let mut child = adeploy_command(w.dir.path(), &state)
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "slow",
            "--environment",
            "staging",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !started.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the deploy command never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The deploy command lives on in its own process group; end it.
    let group = std::fs::read_to_string(&pgid).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", group.trim())])
        .status();

    let list = list_json(w.dir.path(), &state);
    let d = &list["deployments"][0];
    assert_eq!(d["status"], "interrupted", "{list}");
    // The database still takes new deployments.
    let cfg2 = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg2.to_str().unwrap(),
            "--services",
            "api",
            "--environment",
            "staging",
        ],
        w.dir.path(),
        &state,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        list_json(w.dir.path(), &state)["deployments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn dry_run_from_the_cli_prints_the_plan_and_runs_nothing() {
    let w = World::new();
    let cfg = w.write_config(
        &[
            w.service("db", &[], "{command: 'true'}"),
            w.service("api", &["db"], "{command: 'true'}"),
        ]
        .concat(),
    );
    let state = w.state();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "db",
            "--dry-run",
            "--strategy",
            "conservative",
        ],
        w.dir.path(),
        &state,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("wave 1: db") && out.contains("wave 2: api"),
        "{out}"
    );
    assert!(w.order().is_empty());
}

/// The README's first command, on the embedded defaults: real HTTP servers.
#[test]
fn readme_demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The embedded config and its demo services, with the CPU budgets raised:
    // on a CI machine busy with other tests, the default 90% budget of
    // aggressive would (rightly) hold the deployment back until it is quieter.
    let cfg = dir.path().join("busy-machine.yaml");
    std::fs::write(
        &cfg,
        "resource_limits:\n  aggressive: {cpu_limit: 1.0}\n  balanced: {cpu_limit: 1.0}\n  conservative: {cpu_limit: 1.0}\n",
    )
    .unwrap();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api-service",
            "web-frontend",
        ],
        dir.path(),
        &state,
    );
    let pids: Vec<String> = ["api-service", "web-frontend"]
        .iter()
        .filter_map(|s| std::fs::read_to_string(state.join("demo").join(s).join("pid")).ok())
        .collect();
    for pid in &pids {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert_eq!(pids.len(), 2, "both demo servers were started");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("succeeded"), "{out}");
}

#[test]
fn interactive_with_yes_shows_the_plan_and_deploys_without_a_terminal() {
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let state = w.state();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--interactive",
            "--yes",
            "--environment",
            "staging",
        ],
        w.dir.path(),
        &state,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("plan: "),
        "the plan is shown: {}",
        stderr(&o)
    );
    assert_eq!(w.order(), vec!["deploy api"]);
}

#[test]
fn model_persists_across_processes_and_the_model_commands_work() {
    let w = World::new();
    let cfg = w.write_config_with(
        &w.service("api", &[], "{command: 'true'}"),
        "ml_config:\n  min_training_samples: 3\n  retrain_frequency: 2\n  exploration_rate: 0.0\n",
    );
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let (cwd, st) = (w.dir.path(), state.as_path());
    let status = || {
        let o = adeploy(&["model", "status", "--json", "--config", cfg], cwd, st);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };

    // Too little history to train on: exit 2 with the numbers.
    let o = adeploy(&["model", "retrain", "--config", cfg], cwd, st);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("min_training_samples"),
        "{}",
        stderr(&o)
    );

    let run = [
        "run",
        "--config",
        cfg,
        "--services",
        "api",
        "--environment",
        "staging",
    ];
    for (i, strategy) in ["balanced", "conservative", "aggressive"]
        .iter()
        .enumerate()
    {
        let o = adeploy(&[&run[..], &["--strategy", strategy]].concat(), cwd, st);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            stderr(&o).contains("strategy model retrained on 3 deployments"),
            i == 2,
            "{}",
            stderr(&o)
        );
    }
    let s = status();
    assert_eq!(s["state"], "trained");
    assert_eq!(s["decides"], "model");
    assert_eq!(s["model"]["samples"], 3);
    assert_eq!(s["training_samples"], 3);
    assert_eq!(s["success_rates"].as_array().unwrap().len(), 3);

    // A new process chooses with the stored model.
    let o = adeploy(&[&run[..], &["--dry-run", "--json"]].concat(), cwd, st);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let predicted = v["report"]["decision_process"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["decision_type"] == "strategy_predicted")
        .unwrap()
        .clone();
    assert_eq!(predicted["details"]["method"], "model", "{predicted}");
    assert_eq!(
        predicted["details"]["candidates"].as_array().unwrap().len(),
        3
    );

    let o = adeploy(&["model", "reset", "--config", cfg], cwd, st);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("model deleted"));
    assert_eq!(status()["state"], "not trained");
    assert_eq!(status()["decides"], "rules");

    let o = adeploy(&["model", "retrain", "--config", cfg], cwd, st);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("trained on 3 deployments"));
    assert_eq!(status()["state"], "trained");
    let text = adeploy(&["model", "status", "--config", cfg], cwd, st);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("trained on 3 deployments"), "{text}");
    assert!(
        text.contains("success rate per strategy and environment"),
        "{text}"
    );
}

#[test]
fn list_shows_the_per_host_results_of_fleet_steps() {
    use adeploy::history::{DeploymentRecord, DeploymentStatus, History};
    use adeploy::report::{StepRecord, StepStatus};
    let w = World::new();
    let step = |host: &str, status: StepStatus, rolled_back: Option<bool>| StepRecord {
        service: "api".into(),
        host: Some(host.into()),
        wave: 1,
        status,
        started_at: None,
        seconds: 0.1,
        message: String::new(),
        rolled_back,
        rollback_message: None,
        version: None,
        previous_version: None,
        phases: Vec::new(),
        container: None,
    };
    let mut record = DeploymentRecord::running("deploy_1", chrono::Utc::now());
    record.strategy = "conservative".into();
    record.services = vec!["api".into()];
    record.steps = vec![
        step("h1", StepStatus::Succeeded, Some(true)),
        step("h2", StepStatus::Failed, Some(true)),
        step("h3", StepStatus::Skipped, None),
    ];
    record.finish(DeploymentStatus::RolledBack, chrono::Utc::now());
    History::open(&w.state())
        .unwrap()
        .put_deployment(&record)
        .unwrap();

    let o = adeploy(&["list"], w.dir.path(), &w.state());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        text.contains("HOSTS")
            && text.contains("h1:ok+rolled-back h2:failed+rolled-back h3:skipped"),
        "{text}"
    );
}

#[test]
fn model_status_lists_recent_changes() {
    use adeploy::history::{DeploymentRecord, DeploymentStatus, History};
    let w = World::new();
    let history = History::open(&w.state()).unwrap();
    let t0 = chrono::Utc::now() - chrono::Duration::hours(2);
    // Conservative in production: 11 successes, then 3 failures.
    for i in 0..14 {
        let at = t0 + chrono::Duration::minutes(i);
        let mut r = DeploymentRecord::running(format!("deploy_{i:02}"), at);
        r.strategy = "conservative".into();
        r.environment = "production".into();
        r.deployment_size = "medium".into();
        r.services = vec!["api".into()];
        let status = if i < 11 {
            DeploymentStatus::Succeeded
        } else {
            DeploymentStatus::RolledBack
        };
        r.finish(status, at + chrono::Duration::seconds(5));
        history.put_deployment(&r).unwrap();
    }
    let (cwd, st) = (w.dir.path(), w.state());

    let o = adeploy(&["model", "status"], cwd, &st);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("recent changes (newest first; ml_config.drift_p_value = 0.01):")
            && text.contains(
                "success rate of conservative in production dropped: 0 of the last 3 succeeded, 11 of 11 before"
            )
            && text.contains("since deploy_11, detected by deploy_13; 0 deployment(s) in production since")
            && text.contains(
                "active: production falls back to the safest strategy by current evidence"
            ),
        "{text}"
    );

    let o = adeploy(&["model", "status", "--json"], cwd, &st);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["drift_events"][0];
    assert_eq!(e["strategy"], "conservative", "{v}");
    assert_eq!(e["environment"], "production");
    assert_eq!(e["direction"], "dropped");
    assert_eq!(e["since"], "deploy_11");
    assert_eq!(e["detected_by"], "deploy_13");
    assert_eq!(
        (
            e["recent_successes"].as_u64(),
            e["recent_deployments"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(e["active"], true);
    assert!(e["p_value"].as_f64().unwrap() < 0.01);
    assert_eq!(v["half_life_deployments"], 20.0);
}

#[test]
fn a_misspelt_feature_weight_is_refused_with_its_position() {
    let w = World::new();
    let cfg = w.write_config_with(
        &w.service("api", &[], "{command: 'true'}"),
        "ml_config:\n  feature_weights:\n    system_cpu: 1.5\n    sytem_memory: 2\n",
    );
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--dry-run",
        ],
        w.dir.path(),
        &w.state(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("sytem_memory"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("config.yaml:")
            && line.contains(":5: ml_config.feature_weights.sytem_memory: unknown feature \"sytem_memory\"; the known ones are system_cpu, historical_success_rate, environment_type, service_history, image_history, cpu_percent"),
        "{err}"
    );
    assert!(!w.state().exists(), "bad input leaves no trace");
}
