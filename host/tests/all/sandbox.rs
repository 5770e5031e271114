//! Hostile plugins: each fails cleanly with the right error, and afterwards the
//! same host still serves a good plugin correctly.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use adeploy::config::{Config, Grants};
use adeploy::plugin::{
    EnvSource, HostWorld, PluginError, PluginEvent, PluginHost, PluginSet, PluginSettings,
    WitEnvironment,
};

use crate::common::{ctx, empty_world, host, service, settings};

/// The good plugin: the built-in balanced strategy plans three services.
pub(crate) async fn assert_still_serves(host: &PluginHost) {
    let set = PluginSet::load(host, &Config::embedded().unwrap(), &[])
        .await
        .unwrap();
    let c = ctx(
        vec![
            service("db", &[]),
            service("api", &["db"]),
            service("web", &["api"]),
        ],
        WitEnvironment::Staging,
    );
    let r = set.get("balanced").unwrap().plan(&c).await.unwrap().value;
    assert_eq!(r.waves.iter().map(|w| w.steps.len()).sum::<usize>(), 3);
}

async fn plan_fixture(
    host: &PluginHost,
    wasm: &str,
    s: PluginSettings,
) -> Result<Vec<String>, PluginError> {
    let plugin = host.load_file(Path::new(wasm), s).await?;
    let c = ctx(vec![service("api", &[])], WitEnvironment::Staging);
    plugin.plan(&c).await.map(|r| r.value.notes)
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_deadline() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let started = Instant::now();
    let err = plan_fixture(
        &host,
        adeploy_fixtures::SPIN,
        settings(Grants::default(), 200, 64, "{}"),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, PluginError::Deadline { plugin, function: "plan", deadline_ms: 200 } if plugin == "spin"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "plugin 'spin' exceeded its 200 ms deadline in plan"
    );
    assert!(
        took < Duration::from_secs(10),
        "stopped, not run to completion: {took:?}"
    );
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn unbounded_allocation_is_stopped_at_the_cap() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = plan_fixture(
        &host,
        adeploy_fixtures::HOG,
        settings(Grants::default(), 10_000, 32, "{}"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PluginError::MemoryCap { cap_mib: 32, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "plugin 'hog' hit its memory cap of 32 MiB in plan"
    );
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn a_trap_names_the_plugin_and_the_panic() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = plan_fixture(
        &host,
        adeploy_fixtures::TRAP,
        settings(Grants::default(), 2000, 64, "{}"),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PluginError::Trap {
                function: "plan",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.starts_with("plugin 'trap' trapped in plan:") && msg.contains("fixture trap"),
        "{msg}"
    );
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn a_malformed_plan_is_rejected() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = plan_fixture(
        &host,
        adeploy_fixtures::BOGUS,
        settings(Grants::default(), 2000, 64, "{}"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Malformed {
                function: "plan",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("plugin 'bogus' returned a malformed value from plan:"),
        "{err}"
    );
}

#[tokio::test]
async fn waiting_in_a_host_call_past_the_deadline_is_stopped() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let grants = Grants {
        network: vec!["127.0.0.1:*".into()],
        ..Grants::default()
    };
    let started = Instant::now();
    let cfg = format!("{{\"port\": {port}}}");
    let err = plan_fixture(
        &host,
        adeploy_fixtures::SLOW_HOST,
        settings(grants, 300, 64, &cfg),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                deadline_ms: 300,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn capabilities_outside_the_grant_come_back_as_error_values() {
    let granted = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", granted.path().join("link-out")).unwrap();
    let root = Path::new("/");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let world = HostWorld {
        root: root.to_path_buf(),
        hostname: Some("secret-host".into()),
        env: EnvSource::Fixed(HashMap::from([(
            "ADEPLOY_FIXTURE_SECRET".into(),
            "s3cret".into(),
        )])),
    };
    let host = host(world);
    // Granted: only the temp dir. Not granted: env, /etc, the port, hostname, processes.
    let grants = Grants {
        paths: vec![granted.path().display().to_string()],
        ..Grants::default()
    };
    let cfg = format!(
        "{{\"granted_dir\": {:?}, \"port\": {port}}}",
        granted.path().display().to_string()
    );
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::SNOOP),
            settings(grants, 5000, 64, &cfg),
        )
        .await
        .unwrap();
    let called = plugin
        .plan(&ctx(vec![], WitEnvironment::Staging))
        .await
        .unwrap();
    let notes = notes_by_key(&called.value.notes);
    for key in [
        "env",
        "shadow",
        "passwd-exists",
        "traversal",
        "symlink",
        "tcp",
        "http",
        "hostname",
        "processes",
    ] {
        let v = notes
            .get(key)
            .unwrap_or_else(|| panic!("no note for {key}: {:?}", called.value.notes));
        assert!(v.starts_with("err: Denied"), "{key}: {v}");
    }
    // The granted directory itself is reachable: its missing file is not found,
    // not denied.
    assert!(
        notes["granted-read"].starts_with("err: NotFound"),
        "{}",
        notes["granted-read"]
    );
    let all = called.value.notes.join("\n");
    assert!(
        !all.contains("s3cret") && !all.contains("secret-host") && !all.contains("root:"),
        "{all}"
    );
    let denials = called
        .events
        .iter()
        .filter(|e| matches!(e, PluginEvent::Denied { .. }))
        .count();
    assert_eq!(
        denials, 9,
        "every refusal is recorded for the operator: {:?}",
        called.events
    );
    drop(listener);
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn granted_capabilities_work() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("f"), "hello").unwrap();
    let world = HostWorld {
        env: EnvSource::Fixed(HashMap::from([(
            "ADEPLOY_FIXTURE_SECRET".into(),
            "visible".into(),
        )])),
        ..empty_world(Path::new("/"))
    };
    let host = host(world);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let grants = Grants {
        env: vec!["ADEPLOY_FIXTURE_*".into()],
        paths: vec!["/etc/passwd".into(), granted.path().display().to_string()],
        network: vec![format!("127.0.0.1:{port}")],
        hostname: true,
        processes: true,
    };
    let cfg = format!(
        "{{\"granted_dir\": {:?}, \"port\": {port}}}",
        granted.path().display().to_string()
    );
    let notes = plan_fixture_ctx(&host, grants, &cfg).await;
    for key in ["env", "passwd-exists", "tcp", "hostname", "processes"] {
        assert!(notes[key].starts_with("ok"), "{key}: {}", notes[key]);
    }
    // The granted directory's file is read through the grant, content and all.
    assert_eq!(notes["granted-read"], "ok: hello");
    assert!(notes["env"].contains("visible"));
    assert!(notes["hostname"].contains("plain-box"));
    // Not granted even here: /etc/shadow and `..` traversal.
    assert!(notes["shadow"].starts_with("err: Denied"));
    assert!(notes["traversal"].starts_with("err: Denied"));
}

async fn plan_fixture_ctx(host: &PluginHost, grants: Grants, cfg: &str) -> HashMap<String, String> {
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::SNOOP),
            settings(grants, 5000, 64, cfg),
        )
        .await
        .unwrap();
    let called = plugin
        .plan(&ctx(vec![], WitEnvironment::Staging))
        .await
        .unwrap();
    notes_by_key(&called.value.notes)
}

#[tokio::test]
async fn a_fresh_store_per_call_means_a_trap_does_not_poison_the_plugin() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::TRAP),
            settings(Grants::default(), 2000, 64, "{}"),
        )
        .await
        .unwrap();
    let c = ctx(vec![service("api", &[])], WitEnvironment::Staging);
    for _ in 0..3 {
        assert!(matches!(
            plugin.plan(&c).await,
            Err(PluginError::Trap { .. })
        ));
        // describe still works on the same plugin after its plan trapped.
        assert_eq!(plugin.describe().await.unwrap().value.name, "trap");
    }
}

/// The snoop fixture's notes (`key: outcome`) by key.
fn notes_by_key(notes: &[String]) -> HashMap<String, String> {
    notes
        .iter()
        .filter_map(|n| {
            n.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}
