//! Issue 12, class by class, through the library: each hostile fixture of
//! `tests/hostile/` (`hostile`, `liar-detector`, `loop-describe`) and the
//! exact containment (the error variant, its message, the time it took).
//! The same classes through the `adeploy` binary, with exit codes, host RSS
//! and stderr sizes, are in cli/tests/all/hostile.rs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adeploy::config::{Config, Environment, Grants};
use adeploy::engine::{DeploymentRequest, Engine, EngineError, EngineOptions};
use adeploy::plugin::{
    EnvSource, HostOptions, HostWorld, LoadOutcome, PluginError, PluginHost, WitEnvironment,
    detection_rules,
};
use adeploy::report::Approval;

use crate::common::{World, cache_dir, ctx, empty_world, host, service, settings};

async fn hostile_plan(
    host: &PluginHost,
    config_json: &str,
    grants: Grants,
    services: Vec<adeploy::plugin::Service>,
) -> Result<Vec<String>, PluginError> {
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::HOSTILE),
            settings(grants, 2000, 128, config_json),
        )
        .await?;
    let c = ctx(services, WitEnvironment::Staging);
    plugin.plan(&c).await.map(|r| r.value.notes)
}

async fn liar(host: &PluginHost, mode: &str) -> Result<adeploy::plugin::Detection, PluginError> {
    let plugin = host
        .load_file(
            Path::new(adeploy_fixtures::LIAR_DETECTOR),
            settings(
                Grants::default(),
                2000,
                128,
                &format!("{{\"mode\": \"{mode}\"}}"),
            ),
        )
        .await?;
    let config = Config::embedded().unwrap();
    plugin
        .detect(&detection_rules(&config.environment_detection))
        .await
        .map(|c| c.value)
}

/// A FIFO at `path`: nothing ever writes to it, so an open for reading
/// would block forever.
pub fn make_fifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

// ---- 2. counts, not bytes -------------------------------------------------

#[tokio::test]
async fn lists_of_empty_entries_are_refused_while_they_are_lifted() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    for mode in ["empty-notes", "empty-waves", "many-steps"] {
        let started = Instant::now();
        let err = hostile_plan(
            &host,
            &format!("{{\"mode\": \"{mode}\"}}"),
            Grants::default(),
            vec![service("api", &[])],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, PluginError::TooLarge { function: "plan", limit_bytes, .. } if limit_bytes < 2 << 20),
            "{mode}: {err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("plugin 'hostile' passed the host more than 10")
                && err.to_string().ends_with(
                    "bytes in plan (the most the host copies out of a plugin in one call); refused"
                ),
            "{mode}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{mode}");
    }
    for mode in ["many-evidence", "many-notes"] {
        let err = liar(&host, mode).await.unwrap_err();
        assert!(
            matches!(
                err,
                PluginError::TooLarge {
                    function: "detect",
                    ..
                }
            ),
            "{mode}: {err:?}"
        );
    }
}

#[tokio::test]
async fn non_finite_and_overflowing_numbers_are_refused_at_the_boundary() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    for (mode, what) in [
        ("nan", "NaN"),
        ("inf", "inf"),
        ("neg-inf", "-inf"),
        ("huge", "1.7976931348623157e308"),
        ("nan-confidence", "NaN"),
    ] {
        let err = liar(&host, mode).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                PluginError::Malformed {
                    function: "detect",
                    ..
                }
            ),
            "{mode}: {err:?}"
        );
        assert!(
            msg.starts_with("plugin 'liar-detector' returned a malformed value from detect: ")
                && msg.contains(what),
            "{mode}: {msg}"
        );
    }
}

// ---- 4. host calls that could outlive the deadline ------------------------

