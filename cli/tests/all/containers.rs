//! `target: container` through the CLI with real podman: images built here
//! from busybox (no registry), one service, container names and ports per
//! test so tests running at the same time do not meet. Every container and
//! image a test made is removed when it ends (`TestImages`' drop).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{World, adeploy};
use crate::container_support::{
    RUN_OPTIONS, RUNTIME_OPTIONS, TestImages, free_port, get, podman, unique,
};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A replace-mode service `name` serving busybox httpd on `port`.
fn service(images: &TestImages, port: u16, version: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    target: container\n    image: {repo}\n    version: \"{version}\"\n    runtime: podman\n    runtime_options: {RUNTIME_OPTIONS}\n    run_options: {RUN_OPTIONS}\n    args: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"127.0.0.1:{port}\", \"-h\", \"/www\"]\n    stop_timeout_s: 1\n    timeout_s: 8\n    health: {{http: \"http://127.0.0.1:{port}/health\", expect_body: \"v${{ADEPLOY_VERSION}}\", timeout_ms: 500}}\n{extra}",
        name = images.service,
        repo = images.repo,
    )
}

/// `adeploy run --json` of the service, with `--set-version` when given.
fn run(w: &World, cfg: &Path, service: &str, version: Option<&str>) -> (Output, serde_json::Value) {
    let cfg = cfg.to_str().unwrap();
    let set = version.map(|v| format!("{service}={v}"));
    let mut args = vec![
        "run",
        "--config",
        cfg,
        "--services",
        service,
        "--strategy",
        "conservative",
        "--environment",
        "development",
        "--json",
    ];
    if let Some(s) = &set {
        args.extend(["--set-version", s.as_str()]);
    }
    let o = adeploy(&args, w.dir.path(), &w.state());
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, v)
}

/// The first `container` object of a step in a JSON document.
fn container_of(v: &serde_json::Value) -> serde_json::Value {
    fn find(v: &serde_json::Value) -> Option<&serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(c) = m.get("container")
                    && c.get("name").is_some()
                {
                    return Some(c);
                }
                m.values().find_map(find)
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(v).cloned().unwrap_or(serde_json::Value::Null)
}

fn config(w: &World, services: &str) -> PathBuf {
    w.write_config(services)
}

