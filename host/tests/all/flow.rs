//! The verdict of a step, end to end inside the deploy flow: a failed
//! rollback is its own status everywhere; versions reach commands, health
//! checks, records and the report; every step's phases are timed; the
//! deployment's own processes are measured apart from the machine.
//! (Metric analysis in the flow: `analysis_flow.rs`, with a real Prometheus.)

use std::time::Duration;

use adeploy::config::Environment;
use adeploy::engine::{Decision, DeploymentEvent, DeploymentRequest, Engine, StepStatus};
use adeploy::history::{DeploymentStatus, HistoryBackend, PhaseKind, PhaseStatus};

use crate::common::{HttpServer, World};

fn request(services: &[&str], strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: services.iter().map(|s| s.to_string()).collect(),
        strategy: Some(strategy.to_string()),
        environment: Some(Environment::Staging),
        ..DeploymentRequest::default()
    }
}

/// A service whose deploy and rollback append to the order file; `rollback`
/// and `health` given as YAML.
fn service(w: &World, name: &str, deps: &[&str], rollback: &str, health: &str) -> String {
    let o = w.order.display();
    format!(
        "  {name}:\n    deploy: 'echo \"deploy {name} $ADEPLOY_VERSION was $ADEPLOY_PREVIOUS_VERSION\" >> {o}'\n    rollback: {rollback}\n    depends_on: [{}]\n    health: {health}\n    timeout_s: 20\n",
        deps.join(", ")
    )
}

