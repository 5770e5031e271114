//! `target: container` on the SSH fleet: two sshd "hosts" (this machine
//! twice, reached over ssh), the runtime is this machine's podman. Names
//! carry the host (`adeploy-<service>-<version>-<host>`) and each host's
//! container listens on its own port (chosen from `$ADEPLOY_HOST` inside it).
//! No `runtime` is configured: each host is asked which one it has.

use std::collections::BTreeMap;

use adeploy::config::Environment;
use adeploy::engine::{DeploymentRequest, StepStatus};

use crate::container_support::{RUN_OPTIONS, RUNTIME_OPTIONS, TestImages, free_port, get, unique};
use crate::fleet::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_deploy_per_host_and_roll_back_per_host() {
    let f = Fleet::new(2);
    let name = unique("fl");
    let mut images = TestImages::new(&name);
    images.build("1", Some("v1"));
    images.build("2", Some("v2"));
    let ports = [free_port(), free_port()];
    let pick = format!(
        "case $ADEPLOY_HOST in h1) p={};; *) p={};; esac",
        ports[0], ports[1]
    );
    // The health check runs on the host; v2 fails it on h2 only.
    let service = format!(
        "  {name}:\n    target: container\n    host_labels: [web]\n    image: {repo}\n    version: \"1\"\n    runtime_options: {RUNTIME_OPTIONS}\n    run_options: {RUN_OPTIONS}\n    args: [\"/bin/sh\", \"-c\", \"{pick}; exec /bin/busybox httpd -f -p 127.0.0.1:$p -h /www\"]\n    stop_timeout_s: 1\n    timeout_s: 8\n    health:\n      from: remote\n      command: '{pick}; test \"$ADEPLOY_HOST-$ADEPLOY_VERSION\" != h2-2 && /bin/busybox wget -qO- http://127.0.0.1:$p/health | grep -qx \"v$ADEPLOY_VERSION\"'\n      timeout_ms: 2000\n",
        repo = images.repo,
    );
    let engine = f.engine(&service, &f.inventory("", "")).await;
    let request = |version: &str| DeploymentRequest {
        services: vec![name.clone()],
        strategy: Some("conservative".into()),
        environment: Some(Environment::Staging),
        versions: BTreeMap::from([(name.clone(), version.to_string())]),
        ..DeploymentRequest::default()
    };

    let out = engine.deploy(request("1"), None, None).await.unwrap();
    assert!(out.success, "{}", out.report.human_summary());
    assert_eq!(get(ports[0], "/health").as_deref(), Some("v1"));
    assert_eq!(get(ports[1], "/health").as_deref(), Some("v1"));
    assert_eq!(
        images.containers(),
        vec![
            (format!("adeploy-{name}-1-h1"), true),
            (format!("adeploy-{name}-1-h2"), true)
        ]
    );
    // The runtime was reached over ssh: one reused connection per host.
    let sockets = std::fs::read_dir(f.world.state().join("ssh"))
        .unwrap()
        .count();
    assert_eq!(sockets, 2);
    for s in &out.report.steps {
        let c = s.container.as_ref().unwrap();
        assert_eq!(c.digest.as_deref(), Some(images.id("1").as_str()));
    }

    // v2: h1 goes out, h2 fails its health check; each host returns to v1.
    let out = engine.deploy(request("2"), None, None).await.unwrap();
    assert!(!out.success);
    let steps: BTreeMap<String, _> = out
        .report
        .steps
        .iter()
        .map(|s| (s.host.clone().unwrap(), s))
        .collect();
    assert_eq!(steps["h1"].status, StepStatus::Succeeded);
    assert_eq!(steps["h2"].status, StepStatus::Failed);
    for h in ["h1", "h2"] {
        let c = steps[h].container.as_ref().unwrap();
        assert_eq!(c.name, format!("adeploy-{name}-2-{h}"));
        assert_eq!(c.digest.as_deref(), Some(images.id("2").as_str()), "{h}");
        assert_eq!(steps[h].rolled_back, Some(true), "{h}: {:?}", steps[h]);
        assert_eq!(
            c.rolled_back_to.as_deref(),
            Some(images.id("1").as_str()),
            "{h}"
        );
        assert_eq!(
            c.previous.as_ref().unwrap().name,
            format!("adeploy-{name}-1-{h}")
        );
    }
    assert_eq!(get(ports[0], "/health").as_deref(), Some("v1"));
    assert_eq!(get(ports[1], "/health").as_deref(), Some("v1"));
    assert_eq!(
        images.containers(),
        vec![
            (format!("adeploy-{name}-1-h1"), true),
            (format!("adeploy-{name}-1-h2"), true)
        ]
    );
}
