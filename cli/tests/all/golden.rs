//! Golden files of what the `adeploy` binary prints: the human output of
//! `run` (a success and a rollback), `report`, `list`, `history`,
//! `diagnostics`, `plugins list`, `plugins inspect`, `model status` and
//! `audit`; every `--json` document of the same commands; the main error
//! messages with their exit codes. The files live in `tests/golden/cli/` at
//! the repository's root (beside the report renderings in
//! `tests/golden/reports/`).
//!
//! `BLESS=1 cargo test -p adeploy-cli --test all golden::` rewrites them;
//! read the diff before committing it. A plain equality check with our own
//! switch rather than insta: the repository already blesses its report
//! goldens this way, the files stay plain text a reviewer reads in a diff,
//! and no `cargo insta` tool is needed on the CI machine.
//!
//! What differs between runs is normalised before the comparison, and only
//! that: deployment ids (`[ID1]`, `[ID2]` in order of appearance), log file
//! names, timestamps and clock times, the temporary directory (`[DIR]`),
//! measured durations (decimals with a unit; configured ones are integers
//! and stay), measured percentages, the machine's figures (CPU, memory,
//! disk, load, processes, bytes), plugin digests, the process-tracking mode
//! and load outcomes that depend on the machine or the component cache. In
//! JSON documents the same is done by key (see [`VOLATILE_NUMBERS`] and
//! friends); lists whose length depends on timing keep their first element.
//! Human output has runs of spaces collapsed to two, since a normalised
//! figure changes the width of its table column.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::common::{World, adeploy_command, golden};

/// One command's result: what it printed and how it exited.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `adeploy ARGS` in `w` (its dir as cwd, its state dir).
fn run(w: &World, args: &[&str]) -> Ran {
    run_in(w.dir.path(), &w.state(), args)
}

fn run_in(cwd: &Path, state: &Path, args: &[&str]) -> Ran {
    let o: Output = adeploy_command(cwd, state)
        .env("NO_COLOR", "1")
        // On GitHub Actions `run` would append to the job's step summary.
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(args)
        .output()
        .unwrap();
    Ran {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Rewrites what differs between runs (see the module docs).
struct Normaliser {
    dir: String,
    ids: Vec<String>,
}

static DEPLOY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"deploy_\d{10,}_[0-9a-f]{4}").unwrap());

/// (pattern, replacement), applied in order after ids and the directory.
static TEXT_RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\x1b\[[0-9;]*m", ""),
        // Log file names: deploy_20261130_053755.log, _2 for a second one
        // in the same second.
        (r"deploy_\d{8}_\d{6}(_\d+)?", "deploy_[STAMP]"),
        // RFC 3339 and the tables' dates.
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[TIME]",
        ),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", "[TIME]"),
        (r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b", "[CLOCK]"),
        // Digests: 64 hex (JSON) or the 12 a table shows.
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{12}\b", "[SHA]"),
        // Measured durations carry decimals; configured ones are integers.
        (r"\b\d+\.\d+ ?(ms|s|min)\b", "[DUR]"),
        // Measured percentages and points.
        (r"[+-]?\b\d+\.\d+%", "[PCT]"),
        (r"[+-]\d+\.\d+ points", "[N] points"),
        (r"[+-]\d+\.\d+,", "[N],"),
        (r"\b\d+\.\d+ MB\b", "[MB]"),
        (r"\(\d+ bytes\)", "([BYTES])"),
        (r"\b\d+ bytes\b", "[N] bytes"),
        // The diagnostics' threshold table: the VALUE column is this machine's.
        (r"(thresholds\.\w+ +)\d+\.\d+", "${1}[N]"),
        (
            r"\bperformance: \w+ \(benchmark",
            "performance: [PERF] (benchmark",
        ),
        (r"\bload \d+\.\d+( \d+\.\d+ \d+\.\d+)?", "load [LOAD]"),
        (
            r"\bmode (cgroup|process_tree|process-tree), path \S+",
            "mode [TRACKING]",
        ),
        (
            r"\bmode (cgroup|process_tree|process-tree)\b",
            "mode [TRACKING]",
        ),
        (
            r"\bsystem impact: (low|medium|high)\b",
            "system impact: [IMPACT]",
        ),
        (r"\b(cached|compiled)\b", "[LOADED]"),
        (r"\b\d+ (processes|samples)\b", "[N] $1"),
        (r"\(CPU: [^)]*\)+", "(CPU: [BASIS])"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).unwrap(), r))
    .collect()
});

/// Sentences of a report that follow from this machine's load or speed
/// (lessons and recommendations): dropped from text and from JSON lists.
static MACHINE_SENTENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"the machine's load rose|loaded the machine heavily|against a benchmark of|investigate what slowed",
    )
    .unwrap()
});

