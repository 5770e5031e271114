//! A shared PostgreSQL history as CI runners use it: real `adeploy`
//! processes, each with a state directory of its own (as two runners would
//! have), against one real PostgreSQL 15 started by the tests
//! (`adeploy_fixtures::pg_server`).
//!
//! - overlapping deployments serialise (their commands' timestamps do not
//!   overlap), disjoint ones overlap in time, and a third state directory
//!   lists both;
//! - a run that cannot get the lock in time exits 75 naming the holder;
//! - a runner SIGKILLed while holding the lock is recovered from;
//! - PostgreSQL stopped mid-run: the run finishes, its records wait in the
//!   local journal and arrive (once) after `state sync` or the next run;
//! - export → import round trips byte for byte; `state migrate` from redb;
//! - an unreachable URL exits 2 with the password redacted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use adeploy_fixtures::pg_server::{self, PgServer};

use crate::common::{World, adeploy, adeploy_command};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A new database on the shared test server.
fn database() -> String {
    pg_server::shared().create_database()
}

/// `adeploy` in `state` with the shared history at `url`.
fn runner(w: &World, state: &Path, url: &str) -> Command {
    let mut c = adeploy_command(w.dir.path(), state);
    c.env("ADEPLOY_HISTORY_URL", url);
    c
}

fn output(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().unwrap()
}

fn spawn(mut c: Command, args: &[&str]) -> Child {
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn list(c: Command) -> Vec<serde_json::Value> {
    let o = output(c, &["list", "--json", "--limit", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["deployments"].as_array().unwrap().clone()
}

/// A service whose deploy appends `start ID T` and `end ID T` (seconds) to
/// `times`, `seconds` apart.
fn timed_service(name: &str, times: &Path, seconds: f64) -> String {
    let t = times.display();
    format!(
        "  {name}:\n    deploy: 'echo \"start $ADEPLOY_DEPLOYMENT_ID $(date +%s.%N)\" >> {t}; sleep {seconds}; echo \"end $ADEPLOY_DEPLOYMENT_ID $(date +%s.%N)\" >> {t}'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 60\n"
    )
}

/// [start, end] of each deployment in a times file.
fn intervals(times: &Path) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut m = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(times).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let t: f64 = f[2].parse().unwrap();
        let e = m.entry(f[1].to_string()).or_insert((f64::MAX, f64::MIN));
        if f[0] == "start" {
            e.0 = e.0.min(t);
        } else {
            e.1 = e.1.max(t);
        }
    }
    m
}

fn run_args<'a>(cfg: &'a str, services: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "run",
        "--config",
        cfg,
        "--environment",
        "staging",
        "--strategy",
        "aggressive",
        "--lock-timeout",
        "120",
        "--services",
    ];
    a.extend_from_slice(services);
    a
}

