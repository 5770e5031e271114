//! The hostile suite (`tests/hostile/`, built from source) beside the
//! fixtures of `sandbox.rs`: deep recursion, huge return values, a trap in
//! every export, and whether a deployment continues or aborts by policy.
//! Finally, 1,000 hostile calls in a row must not grow the host's memory.

use std::path::Path;

use adeploy::config::{Config, Grants};
use adeploy::engine::{Decision, DeploymentRequest, Engine};
use adeploy::plugin::{PluginError, PluginHost, WitEnvironment};

use crate::common::World;
use crate::common::{ctx, empty_world, host, service, settings};
use crate::sandbox::assert_still_serves;

async fn plan_with(host: &PluginHost, mode: &str) -> Result<Vec<String>, PluginError> {
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::HOSTILE),
            settings(
                Grants::default(),
                2000,
                64,
                &format!("{{\"mode\": \"{mode}\"}}"),
            ),
        )
        .await?;
    let c = ctx(vec![service("api", &[])], WitEnvironment::Staging);
    plugin.plan(&c).await.map(|r| r.value.notes)
}

#[tokio::test]
async fn deep_recursion_is_a_trap_naming_the_plugin() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = plan_with(&host, "recurse").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PluginError::Trap { .. }), "{msg}");
    assert!(msg.starts_with("plugin 'hostile' trapped in plan"), "{msg}");
    // Rust guests keep locals on a shadow stack in linear memory: unbounded
    // recursion runs it off the bottom of memory before the wasm call stack
    // (wasmtime's `max_wasm_stack`) is exhausted. Either ends in a trap.
    assert!(
        msg.contains("out of bounds memory access") || msg.contains("call stack exhausted"),
        "{msg}"
    );
    assert!(!err.is_bad_input());
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn huge_return_values_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = plan_with(&host, "bloat").await.unwrap_err();
    let msg = err.to_string();
    // 8 MiB of notes is refused while it is lifted out of the guest, before
    // the text budget (64 KiB) could look at it.
    assert!(
        matches!(err, PluginError::TooLarge { function: "plan", limit_bytes, .. } if limit_bytes < 2 << 20),
        "{msg}"
    );
    // The same plugin in a harmless mode works: the host is intact.
    assert!(plan_with(&host, "").await.unwrap().is_empty());
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn a_trap_in_describe_refuses_the_plugin_at_load() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = host
        .load_file(
            Path::new(adeploy_fixtures::TRAP_DESCRIBE),
            settings(Grants::default(), 2000, 64, "{}"),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            PluginError::Trap { plugin, function: "describe", .. } if plugin == "trap-describe"
        ),
        "{msg}"
    );
    assert!(
        msg.starts_with("plugin 'trap-describe' trapped in describe"),
        "{msg}"
    );
    assert_still_serves(&host).await;
}

