//! The engine end to end: real commands, real health checks against loopback
//! servers, real redb history and report files in a temporary state dir.

use std::time::Duration;

use adeploy::config::{Config, Environment};
use adeploy::engine::{
    Decision, DeploymentEvent, DeploymentRequest, Engine, EngineOptions, StepStatus,
};
use adeploy::history::DeploymentStatus;

use crate::common::{HttpServer, World};

fn request(services: &[&str], strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: services.iter().map(|s| s.to_string()).collect(),
        strategy: Some(strategy.to_string()),
        environment: Some(Environment::Staging),
        ..DeploymentRequest::default()
    }
}

const OK: &str = "{command: 'true'}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_services_deploy_in_dependency_order_under_each_strategy() {
    for strategy in ["conservative", "balanced", "aggressive"] {
        let w = World::new();
        let services = [
            w.service("web", &["api"], OK),
            w.service("api", &["db"], OK),
            w.service("db", &[], OK),
        ]
        .concat();
        let engine = w.engine(&services).await;
        let out = engine
            .deploy(request(&["web", "api", "db"], strategy), None, None)
            .await
            .unwrap();
        assert!(out.success, "{strategy}: {}", out.report.human_summary());
        assert_eq!(
            w.order(),
            vec!["deploy db", "deploy api", "deploy web"],
            "{strategy}"
        );
        assert_eq!(out.report.deployment_summary.strategy_used, strategy);
        let listed = engine.list(10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, out.id);
        assert_eq!(listed[0].status, DeploymentStatus::Succeeded);
        let path = out.report_path.unwrap();
        assert!(path.ends_with(format!(
            "deployment_reports/deployment_report_{}.json",
            out.id
        )));
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for key in [
            "deployment_summary",
            "decision_process",
            "performance_analysis",
            "system_impact",
            "lessons_learned",
            "recommendations",
        ] {
            assert!(stored.get(key).is_some(), "report lacks {key}");
        }
        assert_eq!(engine.report(&out.id).await.unwrap(), out.report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_rolls_back_exactly_what_was_deployed_in_reverse() {
    let w = World::new();
    let down = HttpServer::start(503, "down");
    let bad = format!(
        "{{http: 'http://127.0.0.1:{}/health', timeout_ms: 500}}",
        down.port
    );
    let services = [
        w.service("db", &[], OK),
        w.service("api", &["db"], OK),
        w.service("web", &["api"], &bad),
        w.service("docs", &["web"], OK),
    ]
    .concat()
    .replace(
        &format!("health: {bad}\n    timeout_s: 20"),
        &format!("health: {bad}\n    timeout_s: 2"),
    );
    let engine = w.engine(&services).await;
    let out = engine
        .deploy(
            request(&["db", "api", "web", "docs"], "conservative"),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!out.success);
    assert_eq!(out.status, DeploymentStatus::RolledBack);
    assert_eq!(
        w.order(),
        vec![
            "deploy db",
            "deploy api",
            "deploy web",
            "rollback web",
            "rollback api",
            "rollback db"
        ],
        "docs was never deployed, so it is not rolled back"
    );
    let r = &out.report;
    assert!(!r.deployment_summary.success);
    let decided = |f: fn(&Decision) -> bool| r.decision_process.iter().any(|d| f(&d.decision));
    assert!(
        decided(|d| matches!(d, Decision::StepFinished { .. }))
            && decided(|d| matches!(d, Decision::RollbackStarted { .. })),
        "{:?}",
        r.decision_process
    );
    let web = r.steps.iter().find(|s| s.service == "web").unwrap();
    assert_eq!(web.status, StepStatus::Failed);
    assert!(web.message.contains("503"), "{}", web.message);
    let docs = r.steps.iter().find(|s| s.service == "docs").unwrap();
    assert_eq!(docs.status, StepStatus::Skipped);
    assert!(
        docs.message.starts_with("not started: "),
        "{}",
        docs.message
    );
    assert!(!r.lessons_learned.is_empty() && !r.recommendations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_executes_nothing() {
    let w = World::new();
    let marker = w.dir.path().join("hook-ran");
    let hook = format!(
        "hooks:\n  pre_deployment_scripts: ['touch {}']\n",
        marker.display()
    );
    let engine = w.engine_with(&w.service("api", &[], OK), &hook).await;
    let mut req = request(&["api"], "balanced");
    req.dry_run = true;
    let out = engine.deploy(req, None, None).await.unwrap();
    assert!(out.report.deployment_summary.dry_run);
    assert!(out.report.plan.is_some());
    assert!(w.order().is_empty(), "no deploy or rollback command ran");
    assert!(!marker.exists(), "no hook ran");
    assert!(out.report_path.is_none());
    assert!(
        !w.state().exists(),
        "a dry run leaves the state dir untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_stops_a_slow_deploy_and_rolls_back() {
    let w = World::new();
    let o = w.order.display();
    let services = format!(
        "  fast:\n    deploy: 'echo \"deploy fast\" >> {o}'\n    rollback: 'echo \"rollback fast\" >> {o}'\n\
         \x20 slow:\n    deploy: 'echo \"deploy slow\" >> {o}; sleep 30'\n    rollback: 'echo \"rollback slow\" >> {o}'\n    depends_on: [fast]\n"
    );
    let engine = w.engine(&services).await;
    let mut req = request(&["fast", "slow"], "conservative");
    req.max_time = Some(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let out = engine.deploy(req, None, None).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 30 s sleep was cut short"
    );
    assert!(!out.success);
    assert_eq!(out.status, DeploymentStatus::RolledBack);
    assert_eq!(
        w.order(),
        vec![
            "deploy fast",
            "deploy slow",
            "rollback slow",
            "rollback fast"
        ]
    );
    let slow = out
        .report
        .steps
        .iter()
        .find(|s| s.service == "slow")
        .unwrap();
    assert_eq!(slow.status, StepStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_the_context_environment() {
    let w = World::new();
    let env_file = w.dir.path().join("env.txt");
    let services = format!(
        "  api:\n    deploy: 'env | grep ^ADEPLOY_ | sort > {}'\n",
        env_file.display()
    );
    let engine = w.engine(&services).await;
    let out = engine
        .deploy(request(&["api"], "aggressive"), None, None)
        .await
        .unwrap();
    assert!(out.success, "{}", out.report.human_summary());
    let env = std::fs::read_to_string(&env_file).unwrap();
    for var in [
        format!("ADEPLOY_DEPLOYMENT_ID={}", out.id),
        "ADEPLOY_SERVICE=api".into(),
        "ADEPLOY_STRATEGY=aggressive".into(),
        "ADEPLOY_ENVIRONMENT=staging".into(),
        "ADEPLOY_DEPLOYMENT_SIZE=medium".into(),
        "ADEPLOY_WAVE=1".into(),
        "ADEPLOY_HOST=localhost".into(),
    ] {
        assert!(env.contains(&var), "{var} missing in:\n{env}");
    }
    let log = std::fs::read_to_string(out.log_path.unwrap()).unwrap();
    assert!(
        log.contains("api deploy"),
        "command output and results go to the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_are_numbered_from_1_in_events_decisions_reports_and_commands() {
    // Conservative puts db and api in waves 1 and 2; each deploy command
    // writes the wave it was told.
    let w = World::new();
    let waves = w.dir.path().join("waves.txt");
    let cmd = |name: &str| {
        format!(
            "  {name}:\n    deploy: 'echo \"{name} $ADEPLOY_WAVE\" >> {}'\n    depends_on: [{}]\n",
            waves.display(),
            if name == "api" { "db" } else { "" }
        )
    };
    let engine = w.engine(&(cmd("db") + &cmd("api"))).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = engine
        .deploy(request(&["db", "api"], "conservative"), Some(tx), None)
        .await
        .unwrap();
    assert!(out.success, "{}", out.report.human_summary());
    let mut started = Vec::new();
    let mut step_started = Vec::new();
    let mut finished = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            DeploymentEvent::WaveStarted { wave, waves } => started.push((wave, waves)),
            DeploymentEvent::StepStarted { service, wave, .. } => {
                step_started.push((service, wave))
            }
            DeploymentEvent::Decision(d) => {
                if let Decision::StepFinished { service, wave, .. } = d.decision {
                    finished.push((service, wave));
                }
            }
            _ => {}
        }
    }
    let expected = vec![("db".to_string(), 1), ("api".to_string(), 2)];
    assert_eq!(started, [(1, 2), (2, 2)]);
    assert_eq!(step_started, expected);
    assert_eq!(finished, expected);
    let reported: Vec<(String, u32)> = out
        .report
        .steps
        .iter()
        .map(|s| (s.service.clone(), s.wave))
        .collect();
    assert_eq!(reported, expected);
    assert_eq!(std::fs::read_to_string(&waves).unwrap(), "db 1\napi 2\n");
    assert!(out.report.human_summary().contains("wave 2 api"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_deployment_hook_aborts_before_anything_is_deployed() {
    let w = World::new();
    let hook = "hooks:\n  pre_deployment_scripts: ['echo backing up; exit 3']\n";
    let engine = w.engine_with(&w.service("api", &[], OK), hook).await;
    let out = engine
        .deploy(request(&["api"], "balanced"), None, None)
        .await
        .unwrap();
    assert!(!out.success);
    assert_eq!(out.status, DeploymentStatus::Aborted);
    assert!(w.order().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_or_strategy_is_refused_before_anything_is_written() {
    let w = World::new();
    let engine = w.engine(&w.service("api", &[], OK)).await;
    let err = engine
        .deploy(request(&["nope"], "balanced"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_bad_input());
    assert_eq!(
        err.to_string(),
        "unknown service 'nope' (the config defines: api)"
    );
    let err = engine
        .deploy(request(&["api"], "yolo"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_bad_input());
    assert!(
        err.to_string().starts_with("unknown strategy 'yolo'"),
        "{err}"
    );
    assert!(
        !w.state()
            .join("deployment_data/deployment_history.db")
            .exists(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_picks_by_environment_and_records_why() {
    let w = World::new();
    let engine = w.engine(&w.service("api", &[], OK)).await;
    for (env, expect) in [
        (Environment::Production, "conservative"),
        (Environment::Development, "aggressive"),
    ] {
        let mut req = request(&["api"], "adaptive");
        req.environment = Some(env);
        req.dry_run = true;
        let out = engine.deploy(req, None, None).await.unwrap();
        assert_eq!(out.report.deployment_summary.strategy_used, expect);
        let method = out
            .report
            .decision_process
            .iter()
            .find_map(|d| match &d.decision {
                Decision::StrategyPredicted { method, .. } => Some(method.as_str()),
                _ => None,
            })
            .unwrap();
        assert_eq!(method, "rules");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_state_dir_waits_then_refuses() {
    let w = World::new();
    let o = w.order.display();
    let services = format!("  slow:\n    deploy: 'echo \"deploy slow\" >> {o}; sleep 3'\n");
    let first = w.engine(&services).await;
    let path = w.dir.path().join("config.yaml");
    let second = Engine::new(
        Config::load(Some(&path)).unwrap(),
        EngineOptions {
            lock_wait: Some(Duration::from_millis(300)),
            ..w.options()
        },
    )
    .await
    .unwrap();
    let running = tokio::spawn(async move {
        first
            .deploy(request(&["slow"], "aggressive"), None, None)
            .await
    });
    // Wait until the first run is deploying (it holds the lock by then).
    let t = std::time::Instant::now();
    while w.order().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = second
        .deploy(request(&["slow"], "aggressive"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("another adeploy run") && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    // While the first run writes, the history is readable.
    let listed = second.list(5).await.unwrap();
    assert_eq!(listed[0].status, DeploymentStatus::Running);
    let first_outcome = running.await.unwrap().unwrap();
    assert!(first_outcome.success);
    assert_eq!(
        second.list(5).await.unwrap().len(),
        1,
        "the refused run left no record"
    );
}

fn snapshot(cpu: f64, memory: f64, disk: f64) -> adeploy::monitor::Snapshot {
    adeploy::monitor::Snapshot {
        timestamp: chrono::Utc::now(),
        cpu_percent: cpu,
        memory_percent: memory,
        disk_percent: disk,
        load_per_core: 0.5,
        network_latency_ms: None,
    }
}

/// An engine whose every metric reading is `metrics`, with the default
/// thresholds (high_cpu 80, critical_memory 95, min_free_disk_percent 5).
async fn loaded_engine(w: &World, metrics: adeploy::monitor::Snapshot) -> Engine {
    let yaml = w.config_yaml(&w.service("api", &[], OK)).replace(
        "thresholds: {high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}\n",
        "",
    );
    let path = w.dir.path().join("loaded.yaml");
    std::fs::write(&path, yaml).unwrap();
    Engine::new(
        Config::load(Some(&path)).unwrap(),
        EngineOptions {
            fixed_metrics: Some(metrics),
            ..w.options()
        },
    )
    .await
    .unwrap()
}

/// The first decision `pick` recognises.
fn find<'a, T>(r: &'a adeploy::report::Report, pick: impl Fn(&'a Decision) -> Option<T>) -> T {
    r.decision_process
        .iter()
        .find_map(|d| pick(&d.decision))
        .expect("the decision is in the log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_memory_blocks_unless_forced() {
    let w = World::new();
    let engine = loaded_engine(&w, snapshot(10.0, 97.5, 40.0)).await;
    let err = engine
        .deploy(request(&["api"], "balanced"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(
        msg.contains("memory 97.5% is over thresholds.critical_memory 95.0%")
            && msg.contains("--force"),
        "{msg}"
    );
    assert!(w.order().is_empty());
    assert!(
        !w.state()
            .join("deployment_data/deployment_history.db")
            .exists(),
        "a refused run writes nothing"
    );
    let mut req = request(&["api"], "balanced");
    req.force = true;
    let out = engine.deploy(req, None, None).await.unwrap();
    assert!(out.success);
    let (forced, problems) = find(&out.report, |d| match d {
        Decision::Validation {
            forced, problems, ..
        } => Some((*forced, problems)),
        _ => None,
    });
    assert!(forced);
    assert!(problems[0].contains("97.5"), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_below_the_floor_blocks() {
    let w = World::new();
    let engine = loaded_engine(&w, snapshot(10.0, 30.0, 97.0)).await;
    let err = engine
        .deploy(request(&["api"], "aggressive"), None, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("free disk 3.0% is under thresholds.min_free_disk_percent 5.0%"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_cpu_moves_aggressive_to_balanced_outside_local_and_development() {
    let w = World::new();
    let engine = loaded_engine(&w, snapshot(88.0, 30.0, 40.0)).await;
    let mut req = request(&["api"], "aggressive");
    req.dry_run = true;
    let out = engine.deploy(req.clone(), None, None).await.unwrap();
    assert_eq!(out.report.deployment_summary.strategy_used, "balanced");
    let (from, reason) = find(&out.report, |d| match d {
        Decision::SafetyOverride {
            from: Some(from),
            reason: Some(reason),
            ..
        } => Some((from.as_str(), reason.as_str())),
        _ => None,
    });
    assert_eq!(from, "aggressive");
    assert!(
        reason.contains("CPU 88.0% is over thresholds.high_cpu 80.0%"),
        "{reason}"
    );
    req.environment = Some(Environment::Development);
    let out = engine.deploy(req, None, None).await.unwrap();
    assert_eq!(out.report.deployment_summary.strategy_used, "aggressive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_strategy_budget_no_step_starts_until_the_deadline() {
    // CPU 88% against the conservative budget of 40%: nothing may start.
    let w = World::new();
    let yaml = w.config_yaml(&w.service("api", &[], OK)).replace(
        "conservative: {cpu_limit: 1.0,",
        "conservative: {cpu_limit: 0.4,",
    );
    let path = w.dir.path().join("budget.yaml");
    std::fs::write(&path, yaml).unwrap();
    let engine = Engine::new(
        Config::load(Some(&path)).unwrap(),
        EngineOptions {
            fixed_metrics: Some(snapshot(88.0, 30.0, 40.0)),
            ..w.options()
        },
    )
    .await
    .unwrap();
    let mut req = request(&["api"], "conservative");
    req.max_time = Some(Duration::from_secs(2));
    let out = engine.deploy(req, None, None).await.unwrap();
    assert!(!out.success);
    assert!(w.order().is_empty(), "no step started while over budget");
    assert!(
        out.report
            .decision_process
            .iter()
            .any(|d| matches!(d.decision, Decision::OverBudget { .. })),
        "{:?}",
        out.report.decision_process
    );
}