fn wait_for(path: &Path, what: &str) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn overlapping_runs_serialise_disjoint_ones_overlap_and_a_third_runner_lists_both() {
    let url = database();
    let w = World::new();
    let times = w.dir.path().join("times.txt");
    let services: String = ["x", "y", "p", "q"]
        .iter()
        .map(|s| timed_service(s, &times, 2.0))
        .collect();
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let (one, two, three) = (
        w.dir.path().join("runner1"),
        w.dir.path().join("runner2"),
        w.dir.path().join("laptop"),
    );

    // x and {x, y} overlap on x in staging: one waits for the other.
    let a = spawn(runner(&w, &one, &url), &run_args(cfg, &["x"]));
    let b = spawn(runner(&w, &two, &url), &run_args(cfg, &["x", "y"]));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let overlapping = intervals(&times);
    assert_eq!(overlapping.len(), 2, "{overlapping:?}");
    let v: Vec<(f64, f64)> = overlapping.values().copied().collect();
    assert!(
        v[0].1 <= v[1].0 || v[1].1 <= v[0].0,
        "overlapping deployments ran at the same time: {overlapping:?}"
    );
    // The one that waited said for whom, in one line.
    let waited = [stderr(&a), stderr(&b)]
        .into_iter()
        .find(|e| e.contains("waiting for the lock"))
        .unwrap_or_else(|| panic!("nobody waited:\n{}\n{}", stderr(&a), stderr(&b)));
    let line = waited
        .lines()
        .find(|l| l.contains("waiting for the lock"))
        .unwrap();
    assert!(
        line.contains("waiting for the lock of x held by deployment deploy_")
            && line.contains(" since "),
        "{line}"
    );

    // p and q are disjoint: they run at the same time.
    std::fs::remove_file(&times).unwrap();
    let c = spawn(runner(&w, &one, &url), &run_args(cfg, &["p"]));
    let d = spawn(runner(&w, &two, &url), &run_args(cfg, &["q"]));
    let (c, d) = (c.wait_with_output().unwrap(), d.wait_with_output().unwrap());
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(d.status.success(), "{}", stderr(&d));
    let disjoint: Vec<(f64, f64)> = intervals(&times).values().copied().collect();
    assert_eq!(disjoint.len(), 2);
    assert!(
        disjoint[0].0 < disjoint[1].1 && disjoint[1].0 < disjoint[0].1,
        "disjoint deployments did not overlap: {disjoint:?}"
    );
    assert!(
        !stderr(&c).contains("waiting for the lock"),
        "{}",
        stderr(&c)
    );
    assert!(
        !stderr(&d).contains("waiting for the lock"),
        "{}",
        stderr(&d)
    );

    // A third machine (no deployments of its own) sees all four.
    let listed = list(runner(&w, &three, &url));
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        listed.iter().all(|d| d["status"] == "succeeded"),
        "{listed:?}"
    );
    let mut services: Vec<String> = listed
        .iter()
        .map(|d| {
            d["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    services.sort();
    assert_eq!(services, ["p", "q", "x", "x+y"]);
    // The laptop's report of a CI runner's deployment: rebuilt from the
    // history (the report file is on the runner).
    let id = listed[0]["id"].as_str().unwrap();
    let o = output(runner(&w, &three, &url), &["report", id, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["deployment_summary"]["id"], id);
    assert!(
        report["decision_process"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["decision_type"] == "deployment_finished"),
        "{report}"
    );
    // Where the history lives.
    let o = output(runner(&w, &three, &url), &["model", "status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("history lives in: PostgreSQL postgres://postgres@127.0.0.1:"),
        "{}",
        stdout(&o)
    );
    assert!(!three.join("deployment_data/deployment_history.db").exists());
}

#[test]
fn a_run_that_cannot_get_the_lock_in_time_exits_75_naming_the_holder() {
    let url = database();
    let w = World::new();
    let (started, go) = (w.dir.path().join("started"), w.dir.path().join("go"));
    let services = format!(
        "  web:\n    deploy: 'touch {}; while [ ! -f {} ]; do sleep 0.05; done'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 60\n",
        started.display(),
        go.display()
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let holder = spawn(
        runner(&w, &w.dir.path().join("one"), &url),
        &run_args(cfg, &["web"]),
    );
    wait_for(&started, "the holder's deploy");
    let mut args = run_args(cfg, &["web"]);
    let n = args.len();
    args[n - 3] = "1s"; // --lock-timeout
    let refused = output(runner(&w, &w.dir.path().join("two"), &url), &args);
    std::fs::write(&go, "").unwrap();
    let holder = holder.wait_with_output().unwrap();
    assert!(holder.status.success(), "{}", stderr(&holder));

    assert_eq!(refused.status.code(), Some(75), "{}", stderr(&refused));
    let err = stderr(&refused);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        line.contains("staging: web is being deployed by deployment deploy_")
            && line.contains("raise --lock-timeout"),
        "{err}"
    );
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    // It waited, said so, and deployed nothing: only the holder's record.
    assert!(err.contains("waiting for the lock of web held by"), "{err}");
    assert_eq!(list(runner(&w, &w.dir.path().join("three"), &url)).len(), 1);
}

#[test]
fn a_runner_killed_while_holding_the_lock_is_recovered_from() {
    let url = database();
    let w = World::new();
    let (started, pgid) = (w.dir.path().join("started"), w.dir.path().join("pgid"));
    let services = format!(
        "  slow:\n    deploy: 'echo $$ > {}; touch {}; sleep 60'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 90\n",
        pgid.display(),
        started.display()
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let mut killed = runner(&w, &w.dir.path().join("one"), &url)
        .args(run_args(cfg, &["slow"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&started, "the deploy command");
    killed.kill().unwrap(); // SIGKILL, while it holds the lock
    killed.wait().unwrap();
    let group = std::fs::read_to_string(&pgid).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", group.trim())])
        .status();

    // Another runner deploys the same service: no lease to wait out.
    std::fs::remove_file(&started).unwrap();
    let services = services.replace("sleep 60", "true");
    let cfg = w.write_config(&services);
    let t = Instant::now();
    let next = output(
        runner(&w, &w.dir.path().join("two"), &url),
        &run_args(cfg.to_str().unwrap(), &["slow"]),
    );
    assert!(next.status.success(), "{}", stderr(&next));
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the next run waited for the dead one"
    );
    let listed = list(runner(&w, &w.dir.path().join("three"), &url));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["status"], "succeeded", "{listed:?}");
    assert_eq!(listed[1]["status"], "interrupted", "{listed:?}");
    assert!(
        listed[1]["summary"]
            .as_str()
            .unwrap()
            .contains("stopped before the deployment finished"),
        "{listed:?}"
    );
}

/// The records of one deployment as the history holds them, from a state
/// directory that never ran anything.
fn history_report(w: &World, url: &str, id: &str) -> serde_json::Value {
    let o = output(
        runner(w, &w.dir.path().join("reader"), url),
        &["report", id, "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn journal(state: &Path) -> PathBuf {
    state.join("deployment_data/history_journal.jsonl")
}

#[test]
fn postgresql_stopped_mid_run_the_run_finishes_and_its_records_arrive_once() {
    let server = PgServer::start();
    let database = format!("adeploy_mid_run_{}", std::process::id());
    server.admin_sql(&format!("CREATE DATABASE {database}"));
    let url = server.url(pg_server::SUPERUSER, None, &database);
    let w = World::new();
    let (started, go) = (w.dir.path().join("started"), w.dir.path().join("go"));
    let services = format!(
        "  api:\n    deploy: 'touch {}; while [ ! -f {} ]; do sleep 0.05; done'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 60\n",
        started.display(),
        go.display()
    );
    let cfg = w.write_config(&services);
    let cfg = cfg.to_str().unwrap();
    let state = w.dir.path().join("runner");

    // 1. Stopped while the deploy runs; brought back; `state sync`.
    let run = spawn(runner(&w, &state, &url), &run_args(cfg, &["api"]));
    wait_for(&started, "the deploy command");
    server.stop();
    std::fs::write(&go, "").unwrap();
    let run = run.wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "the deployment must finish as planned: {}",
        stderr(&run)
    );
    let err = stderr(&run);
    assert!(
        err.contains("is unreachable;") && err.contains("adeploy state sync"),
        "{err}"
    );
    assert!(journal(&state).exists());
    let report_file: serde_json::Value = {
        let dir = state.join("deployment_reports");
        let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
        serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap()
    };
    let id = report_file["deployment_summary"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        report_file["decision_process"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["decision_type"] == "lock_lost"),
        "the lost lock is in the decision log"
    );

    server.restart();
    let o = output(runner(&w, &state, &url), &["state", "sync"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("sent "), "{}", stdout(&o));
    assert!(!journal(&state).exists());
    let listed = list(runner(&w, &w.dir.path().join("reader"), &url));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "succeeded");
    // Every decision arrived, once, in order: the history's decision log is
    // the report file's.
    let rebuilt = history_report(&w, &url, &id);
    assert_eq!(rebuilt["decision_process"], report_file["decision_process"]);
    // A second sync has nothing to send and doubles nothing.
    let o = output(runner(&w, &state, &url), &["state", "sync"]);
    assert!(stdout(&o).starts_with("sent 0 "), "{}", stdout(&o));
    assert_eq!(
        history_report(&w, &url, &id)["decision_process"],
        report_file["decision_process"]
    );

    // 2. Stopped again; this time the next run sends the records.
    std::fs::remove_file(&started).unwrap();
    std::fs::remove_file(&go).unwrap();
    let run = spawn(runner(&w, &state, &url), &run_args(cfg, &["api"]));
    wait_for(&started, "the second deploy command");
    server.stop();
    std::fs::write(&go, "").unwrap();
    let run = run.wait_with_output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(journal(&state).exists());
    server.restart();
    let next = output(runner(&w, &state, &url), &run_args(cfg, &["api"]));
    assert!(next.status.success(), "{}", stderr(&next));
    assert!(!journal(&state).exists());
    let listed = list(runner(&w, &w.dir.path().join("reader"), &url));
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().all(|d| d["status"] == "succeeded"),
        "{listed:?}"
    );
}

/// The lines of an export file.
fn export(c: Command, file: &Path) -> Vec<u8> {
    let o = output(c, &["state", "export", "--output", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(file).unwrap()
}

fn some_deployments(w: &World, state: &Path) {
    let cfg = w.write_config(
        &(w.service("api", &[], "{command: 'true'}")
            + &w.service("web", &["api"], "{command: 'false'}")
                .replace("timeout_s: 20", "timeout_s: 1")),
    );
    let cfg = cfg.to_str().unwrap();
    for services in [&["api"][..], &["api", "web"], &["api"]] {
        let mut args = vec![
            "run",
            "--config",
            cfg,
            "--environment",
            "staging",
            "--services",
        ];
        args.extend_from_slice(services);
        let o = adeploy(&args, w.dir.path(), state);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn export_import_round_trips_every_record_byte_for_byte_between_backends() {
    let w = World::new();
    let local = w.dir.path().join("local");
    some_deployments(&w, &local);
    let first = export(
        adeploy_command(w.dir.path(), &local),
        &w.dir.path().join("a.jsonl"),
    );
    let lines = String::from_utf8(first.clone()).unwrap();
    assert!(lines.starts_with("{\"format\":\"adeploy-history\",\"version\":1}\n"));
    assert_eq!(lines.matches("\"type\":\"deployment\"").count(), 3);
    assert!(
        lines.matches("\"type\":\"decision\"").count() > 30,
        "{lines}"
    );
    assert!(lines.contains("\"type\":\"sample\""));

    // Into PostgreSQL, and back out.
    let url = database();
    let o = output(
        runner(&w, &w.dir.path().join("ci"), &url),
        &[
            "state",
            "import",
            w.dir.path().join("a.jsonl").to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["records"]["deployments"], 3);
    let second = export(
        runner(&w, &w.dir.path().join("ci"), &url),
        &w.dir.path().join("b.jsonl"),
    );
    assert!(
        first == second,
        "the PostgreSQL export differs from the redb one"
    );
    // Importing again doubles nothing.
    let o = output(
        runner(&w, &w.dir.path().join("ci"), &url),
        &[
            "state",
            "import",
            w.dir.path().join("b.jsonl").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        export(
            runner(&w, &w.dir.path().join("ci"), &url),
            &w.dir.path().join("c.jsonl")
        ) == first
    );
    // And into a fresh redb history, from standard input.
    let fresh = w.dir.path().join("fresh");
    let mut child = adeploy_command(w.dir.path(), &fresh)
        .args(["state", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(&second).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        export(
            adeploy_command(w.dir.path(), &fresh),
            &w.dir.path().join("d.jsonl")
        ) == first
    );
    // To standard output: the same bytes.
    let o = adeploy(&["state", "export"], w.dir.path(), &local);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == first);
    assert!(
        stderr(&o).contains("exported: 3 deployment(s)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_import_file_is_named_and_exits_2() {
    let w = World::new();
    let file = w.dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        "{\"format\":\"adeploy-history\",\"version\":1}\n{\"type\":\"deployment\",\"record\":42}\n",
    )
    .unwrap();
    let o = adeploy(
        &["state", "import", file.to_str().unwrap()],
        w.dir.path(),
        &w.state(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.jsonl:2:"), "{}", stderr(&o));
    // Refused whole: no history was even created.
    assert!(!w.state().join("deployment_data").exists());
    let missing = w.dir.path().join("nope.jsonl");
    let o = adeploy(
        &["state", "import", missing.to_str().unwrap()],
        w.dir.path(),
        &w.state(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nope.jsonl: cannot read"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn migrate_to_postgresql_then_list_against_the_url_shows_the_same() {
    let w = World::new();
    let local = w.dir.path().join("local");
    some_deployments(&w, &local);
    let url = database();
    let o = adeploy(&["state", "migrate", "--to", &url], w.dir.path(), &local);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("migrated: 3 deployment(s)"),
        "{}",
        stdout(&o)
    );
    let before = list(adeploy_command(w.dir.path(), &local));
    let after = list(runner(&w, &w.dir.path().join("elsewhere"), &url));
    assert_eq!(before.len(), 3);
    assert_eq!(before, after);
    // Twice is the same as once.
    let o = adeploy(&["state", "migrate", "--to", &url], w.dir.path(), &local);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        list(runner(&w, &w.dir.path().join("elsewhere"), &url)),
        before
    );
    // Nothing to migrate is bad input.
    let o = adeploy(
        &["state", "migrate", "--to", &url],
        w.dir.path(),
        &w.dir.path().join("empty"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no redb history to migrate"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_history_exits_2_naming_the_url_without_its_password() {
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ci:hunter2-secret@127.0.0.1:{port}/adeploy?sslmode=disable");
    let state = w.state();
    for args in [
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--environment",
            "staging",
        ][..],
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--dry-run",
        ],
        &["list"],
        &["state", "sync"],
    ] {
        let o = output(runner(&w, &state, &url), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(!err.contains("hunter2"), "{err}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
        assert!(
            line.contains(&format!(
                "postgres://ci:[redacted]@127.0.0.1:{port}/adeploy?sslmode=disable: cannot reach the history database"
            )),
            "{err}"
        );
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    // Nothing was deployed or written.
    assert!(w.order().is_empty());
    assert!(!state.join("deployment_data").exists());
}