/// Lines of the diagnostics about the machine itself: every number in them
/// is this machine's.
static MACHINE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(system: |  memory |  disk I/O: |  network latency: \d)").unwrap()
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(\.\d+)?").unwrap());
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"  +").unwrap());

impl Normaliser {
    fn new(dir: &Path) -> Normaliser {
        // Canonical and as given: a temp dir may sit under a symlink.
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        Normaliser {
            dir: dir.display().to_string(),
            ids: Vec::new(),
        }
    }

    /// Ids, the directory and the [`TEXT_RULES`] in a string.
    fn string(&mut self, s: &str) -> String {
        let mut out = s.replace(&self.dir, "[DIR]");
        for m in DEPLOY_ID.find_iter(s) {
            if !self.ids.iter().any(|id| id == m.as_str()) {
                self.ids.push(m.as_str().to_string());
            }
        }
        for (i, id) in self.ids.iter().enumerate() {
            out = out.replace(id, &format!("[ID{}]", i + 1));
        }
        for (re, with) in TEXT_RULES.iter() {
            out = re.replace_all(&out, *with).into_owned();
        }
        out
    }

    /// A human rendering, line by line (see the module docs).
    fn text(&mut self, s: &str) -> String {
        s.lines()
            .filter(|line| !MACHINE_SENTENCE.is_match(line))
            .map(|line| {
                let line = if MACHINE_LINE.is_match(line) {
                    NUMBER.replace_all(line, "[N]").into_owned()
                } else {
                    line.to_string()
                };
                let line = self.string(&line);
                SPACES.replace_all(line.trim_end(), "  ").into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// A JSON document, pretty-printed after normalisation by key.
    fn json(&mut self, s: &str) -> String {
        let v: Value = serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: not JSON:\n{s}"));
        serde_json::to_string_pretty(&self.value(v, "")).unwrap() + "\n"
    }

    fn value(&mut self, v: Value, key: &str) -> Value {
        if SHAPE_ONLY.contains(&key) {
            return shape(&v);
        }
        match v {
            Value::Number(_) if VOLATILE_NUMBERS.contains(&key) => Value::from("[N]"),
            Value::String(_) if VOLATILE_STRINGS.contains(&key) => Value::from("[MACHINE]"),
            Value::String(s) => Value::String(self.string(&s)),
            Value::Array(items) if TIMED_LISTS.contains(&key) => {
                let first = items.into_iter().next();
                Value::Array(first.map(|x| self.value(x, "")).into_iter().collect())
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .filter(|x| !x.as_str().is_some_and(|s| MACHINE_SENTENCE.is_match(s)))
                    .map(|x| self.value(x, key))
                    .collect(),
            ),
            Value::Object(map) if is_tracking(&map) => {
                serde_json::json!({"mode": "[TRACKING]"})
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, x)| {
                        let x = self.value(x, &k);
                        (k, x)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Values that describe the machine, or that bucket by the clock: kept as
/// their shape only (every number `[N]`, every string `[S]`, every list its
/// first element's shape).
const SHAPE_ONLY: &[&str] = &[
    "system",
    "snapshot",
    "metrics",
    "cpu_basis",
    "load_average",
    "own_processes",
    "process_usage",
    "system_impact",
    // What `state export` counted: decisions and samples follow the timing.
    "records",
    "failures_by_hour",
    "buckets",
    "volume",
];

/// Numbers measured on this machine or at this moment.
const VOLATILE_NUMBERS: &[&str] = &[
    "duration_minutes",
    "duration_s",
    "seconds",
    "cpu_seconds",
    "actual_duration",
    "benchmark_duration",
    "predicted_duration",
    "prediction_error",
    "duration_variance",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load_per_core",
    "baseline_cpu_percent",
    "baseline_memory_percent",
    "peak_cpu_percent",
    "peak_memory_percent",
    "cpu_impact_percent",
    "memory_impact_percent",
    "mean_cpu_percent",
    "rss_bytes",
    "processes",
    "pid",
    "database_bytes",
    "db_bytes",
    "load_micros",
    "micros",
    "elapsed_ms",
    "span_s",
    "samples_in_window",
    "value",
    "size_bytes",
    "size",
    "bucket_s",
    "median_s",
    // The learning features of a record: the clock and measured durations.
    "hour",
    "weekday",
    "mean_duration_min",
];

/// Words that follow from this machine's figures or its component cache.
const VOLATILE_STRINGS: &[&str] = &["overall_impact", "duration_performance", "outcome"];

/// Lists whose length depends on timing (samples taken while it ran).
const TIMED_LISTS: &[&str] = &["resource_samples", "samples", "evidence_samples"];

/// A process-tracking mode (`{mode: cgroup, path}` or `{mode:
/// process_tree}`): which one is this machine's business.
fn is_tracking(map: &serde_json::Map<String, Value>) -> bool {
    matches!(
        map.get("mode").and_then(Value::as_str),
        Some("cgroup" | "process_tree")
    )
}

/// A value's shape: numbers `[N]`, strings `[S]`, lists their first element.
fn shape(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::from("[N]"),
        Value::String(_) => Value::from("[S]"),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, x)| (k.clone(), shape(x))).collect())
        }
        other => other.clone(),
    }
}

/// `$ adeploy ARGS`, the exit code, stdout and stderr, normalised as text.
fn transcript(n: &mut Normaliser, args: &[&str], r: &Ran) -> String {
    let code = r.code.map_or("signal".to_string(), |c| c.to_string());
    let mut out = format!("$ adeploy {}\nexit {code}\n", n.string(&args.join(" ")));
    if !r.stdout.is_empty() {
        out.push_str("--- stdout\n");
        out.push_str(&n.text(&r.stdout));
    }
    if !r.stderr.is_empty() {
        out.push_str("--- stderr\n");
        out.push_str(&n.text(&r.stderr));
    }
    out
}

/// Two services, `db` then `api` (which depends on it), deployed by `true`;
/// `api`'s health check is `api_health`.
fn world(api_health: &str) -> (World, PathBuf) {
    let w = World::new();
    let services = format!(
        "  db:\n    deploy: 'true'\n    rollback: 'true'\n    health: {{command: 'true'}}\n    timeout_s: 20\n\
         \x20 api:\n    deploy: 'true'\n    rollback: 'true'\n    depends_on: [db]\n    health: {{command: '{api_health}'}}\n    timeout_s: 20\n"
    );
    // No process patterns: what runs on the test machine does not count.
    let cfg = w.write_config_with(
        &services,
        "environment_detection:\n  process_patterns: {development: []}\n",
    );
    (w, cfg)
}

fn the_id(r: &Ran) -> String {
    let v: Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    v["report"]["deployment_summary"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A successful run in a fresh state dir, and every command that reads it.
#[test]
fn a_successful_run_and_what_reads_it() {
    let (w, cfg) = world("true");
    let cfg = cfg.to_str().unwrap();
    let mut n = Normaliser::new(w.dir.path());
    let run_args = [
        "--config",
        cfg,
        "run",
        "--services",
        "api",
        "db",
        "--environment",
        "staging",
        "--strategy",
        "balanced",
    ];
    let first = run(&w, &run_args);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    golden("cli/run.txt", &transcript(&mut n, &run_args, &first));

    // The same run again, as JSON (the second deployment in this history).
    let json_args: Vec<&str> = run_args.iter().copied().chain(["--json"]).collect();
    let second = run(&w, &json_args);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let id = the_id(&second);
    golden("cli/run.json", &n.json(&second.stdout));

    let with_config = |args: &[&str]| -> Vec<String> {
        ["--config", cfg]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("report", with_config(&["report", &id])),
        ("list", with_config(&["list"])),
        ("history", with_config(&["history"])),
        ("model-status", with_config(&["model", "status"])),
        ("audit", with_config(&["audit"])),
    ];
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&w, &args);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        golden(&format!("cli/{name}.txt"), &transcript(&mut n, &args, &r));
        let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let r = run(&w, &json);
        assert_eq!(r.code, Some(0), "{name} --json: {}", r.stderr);
        assert!(r.stderr.is_empty(), "{name} --json: {}", r.stderr);
        golden(&format!("cli/{name}.json"), &n.json(&r.stdout));
    }

    // The JSON-only results of commands that change something.
    let export = w.dir.path().join("history.jsonl");
    let project = w.dir.path().join("demo-hook");
    let changes: Vec<(&str, Vec<String>)> = vec![
        (
            "state-export",
            with_config(&["state", "export", "-o", export.to_str().unwrap(), "--json"]),
        ),
        ("model-reset", with_config(&["model", "reset", "--json"])),
        (
            "plugins-new",
            [
                "plugins",
                "new",
                "demo-hook",
                "--kind",
                "hook",
                "--lang",
                "rust",
                "--dir",
                project.to_str().unwrap(),
                "--json",
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    for (name, args) in &changes {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&w, &args);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        golden(&format!("cli/{name}.json"), &n.json(&r.stdout));
    }
}

/// A run whose second service fails its health check: the failure, the
/// rollback, exit 1, and its report.
#[test]
fn a_failed_run_rolls_back() {
    let (w, cfg) = world("false");
    let cfg = cfg.to_str().unwrap();
    let mut n = Normaliser::new(w.dir.path());
    let args = [
        "--config",
        cfg,
        "run",
        "--services",
        "api",
        "db",
        "--environment",
        "staging",
        "--strategy",
        "balanced",
    ];
    let r = run(&w, &args);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    golden("cli/run-failed.txt", &transcript(&mut n, &args, &r));
    let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let r = run(&w, &json);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let id = the_id(&r);
    golden("cli/run-failed.json", &n.json(&r.stdout));
    let args = ["--config", cfg, "report", &id];
    let r = run(&w, &args);
    golden("cli/report-failed.txt", &transcript(&mut n, &args, &r));
}

/// `diagnostics` of a known machine (an empty `--root`, a staging host name)
/// and the plugins, text and JSON.
#[test]
fn diagnostics_and_plugins() {
    let (w, cfg) = world("true");
    let cfg = cfg.to_str().unwrap();
    let root = w.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();
    let mut n = Normaliser::new(w.dir.path());
    let echo = adeploy_fixtures::ECHO;
    let fixtures = Path::new(echo)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "diagnostics",
            vec![
                "--config",
                cfg,
                "diagnostics",
                "--root",
                root,
                "--hostname",
                "web-staging-1",
            ],
        ),
        ("plugins-list", vec!["--config", cfg, "plugins", "list"]),
        ("plugins-inspect", vec!["plugins", "inspect", echo]),
    ];
    for (name, args) in &cases {
        let r = run(&w, args);
        assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        let text = transcript(&mut n, args, &r).replace(&fixtures, "[FIXTURES]");
        golden(&format!("cli/{name}.txt"), &text);
        let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let r = run(&w, &json);
        assert_eq!(r.code, Some(0), "{name} --json: {}", r.stderr);
        let doc = n.json(&r.stdout).replace(&fixtures, "[FIXTURES]");
        golden(&format!("cli/{name}.json"), &doc);
    }
}

/// The main error messages: one line on stderr naming what is wrong and
/// what to do, exit 2 for bad input; nothing on stdout.
#[test]
fn error_messages() {
    let (w, cfg) = world("true");
    let dir = w.dir.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cfg = cfg.to_str().unwrap().to_string();
    let bad_yaml = write("bad-yaml.yaml", "thresholds: ]\n");
    let unknown_key = write("unknown-key.yaml", "thresholds:\n  hgih_cpu: 50\n");
    let bad_value = write("bad-value.yaml", "thresholds:\n  high_cpu: lots\n");
    let not_wasm = write("not-wasm.wasm", "hello");
    let missing = dir.join("missing.yaml").to_str().unwrap().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--config", &missing, "list"],
        vec!["--config", &bad_yaml, "list"],
        vec!["--config", &unknown_key, "list"],
        vec!["--config", &bad_value, "list"],
        vec!["--config", &cfg, "run", "--services", "nope"],
        vec![
            "--config",
            &cfg,
            "run",
            "--services",
            "api",
            "--strategy",
            "nope",
        ],
        vec!["--config", &cfg, "report", "deploy_1_0000"],
        vec!["plugins", "inspect", &not_wasm],
        vec![
            "--config",
            &cfg,
            "diagnostics",
            "--root",
            "/definitely/not/here",
        ],
        vec!["--config", &cfg, "analyze", "deploy_1_0000"],
        vec!["--config", &cfg, "model", "retrain"],
    ];
    let mut n = Normaliser::new(dir);
    let mut all = String::new();
    for args in &cases {
        let r = run(&w, args);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{args:?}: one line\n{}",
            r.stderr
        );
        all.push_str(&transcript(&mut n, args, &r));
        all.push('\n');
    }
    golden("cli/errors.txt", &all);
}

