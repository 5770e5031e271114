//! Issue 12 through the `adeploy` binary: the hostile fixtures of
//! `tests/hostile/` in a `--plugins` dir, and what the operator sees —
//! exit code, the `error:` line, how much reaches stderr, how long the
//! process lives and its peak RSS (from `wait4`'s rusage of that one child).
//! The library-level checks of the same classes are in
//! host/tests/all/containment.rs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{World, adeploy_command};

/// What a finished `adeploy` did.
struct Measured {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set of the process, in KiB.
    peak_kib: u64,
    wall: Duration,
}

impl Measured {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The last line of stderr (the `error:` line on failure).
    fn last_error(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

/// Runs `cmd` to completion (killed after 60 s) and measures it.
fn measure(mut cmd: Command) -> Measured {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pid = i32::try_from(child.id()).unwrap();
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(Duration::from_secs(60)).is_err()
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    });
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of that plain C struct.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is this test's own child, not reaped yet (`child` is
    // never waited on); `status` and `usage` are valid for writes.
    #[allow(unsafe_code)]
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let _ = done.send(());
    watchdog.join().unwrap();
    assert_eq!(reaped, pid);
    drop(child);
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        peak_kib: u64::try_from(usage.ru_maxrss).unwrap(),
        wall,
    }
}

/// A world whose `plugins/` holds the hostile fixtures, and a config (one
/// service `api`, or `api` on `db`) with `plugins:` entries appended.
struct Setup {
    w: World,
    config: PathBuf,
    plugins: PathBuf,
}

impl Setup {
    fn new(entries: &str, extra: &str) -> Setup {
        Setup::with_services(entries, extra, false)
    }

    fn with_services(entries: &str, extra: &str, db: bool) -> Setup {
        let w = World::new();
        let plugins = w.dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for (src, name) in [
            (adeploy_fixtures::HOSTILE, "hostile.wasm"),
            (adeploy_fixtures::LIAR_DETECTOR, "liar-detector.wasm"),
        ] {
            std::fs::copy(src, plugins.join(name)).unwrap();
        }
        let services = if db {
            w.service("db", &[], "{command: 'true'}")
                + &w.service("api", &["db"], "{command: 'true'}")
        } else {
            w.service("api", &[], "{command: 'true'}")
        };
        let text = w
            .config_yaml(&services)
            .replace("plugins:\n", &format!("plugins:\n{entries}"))
            + extra;
        let config = w.dir.path().join("config.yaml");
        std::fs::write(&config, text).unwrap();
        Setup { w, config, plugins }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = adeploy_command(self.w.dir.path(), &self.w.state());
        c.args(args);
        c
    }

    /// `adeploy run` of `api` with the hostile strategy, in staging.
    fn run(&self, more: &[&str]) -> Measured {
        let mut args = vec![
            "run",
            "--config",
            self.config.to_str().unwrap(),
            "--plugins",
            self.plugins.to_str().unwrap(),
            "--strategy",
            "hostile",
            "--environment",
            "staging",
        ];
        args.extend_from_slice(more);
        measure(self.cmd(&args))
    }
}

fn hostile_entry(mode: &str) -> String {
    format!("  hostile: {{config: {{mode: {mode}}}}}\n")
}

const MIB: u64 = 1024;

// ---- 2. counts: the host's memory for any answer stays small ----------------

