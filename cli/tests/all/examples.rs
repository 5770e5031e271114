//! The example plugins of `plugins/examples` (canary in Rust, JavaScript and
//! Python; the JavaScript `env-file` detector; the Python `freeze-hook`)
//! driving real deployments through the real binary, `adeploy run --plugins DIR`.
//!
//! The components are built from source by `plugins/examples/build.sh`, which
//! this module runs once per test process (it rebuilds only what changed). The
//! script needs jco and componentize-py (`plugins/examples/install-tools.sh`,
//! run by `.ci/run`); without them these tests fail with the script's message
//! naming the missing tool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::World;
use crate::common::adeploy;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo target directory this test binary was built in.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The directory the example plugins are built into, after building them.
pub fn built_examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = target_dir().join("plugin-examples");
        let script = repo_root().join("plugins/examples/build.sh");
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env("ADEPLOY_TARGET_DIR", target_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{} failed ({}); install the tools with plugins/examples/install-tools.sh\n{}{}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// A plugin directory holding only `names` (component and manifest each).
fn plugin_dir(w: &World, names: &[&str]) -> PathBuf {
    let dir = w.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for n in names {
        for ext in ["wasm", "toml"] {
            std::fs::copy(
                built_examples().join(format!("{n}.{ext}")),
                dir.join(format!("{n}.{ext}")),
            )
            .unwrap();
        }
    }
    dir
}

/// A config with budgets that never block, `plugins` (YAML, indented by 2)
/// and `services` (from [`World::service`]).
fn config(w: &World, plugins: &str, services: &str) -> PathBuf {
    let limits = [
        "canary",
        "canary-rust",
        "canary-js",
        "canary-py",
        "balanced",
    ]
    .map(|s| format!("  {s}: {{cpu_limit: 1.0, memory_limit: 1.0, concurrency: 4}}\n"))
    .concat();
    let text = format!(
        "resource_limits:\n{limits}\
         thresholds: {{high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}}\n\
         plugin_defaults: {{timeout_ms: 10000, memory_mb: 256}}\n\
         plugins:\n  balanced: {{config: {{samples: 1, interval_ms: 50}}}}\n{plugins}\
         services:\n{services}"
    );
    let path = w.dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Five services `a`..`e`; `failing` has a health check that fails (after 1 s).
fn five(w: &World, failing: Option<&str>) -> String {
    ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| {
            if Some(*n) == failing {
                // A short deadline: the health check gives up after 1 s.
                w.service(n, &[], "{command: 'false'}")
                    .replace("timeout_s: 20", "timeout_s: 1")
            } else {
                w.service(n, &[], "{command: 'true'}")
            }
        })
        .collect()
}

fn run_json(
    w: &World,
    cfg: &Path,
    plugins: &Path,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec![
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--plugins",
        plugins.to_str().unwrap(),
        "--services",
        "a",
        "b",
        "c",
        "d",
        "e",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = adeploy(&args, w.dir.path(), &w.state());
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (o.status.code(), v, stderr)
}

fn waves(report: &serde_json::Value) -> Vec<Vec<String>> {
    serde_json::from_value(report["plan"]["waves"].clone()).unwrap()
}

fn decisions(report: &serde_json::Value) -> String {
    report["decision_process"].to_string()
}

/// Each language's canary: the wave structure, the pause, the rollback when
/// a wave fails, and a threshold that tolerates the failure.
#[test]
fn canary_in_every_language_deploys_in_waves_and_rolls_back() {
    for strategy in ["canary-rust", "canary-js", "canary-py"] {
        let plugins_yaml =
            format!("  {strategy}: {{config: {{pause_s: 1, samples: 1, interval_ms: 50}}}}\n");

        // All healthy: 1, a quarter of the rest, the rest; 1 s pauses.
        let w = World::new();
        let dir = plugin_dir(&w, &[strategy]);
        let cfg = config(&w, &plugins_yaml, &five(&w, None));
        let started = std::time::Instant::now();
        let (code, v, err) = run_json(
            &w,
            &cfg,
            &dir,
            &["--strategy", strategy, "--environment", "staging"],
        );
        assert_eq!(code, Some(0), "{strategy}: {err}");
        let r = &v["report"];
        assert_eq!(
            waves(r),
            vec![vec!["a"], vec!["b"], vec!["c", "d", "e"]],
            "{strategy}"
        );
        assert_eq!(r["plan"]["strategy"], strategy);
        assert_eq!(
            r["plan"]["notes"][0], "canary waves of 1, 1, 3 step(s), 1 s pause between waves",
            "{strategy}"
        );
        assert!(
            started.elapsed().as_secs_f64() >= 2.0,
            "{strategy}: two 1 s pauses"
        );
        // The last wave runs concurrently: its order is free.
        let mut order = w.order();
        order[2..].sort();
        assert_eq!(
            order,
            ["deploy a", "deploy b", "deploy c", "deploy d", "deploy e"].map(String::from),
            "{strategy}"
        );

        // The second wave fails: nothing more starts, everything deployed is rolled back.
        let w = World::new();
        let dir = plugin_dir(&w, &[strategy]);
        let cfg = config(&w, &plugins_yaml, &five(&w, Some("b")));
        let (code, v, err) = run_json(
            &w,
            &cfg,
            &dir,
            &["--strategy", strategy, "--environment", "staging"],
        );
        assert_eq!(code, Some(1), "{strategy}: {err}");
        let r = &v["report"];
        assert_eq!(
            r["deployment_summary"]["status"], "rolled_back",
            "{strategy}"
        );
        assert_eq!(waves(r), vec![vec!["a"], vec!["b"], vec!["c", "d", "e"]]);
        assert_eq!(
            w.order(),
            ["deploy a", "deploy b", "rollback b", "rollback a"].map(String::from),
            "{strategy}"
        );
        assert!(
            decisions(r).contains(
                "the strategy rolled back: wave 2: 1 of 2 settled step(s) failed, more than max_failed_percent 0"
            ),
            "{strategy}: {}",
            decisions(r)
        );

        // A 50% threshold tolerates that failure: the last wave still goes out.
        let w = World::new();
        let dir = plugin_dir(&w, &[strategy]);
        let tolerant = format!(
            "  {strategy}: {{config: {{pause_s: 0, samples: 1, interval_ms: 50, max_failed_percent: 50}}}}\n"
        );
        let cfg = config(&w, &tolerant, &five(&w, Some("b")));
        let (code, v, err) = run_json(
            &w,
            &cfg,
            &dir,
            &["--strategy", strategy, "--environment", "staging"],
        );
        assert_eq!(
            code,
            Some(1),
            "{strategy}: a tolerated failure still fails the deployment: {err}"
        );
        assert_eq!(v["report"]["plan"]["max_failures"], 2, "{strategy}");
        let order = w.order();
        assert!(
            order.contains(&"deploy e".to_string()),
            "{strategy}: {order:?}"
        );
        assert!(
            !decisions(&v["report"]).contains("the strategy rolled back"),
            "{strategy}"
        );
    }
}

/// The JavaScript detector decides the environment from a granted file; the
/// Python hook stops a deployment during a change freeze.
#[test]
fn js_detector_and_python_hook_take_part_in_a_run() {
    let w = World::new();
    let etc = w.dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("environment"), "staging\n").unwrap();
    let freeze = etc.join("freeze");
    std::fs::write(&freeze, "release week, ask #ops\n").unwrap();
    let dir = plugin_dir(&w, &["canary-js", "env-file", "freeze-hook"]);
    let etc_s = etc.display();
    let plugins_yaml = format!(
        "  canary-js: {{config: {{pause_s: 0, samples: 1, interval_ms: 50}}}}\n\
         \x20 env-file: {{grants: {{paths: ['{etc_s}']}}, config: {{file: '{etc_s}/environment', weight: 50}}}}\n\
         \x20 freeze-hook: {{grants: {{paths: ['{etc_s}']}}, config: {{freeze_file: '{}'}}}}\n",
        freeze.display()
    );
    let cfg = config(&w, &plugins_yaml, &five(&w, None));

    // Frozen: the pre-deployment hook aborts before anything runs.
    let (code, v, err) = run_json(&w, &cfg, &dir, &["--strategy", "canary-js"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(w.order().is_empty(), "{:?}", w.order());
    let d = decisions(&v["report"]);
    assert!(
        d.contains("change freeze") && d.contains("release week, ask #ops"),
        "{d}"
    );

    // Lifted: the run goes ahead, in the environment the JS detector read.
    std::fs::remove_file(&freeze).unwrap();
    let (code, v, err) = run_json(&w, &cfg, &dir, &["--strategy", "canary-js"]);
    assert_eq!(code, Some(0), "{err}");
    let r = &v["report"];
    assert_eq!(
        r["deployment_summary"]["environment"],
        "staging",
        "{}",
        decisions(r)
    );
    assert!(
        decisions(r).contains("says \\\"staging\\\""),
        "{}",
        decisions(r)
    );
    assert_eq!(w.order().len(), 5);
}

/// `plugins list` reports what a manifest asks for and the config does not
/// grant, in text and JSON; a config that grants it clears the report.
#[test]
fn plugins_list_reports_requested_grants_the_config_does_not_give() {
    let w = World::new();
    let dir = plugin_dir(&w, &["env-file"]);
    let dir_s = dir.to_str().unwrap();
    let cfg = config(&w, "", &five(&w, None));
    let cfg_s = cfg.to_str().unwrap();
    let o = adeploy(
        &["plugins", "list", "--config", cfg_s, "--plugins", dir_s],
        w.dir.path(),
        &w.state(),
    );
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "env-file: its manifest asks for paths=/etc/adeploy, which the config does not grant"
        ),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("asks for grants the config does not give"),
        "a warning at load too"
    );
    let o = adeploy(
        &[
            "plugins",
            "list",
            "--json",
            "--config",
            cfg_s,
            "--plugins",
            dir_s,
        ],
        w.dir.path(),
        &w.state(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "env-file")
        .unwrap()
        .clone();
    assert_eq!(row["kind"], "detector");
    assert_eq!(row["version"], "0.1.0");
    assert_eq!(row["requested_grants"]["paths"][0], "/etc/adeploy");
    assert_eq!(row["missing_grants"]["paths"][0], "/etc/adeploy");
    assert_eq!(row["grants"]["paths"].as_array().unwrap().len(), 0);

    let granted = config(
        &w,
        "  env-file: {grants: {paths: ['/etc']}}\n",
        &five(&w, None),
    );
    let o = adeploy(
        &[
            "plugins",
            "list",
            "--json",
            "--config",
            granted.to_str().unwrap(),
            "--plugins",
            dir_s,
        ],
        w.dir.path(),
        &w.state(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "env-file")
        .unwrap()
        .clone();
    assert_eq!(
        row["missing_grants"]["paths"].as_array().unwrap().len(),
        0,
        "/etc covers /etc/adeploy"
    );
}

/// `experimental.enable_canary_deployments` installs the built-in (Rust)
/// canary: a valid `--strategy`, a candidate of the adaptive choice, and
/// recorded as active. Off, there is no `canary`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_switch_installs_the_builtin_canary() {
    use adeploy::config::Config;
    use adeploy::engine::{Decision, DeploymentRequest, Engine};

    let w = World::new();
    let plugins = "  canary: {config: {pause_s: 0, samples: 1, interval_ms: 50}}\n";
    let services = five(&w, None);
    let path = config(&w, "", &services);
    let off = Engine::new(Config::load(Some(&path)).unwrap(), w.options())
        .await
        .unwrap();
    assert!(!off.strategies().contains(&"canary".to_string()));

    let path = config(&w, plugins, &services);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("experimental: {enable_canary_deployments: true}\n");
    std::fs::write(&path, text).unwrap();
    let on = Engine::new(Config::load(Some(&path)).unwrap(), w.options())
        .await
        .unwrap();
    assert!(
        on.strategies().contains(&"canary".to_string()),
        "{:?}",
        on.strategies()
    );
    let canary = on.plugins().get("canary").unwrap();
    assert_eq!(canary.source().to_string(), "built-in");

    let req = DeploymentRequest {
        services: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
        strategy: Some("canary".into()),
        environment: Some(adeploy::config::Environment::Staging),
        ..DeploymentRequest::default()
    };
    let out = on.deploy(req, None, None).await.unwrap();
    assert!(out.success, "{}", out.report.human_summary());
    let plan = out.report.plan.as_ref().unwrap();
    assert_eq!(plan.waves, vec![vec!["a"], vec!["b"], vec!["c", "d", "e"]]);
    let active = out
        .report
        .decision_process
        .iter()
        .find_map(|d| match &d.decision {
            Decision::ExperimentalActive {
                adaptive_candidate,
                source,
                ..
            } => Some((*adaptive_candidate, source.as_str())),
            _ => None,
        })
        .expect("the switch is recorded");
    assert_eq!(active, (true, "built-in"));

    // The adaptive choice gets it among its candidates (a selector that
    // records them and picks the canary).
    let mut on = on;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    on.set_selector(Box::new(Recording(seen.clone())));
    let req = DeploymentRequest {
        services: vec!["a".into()],
        strategy: None,
        environment: Some(adeploy::config::Environment::Development),
        dry_run: true,
        ..DeploymentRequest::default()
    };
    let out = on.deploy(req, None, None).await.unwrap();
    assert!(
        seen.lock().unwrap().contains(&"canary".to_string()),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(out.report.deployment_summary.strategy_used, "canary");
}

/// Turned on for one environment (`environments.development.experimental`),
/// the canary is installed, offered to the adaptive choice there, and
/// neither offered nor accepted as `--strategy` elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_on_in_one_environment_is_offered_only_there() {
    use adeploy::config::{Config, Environment};
    use adeploy::engine::{DeploymentRequest, Engine, EngineError};

    let w = World::new();
    let plugins = "  canary: {config: {pause_s: 0, samples: 1, interval_ms: 50}}\n";
    let services = five(&w, None);
    let path = config(&w, plugins, &services);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "environments:\n  development:\n    experimental: {enable_canary_deployments: true}\n",
    );
    std::fs::write(&path, text).unwrap();
    let mut engine = Engine::new(Config::load(Some(&path)).unwrap(), w.options())
        .await
        .unwrap();
    assert!(engine.strategies().contains(&"canary".to_string()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    engine.set_selector(Box::new(Recording(seen.clone())));
    let request = |environment, strategy: Option<&str>| DeploymentRequest {
        services: vec!["a".into()],
        strategy: strategy.map(String::from),
        environment: Some(environment),
        dry_run: true,
        ..DeploymentRequest::default()
    };
    engine
        .deploy(request(Environment::Development, None), None, None)
        .await
        .unwrap();
    assert!(seen.lock().unwrap().contains(&"canary".to_string()));
    // Staging: not a candidate (the recording selector answers `canary`
    // whatever it is offered; what matters is what it was offered).
    let _ = engine
        .deploy(request(Environment::Staging, None), None, None)
        .await;
    let offered = seen.lock().unwrap().clone();
    assert!(!offered.contains(&"canary".to_string()), "{offered:?}");
    assert!(offered.contains(&"balanced".to_string()), "{offered:?}");
    let err = engine
        .deploy(request(Environment::Staging, Some("canary")), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::StrategyNotEnabled { .. }) && err.is_bad_input(),
        "{err}"
    );
}

/// A selector that records the candidates it was offered and picks `canary`.
#[derive(Debug)]
struct Recording(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl adeploy::engine::StrategySelector for Recording {
    fn select(&self, ctx: &adeploy::engine::SelectionContext<'_>) -> adeploy::engine::Selection {
        *self.0.lock().unwrap() = ctx.candidates.to_vec();
        adeploy::engine::Selection {
            strategy: "canary".into(),
            confidence: 1.0,
            method: "test".into(),
            reasons: vec![],
            ..Default::default()
        }
    }
}