/// docs/JSON.md names every top-level key of every golden `--json`
/// document (and of the report inside `run --json`) in the section marked
/// `<!-- golden: NAME.json -->`: a key added to a document without a word in
/// the docs fails here.
#[test]
fn json_docs_name_every_key() {
    let docs_path = crate::common::golden_dir().join("../../docs/JSON.md");
    let docs = std::fs::read_to_string(&docs_path).unwrap();
    let dir = crate::common::golden_dir().join("cli");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        // run-failed.json is documented with run.json.
        let documented = name.replace("run-failed", "run");
        let marker = format!("<!-- golden: {documented} -->");
        let start = docs
            .find(&marker)
            .unwrap_or_else(|| panic!("docs/JSON.md has no section {marker}"));
        let section = &docs[start..];
        let section = &section[..section[marker.len()..]
            .find("\n## ")
            .map_or(section.len(), |i| i + marker.len())];
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut keys: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
        if let Some(report) = doc.get("report").and_then(Value::as_object) {
            let report_section = &docs[docs.find("<!-- golden: report.json -->").unwrap()..];
            for k in report.keys() {
                assert!(
                    report_section.contains(&format!("`{k}`")),
                    "docs/JSON.md: the report's key `{k}` ({name}) is not documented"
                );
            }
        }
        keys.sort();
        for k in keys {
            assert!(
                section.contains(&format!("`{k}`")),
                "docs/JSON.md: `{k}` of {name} is not documented in its section"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} golden JSON documents");
}