#[test]
fn answers_of_millions_of_empty_entries_keep_the_host_small() {
    let base = Setup::new(&hostile_entry("plain"), "").run(&["--dry-run", "--services", "api"]);
    assert_eq!(base.code, Some(0), "{}", base.text());
    // The guest's own memory (capped at 128 MiB) is part of the process;
    // what the host may add for the answer is bounded by 64 MiB. Before the
    // lift limit, 4 million empty notes took the host to ~930 MiB.
    let bound = base.peak_kib + 128 * MIB + 64 * MIB;
    for mode in ["empty-notes", "empty-waves", "many-steps"] {
        let m = Setup::new(&hostile_entry(mode), "").run(&["--dry-run", "--services", "api"]);
        assert_eq!(m.code, Some(1), "{mode}: {}", m.text());
        assert_eq!(
            m.last_error(),
            "error: plugin 'hostile' passed the host more than 1049600 bytes in plan (the most the host copies out of a plugin in one call); refused",
            "{mode}"
        );
        assert!(
            m.peak_kib < bound,
            "{mode}: {} KiB, bound {bound} KiB",
            m.peak_kib
        );
        assert!(m.wall < Duration::from_secs(5), "{mode}: {:?}", m.wall);
        assert!(
            m.stdout.len() + m.stderr.len() < 4096,
            "{mode}: nothing large printed"
        );
    }
    for mode in ["many-evidence", "many-notes"] {
        let s = Setup::new(
            &format!("  liar-detector: {{config: {{mode: {mode}}}}}\n"),
            "",
        );
        let m = measure(s.cmd(&[
            "run",
            "--config",
            s.config.to_str().unwrap(),
            "--plugins",
            s.plugins.to_str().unwrap(),
            "--services",
            "api",
            "--dry-run",
            "--json",
        ]));
        // A failing detector is noted; the others decide.
        assert_eq!(m.code, Some(0), "{mode}: {}", m.text());
        let v: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
        let env = v["report"]["decision_process"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["decision_type"] == "environment_detected")
            .unwrap()
            .clone();
        let notes = env["details"]["notes"].to_string();
        assert!(
            notes.contains(
                "plugin 'liar-detector' passed the host more than 1048576 bytes in detect"
            ),
            "{mode}: {notes}"
        );
        assert!(
            m.peak_kib < bound,
            "{mode}: {} KiB, bound {bound} KiB",
            m.peak_kib
        );
        assert!(m.stdout.len() < 64 * 1024, "{mode}: a small report");
    }
}

// ---- 3. flooding --------------------------------------------------------------

#[test]
fn floods_print_a_few_lines_and_one_summary() {
    for mode in ["log-flood", "deny-flood"] {
        let m = Setup::new(&hostile_entry(mode), "").run(&["--dry-run", "--services", "api"]);
        assert_eq!(m.code, Some(0), "{mode}: {}", m.text());
        assert!(
            m.stderr.len() < 16 * 1024,
            "{mode}: {} bytes on stderr",
            m.stderr.len()
        );
        let summaries: Vec<&str> = m
            .stderr
            .lines()
            .filter(|l| l.contains("lines of plugin output suppressed"))
            .collect();
        let other: Vec<&str> = m
            .stderr
            .lines()
            .filter(|l| !l.contains("flood line") && !l.contains("SECRET_TOKEN"))
            .collect();
        assert_eq!(
            summaries.len(),
            1,
            "{mode}: {summaries:?}; the rest of stderr: {other:#?}"
        );
        assert!(
            summaries[0].contains(
                "199980 lines of plugin output suppressed in this deployment (at most 20 per call and 200 in all are printed)"
            ),
            "{mode}: {}",
            summaries[0]
        );
        assert!(m.wall < Duration::from_secs(10), "{mode}: {:?}", m.wall);
    }
}

// ---- 4. nothing outlives the deadline ----------------------------------------

#[test]
fn a_fifo_under_a_granted_dir_does_not_hold_the_exit() {
    let s = Setup::new(
        "  hostile: {config: {mode: read, path: /granted/fifo}}\n",
        "",
    );
    // The plugin sees the world's root; `diagnostics --root` is the way to
    // give it one, `run` uses `/`. So the FIFO lives in a granted dir of the
    // real machine: a temp dir, granted by its own path.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let granted = dir.path().to_str().unwrap();
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("/granted/fifo", fifo.to_str().unwrap())
        .replace(
            "  hostile: {config:",
            &format!("  hostile: {{grants: {{paths: ['{granted}']}}, config:"),
        );
    std::fs::write(&s.config, text).unwrap();
    let m = s.run(&["--services", "api"]);
    assert!(m.wall < Duration::from_secs(5), "{:?}", m.wall);
    assert_eq!(m.code, Some(1), "{}", m.text());
    assert_eq!(
        m.last_error(),
        format!(
            "error: plugin 'hostile' refused in plan: read: err: Invalid(\"{}: not a regular file but a FIFO\")",
            fifo.display()
        )
    );
    assert!(s.w.order().is_empty());
}

