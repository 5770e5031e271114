//! A health check must prove that the *new* instance answers. Regression:
//! with the README demo already running on its port (another state dir's
//! demo), a new deployment's server failed to bind, yet the step was
//! "deployed and healthy" because the old server answered 200.
//!
//! These tests run the embedded demo's own `api-service` commands and health
//! check (on a port chosen at runtime instead of 18080) through
//! `exec::run_command` and `exec::validate`, with the environment
//! `exec::command_env` builds.

use std::path::Path;
use std::time::Duration;

use adeploy::config::{CommandSpec, Config, Environment, HealthSpec};
use adeploy::exec::{
    CommandContext, DeploymentLog, HealthPolicy, RunOptions, command_env, run_command, validate,
};
use tokio::time::Instant;

/// The demo's api-service commands and health check, on `port`.
struct Demo {
    deploy: CommandSpec,
    rollback: CommandSpec,
    health: HealthSpec,
    version: String,
}

fn demo_on(port: u16) -> Demo {
    let cfg = Config::embedded().unwrap();
    let s = &cfg.services["api-service"];
    let on_port = |c: &CommandSpec| match c {
        CommandSpec::Shell(s) => CommandSpec::Shell(s.replace("18080", &port.to_string())),
        other => other.clone(),
    };
    let mut health = s.health.clone().unwrap();
    health.http = health.http.map(|u| u.replace("18080", &port.to_string()));
    assert!(
        health
            .expect_body
            .as_deref()
            .unwrap()
            .contains("${ADEPLOY_DEPLOYMENT_ID}"),
        "the demo's check names the deployment: {health:?}"
    );
    Demo {
        deploy: on_port(s.deploy.as_ref().unwrap()),
        rollback: on_port(s.rollback.as_ref().unwrap()),
        health,
        version: s.version.clone().unwrap(),
    }
}

/// Kills the demo servers started from these state dirs, even when a test
/// fails halfway.
struct Servers(Vec<std::path::PathBuf>);

impl Drop for Servers {
    fn drop(&mut self) {
        for state in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(state.join("demo/api-service/pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn env(id: &str, state: &Path, version: &str) -> Vec<(String, String)> {
    command_env(
        &CommandContext {
            deployment_id: id,
            service: "api-service",
            strategy: "balanced",
            environment: Environment::Development,
            deployment_size: "medium",
            wave: 1,
            host: None,
            host_address: "127.0.0.1",
            state_dir: state,
            version: Some(version),
            previous_version: None,
        },
        &[],
    )
}

fn policy() -> HealthPolicy {
    HealthPolicy {
        samples: 2,
        interval: Duration::from_millis(100),
        soak: Duration::ZERO,
    }
}

/// Deploys the demo from `state` as deployment `id`; returns its health verdict.
async fn deploy(demo: &Demo, state: &Path, id: &str) -> adeploy::exec::HealthOutcome {
    std::fs::create_dir_all(state).unwrap();
    let log = DeploymentLog::create(&state.join("logs"), chrono::Local::now()).unwrap();
    let env = env(id, state, &demo.version);
    let opts = RunOptions {
        env: &env,
        ..RunOptions::new("api-service deploy", state, &log)
    };
    let out = run_command(&demo.deploy, &opts).await.unwrap();
    assert!(out.success, "{out:?}");
    validate(
        &demo.health,
        &policy(),
        Instant::now() + Duration::from_secs(5),
        &opts,
    )
    .await
    .unwrap()
}

async fn roll_back(demo: &Demo, state: &Path) {
    let log = DeploymentLog::create(&state.join("logs"), chrono::Local::now()).unwrap();
    let env = env("cleanup", state, &demo.version);
    let opts = RunOptions {
        env: &env,
        ..RunOptions::new("api-service rollback", state, &log)
    };
    let _ = run_command(&demo.rollback, &opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_holding_the_port_fails_the_new_deployments_check() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo_on(free_port());
    let (old, new) = (tmp.path().join("old-state"), tmp.path().join("new-state"));
    let _servers = Servers(vec![old.clone(), new.clone()]);

    // The squatter: an earlier demo deployment from another state dir.
    let first = deploy(&demo, &old, "deploy_old").await;
    let second = async {
        assert!(first.healthy, "the first deployment comes up: {first:?}");
        // The new deployment's server cannot bind; the old one answers.
        let out = deploy(&demo, &new, "deploy_new").await;
        let server_log =
            std::fs::read_to_string(new.join("demo/api-service/server.log")).unwrap_or_default();
        (out, server_log)
    }
    .await;
    roll_back(&demo, &new).await;
    roll_back(&demo, &old).await;

    let (out, server_log) = second;
    assert!(!out.healthy, "passed against the old server: {out:?}");
    assert!(
        out.message.contains(
            "expected a body containing \"version=1.0.0 deployment=deploy_new\", got \"service=api-service version=1.0.0 deployment=deploy_old\""
        ),
        "{out:?}"
    );
    assert!(!out.message.contains('\n'));
    assert!(
        server_log.contains("Address already in use"),
        "{server_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_check_passes_once_the_port_is_free() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo_on(free_port());
    let state = tmp.path().join("state");
    let _servers = Servers(vec![state.clone()]);
    let out = deploy(&demo, &state, "deploy_a").await;
    // A redeploy from the same state dir replaces its own server.
    let again = deploy(&demo, &state, "deploy_b").await;
    roll_back(&demo, &state).await;
    assert!(out.healthy, "{out:?}");
    assert!(again.healthy, "{again:?}");
}
