//! The built-in detector, one method at a time, then methods in conflict.
//! Each test gives the detector rules for only the method under test, and a
//! world (root, hostname, environment) of its own.

use std::collections::HashMap;

use adeploy::config::{Config, EnvironmentDetection, MethodWeights};
use adeploy::plugin::{Detection, EnvSource, HostWorld, WitEnvironment, detection_rules};

use crate::common::{builtins, empty_world, host};

fn weights() -> MethodWeights {
    MethodWeights {
        env_var: 10.0,
        hostname: 3.0,
        network: 2.0,
        filesystem: 2.0,
        process: 1.0,
    }
}

fn rules() -> EnvironmentDetection {
    EnvironmentDetection {
        env_var: "DEPLOYMENT_ENVIRONMENT".into(),
        weights: weights(),
        ..Default::default()
    }
}

/// Runs the built-in detector with the embedded config's grants plus `network`.
async fn detect(world: HostWorld, rules: &EnvironmentDetection, network: &[&str]) -> Detection {
    let mut config = Config::embedded().unwrap();
    let d = config.plugins.get_mut("detector").unwrap();
    d.grants.network = network.iter().map(|s| s.to_string()).collect();
    d.grants.paths.push("/etc/adeploy-test".into());
    let host = host(world);
    let set = builtins(&host, &config).await;
    set.get("detector")
        .unwrap()
        .detect(&detection_rules(rules))
        .await
        .unwrap()
        .value
}

#[tokio::test]
async fn env_var_alone_decides() {
    let root = tempfile::tempdir().unwrap();
    let mut world = empty_world(root.path());
    world.env = EnvSource::Fixed(HashMap::from([(
        "DEPLOYMENT_ENVIRONMENT".into(),
        "Stage".into(),
    )]));
    let d = detect(world, &rules(), &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Staging));
    assert_eq!(d.confidence, 1.0);
    assert_eq!(d.evidence.len(), 1);
    assert_eq!(d.evidence[0].method, "env-var");
}

#[tokio::test]
async fn unknown_env_value_is_a_note_not_evidence() {
    let root = tempfile::tempdir().unwrap();
    let mut world = empty_world(root.path());
    world.env = EnvSource::Fixed(HashMap::from([(
        "DEPLOYMENT_ENVIRONMENT".into(),
        "moon".into(),
    )]));
    let d = detect(world, &rules(), &[]).await;
    assert_eq!(d.environment, None);
    assert!(d.notes.iter().any(|n| n.contains("moon")), "{:?}", d.notes);
}

#[tokio::test]
async fn hostname_pattern_alone_decides() {
    let root = tempfile::tempdir().unwrap();
    let mut world = empty_world(root.path());
    world.hostname = Some("web-PROD-3".into());
    let mut r = rules();
    r.hostname_patterns.insert(
        adeploy::config::Environment::Production,
        vec!["prod".into()],
    );
    r.hostname_patterns
        .insert(adeploy::config::Environment::Staging, vec!["stg".into()]);
    let d = detect(world, &r, &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Production));
    assert_eq!(d.evidence.len(), 1);
    assert!(
        d.evidence[0].detail.contains("web-prod-3"),
        "{}",
        d.evidence[0].detail
    );
}

#[tokio::test]
async fn filesystem_markers_under_a_test_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(".dockerenv"), "").unwrap();
    let r = Config::embedded().unwrap().environment_detection;
    let only_fs = EnvironmentDetection {
        filesystem_markers: r.filesystem_markers.clone(),
        ..rules()
    };
    let d = detect(empty_world(root.path()), &only_fs, &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Development));

    // A kubernetes cgroup line (file content) and the service-account dir say production.
    let k8s = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(k8s.path().join("proc/1")).unwrap();
    std::fs::write(
        k8s.path().join("proc/1/cgroup"),
        "0::/kubepods/besteffort/pod1\n",
    )
    .unwrap();
    std::fs::create_dir_all(
        k8s.path()
            .join("var/run/secrets/kubernetes.io/serviceaccount"),
    )
    .unwrap();
    let d = detect(empty_world(k8s.path()), &only_fs, &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Production));
    assert_eq!(d.evidence.len(), 2, "{:?}", d.evidence);

    // The same cgroup file without the text is no evidence.
    std::fs::write(k8s.path().join("proc/1/cgroup"), "0::/user.slice\n").unwrap();
    std::fs::remove_dir_all(k8s.path().join("var")).unwrap();
    let d = detect(empty_world(k8s.path()), &only_fs, &[]).await;
    assert_eq!(d.environment, None);
}