/// A World whose plugin dir holds `files` (copied from the fixtures).
fn plugin_dir(w: &World, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = w.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for (from, name) in files {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
    dir
}

/// An engine with `plugins` as a plugin dir; `plugin_entry` (YAML, indented
/// by 2) joins the config's `plugins:` section.
async fn engine(w: &World, plugins: std::path::PathBuf, plugin_entry: &str) -> Engine {
    let path = w.write_config(&w.service("api", &[], "{command: 'true'}"));
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "plugins:\n",
        &format!("plugins:\n{plugin_entry}"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let mut options = w.options();
    options.plugin_dirs = vec![plugins];
    Engine::new(Config::load(Some(&path)).unwrap(), options)
        .await
        .unwrap()
}

fn request(strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: vec!["api".into()],
        strategy: Some(strategy.into()),
        ..DeploymentRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_continue_or_abort_by_policy() {
    // A strategy whose on-progress traps: recorded, the run continues (the
    // plan's own failure policy still holds), and it succeeds.
    let w = World::new();
    let dir = plugin_dir(&w, &[(adeploy_fixtures::HOSTILE, "hostile.wasm")]);
    let e = engine(&w, dir, "  hostile: {config: {mode: trap-progress}}\n").await;
    let mut req = request("hostile");
    req.environment = Some(adeploy::config::Environment::Staging);
    let out = e.deploy(req, None, None).await.unwrap();
    assert!(out.success, "{}", out.report.human_summary());
    let failed: Vec<&str> = out
        .report
        .decision_process
        .iter()
        .filter_map(|d| match &d.decision {
            Decision::StrategyDecisionFailed { error } => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert!(!failed.is_empty());
    assert!(failed[0].contains("hostile on-progress"), "{}", failed[0]);
    assert_eq!(w.order(), ["deploy api"]);

    // A hook that traps: the pre-deployment hook fails, nothing deploys.
    let w = World::new();
    let dir = plugin_dir(&w, &[(adeploy_fixtures::TRAP_HOOK, "trap-hook.wasm")]);
    let e = engine(&w, dir, "").await;
    let mut req = request("balanced");
    req.environment = Some(adeploy::config::Environment::Staging);
    let out = e.deploy(req, None, None).await.unwrap();
    assert!(!out.success);
    assert_eq!(
        out.report.deployment_summary.status,
        adeploy::history::DeploymentStatus::Aborted
    );
    assert!(w.order().is_empty(), "nothing deployed");

    // A detector that traps: noted and skipped; detection still decides.
    let w = World::new();
    let dir = plugin_dir(
        &w,
        &[(adeploy_fixtures::TRAP_DETECTOR, "trap-detector.wasm")],
    );
    let e = engine(&w, dir, "").await;
    let mut req = request("balanced");
    req.dry_run = true;
    let out = e.deploy(req, None, None).await.unwrap();
    let detected = out
        .report
        .decision_process
        .iter()
        .find_map(|d| match &d.decision {
            Decision::EnvironmentDetected(detected) => Some(detected),
            _ => None,
        })
        .unwrap();
    assert!(
        detected.notes.iter().any(|n| n.contains("trap-detector")),
        "{:?}",
        detected.notes
    );

    // A strategy whose plan recurses without bound: the run fails before
    // anything is deployed, with the plugin named.
    let w = World::new();
    let dir = plugin_dir(&w, &[(adeploy_fixtures::HOSTILE, "hostile.wasm")]);
    let e = engine(&w, dir, "  hostile: {config: {mode: recurse}}\n").await;
    let mut req = request("hostile");
    req.environment = Some(adeploy::config::Environment::Staging);
    let err = e.deploy(req, None, None).await.unwrap_err();
    assert!(
        err.to_string().contains("plugin 'hostile' trapped in plan"),
        "{err}"
    );
    assert!(w.order().is_empty());
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[tokio::test]
async fn a_thousand_hostile_calls_do_not_grow_the_host() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let load = |wasm: &'static str, timeout_ms: u64, config: &'static str| {
        let host = &host;
        async move {
            host.load_file(
                Path::new(wasm),
                settings(Grants::default(), timeout_ms, 16, config),
            )
            .await
            .unwrap()
        }
    };
    let plugins = [
        load(adeploy_fixtures::TRAP, 2000, "{}").await,
        load(adeploy_fixtures::HOG, 2000, "{}").await,
        load(adeploy_fixtures::SPIN, 5, "{}").await,
        load(adeploy_fixtures::HOSTILE, 2000, "{\"mode\": \"recurse\"}").await,
        load(adeploy_fixtures::HOSTILE, 2000, "{\"mode\": \"bloat\"}").await,
    ];
    let c = ctx(vec![service("api", &[])], WitEnvironment::Staging);
    let round = |n: usize| {
        let plugins = &plugins;
        let c = &c;
        async move {
            for i in 0..n {
                let err = plugins[i % plugins.len()].plan(c).await.unwrap_err();
                // Each plugin fails its own way, every time.
                let expected = match i % plugins.len() {
                    0 | 3 => matches!(
                        err,
                        PluginError::Trap {
                            function: "plan",
                            ..
                        }
                    ),
                    1 => matches!(
                        err,
                        PluginError::MemoryCap {
                            function: "plan",
                            ..
                        }
                    ),
                    2 => matches!(
                        err,
                        PluginError::Deadline {
                            function: "plan",
                            ..
                        }
                    ),
                    // More than the host copies out of a plugin in one
                    // call: refused while lifting.
                    _ => matches!(
                        err,
                        PluginError::TooLarge {
                            function: "plan",
                            ..
                        }
                    ),
                };
                assert!(expected, "call {i}: {err}");
            }
        }
    };
    let _quiet = crate::common::MEMORY_HEAVY.lock().await;
    round(100).await; // warm: pools, caches, allocator arenas
    let before = rss_kib();
    round(1000).await;
    let grown = rss_kib().saturating_sub(before);
    // A leak of one guest memory (16 MiB) per call would be gigabytes.
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB over 1,000 calls"
    );
    assert_still_serves(&host).await;
}