#[tokio::test]
async fn read_file_refuses_a_fifo_without_opening_it() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("granted")).unwrap();
    let fifo = root.path().join("granted/fifo");
    make_fifo(&fifo);
    let host = host(empty_world(root.path()));
    let grants = Grants {
        paths: vec!["/granted".into()],
        ..Grants::default()
    };
    let started = Instant::now();
    let err = hostile_plan(
        &host,
        r#"{"mode": "read", "path": "/granted/fifo"}"#,
        grants,
        vec![service("api", &[])],
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "never blocked");
    match err {
        PluginError::Refused {
            function: "plan",
            message,
            ..
        } => assert_eq!(
            message,
            r#"read: err: Invalid("/granted/fifo: not a regular file but a FIFO")"#
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_sleeping_through_wasi_is_stopped_at_its_deadline() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let started = Instant::now();
    let err = hostile_plan(
        &host,
        r#"{"mode": "sleep"}"#,
        Grants::default(),
        vec![service("api", &[])],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                function: "plan",
                deadline_ms: 2000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- 5. paths inside the root ---------------------------------------------

#[tokio::test]
async fn an_absolute_link_in_the_root_resolves_inside_the_root() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    // The image: /var/run -> /run (absolute, as in every Debian image) and
    // /run/adeploy-test-…/token. The host gets a file of the same name in
    // its own /run with other content: what the plugin reads must be the
    // image's, and a name only the host has must not be found. (Without
    // write access to the host's /run, an entry it already has stands in
    // for the host-only name.)
    let img = tempfile::tempdir().unwrap();
    let host_run = tempfile::Builder::new()
        .prefix("adeploy-test-")
        .tempdir_in("/run")
        .ok();
    let (name, host_only) = match &host_run {
        Some(d) => {
            std::fs::write(d.path().join("token"), "HOST").unwrap();
            std::fs::write(d.path().join("host-only"), "HOST").unwrap();
            let name = d.path().file_name().unwrap().to_str().unwrap().to_string();
            (name.clone(), format!("{name}/host-only"))
        }
        None => {
            let existing = std::fs::read_dir("/run")
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| !n.starts_with("adeploy-test-"))
                .expect("the host's /run has an entry");
            ("adeploy-test-image".to_string(), existing)
        }
    };
    std::fs::create_dir_all(img.path().join("run").join(&name)).unwrap();
    std::fs::create_dir_all(img.path().join("var")).unwrap();
    std::fs::write(img.path().join("run").join(&name).join("token"), "IMAGE").unwrap();
    std::os::unix::fs::symlink("/run", img.path().join("var/run")).unwrap();
    let host = host(empty_world(img.path()));
    let grants = Grants {
        paths: vec!["/var/run".into()],
        ..Grants::default()
    };
    let read = |file: &str| format!(r#"{{"mode": "read", "path": "/var/run/{file}"}}"#);
    let err = hostile_plan(
        &host,
        &read(&format!("{name}/token")),
        grants.clone(),
        vec![service("a", &[])],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PluginError::Refused { message, .. } if message == "read: ok: IMAGE"),
        "{err:?}"
    );
    let err = hostile_plan(&host, &read(&host_only), grants, vec![service("a", &[])])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Refused { message, .. } if message.starts_with("read: err: NotFound(")),
        "{err:?}"
    );
}

// ---- 9. smaller ones --------------------------------------------------------

#[tokio::test]
async fn exit_is_named_as_such() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = hostile_plan(
        &host,
        r#"{"mode": "exit"}"#,
        Grants::default(),
        vec![service("api", &[])],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Exited {
                function: "plan",
                code: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin 'hostile' called exit(0) in plan: a plugin returns its answer, it must not end its process"
    );
}

#[tokio::test]
async fn a_plan_deploying_a_dependent_first_is_a_plan_error() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let err = hostile_plan(
        &host,
        r#"{"mode": "dependent-first"}"#,
        Grants::default(),
        vec![service("db", &[]), service("api", &["db"])],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Malformed {
                function: "plan",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with(r#"wave 1 deploys "api" before its dependency "db" (wave 2)"#),
        "{err}"
    );
}

#[tokio::test]
async fn a_looping_describe_is_refused_at_load_as_bad_input() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let started = Instant::now();
    let err = host
        .load_file(
            Path::new(adeploy_fixtures::LOOP_DESCRIBE),
            settings(Grants::default(), 30_000, 64, "{}"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                function: "describe",
                deadline_ms: 15000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_bad_input());
    assert_eq!(
        err.to_string(),
        "plugin 'loop-describe' exceeded its 15000 ms deadline in describe"
    );
    // Its own deadline of 30 s is cut to the 15 s describe may take at load.
    assert!(started.elapsed() < Duration::from_secs(20));
}

// ---- 3. flooding --------------------------------------------------------------

#[tokio::test]
async fn floods_of_logs_and_denials_are_held_to_a_few_events() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    for mode in ["log-flood", "deny-flood"] {
        let plugin = host
            .load_file(
                Path::new(adeploy_fixtures::HOSTILE),
                settings(
                    Grants::default(),
                    10_000,
                    128,
                    &format!("{{\"mode\": \"{mode}\"}}"),
                ),
            )
            .await
            .unwrap();
        let c = ctx(vec![service("api", &[])], WitEnvironment::Staging);
        let called = plugin.plan(&c).await.unwrap();
        assert!(
            called.events.len() <= 1000,
            "{mode}: {}",
            called.events.len()
        );
        assert_eq!(
            called.events.len() + called.dropped_events,
            200_000,
            "{mode}: every line is counted"
        );
    }
}

