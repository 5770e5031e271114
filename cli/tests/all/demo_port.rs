//! The README demo, run by the binary on a port chosen at run time (never
//! the demo's fixed 18080): with a squatter on the port (an old demo, another
//! state dir's demo), the new server cannot bind and the old one answers
//! 200 with its own version and deployment id. The health check expects
//! `version=${ADEPLOY_VERSION} deployment=${ADEPLOY_DEPLOYMENT_ID}`, so the
//! step fails and is rolled back instead of "deployed and healthy" against
//! the wrong process.

use crate::common::{HttpServer, adeploy};

#[test]
fn a_port_conflict_fails_the_demo_and_rolls_back() {
    let squatter = HttpServer::start(
        200,
        "service=api-service version=0.9.0 deployment=deploy_1700000000000\n",
    );
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/deployment_config.yaml"
    ))
    .unwrap();
    assert!(
        demo.contains(
            "expect_body: \"version=${ADEPLOY_VERSION} deployment=${ADEPLOY_DEPLOYMENT_ID}\""
        ),
        "the demo's check expects the version and the deployment"
    );
    let config = demo.replace("18080", &squatter.port.to_string());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::write(dir.path().join("demo.yaml"), config).unwrap();
    let out = adeploy(
        &[
            "--config",
            "demo.yaml",
            "run",
            "--services",
            "api-service",
            "--environment",
            "local",
            "--strategy",
            "conservative",
            "--json",
        ],
        dir.path(),
        &state,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &v["report"];
    assert_eq!(report["deployment_summary"]["status"], "rolled_back");
    let id = report["deployment_summary"]["id"].as_str().unwrap();
    let step = &report["steps"][0];
    assert_eq!(step["status"], "failed");
    assert_eq!(step["rolled_back"], true);
    assert_eq!(step["version"], "1.0.0");
    let message = step["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "expected a body containing \"version=1.0.0 deployment={id}\""
        )) && message.contains("version=0.9.0"),
        "{message}"
    );
    // The new server could not bind: its log says so.
    let log = std::fs::read_to_string(state.join("demo/api-service/server.log")).unwrap();
    assert!(log.contains("Address already in use"), "{log}");
    assert!(squatter.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
    // `list` says rolled_back, and why.
    let out = adeploy(&["list"], dir.path(), &state);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rolled_back"), "{text}");
    assert!(text.contains("health check failed"), "{text}");
}
