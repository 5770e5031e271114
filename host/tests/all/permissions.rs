//! The state directory is private: the history database, the deployment
//! logs, the reports and the run lock hold command output and the audit log,
//! so adeploy creates its directories 0700 and its files 0600 whatever the
//! umask, and says so when an existing state directory is open to others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use adeploy::config::Environment;
use adeploy::engine::DeploymentRequest;

use crate::common::World;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `dir` (not `dir` itself).
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() {
            walk(&p, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_leaves_only_private_directories_and_files() {
    let w = World::new();
    // Whatever the test runner's umask, adeploy's own modes must hold; an
    // existing state directory that others may enter is kept but reported.
    std::fs::create_dir_all(w.state()).unwrap();
    std::fs::set_permissions(w.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let engine = w.engine(&w.service("api", &[], "{command: 'true'}")).await;
    let out = engine
        .deploy(
            DeploymentRequest {
                services: vec!["api".into()],
                strategy: Some("balanced".into()),
                environment: Some(Environment::Staging),
                ..DeploymentRequest::default()
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(out.success, "{}", out.report.human_summary());

    let mut paths = Vec::new();
    walk(&w.state(), &mut paths);
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(w.state()).unwrap().display().to_string())
        .collect();
    for expected in [
        "deployment_data",
        "deployment_data/deployment_history.db",
        "deployment_data/run.lock",
        "deployment_logs",
        "deployment_reports",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("deployment_logs/deploy_"))
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("deployment_reports/deployment_report_"))
    );
    for p in &paths {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} is {:o}", p.display(), mode(p));
    }
    assert_eq!(
        mode(&w.state()),
        0o755,
        "an existing state dir is left as it is"
    );
    let warning = adeploy::fs::ensure_state_dir(&w.state()).unwrap().unwrap();
    assert!(warning.to_string().contains("chmod 700"), "{warning}");
}

#[test]
fn a_new_state_directory_is_created_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("fresh/state");
    let history = adeploy::history::History::open(&state).unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(history.path()), 0o600);
    assert_eq!(history.stats().unwrap().deployments, 0);
}
