//! The built-in http-smoke hook against real HTTP servers on loopback.

use adeploy::config::{Config, Grants};
use adeploy::plugin::{HookContext, Phase, PluginError, WitEnvironment};

use crate::common::{HttpServer, ctx, empty_world, host, service};

fn hook_ctx(service_name: Option<&str>) -> HookContext {
    HookContext {
        deployment: ctx(vec![service("api", &[])], WitEnvironment::Staging),
        strategy: "balanced".into(),
        service: service_name.map(String::from),
        failure_count: 0,
        message: String::new(),
    }
}

/// Loads http-smoke with `checks` (JSON) and `network` grants.
async fn run(
    checks: &str,
    network: &[&str],
    phase: Phase,
    service: Option<&str>,
) -> Result<String, PluginError> {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let mut config = Config::embedded().unwrap();
    let entry = config.plugins.get_mut("http-smoke").unwrap();
    entry.grants = Grants {
        network: network.iter().map(|s| s.to_string()).collect(),
        ..Grants::default()
    };
    entry.config = Some(serde_yaml::from_str(&format!("{{\"checks\": {checks}}}")).unwrap());
    let set = adeploy::plugin::PluginSet::load(&host, &config, &[])
        .await
        .unwrap();
    set.get("http-smoke")
        .unwrap()
        .run_hook(phase, &hook_ctx(service))
        .await
        .map(|c| c.value.message)
}

#[tokio::test]
async fn passes_when_every_url_answers_as_expected() {
    let ok = HttpServer::start(200, "ok");
    let created = HttpServer::start(201, "made");
    let checks = format!(
        r#"[{{"url": "http://127.0.0.1:{}/health", "contains": "ok"}},
            {{"url": "http://127.0.0.1:{}/x", "expect_status": 201}}]"#,
        ok.port, created.port
    );
    let msg = run(&checks, &["127.0.0.1:*"], Phase::PostDeployment, None)
        .await
        .unwrap();
    assert!(msg.contains("2 checks passed"), "{msg}");
    assert_eq!(ok.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(created.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fails_on_an_unexpected_status_naming_the_url() {
    let down = HttpServer::start(503, "down");
    let url = format!("http://127.0.0.1:{}/health", down.port);
    let checks = format!(r#"[{{"url": "{url}"}}]"#);
    let err = run(&checks, &["127.0.0.1:*"], Phase::PostDeployment, None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::Refused { .. }), "{msg}");
    assert!(
        msg.contains(&url) && msg.contains("503") && msg.contains("200"),
        "{msg}"
    );
}

#[tokio::test]
async fn fails_on_body_mismatch() {
    let s = HttpServer::start(200, "degraded");
    let checks = format!(
        r#"[{{"url": "http://127.0.0.1:{}/", "contains": "ok"}}]"#,
        s.port
    );
    let err = run(&checks, &["127.0.0.1:*"], Phase::PostDeployment, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ok"), "{err}");
}

#[tokio::test]
async fn ungranted_url_is_denied_and_never_contacted() {
    let s = HttpServer::start(200, "ok");
    let checks = format!(r#"[{{"url": "http://127.0.0.1:{}/"}}]"#, s.port);
    let err = run(&checks, &["127.0.0.1:1"], Phase::PostDeployment, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("denied"), "{err}");
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn only_the_configured_phases_run_and_service_is_substituted() {
    let s = HttpServer::start(200, "ok");
    let checks = format!(
        r#"[{{"url": "http://127.0.0.1:{}/{{service}}/health", "phases": ["post-service"]}}]"#,
        s.port
    );
    let msg = run(&checks, &["127.0.0.1:*"], Phase::PreDeployment, None)
        .await
        .unwrap();
    assert!(msg.contains("no checks"), "{msg}");
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    let msg = run(&checks, &["127.0.0.1:*"], Phase::PostService, Some("api"))
        .await
        .unwrap();
    assert!(msg.contains("1 check"), "{msg}");
    assert_eq!(*s.paths.lock().unwrap(), vec!["/api/health".to_string()]);
}
