//! Reliability and security as a user meets them: production approvals and
//! the audit log, secrets kept out of everything adeploy writes, SIGKILL at
//! random moments, and readers while a run writes.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::World;
use crate::common::adeploy_command;

fn adeploy(args: &[&str], w: &World, envs: &[(&str, &str)]) -> Output {
    spawn(args, w, envs).wait_with_output().unwrap()
}

fn spawn(args: &[&str], w: &World, envs: &[(&str, &str)]) -> std::process::Child {
    let mut c = adeploy_command(w.dir.path(), &w.state());
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn production_needs_an_approval_and_the_audit_log_records_it() {
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let cfg = cfg.to_str().unwrap();
    let run = ["run", "--config", cfg, "--services", "api", "--environment"];

    let o = adeploy(&[&run[..], &["production"]].concat(), &w, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("deployments to production need an approval"),
        "{}",
        text(&o)
    );
    assert!(w.order().is_empty(), "nothing deployed");
    // --yes confirms a plan; it does not approve production.
    let o = adeploy(
        &[&run[..], &["production", "--interactive", "--yes"]].concat(),
        &w,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = adeploy(&[&run[..], &["staging"]].concat(), &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = adeploy(&[&run[..], &["production", "--approve"]].concat(), &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(w.order(), ["deploy api", "deploy api"]);

    let o = adeploy(&["audit", "--json"], &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    let e = &entries[0];
    assert_eq!(e["action"], "deployment_approved");
    assert!(e["user"].as_str().unwrap().contains("(uid "), "{e}");
    assert_eq!(e["details"]["environment"], "production");
    assert_eq!(e["details"]["approval"]["method"], "flag");
    assert!(e["timestamp"].as_str().is_some());
    let o = adeploy(&["audit"], &w, &[]);
    assert!(text(&o).contains("deployment_approved"), "{}", text(&o));
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn secrets_never_appear_in_logs_reports_decisions_or_verbose_output() {
    let w = World::new();
    let inline = "inline-s3cret-7f3a9";
    let from_env = "env-s3cret-c41d2";
    let services = format!(
        "  leaky:\n    deploy: 'echo \"token=$TOKEN pass=$DBPASS\"; echo \"$DBPASS\" >&2; exit 3'\n    rollback: 'echo rollback $TOKEN'\n    env:\n      TOKEN: {{secret: {inline}}}\n      DBPASS: {{from_env: ADEPLOY_TEST_DBPASS}}\n      PLAIN: visible-value\n    timeout_s: 10\n"
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let args = [
        "--verbose",
        "run",
        "--config",
        cfg,
        "--services",
        "leaky",
        "--environment",
        "staging",
    ];
    // A from_env variable that is not set: bad input, named, nothing written.
    let o = adeploy(&args, &w, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("services.leaky.env.DBPASS: from_env ADEPLOY_TEST_DBPASS is not set"),
        "{}",
        text(&o)
    );

    let env = [("ADEPLOY_TEST_DBPASS", from_env)];
    let mut seen = String::new();
    let o = adeploy(&args, &w, &env);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    seen.push_str(&text(&o));
    let o = adeploy(&[&args[..], &["--json"]].concat(), &w, &env);
    seen.push_str(&text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["report"]["deployment_summary"]["id"].as_str().unwrap();
    for cmd in [
        vec!["report", id],
        vec!["report", id, "--json"],
        vec!["list", "--json"],
    ] {
        seen.push_str(&text(&adeploy(&cmd, &w, &env)));
    }
    for f in files(&w.state()) {
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    for secret in [inline, from_env] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
    // The commands did get the values, and what they printed is in the log,
    // redacted; plain values stay readable.
    assert!(seen.contains("token=[redacted] pass=[redacted]"), "{seen}");
    assert!(seen.contains("rollback [redacted]"), "{seen}");
    assert!(seen.contains("visible-value") || !seen.contains("PLAIN"));
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_state() {
    let w = World::new();
    let o = w.order.display();
    let services: String = (1..=3)
        .map(|i| {
            format!(
                "  s{i}:\n    deploy: 'sleep 0.0{i}; echo \"deploy s{i}\" >> {o}'\n    rollback: 'echo \"rollback s{i}\" >> {o}'\n"
            )
        })
        .collect();
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let args = [
        "run",
        "--config",
        cfg,
        "--services",
        "s1",
        "s2",
        "s3",
        "--environment",
        "staging",
        "--strategy",
        "conservative",
    ];
    // Kill moments spread over a whole run as long as it takes on this
    // machine now (a loaded machine is slower, a fast one would otherwise
    // finish most runs before the kill).
    let started = std::time::Instant::now();
    let first = adeploy(&args, &w, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let whole = u64::try_from(started.elapsed().as_millis())
        .unwrap()
        .max(50);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut killed = 0;
    for _ in 0..50 {
        let mut child = spawn(&args, &w, &[]);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..whole * 6 / 5)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    assert!(killed >= 10, "only {killed} of 50 runs were cut off");

    // The database opens; nothing is left running.
    let o = adeploy(&["list", "--json", "-n", "100"], &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let deployments = v["deployments"].as_array().unwrap();
    assert!(!deployments.is_empty());
    let mut complete = 0;
    for d in deployments {
        let status = d["status"].as_str().unwrap();
        assert!(
            [
                "succeeded",
                "failed",
                "rolled_back",
                "aborted",
                "interrupted"
            ]
            .contains(&status),
            "{d}"
        );
        if status != "interrupted" {
            complete += 1;
            // A finished deployment has its report, whole.
            let path = d["report_path"].as_str().unwrap();
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            assert_eq!(report["deployment_summary"]["id"], d["id"]);
        }
    }
    assert!(complete >= 1, "no run finished");
    // Every report file parses; every log line is whole.
    let state = w.state();
    for f in files(&state.join("deployment_reports")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("deployment_report_") {
            let bytes = std::fs::read(&f).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
        }
    }
    for f in files(&state.join("deployment_logs")) {
        let body = std::fs::read_to_string(&f).unwrap();
        assert!(body.is_empty() || body.ends_with('\n'), "{}", f.display());
        for line in body.lines() {
            assert!(
                line.len() > 26 && line.as_bytes()[4] == b'-' && line.contains(" ["),
                "{}: {line:?}",
                f.display()
            );
        }
    }
    // A new run still works (and clears what the kills left behind).
    let o = adeploy(&args, &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let leftovers: Vec<_> = files(&state.join("deployment_reports"))
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn list_and_report_work_while_a_run_writes() {
    let w = World::new();
    let o = w.order.display();
    let services = format!(
        "  quick:\n    deploy: 'true'\n  slow:\n    deploy: 'echo started >> {o}; sleep 3'\n"
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let first = adeploy(
        &[
            "run",
            "--config",
            cfg,
            "--services",
            "quick",
            "--environment",
            "staging",
            "--json",
        ],
        &w,
        &[],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let id = v["report"]["deployment_summary"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut running = spawn(
        &[
            "run",
            "--config",
            cfg,
            "--services",
            "slow",
            "--environment",
            "staging",
        ],
        &w,
        &[],
    );
    let t = std::time::Instant::now();
    while w.order().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the slow run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Mid-run: list shows it running, report of the earlier one works, and a
    // second run on the same state dir is refused after its wait.
    let o = adeploy(&["list", "--json"], &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployments"][0]["status"], "running", "{v}");
    let o = adeploy(&["report", &id], &w, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        running.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    let out = running.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