#[test]
fn a_strategy_sleeping_or_spinning_is_cut_by_the_deployment_budget() {
    // `slow-progress` spins to its 2 s deadline on every progress event;
    // the deployment's plugin budget of 3 s covers them all.
    let s = Setup::new(
        &hostile_entry("slow-progress"),
        "plugin_defaults: {deployment_budget_ms: 3000}\n",
    );
    let m = s.run(&["--services", "api"]);
    assert!(m.wall < Duration::from_secs(10), "{:?}", m.wall);
    assert!(
        m.text()
            .contains("the deployment's plugin time budget of 3000 ms (plugin_defaults.deployment_budget_ms) is used up"),
        "{}",
        m.text()
    );
}

#[test]
fn twenty_four_looping_detectors_cost_one_budget() {
    let mut entries = String::new();
    let liar = PathBuf::from(adeploy_fixtures::LIAR_DETECTOR);
    for i in 0..24 {
        entries.push_str(&format!(
            "  loop{i}: {{path: {}, config: {{mode: loop}}}}\n",
            liar.display()
        ));
    }
    let s = Setup::new(&entries, "plugin_defaults: {deployment_budget_ms: 2500}\n");
    let m = measure(s.cmd(&[
        "run",
        "--config",
        s.config.to_str().unwrap(),
        "--services",
        "api",
        "--dry-run",
    ]));
    // 24 detectors, 8 at a time, 2 s each would be 6 s; the budget ends
    // them, and the plan finds it used up.
    assert!(m.wall < Duration::from_secs(5), "{:?}", m.wall);
    assert_eq!(m.code, Some(1), "{}", m.text());
    // (The strategy is whichever the detected environment selects.)
    let last = m.last_error();
    assert!(
        last.starts_with("error: plugin '")
            && last.ends_with("' was stopped in plan: the deployment's plugin time budget of 2500 ms (plugin_defaults.deployment_budget_ms) is used up"),
        "{last}"
    );
}

#[test]
fn pauses_are_capped_by_config() {
    let s = Setup::new(
        &hostile_entry("pause-max"),
        "plugin_defaults: {max_pause_s: 1}\n",
    );
    let m = s.run(&["--services", "api"]);
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert!(
        m.text()
            .contains("for 4294967295 s, capped at plugin_defaults.max_pause_s = 1 s"),
        "{}",
        m.text()
    );
    assert!(m.wall < Duration::from_secs(20), "{:?}", m.wall);
}

// ---- 9. describe, dependency order, commands that need no plugins -----------

#[test]
fn a_looping_describe_exits_2_naming_the_plugin_and_readers_do_not_load_plugins() {
    let s = Setup::new("  loop-describe: {config: {}}\n", "");
    std::fs::copy(
        adeploy_fixtures::LOOP_DESCRIBE,
        s.plugins.join("loop-describe.wasm"),
    )
    .unwrap();
    let m = s.run(&["--services", "api"]);
    assert_eq!(m.code, Some(2), "{}", m.text());
    assert_eq!(
        m.last_error(),
        "error: plugin 'loop-describe' exceeded its 2000 ms deadline in describe"
    );
    assert!(m.wall < Duration::from_secs(5), "{:?}", m.wall);
    // The config names a plugin only the --plugins dir has: list and audit
    // do not load plugins, so they neither fail nor wait.
    for cmd in [&["list"][..], &["audit"][..]] {
        let mut args = cmd.to_vec();
        args.extend(["--config", s.config.to_str().unwrap()]);
        let m = measure(s.cmd(&args));
        assert_eq!(m.code, Some(0), "{cmd:?}: {}", m.text());
        assert!(m.wall < Duration::from_secs(3), "{cmd:?}: {:?}", m.wall);
    }
}

