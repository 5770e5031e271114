//! Output a person reads (issue 13, item 9): decisions as sentences in
//! `run` and `report` (JSON only with `--json`), no Rust `Debug` strings
//! (`rollbackscope::failed`, `Decision::Pause(30)`), a failed deployment
//! never graded "good", waves from 1, the spinner never over the
//! `--interactive` prompt, and the wide-state-dir warning said once.

use std::io::{Read, Write};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{World, adeploy};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What no human rendering may contain: JSON objects and `Debug` forms of
/// the WIT types and the decision enum.
fn assert_readable(text: &str) {
    for bad in [
        "{\"",
        "::",
        "Pause(",
        "Rollback(",
        "Abort(",
        "StepFailed",
        "wave 0",
    ] {
        assert!(!text.contains(bad), "{bad:?} in:\n{text}");
    }
}

#[test]
fn run_and_report_print_decisions_as_sentences_and_grade_a_failure_as_failed() {
    let w = World::new();
    let ok = w.service("api", &[], "{command: 'true'}");
    let bad = w
        .service("web", &["api"], "{command: 'false'}")
        .replace("timeout_s: 20", "timeout_s: 1");
    let cfg = w.write_config(&(ok + &bad));
    let cfg = cfg.to_str().unwrap();
    let state = w.state();
    let cwd = w.dir.path();
    let run = |services: &[&str]| {
        let mut args = vec![
            "run",
            "--config",
            cfg,
            "--strategy",
            "balanced",
            "--environment",
            "staging",
            "--services",
        ];
        args.extend_from_slice(services);
        adeploy(&args, cwd, &state)
    };
    // Two quick successes make a benchmark a failure would beat on time.
    for _ in 0..2 {
        assert_eq!(run(&["api"]).status.code(), Some(0));
    }
    let o = run(&["api", "web"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let progress = stderr(&o);
    assert!(
        progress.contains("decision: environment staging (from --environment)"),
        "{progress}"
    );
    assert!(
        progress.contains("decision: strategy balanced, named by the operator"),
        "{progress}"
    );
    assert!(progress.contains("wave 1/"), "{progress}");
    assert_readable(&progress);
    let summary = stdout(&o);
    assert!(summary.contains("  performance: failed"), "{summary}");
    assert!(!summary.contains("performance: good"), "{summary}");
    assert!(summary.contains("  wave 1 "), "{summary}");
    assert_readable(&summary);

    let list: serde_json::Value =
        serde_json::from_slice(&adeploy(&["list", "--json"], cwd, &state).stdout).unwrap();
    let id = list["deployments"][0]["id"].as_str().unwrap().to_string();
    let o = adeploy(&["report", &id], cwd, &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_readable(&text);
    for line in [
        "environment staging (from --environment)",
        "strategy balanced, named by the operator",
        "wave 2: web failed in ",
        "rolling back ",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(
        text.contains("rollback scope all") || text.contains("rollback scope failed"),
        "the plan's scope in words:\n{text}"
    );
    // --json keeps the typed log.
    let o = adeploy(&["report", &id, "--json"], cwd, &state);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["performance_analysis"]["duration_performance"], "failed",
        "{}",
        v["performance_analysis"]
    );
    assert!(v["decision_process"][0]["details"].is_object());
}

/// Regression: the progress spinner redrew itself over the `--interactive`
/// question while it waited for an answer. Run on a pseudo-terminal
/// (`script` from util-linux), answer after a second, and look at what was
/// drawn between the question and the answer.
#[test]
fn the_spinner_stays_off_the_interactive_prompt() {
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let state = w.state();
    let cmd = format!(
        "{} --config {} run --services api --environment development --interactive",
        env!("CARGO_BIN_EXE_adeploy"),
        cfg.display()
    );
    let mut script = std::process::Command::new("script")
        .current_dir(w.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("TERM", "xterm")
        .env("ADEPLOY_CACHE_DIR", crate::common::cache_dir())
        .env("ADEPLOY_STATE_DIR", &state)
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("`script` (util-linux) is needed; .ci/run installs bsdutils");
    let mut out = script.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let question = "Deploy with this plan?";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains(question) {
        assert!(Instant::now() < deadline, "no prompt within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ten spinner ticks' worth of waiting.
    std::thread::sleep(Duration::from_millis(1200));
    script.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let status = script.wait().unwrap();
    reader.join().unwrap();
    let transcript = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert_eq!(status.code(), Some(1), "declined: {transcript}");
    let asked = transcript.find(question).unwrap();
    let answered = transcript[asked + question.len()..]
        .find(question)
        .map(|i| asked + question.len() + i)
        .unwrap_or_else(|| panic!("the answer is not echoed: {transcript:?}"));
    let between = &transcript[asked..answered];
    assert!(
        !between.contains(" steps · ")
            && !between
                .chars()
                .any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
        "the spinner drew while the question was open: {between:?}"
    );
    assert!(transcript.contains("deployment cancelled: nothing was deployed"));
    assert!(w.order().is_empty(), "nothing deployed");
}

/// The warning about a state directory others can enter is printed once,
/// as the CLI's own line (it was a tracing log line, in the middle of the
/// progress).
#[test]
fn a_wide_state_dir_is_warned_about_once() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let cfg = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let state = w.state();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = adeploy(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--services",
            "api",
            "--environment",
            "development",
        ],
        w.dir.path(),
        &state,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("is open to other users"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(
        lines[0],
        format!(
            "warning: state directory {} is open to other users (mode 0755); it holds deployment logs and the audit log: run `chmod 700 {}`",
            state.display(),
            state.display()
        )
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o755,
        "reported, not changed"
    );
}