/// An engine over `services` whose conservative strategy validates with
/// `validation` (`samples: 2, interval_ms: 100, soak_s: 1`).
pub async fn engine_with_validation(w: &World, services: &str, validation: &str) -> Engine {
    let yaml = w.config_yaml(services).replace(
        "conservative: {config: {samples: 1, interval_ms: 50, soak_s: 0}}",
        &format!("conservative: {{config: {{{validation}}}}}"),
    );
    let path = w.dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = adeploy::config::Config::load(Some(&path)).unwrap();
    Engine::new(config, w.options()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_is_rollback_failed_everywhere_with_what_is_left_deployed() {
    let w = World::new();
    let down = HttpServer::start(503, "down");
    let o = w.order.display();
    let services = [
        service(
            &w,
            "db",
            &[],
            &format!("'echo \"rollback db\" >> {o}'"),
            "{command: 'true'}",
        ),
        service(
            &w,
            "api",
            &["db"],
            &format!("'echo \"rollback api\" >> {o}; echo disk full >&2; exit 3'"),
            &format!(
                "{{http: 'http://127.0.0.1:{}/health', timeout_ms: 300}}",
                down.port
            ),
        ),
    ]
    .concat()
    .replace("timeout_s: 20", "timeout_s: 2");
    let engine = w.engine(&services).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = engine
        .deploy(request(&["db", "api"], "conservative"), Some(tx), None)
        .await
        .unwrap();
    assert!(!out.success);
    assert_eq!(out.status, DeploymentStatus::RollbackFailed);
    assert_eq!(
        w.order()
            .iter()
            .filter(|l| l.starts_with("rollback"))
            .collect::<Vec<_>>(),
        ["rollback api", "rollback db"],
        "both were rolled back, in reverse"
    );

    // The report: status, what is left deployed and why, an alert decision.
    let r = &out.report;
    assert_eq!(
        r.deployment_summary.status,
        DeploymentStatus::RollbackFailed
    );
    let left = &r.deployment_summary.left_deployed;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].step, "api");
    assert!(
        left[0].message.contains("exit") && left[0].message.contains("3"),
        "{left:?}"
    );
    assert!(r.decision_process.iter().any(|d| matches!(
        &d.decision,
        Decision::RollbackFailed { left_deployed } if left_deployed[0].step == "api"
    )));
    let text = r.human_summary();
    assert!(text.contains("LEFT DEPLOYED: api"), "{text}");
    assert!(
        r.recommendations
            .iter()
            .any(|x| x.starts_with("alert: api is left deployed")),
        "{:?}",
        r.recommendations
    );
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["deployment_summary"]["status"], "rollback_failed");
    assert_eq!(
        json["deployment_summary"]["left_deployed"][0]["step"],
        "api"
    );

    // An alert event on the stream.
    let mut alerts = Vec::new();
    while let Some(e) = rx.recv().await {
        if let DeploymentEvent::Alert { message } = e {
            alerts.push(message);
        }
    }
    assert!(
        alerts
            .iter()
            .any(|a| a.starts_with("rollback of api failed, it is left deployed")),
        "{alerts:?}"
    );

    // The history and `list` say so; the learning counts it as a failure.
    let listed = engine.list(5).await.unwrap();
    assert_eq!(listed[0].status, DeploymentStatus::RollbackFailed);
    assert_eq!(listed[0].status.as_str(), "rollback_failed");
    assert!(
        listed[0]
            .summary
            .as_deref()
            .unwrap_or_default()
            .contains("rollback failed, left deployed: api"),
        "{:?}",
        listed[0].summary
    );
    let outcome = adeploy::engine::learn::outcome_of(&listed[0]).unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.failed_services, ["api"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_reach_commands_and_records_and_the_report_says_what_a_rollback_returned_to() {
    let w = World::new();
    let down = HttpServer::start(503, "down");
    let o = w.order.display();
    let ok_rollback = format!("'echo \"rollback api to $ADEPLOY_PREVIOUS_VERSION\" >> {o}'");
    let yaml = |health: &str| {
        service(&w, "api", &[], &ok_rollback, health).replace(
            "    timeout_s: 20\n",
            "    timeout_s: 2\n    version: '1.0.0'\n",
        )
    };
    // First deployment: 1.0.0, nothing before it.
    let engine = w.engine(&yaml("{command: 'true'}")).await;
    let first = engine
        .deploy(request(&["api"], "conservative"), None, None)
        .await
        .unwrap();
    assert!(first.success, "{}", first.report.human_summary());
    let step = &first.report.steps[0];
    assert_eq!(step.version.as_deref(), Some("1.0.0"));
    assert_eq!(step.previous_version, None);
    drop(engine);

    // Second: 1.1.0 by the request's override; its health check fails, so
    // it is rolled back to 1.0.0.
    let engine = w
        .engine(&yaml(&format!(
            "{{http: 'http://127.0.0.1:{}/v', timeout_ms: 300}}",
            down.port
        )))
        .await;
    let mut req = request(&["api"], "conservative");
    req.versions = [("api".to_string(), "1.1.0".to_string())].into();
    let second = engine.deploy(req, None, None).await.unwrap();
    assert_eq!(second.status, DeploymentStatus::RolledBack);
    assert_eq!(
        w.order(),
        [
            "deploy api 1.0.0 was ",
            "deploy api 1.1.0 was 1.0.0",
            "rollback api to 1.0.0"
        ]
    );
    let step = &second.report.steps[0];
    assert_eq!(
        (step.version.as_deref(), step.previous_version.as_deref()),
        (Some("1.1.0"), Some("1.0.0"))
    );
    let v = &second.report.deployment_summary.versions;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].outcome, "rolled_back");
    assert_eq!(v[0].running.as_deref(), Some("1.0.0"));
    let text = second.report.human_summary();
    assert!(
        text.contains("version: api 1.1.0 (was 1.0.0): rolled back to 1.0.0"),
        "{text}"
    );
    let record = engine
        .history()
        .await
        .unwrap()
        .get_deployment(&second.id)
        .await
        .unwrap();
    let record = record.unwrap();
    assert_eq!(record.steps[0].version.as_deref(), Some("1.1.0"));

    // A failed deployment is not a previous version: the next one still
    // replaces 1.0.0.
    drop(engine);
    let engine = w.engine(&yaml("{command: 'true'}")).await;
    let third = engine
        .deploy(request(&["api"], "conservative"), None, None)
        .await
        .unwrap();
    assert!(third.success);
    assert_eq!(
        third.report.steps[0].previous_version.as_deref(),
        Some("1.0.0")
    );

    // An override for a service the config does not define is bad input,
    // before anything is written.
    let mut bad = request(&["api"], "conservative");
    bad.versions = [("nope".to_string(), "2".to_string())].into();
    let err = engine.deploy(bad, None, None).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert_eq!(engine.list(10).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_see_the_version_so_an_old_instance_on_the_port_fails_the_step() {
    // The old instance (a server another deployment left on the port)
    // answers 200, but with its own version and deployment id.
    let w = World::new();
    let squatter = HttpServer::start(200, "service=api version=0.9.0 deployment=deploy_old\n");
    let o = w.order.display();
    let services = format!(
        "  api:\n    version: '1.0.0'\n    deploy: 'echo \"deploy api\" >> {o}'\n    rollback: 'echo \"rollback api\" >> {o}'\n    timeout_s: 2\n    health:\n      http: 'http://127.0.0.1:{}/health'\n      timeout_ms: 300\n      expect_body: 'version=${{ADEPLOY_VERSION}} deployment=${{ADEPLOY_DEPLOYMENT_ID}}'\n",
        squatter.port
    );
    let engine = w.engine(&services).await;
    let out = engine
        .deploy(request(&["api"], "conservative"), None, None)
        .await
        .unwrap();
    assert_eq!(out.status, DeploymentStatus::RolledBack);
    let step = &out.report.steps[0];
    assert_eq!(step.status, StepStatus::Failed);
    assert!(
        step.message
            .contains(&format!("version=1.0.0 deployment={}", out.id)),
        "{}",
        step.message
    );
    assert_eq!(w.order(), ["deploy api", "rollback api"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_has_timed_phases_with_its_probes() {
    let w = World::new();
    let up = HttpServer::start(200, "ok");
    let down = HttpServer::start(503, "down");
    let o = w.order.display();
    let services = format!(
        "  db:\n    deploy: 'sleep 0.2; echo deploy db >> {o}'\n    rollback: 'echo rollback db >> {o}'\n    health: {{http: 'http://127.0.0.1:{}/', timeout_ms: 300}}\n    timeout_s: 10\n\
         \x20 api:\n    deploy: 'echo deploy api >> {o}'\n    rollback: 'echo rollback api >> {o}; exit 1'\n    depends_on: [db]\n    health: {{http: 'http://127.0.0.1:{}/', timeout_ms: 300}}\n    timeout_s: 2\n",
        up.port, down.port
    );
    let engine =
        engine_with_validation(&w, &services, "samples: 2, interval_ms: 100, soak_s: 1").await;
    let out = engine
        .deploy(request(&["db", "api"], "conservative"), None, None)
        .await
        .unwrap();
    assert_eq!(out.status, DeploymentStatus::RollbackFailed);
    let db = &out.report.steps[0];
    let kinds: Vec<PhaseKind> = db.phases.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PhaseKind::Deploy,
            PhaseKind::Health,
            PhaseKind::Soak,
            PhaseKind::Rollback
        ],
        "{:?}",
        db.phases
    );
    let deploy = &db.phases[0];
    assert!(deploy.seconds >= 0.2, "{deploy:?}");
    assert_eq!(deploy.status, PhaseStatus::Succeeded);
    let health = &db.phases[1];
    assert_eq!(health.samples.len(), 2, "two consecutive healthy probes");
    assert!(health.samples.iter().all(|s| s.ok));
    assert!(health.started_at >= deploy.started_at);
    let soak = &db.phases[2];
    assert!(soak.seconds >= 0.9, "{soak:?}");
    assert!(!soak.samples.is_empty() && soak.samples.iter().all(|s| s.ok));
    assert_eq!(db.phases[3].status, PhaseStatus::RolledBack);

    let api = &out.report.steps[1];
    let kinds: Vec<PhaseKind> = api.phases.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [PhaseKind::Deploy, PhaseKind::Health, PhaseKind::Rollback]
    );
    let health = &api.phases[1];
    assert_eq!(health.status, PhaseStatus::Failed);
    assert!(
        health.samples.len() >= 2 && health.samples.iter().all(|s| !s.ok),
        "{health:?}"
    );
    assert!(
        health
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("503")
    );
    assert_eq!(api.phases[2].status, PhaseStatus::RollbackFailed);
    // Phases follow each other in time.
    for step in [db, api] {
        for pair in step.phases.windows(2) {
            assert!(pair[1].started_at >= pair[0].started_at, "{pair:?}");
        }
    }
    // The report file carries them where the renderers read them.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.report_path.unwrap()).unwrap()).unwrap();
    assert_eq!(json["steps"][0]["phases"][1]["kind"], "health");
    assert!(json["steps"][0]["phases"][1]["samples"][0]["timestamp"].is_string());
    assert_eq!(json["steps"][1]["phases"][2]["status"], "rollback_failed");
    let _ = Duration::ZERO;
}

/// Kills the child on drop (a CPU hog must not outlive a failed test).
struct Hog(std::process::Child);

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_deploy_next_to_a_cpu_hog_is_low_impact_and_a_busy_one_is_not() {
    // The unrelated load: a busy loop the test starts, not through adeploy.
    let _hog = Hog(std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap());
    let w = World::new();
    let services = "  quiet:\n    deploy: 'sleep 3'\n    timeout_s: 20\n\
                    \x20 busy:\n    deploy: 'timeout 3 sh -c \"while :; do :; done\"; true'\n    timeout_s: 20\n";
    let yaml = w.config_yaml(services) + "monitoring: {sample_interval_ms: 200}\n";
    let path = w.dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = adeploy::config::Config::load(Some(&path)).unwrap();
    let engine = Engine::new(config, w.options()).await.unwrap();

    let quiet = engine
        .deploy(request(&["quiet"], "conservative"), None, None)
        .await
        .unwrap();
    assert!(quiet.success, "{}", quiet.report.human_summary());
    let im = &quiet.report.system_impact;
    let own = im.own_processes.as_ref().expect("own processes measured");
    assert_eq!(im.impact_basis, "own_processes");
    assert_eq!(im.overall_impact, "low", "{im:?}");
    assert!(own.peak_cpu_percent < 10.0, "{own:?}");
    assert!(own.samples >= 5, "{own:?}");
    assert!(
        im.peak_cpu_percent > own.peak_cpu_percent + 20.0,
        "the machine saw the hog: {im:?}"
    );
    assert!(
        !quiet
            .report
            .recommendations
            .iter()
            .any(|r| r.contains("loaded the machine")),
        "{:?}",
        quiet.report.recommendations
    );
    let usage = quiet.report.process_usage.as_ref().unwrap();
    assert_eq!(usage.method, own.tracking);
    assert_eq!(usage.samples.len(), own.samples);
    assert!(
        quiet.report.resource_samples.len() >= 5,
        "{:?}",
        quiet.report.resource_samples.len()
    );
    let tracking = quiet
        .report
        .decision_process
        .iter()
        .find(|d| d.decision.decision_type() == "process_tracking")
        .expect("a process_tracking decision");
    let mode = tracking.decision.details()["mode"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        mode == "cgroup" || mode == "process_tree",
        "{:?}",
        tracking.decision.details()
    );
    assert_eq!(mode, own.tracking);

    let busy = engine
        .deploy(request(&["busy"], "conservative"), None, None)
        .await
        .unwrap();
    assert!(busy.success, "{}", busy.report.human_summary());
    // Its busy loop is its own: counted, however contended the machine is
    // (two cores, shared with the hog and whatever else runs).
    let busy_own = busy.report.system_impact.own_processes.as_ref().unwrap();
    let quiet_own = quiet.report.system_impact.own_processes.as_ref().unwrap();
    assert!(busy_own.cpu_seconds >= 0.3, "{busy_own:?}");
    assert!(
        busy_own.cpu_seconds > 5.0 * quiet_own.cpu_seconds.max(0.01),
        "{busy_own:?} vs {quiet_own:?}"
    );
    assert!(busy_own.peak_cpu_percent >= 5.0, "{busy_own:?}");
}