// ---- 8. the component cache ----------------------------------------------------

fn cache_host(dir: &Path, world_root: &Path) -> PluginHost {
    PluginHost::new(HostOptions {
        cache_dir: Some(dir.to_path_buf()),
        world: empty_world(world_root),
        max_memory_mb: 256,
    })
    .unwrap()
}

#[tokio::test]
async fn a_cache_open_to_others_is_emptied_and_made_private() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("components");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.join("planted.cwasm"), "evil").unwrap();
    let h = cache_host(&dir, base.path());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert!(
        !dir.join("planted.cwasm").exists(),
        "what was planted is gone"
    );
    let p = h
        .load_file(
            Path::new(adeploy_fixtures::ECHO),
            settings(Grants::default(), 2000, 64, "{}"),
        )
        .await
        .unwrap();
    assert_eq!(p.load_stats().outcome, LoadOutcome::Compiled);
    // Only readable by others: nobody else could have written; made private.
    let readable = base.path().join("readable");
    std::fs::create_dir(&readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(readable.join("kept"), "x").unwrap();
    drop(cache_host(&readable, base.path()));
    let mode = std::fs::metadata(&readable).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert!(readable.join("kept").exists());
}

#[tokio::test]
async fn a_swapped_compiled_artefact_is_discarded_and_the_pinned_component_runs() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("components");
    let h = cache_host(&dir, base.path());
    let s = || settings(Grants::default(), 2000, 64, "{}");
    let echo = h
        .load_file(Path::new(adeploy_fixtures::ECHO), s())
        .await
        .unwrap();
    let trap = h
        .load_file(Path::new(adeploy_fixtures::TRAP), s())
        .await
        .unwrap();
    let artefact = |digest: &str| -> PathBuf {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with(digest) && n.ends_with(".cwasm")
            })
            .unwrap()
    };
    // Put the trap's native code where the echo's should be.
    std::fs::copy(artefact(trap.sha256()), artefact(echo.sha256())).unwrap();
    let mut pinned = s();
    pinned.pinned_sha256 = Some(echo.sha256().to_string());
    let again = h
        .load_file(Path::new(adeploy_fixtures::ECHO), pinned)
        .await
        .unwrap();
    assert_eq!(
        again.load_stats().outcome,
        LoadOutcome::Compiled,
        "recompiled"
    );
    assert_eq!(
        again.kind(),
        echo.kind(),
        "the echo hook, not the trap strategy"
    );
    assert_eq!(again.info().description, echo.info().description);
    // And the fresh entry is trusted next time.
    let third = h
        .load_file(Path::new(adeploy_fixtures::ECHO), s())
        .await
        .unwrap();
    assert_eq!(third.load_stats().outcome, LoadOutcome::Cached);
    let _ = cache_dir();
}

// ---- 1. environment and approvals --------------------------------------------

/// What a hostile setup puts in the `--plugins` dir, and what the config
/// says about it.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// The built-in detector alone.
    Nothing,
    /// An extra detector claiming local by every method, with no grants.
    Liar,
    /// The same, given every grant a detector can hold.
    GrantedLiar,
    /// The liar as `detector.wasm`: it replaces the built-in detector.
    LiarOverride,
    /// The liar as `detector.wasm`, and the config's built-in grants.
    LiarOverrideWithGrants,
    /// A strategy saved as `detector.wasm`.
    StrategyAsDetector,
    /// The liar with a manifest calling itself `detector`.
    ManifestNamedDetector,
}

const SETUPS: [Setup; 7] = [
    Setup::Nothing,
    Setup::Liar,
    Setup::GrantedLiar,
    Setup::LiarOverride,
    Setup::LiarOverrideWithGrants,
    Setup::StrategyAsDetector,
    Setup::ManifestNamedDetector,
];