#[tokio::test]
async fn running_process_alone_decides() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("adtestproc");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
    let mut r = rules();
    r.process_patterns.insert(
        adeploy::config::Environment::Staging,
        vec!["adtestproc".into()],
    );
    let root = tempfile::tempdir().unwrap();
    let d = detect(empty_world(root.path()), &r, &[]).await;
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(d.environment, Some(WitEnvironment::Staging), "{d:?}");
    assert!(
        d.evidence[0].detail.contains(&child.id().to_string()),
        "{}",
        d.evidence[0].detail
    );
}

#[tokio::test]
async fn network_pattern_answers_on_a_local_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut r = rules();
    r.network_patterns.insert(
        adeploy::config::Environment::Staging,
        vec![format!("127.0.0.1:{port}")],
    );
    // A closed port says nothing.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    r.network_patterns.insert(
        adeploy::config::Environment::Production,
        vec![format!("127.0.0.1:{closed}")],
    );
    let root = tempfile::tempdir().unwrap();
    let d = detect(empty_world(root.path()), &r, &["127.0.0.1:*"]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Staging), "{d:?}");
    assert_eq!(d.evidence.len(), 1);
    assert_eq!(d.evidence[0].method, "network");
}

#[tokio::test]
async fn ungranted_probe_is_a_note() {
    let mut r = rules();
    r.network_patterns.insert(
        adeploy::config::Environment::Production,
        vec!["127.0.0.1:9".into()],
    );
    let root = tempfile::tempdir().unwrap();
    let d = detect(empty_world(root.path()), &r, &[]).await;
    assert_eq!(d.environment, None);
    assert!(
        d.notes.iter().any(|n| n.contains("denied")),
        "{:?}",
        d.notes
    );
}

#[tokio::test]
async fn conflicting_evidence_is_decided_by_the_weights() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(".dockerenv"), "").unwrap();
    let mut world = empty_world(root.path());
    world.hostname = Some("api-prod-1".into());
    let mut r = rules();
    r.hostname_patterns.insert(
        adeploy::config::Environment::Production,
        vec!["prod".into()],
    );
    r.filesystem_markers.insert(
        adeploy::config::Environment::Development,
        vec![adeploy::config::Marker::Path("/.dockerenv".into())],
    );
    // hostname 3 vs filesystem 2: production with 3/5 of the weight.
    let d = detect(world.clone(), &r, &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Production));
    assert!((d.confidence - 0.6).abs() < 1e-9, "{}", d.confidence);
    // Turn the weights around and the marker wins.
    r.weights.filesystem = 5.0;
    let d = detect(world, &r, &[]).await;
    assert_eq!(d.environment, Some(WitEnvironment::Development));
    assert!((d.confidence - 5.0 / 8.0).abs() < 1e-9, "{}", d.confidence);
}

/// Through the engine's detector: the variable wins outright over other evidence.
#[tokio::test]
async fn deployment_environment_variable_wins_with_full_confidence() {
    let root = tempfile::tempdir().unwrap();
    let mut world = empty_world(root.path());
    world.hostname = Some("api-prod-7".into());
    world.env = EnvSource::Fixed(HashMap::from([(
        "DEPLOYMENT_ENVIRONMENT".into(),
        "staging".into(),
    )]));
    let config = Config::embedded().unwrap();
    let host = host(world);
    let set = builtins(&host, &config).await;
    let found = adeploy::detect::EnvironmentDetector::new(&set, &config)
        .detect(None)
        .await
        .unwrap();
    assert_eq!(found.environment, adeploy::config::Environment::Staging);
    assert_eq!(found.confidence, 1.0);
    assert_eq!(found.source, adeploy::detect::DetectionSource::EnvVar);
    assert!(
        found.evidence.iter().any(|e| e.method == "hostname"),
        "the other evidence is still recorded"
    );
    // --environment wins over the variable.
    let found = adeploy::detect::EnvironmentDetector::new(&set, &config)
        .detect(Some(adeploy::config::Environment::Production))
        .await
        .unwrap();
    assert_eq!(found.environment, adeploy::config::Environment::Production);
    assert_eq!(found.source, adeploy::detect::DetectionSource::Operator);
}

#[tokio::test]
async fn no_evidence_falls_back_to_the_default_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let mut config = Config::embedded().unwrap();
    config.environment_detection.process_patterns.clear();
    config.environment_detection.default_environment = Some(adeploy::config::Environment::Staging);
    let host = host(empty_world(root.path()));
    let set = builtins(&host, &config).await;
    let found = adeploy::detect::EnvironmentDetector::new(&set, &config)
        .detect(None)
        .await
        .unwrap();
    assert_eq!(found.environment, adeploy::config::Environment::Staging);
    assert_eq!(found.source, adeploy::detect::DetectionSource::Default);
    assert!(
        found
            .notes
            .iter()
            .any(|n| n.contains("default_environment")),
        "{:?}",
        found.notes
    );
}