#[test]
fn replace_v1_v2_then_a_broken_v3_rolls_back_to_the_same_image() {
    let name = unique("ct");
    let mut images = TestImages::new(&name);
    images.build("1", Some("v1"));
    images.build("2", Some("v2"));
    images.build("3", None); // no health page: its health check fails
    let port = free_port();
    let w = World::new();
    let cfg = config(&w, &service(&images, port, "1", ""));

    let (o, _) = run(&w, &cfg, &name, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(get(port, "/health").as_deref(), Some("v1"));
    assert_eq!(
        images.containers(),
        vec![(format!("adeploy-{name}-1"), true)]
    );

    let (o, v) = run(&w, &cfg, &name, Some("2"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(get(port, "/health").as_deref(), Some("v2"));
    // v1 is retired once the deployment is recorded.
    assert_eq!(
        images.containers(),
        vec![(format!("adeploy-{name}-2"), true)]
    );
    let c = container_of(&v);
    let v2_digest = images.id("2");
    assert_eq!(c["digest"], v2_digest.as_str(), "{c}");
    assert_eq!(c["previous"]["name"], format!("adeploy-{name}-1"), "{c}");
    assert_eq!(c["previous"]["digest"], images.id("1").as_str(), "{c}");
    let v2_id = c["id"].as_str().unwrap().to_string();

    let (o, v) = run(&w, &cfg, &name, Some("3"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // The same container (and so the same image digest) serves again.
    assert_eq!(get(port, "/health").as_deref(), Some("v2"));
    assert_eq!(
        images.containers(),
        vec![(format!("adeploy-{name}-2"), true)]
    );
    assert_eq!(
        images.container_image(&format!("adeploy-{name}-2")),
        Some(v2_digest.clone())
    );
    let c = container_of(&v);
    assert_eq!(c["digest"], images.id("3").as_str(), "{c}");
    assert_eq!(c["rolled_back_to"], v2_digest.as_str(), "{c}");
    assert_eq!(c["previous"]["id"], v2_id.as_str(), "{c}");
    // The history keeps the same typed record.
    let o = adeploy(&["state", "export"], w.dir.path(), &w.state());
    assert!(o.status.success(), "{}", stderr(&o));
    let stored = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| container_of(&v))
        .find(|c| c.get("rolled_back_to").is_some())
        .expect("the rolled-back deployment's container record in the history");
    assert_eq!(stored["rolled_back_to"], v2_digest.as_str(), "{stored}");
    assert_eq!(stored["digest"], images.id("3").as_str(), "{stored}");
}

#[test]
fn blue_green_keeps_the_old_version_answering_through_a_failed_attempt() {
    let name = unique("bg");
    let mut images = TestImages::new(&name);
    images.build("1", Some("v1"));
    images.build("2", None); // fails its health check
    images.build("3", Some("v3"));
    let (blue, green) = (free_port(), free_port());
    let w = World::new();
    let active = w.dir.path().join("active_port");
    let extra = format!(
        "    strategy_mode: blue-green\n    slot_ports: [{blue}, {green}]\n    switch: 'echo $ADEPLOY_PORT > {}'\n",
        active.display()
    );
    let svc = service(&images, 0, "1", &extra)
        .replace("127.0.0.1:0\"", "127.0.0.1:${ADEPLOY_PORT}\"")
        .replace("127.0.0.1:0/health", "127.0.0.1:${ADEPLOY_PORT}/health");
    let cfg = config(&w, &svc);
    let read_active = || {
        std::fs::read_to_string(&active)
            .unwrap_or_default()
            .trim()
            .to_string()
    };

    let (o, _) = run(&w, &cfg, &name, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read_active(), blue.to_string());
    assert_eq!(get(blue, "/health").as_deref(), Some("v1"));

    // v2 fails on green; blue answers v1 all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let (probes, misses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = {
        let (stop, probes, misses) = (stop.clone(), probes.clone(), misses.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if get(blue, "/health").as_deref() != Some("v1") {
                    misses.fetch_add(1, Ordering::SeqCst);
                }
                probes.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (o, v) = run(&w, &cfg, &name, Some("2"));
    stop.store(true, Ordering::SeqCst);
    prober.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        probes.load(Ordering::SeqCst) > 10,
        "the prober ran too little"
    );
    assert_eq!(
        misses.load(Ordering::SeqCst),
        0,
        "blue stopped answering v1"
    );
    assert_eq!(
        read_active(),
        blue.to_string(),
        "the switch must not have run"
    );
    let c = container_of(&v);
    assert_eq!(c["slot"], "green", "{c}");
    assert_eq!(c["switched"], serde_json::Value::Null, "{c}");
    assert_eq!(c["rolled_back_to"], images.id("1").as_str(), "{c}");
    assert_eq!(
        images.containers(),
        vec![(format!("adeploy-{name}-1"), true)]
    );

    // v3 succeeds on green: switched, blue retired.
    let (o, v) = run(&w, &cfg, &name, Some("3"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read_active(), green.to_string());
    assert_eq!(get(green, "/health").as_deref(), Some("v3"));
    assert_eq!(get(blue, "/health"), None, "the old container is stopped");
    assert_eq!(container_of(&v)["switched"], true);
    assert_eq!(
        images.containers(),
        vec![(format!("adeploy-{name}-3"), true)]
    );
}

#[test]
fn errors_are_one_clear_line() {
    let name = unique("er");
    let mut images = TestImages::new(&name);
    images.build("1", Some("v1"));
    let w = World::new();
    let port = free_port();

    // A runtime that is not installed: bad input, nothing attempted.
    let cfg = config(
        &w,
        &service(&images, port, "1", "").replace("runtime: podman", "runtime: docker"),
    );
    if !adeploy::exec::container::on_path("docker") {
        let (o, _) = run(&w, &cfg, &name, None);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("container runtime docker is not installed"),
            "{e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }

    // An unknown runtime, a tag in `image`: config errors with positions.
    for (from, to, want) in [
        ("runtime: podman", "runtime: rkt", "unknown variant `rkt`"),
        (
            &format!("image: {}", images.repo)[..],
            &format!("image: {}:1", images.repo)[..],
            "carries a tag or digest",
        ),
    ] {
        let cfg = config(&w, &service(&images, port, "1", "").replace(from, to));
        let (o, _) = run(&w, &cfg, &name, None);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(want), "{e}");
        assert!(e.contains("config.yaml:"), "{e}");
    }

    // A missing image: the pull fails naming the registry.
    let cfg = config(
        &w,
        &service(&images, port, "1", "").replace(&images.repo, &format!("{}-missing", images.repo)),
    );
    let (o, v) = run(&w, &cfg, &name, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = v.to_string();
    assert!(
        text.contains("is not present and pulling it from localhost failed"),
        "{text}"
    );

    // The port is taken: the new container exits at once, a clear failure.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let cfg = config(&w, &service(&images, port, "1", ""));
    let (o, v) = run(&w, &cfg, &name, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = v.to_string();
    assert!(text.contains("exited right after starting"), "{text}");
    assert!(images.containers().is_empty(), "{:?}", images.containers());
    drop(taken);
}

#[test]
fn a_container_started_by_hand_under_adeploys_name_is_reported_not_replaced() {
    let name = unique("dr");
    let mut images = TestImages::new(&name);
    let image = images.build("1", Some("v1"));
    images.build("2", Some("v2"));
    let port = free_port();
    let w = World::new();
    let cfg = config(&w, &service(&images, port, "1", ""));
    let (o, _) = run(&w, &cfg, &name, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Someone starts "v2" by hand, under the name adeploy would use.
    let hand = format!("adeploy-{name}-2");
    let other = free_port();
    let o = podman(&[
        "run",
        "-d",
        "--name",
        &hand,
        "--network",
        "host",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &image,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        &format!("127.0.0.1:{other}"),
        "-h",
        "/www",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = adeploy(
        &["diagnostics", "--config", cfg.to_str().unwrap(), "--json"],
        w.dir.path(),
        &w.state(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = d["containers"].to_string();
    assert!(list.contains(&hand), "{list}");
    assert!(list.contains("not started by adeploy"), "{list}");
    assert!(list.contains(&images.id("1")), "{list}");

    let (o, v) = run(&w, &cfg, &name, Some("2"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = v.to_string();
    assert!(text.contains("was not started by adeploy"), "{text}");
    assert!(text.contains(&format!("podman rm -f {hand}")), "{text}");
    // Both still there: v1 serving again, the hand-started one untouched.
    assert_eq!(get(port, "/health").as_deref(), Some("v1"));
    assert_eq!(get(other, "/health").as_deref(), Some("v1"));

    // Drift: the deployed container stopped behind adeploy's back.
    let o = podman(&["stop", "-t", "0", &format!("adeploy-{name}-1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = adeploy(
        &["diagnostics", "--config", cfg.to_str().unwrap()],
        w.dir.path(),
        &w.state(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("drift: the history says adeploy-{name}-1")),
        "{text}"
    );
    assert!(text.contains("(not adeploy's)"), "{text}");
}