/// How the operator names production.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Flag,
    Variable,
    /// `DEPLOYMENT_ENVIRONMENT=production`, `--environment local`.
    VariableAgainstFlag,
}

const ALL_GRANTS: &str =
    "{env: ['*'], paths: ['/'], hostname: true, processes: true, network: ['*:*']}";

fn prepare(setup: Setup, w: &World) -> (PathBuf, String) {
    let dir = w.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let liar_cfg = "{config: {mode: claim, environment: local}";
    let (file, source, entry) = match setup {
        Setup::Nothing => return (dir, String::new()),
        Setup::Liar => (
            "liar-detector.wasm",
            adeploy_fixtures::LIAR_DETECTOR,
            format!("  liar-detector: {liar_cfg}}}\n"),
        ),
        Setup::GrantedLiar => (
            "liar-detector.wasm",
            adeploy_fixtures::LIAR_DETECTOR,
            format!("  liar-detector: {liar_cfg}, grants: {ALL_GRANTS}}}\n"),
        ),
        Setup::LiarOverride => (
            "detector.wasm",
            adeploy_fixtures::LIAR_DETECTOR,
            format!("  detector: {liar_cfg}}}\n"),
        ),
        Setup::LiarOverrideWithGrants => (
            "detector.wasm",
            adeploy_fixtures::LIAR_DETECTOR,
            format!("  detector: {liar_cfg}, grants: {ALL_GRANTS}}}\n"),
        ),
        Setup::StrategyAsDetector => ("detector.wasm", adeploy_fixtures::HOSTILE, String::new()),
        Setup::ManifestNamedDetector => {
            std::fs::write(
                dir.join("liar-detector.toml"),
                "name = \"detector\"\nkind = \"detector\"\n",
            )
            .unwrap();
            (
                "liar-detector.wasm",
                adeploy_fixtures::LIAR_DETECTOR,
                format!("  liar-detector: {liar_cfg}}}\n"),
            )
        }
    };
    std::fs::copy(source, dir.join(file)).unwrap();
    let extra = if entry.is_empty() {
        String::new()
    } else {
        entry
    };
    (dir, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plugin_combination_skips_an_approval_the_operator_signal_requires() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let mut checked = 0;
    for setup in SETUPS {
        for signal in [Signal::Flag, Signal::Variable, Signal::VariableAgainstFlag] {
            for allow_overrides in [true, false] {
                for approve in [false, true] {
                    let case = format!(
                        "{setup:?} {signal:?} allow_overrides={allow_overrides} approve={approve}"
                    );
                    let w = World::new();
                    let (dir, entries) = prepare(setup, &w);
                    let mut extra = format!(
                        "approvals: {{required_for: [production]}}\nplugin_defaults: {{allow_overrides: {allow_overrides}}}\n"
                    );
                    let mut cfg_text = w.config_yaml(&w.service("api", &[], "{command: 'true'}"));
                    if !entries.is_empty() {
                        // The fixture config already has a `plugins:` map.
                        cfg_text = cfg_text.replace("plugins:\n", &format!("plugins:\n{entries}"));
                    }
                    extra.insert_str(0, &cfg_text);
                    let path = w.dir.path().join("config.yaml");
                    std::fs::write(&path, extra).unwrap();
                    let config = Config::load(Some(&path)).unwrap();
                    let mut env = HashMap::new();
                    if matches!(signal, Signal::Variable | Signal::VariableAgainstFlag) {
                        env.insert(
                            "DEPLOYMENT_ENVIRONMENT".to_string(),
                            "production".to_string(),
                        );
                    }
                    let options = EngineOptions {
                        state_dir: Some(w.state()),
                        plugin_dirs: vec![dir],
                        host: Some(HostOptions {
                            cache_dir: Some(cache_dir()),
                            world: HostWorld {
                                root: PathBuf::from("/"),
                                hostname: Some("laptop-local".into()),
                                env: EnvSource::Fixed(env),
                            },
                            max_memory_mb: 256,
                        }),
                        ..EngineOptions::default()
                    };
                    let engine = match Engine::new(config, options).await {
                        Ok(e) => e,
                        Err(e) => {
                            // Refused before anything ran: an override of
                            // the wrong kind, a forbidden override, a
                            // manifest renaming a plugin.
                            assert!(
                                matches!(
                                    &e,
                                    EngineError::Plugin(
                                        PluginError::OverrideKind { .. }
                                            | PluginError::OverrideForbidden { .. }
                                            | PluginError::Manifest { .. }
                                    )
                                ),
                                "{case}: {e:?}"
                            );
                            assert!(e.is_bad_input(), "{case}");
                            assert!(w.order().is_empty(), "{case}");
                            checked += 1;
                            continue;
                        }
                    };
                    let req = DeploymentRequest {
                        services: vec!["api".into()],
                        strategy: Some("conservative".into()),
                        environment: match signal {
                            Signal::Flag => Some(Environment::Production),
                            Signal::Variable => None,
                            Signal::VariableAgainstFlag => Some(Environment::Local),
                        },
                        approval: approve.then(|| Approval::Flag {
                            user: "tester".into(),
                        }),
                        ..DeploymentRequest::default()
                    };
                    let out = engine.deploy(req, None, None).await;
                    if approve {
                        let out = out.unwrap_or_else(|e| panic!("{case}: {e}"));
                        assert!(out.success, "{case}");
                        assert_eq!(w.order(), ["deploy api"], "{case}");
                    } else {
                        match out {
                            Err(EngineError::ApprovalRequired {
                                environment: Environment::Production,
                                named_by,
                            }) => assert!(
                                named_by.iter().any(|b| b.starts_with("--environment")
                                    || b.starts_with("DEPLOYMENT_ENVIRONMENT=\"production\"")),
                                "{case}: {named_by:?}"
                            ),
                            other => panic!("{case}: {:?}", other.map(|o| o.status)),
                        }
                        assert!(w.order().is_empty(), "{case}: nothing deployed");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 7 * 3 * 2 * 2);
}

// ---- WASI: what the linker gives a plugin -------------------------------------

#[tokio::test]
async fn wasi_gives_clocks_and_random_but_no_files_sockets_or_environment() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let root = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = host(empty_world(root.path()));
    let err = hostile_plan(
        &host,
        &format!(r#"{{"mode": "wasi-probe", "port": "{port}"}}"#),
        Grants {
            // Even a granted path and endpoint are not reachable through
            // WASI: only through the host imports.
            paths: vec!["/".into()],
            network: vec!["127.0.0.1:*".into()],
            ..Grants::default()
        },
        vec![service("api", &[])],
    )
    .await
    .unwrap_err();
    let PluginError::Refused { message, .. } = err else {
        panic!("{err:?}")
    };
    let got: HashMap<&str, &str> = message.lines().filter_map(|l| l.split_once('=')).collect();
    for key in ["fs-read", "fs-list", "fs-write", "tcp"] {
        assert!(got[key].starts_with("err: "), "{key}: {message}");
    }
    assert_eq!(got["env"], "0", "{message}");
    assert_eq!(got["args"], "0", "{message}");
    assert_eq!(got["wall-clock"], "true", "{message}");
    assert_eq!(got["sleep"], "true", "{message}");
    assert_eq!(got["random-seeds-differ"], "true", "{message}");
    assert!(!Path::new("/tmp/hostile-was-here").exists());
}

// ---- 7. --max-time covers detection and planning -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_covers_detection_and_planning() {
    let _heavy = crate::common::MEMORY_HEAVY.lock().await;
    let w = World::new();
    let mut entries = String::new();
    for i in 0..12 {
        entries.push_str(&format!(
            "  loop{i}: {{path: {}, config: {{mode: loop}}, limits: {{timeout_ms: 30000}}}}\n",
            adeploy_fixtures::LIAR_DETECTOR
        ));
    }
    let text = w
        .config_yaml(&w.service("api", &[], "{command: 'true'}"))
        .replace("plugins:\n", &format!("plugins:\n{entries}"));
    let path = w.dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let engine = Engine::new(Config::load(Some(&path)).unwrap(), w.options())
        .await
        .unwrap();
    let started = Instant::now();
    let err = engine
        .deploy(
            DeploymentRequest {
                services: vec!["api".into()],
                max_time: Some(Duration::from_millis(1500)),
                ..DeploymentRequest::default()
            },
            None,
            None,
        )
        .await
        .unwrap_err();
    // Detectors that would each loop for 30 s end at the deployment's
    // deadline; nothing is planned or deployed after it.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            EngineError::OutOfTime {
                phase: "environment detection",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(w.order().is_empty());
}