#[test]
fn a_plan_deploying_a_dependent_first_deploys_nothing() {
    let s = Setup::with_services(&hostile_entry("dependent-first"), "", true);
    let m = s.run(&["--services", "api", "db"]);
    assert_eq!(m.code, Some(1), "{}", m.text());
    assert!(
        m.last_error()
            .ends_with(r#"wave 1 deploys "api" before its dependency "db" (wave 2)"#),
        "{}",
        m.last_error()
    );
    assert!(s.w.order().is_empty());
}

// ---- 6. terminal injection ------------------------------------------------------

/// No control character (but newline and tab), no C1, no bidi control.
fn assert_terminal_safe(text: &str, what: &str) {
    let bad = text.chars().find(|c| {
        (c.is_control() && *c != '\n' && *c != '\t')
            || matches!(*c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    });
    assert!(bad.is_none(), "{what}: {bad:?} in {text:?}");
}

const ESCAPED: &str = r"\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}evil\u{7}";
const RAW: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}evil\u{7}";

#[test]
fn plugin_text_reaches_the_terminal_escaped_and_json_exact() {
    let s = Setup::new(&hostile_entry("escape"), "");
    let dir = s.plugins.to_str().unwrap();
    // describe text, in plugins list and inspect
    let m = measure(s.cmd(&["plugins", "list", "--plugins", dir]));
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert_terminal_safe(&m.text(), "plugins list");
    let liar = s.plugins.join("liar-detector.wasm");
    let m = measure(s.cmd(&["plugins", "inspect", liar.to_str().unwrap()]));
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert_terminal_safe(&m.text(), "plugins inspect");
    assert!(m.stdout.contains(ESCAPED), "{}", m.stdout);
    let m = measure(s.cmd(&["plugins", "inspect", "--json", liar.to_str().unwrap()]));
    let v: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    assert!(
        v["description"].as_str().unwrap().contains(RAW),
        "--json is exact: {v}"
    );
    // plan notes (dry run), the rollback reason (run), the report
    let m = s.run(&["--services", "api", "--dry-run"]);
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert_terminal_safe(&m.text(), "run --dry-run");
    assert!(
        m.stdout.contains(&format!("note {ESCAPED} end")),
        "{}",
        m.stdout
    );
    let m = s.run(&["--services", "api"]);
    assert_terminal_safe(&m.text(), "run");
    assert!(
        m.text().contains(&format!("reason {ESCAPED} end")),
        "{}",
        m.text()
    );
    let id = m
        .text()
        .split_whitespace()
        .find(|w| w.starts_with("deploy_"))
        .unwrap()
        .to_string();
    let m = measure(s.cmd(&["report", &id, "--config", s.config.to_str().unwrap()]));
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert_terminal_safe(&m.text(), "report");
    assert!(m.text().contains(ESCAPED), "{}", m.text());
    // the error line
    let s = Setup::new(&hostile_entry("refuse-escape"), "");
    let m = s.run(&["--services", "api"]);
    assert_eq!(m.code, Some(1), "{}", m.text());
    assert_terminal_safe(&m.text(), "error line");
    assert_eq!(
        m.last_error(),
        format!("error: plugin 'hostile' refused in plan: no {ESCAPED} end")
    );
    // detector evidence and notes, in diagnostics
    let s = Setup::new("  liar-detector: {config: {mode: escape}}\n", "");
    let m = measure(s.cmd(&[
        "diagnostics",
        "--config",
        s.config.to_str().unwrap(),
        "--plugins",
        s.plugins.to_str().unwrap(),
    ]));
    assert_terminal_safe(&m.text(), "diagnostics");
    assert!(m.text().contains(ESCAPED), "{}", m.text());
}

// ---- 1. overrides: same kind, announced, forbiddable ---------------------------

#[test]
fn overrides_are_announced_of_the_same_kind_and_can_be_forbidden() {
    let s = Setup::new("", "");
    let ov = s.w.dir.path().join("ov");
    std::fs::create_dir_all(&ov).unwrap();
    std::fs::copy(adeploy_fixtures::LIAR_DETECTOR, ov.join("detector.wasm")).unwrap();
    let dir = ov.to_str().unwrap();
    let cfg = s.config.to_str().unwrap();
    let m = measure(s.cmd(&["plugins", "list", "--config", cfg, "--plugins", dir]));
    assert_eq!(m.code, Some(0), "{}", m.text());
    assert!(
        m.stdout.contains(&format!(
            "detector: {}/detector.wasm replaces the built-in detector",
            dir
        )),
        "{}",
        m.stdout
    );
    let m = measure(s.cmd(&[
        "run",
        "--config",
        cfg,
        "--plugins",
        dir,
        "--services",
        "api",
        "--dry-run",
    ]));
    assert_eq!(m.code, Some(0), "{}", m.text());
    let text = m.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning: the built-in detector plugin 'detector' is replaced by"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", m.text());
    // Forbidden by config.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap() + "plugin_defaults: {allow_overrides: false}\n",
    )
    .unwrap();
    let m = measure(s.cmd(&[
        "run",
        "--config",
        cfg,
        "--plugins",
        dir,
        "--services",
        "api",
    ]));
    assert_eq!(m.code, Some(2), "{}", m.text());
    assert_eq!(
        m.last_error(),
        format!(
            "error: plugin 'detector' ({dir}/detector.wasm) would replace the built-in detector plugin, but plugin_defaults.allow_overrides is false"
        )
    );
    // Of another kind.
    let s = Setup::new("", "");
    std::fs::copy(adeploy_fixtures::HOSTILE, ov.join("detector.wasm")).unwrap();
    let m = measure(s.cmd(&[
        "run",
        "--config",
        s.config.to_str().unwrap(),
        "--plugins",
        dir,
        "--services",
        "api",
    ]));
    assert_eq!(m.code, Some(2), "{}", m.text());
    assert_eq!(
        m.last_error(),
        format!(
            "error: plugin 'detector' ({dir}/detector.wasm) is a strategy plugin, but it would replace the built-in detector plugin 'detector': an override must be of the same kind"
        )
    );
    assert!(s.w.order().is_empty());
}

// ---- 5. diagnostics --root ------------------------------------------------------

#[test]
fn diagnostics_root_follows_absolute_links_inside_the_image() {
    // The image: /var/run -> /run, and the Kubernetes service account only
    // under the image's /run. The built-in detector's marker
    // /var/run/secrets/kubernetes.io/serviceaccount must be found through
    // the image's link, inside the image.
    let img = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(img.path().join("run/secrets/kubernetes.io/serviceaccount")).unwrap();
    std::fs::create_dir_all(img.path().join("var")).unwrap();
    std::os::unix::fs::symlink("/run", img.path().join("var/run")).unwrap();
    let w = World::new();
    let m = measure({
        let mut c = adeploy_command(w.dir.path(), &w.state());
        c.args([
            "diagnostics",
            "--json",
            "--root",
            img.path().to_str().unwrap(),
        ]);
        c
    });
    let v: serde_json::Value =
        serde_json::from_str(&m.stdout).unwrap_or_else(|e| panic!("{e}: {}", m.text()));
    let evidence = v["environment"]["evidence"].to_string();
    assert!(
        evidence.contains("/var/run/secrets/kubernetes.io/serviceaccount"),
        "{evidence}"
    );
    assert_eq!(v["environment"]["environment"], "production", "{v}");
}
