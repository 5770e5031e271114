//! The `adeploy` binary: plugins list and inspect, exit codes, the cache.

use std::path::Path;
use std::process::Output;

use crate::common::adeploy_command;

/// `adeploy ARGS` with its own component cache (and a state dir inside it).
fn adeploy(args: &[&str], cache: &Path) -> Output {
    adeploy_command(cache, &cache.join("state"))
        .env("ADEPLOY_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plugins_list_json_has_the_six_builtins_and_the_cache_works_across_processes() {
    let cache = tempfile::tempdir().unwrap();
    let first = adeploy(&["plugins", "list", "--json"], cache.path());
    assert!(first.status.success(), "{}", stderr(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let plugins = v["plugins"].as_array().unwrap();
    let mut names: Vec<(&str, &str)> = plugins
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("aggressive", "strategy"),
            ("balanced", "strategy"),
            ("conservative", "strategy"),
            ("detector", "detector"),
            ("http-smoke", "hook"),
            ("prometheus", "metric-provider"),
        ]
    );
    for p in plugins {
        assert_eq!(p["source"], "built-in");
        assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(p["wit_version"], "0.1.0");
        assert_eq!(p["load"]["outcome"], "compiled", "a fresh cache compiles");
        assert!(p["grants"].is_object());
    }
    let detector = plugins.iter().find(|p| p["name"] == "detector").unwrap();
    assert_eq!(detector["grants"]["hostname"], true);

    let second = adeploy(&["plugins", "list", "--json"], cache.path());
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    for p in v["plugins"].as_array().unwrap() {
        assert_eq!(
            p["load"]["outcome"], "cached",
            "a second process must not recompile {}",
            p["name"]
        );
    }

    let text = adeploy(&["plugins", "list"], cache.path());
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("http-smoke") && out.contains("built-in"),
        "{out}"
    );
}

#[test]
fn inspect_rejects_non_wasm_and_core_modules_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "this is not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let missing = dir.path().join("missing.wasm");
    for (path, expect) in [
        (&text, "is not a WebAssembly file"),
        (&core, "is a core WebAssembly module, not a component"),
        (&missing, "cannot read"),
    ] {
        let o = adeploy(
            &["plugins", "inspect", path.to_str().unwrap()],
            cache.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("error: plugin '") && err.contains(expect),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn inspect_shows_world_imports_exports_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("echo.wasm");
    std::fs::copy(adeploy_fixtures::ECHO, &wasm).unwrap();
    std::fs::write(
        dir.path().join("echo.toml"),
        "name = \"echo\"\nkind = \"hook\"\nversion = \"9.9.9\"\ndescription = \"says what happens\"\n[grants]\nnetwork = [\"127.0.0.1:80\"]\n",
    )
    .unwrap();
    let o = adeploy(
        &["plugins", "inspect", wasm.to_str().unwrap(), "--json"],
        cache.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "hook");
    assert_eq!(v["world"], "adeploy:plugin/hook-plugin@0.1.0");
    assert_eq!(v["version"], "9.9.9", "the manifest's version wins");
    assert!(
        v["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "adeploy:plugin/hook@0.1.0")
    );
    assert!(
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "adeploy:plugin/types@0.1.0")
    );
    assert_eq!(v["manifest"]["grants"]["network"][0], "127.0.0.1:80");

    let o = adeploy(
        &["plugins", "inspect", wasm.to_str().unwrap()],
        cache.path(),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("world:       adeploy:plugin/hook-plugin@0.1.0"),
        "{text}"
    );
}

#[test]
fn plugins_dir_overrides_a_builtin_by_name_and_pins_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(
        adeploy_fixtures::BOGUS,
        dir.path().join("conservative.wasm"),
    )
    .unwrap();
    let o = adeploy(
        &[
            "plugins",
            "list",
            "--json",
            "--plugins",
            dir.path().to_str().unwrap(),
        ],
        cache.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "conservative")
        .unwrap();
    assert_eq!(c["builtin"], false);
    assert!(c["source"].as_str().unwrap().ends_with("conservative.wasm"));

    // A config that pins a different digest refuses to load the file.
    let cfg = dir.path().join("pin.yaml");
    std::fs::write(
        &cfg,
        format!(
            "plugins:\n  echo:\n    path: {}\n    sha256: {}\n",
            adeploy_fixtures::ECHO,
            "0".repeat(64)
        ),
    )
    .unwrap();
    let o = adeploy(
        &["plugins", "list", "--config", cfg.to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("plugin 'echo'") && err.contains("but the config pins 0000"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn config_errors_exit_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "plugins:\n  detector:\n    grant: {}\n").unwrap();
    let o = adeploy(
        &["plugins", "list", "--config", cfg.to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml:3:5: plugins.detector: unknown field `grant`"),
        "{err}"
    );
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "plugins:\n  nosuch:\n    grants: {}\n").unwrap();
    let o = adeploy(
        &["plugins", "list", "--config", unknown.to_str().unwrap()],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no plugin named 'nosuch'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_rejects_unknown_worlds_and_incompatible_versions_with_exit_2() {
    let cache = tempfile::tempdir().unwrap();
    let o = adeploy(
        &["plugins", "inspect", adeploy_fixtures::ALIEN],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: plugin 'alien' implements no adeploy world")
            && err.contains("it exports: acme:other/greeter"),
        "{err}"
    );

    let o = adeploy(
        &["plugins", "inspect", adeploy_fixtures::FUTURE],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("plugin 'future' was built against adeploy:plugin@0.2.0; this adeploy supports adeploy:plugin@0.1.x"),
        "{err}"
    );
}
