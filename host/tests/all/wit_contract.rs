//! The WIT as a public contract (docs/WIT.md): what a change to `wit/` does
//! to the plugins already built against `adeploy:plugin@0.1.0`.
//!
//! The frozen 0.1.0 contract lives in `tests/golden/wit/0.1.0/`. Every world
//! of the current `wit/` must accept a component built against it
//! (wit-component's `semver_check`: a component of the old world must
//! instantiate where the new world is expected — the new world may import
//! more and export less, every type of an existing function must be the
//! same). The other tests pin the rules docs/WIT.md states, each by a patch
//! of the current WIT: an added host function is compatible; an added enum
//! case, record field or exported function is not. And, in wasmtime itself
//! rather than in the validator: a component whose `environment` enum has
//! one more case is refused at load, while the same component built from
//! the real WIT loads and is called.

use std::path::{Path, PathBuf};

use adeploy::config::Grants;
use adeploy::plugin::PluginError;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, PackageId, Resolve, WorldId};

use crate::common::{empty_world, host, settings};

const WORLDS: [&str; 4] = [
    "detector-plugin",
    "strategy-plugin",
    "hook-plugin",
    "metric-provider-plugin",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.wit` files of `dir`, by name.
fn wit_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Adds `files` to `resolve` as one package, its version replaced by
/// `version` (two copies of `adeploy:plugin` can then sit side by side;
/// `semver_check` ignores versions).
fn push(resolve: &mut Resolve, files: &[(String, String)], version: &str) -> PackageId {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let text = text.replace(
            "package adeploy:plugin@0.1.0;",
            &format!("package adeploy:plugin@{version};"),
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    resolve.push_dir(dir.path()).unwrap().0
}

fn world(resolve: &Resolve, package: PackageId, name: &str) -> WorldId {
    resolve
        .select_world(&[package], Some(name))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

/// Whether a component built against `old` still fits where `new` is
/// expected, for every world: the worlds that do not, with the reason.
fn incompatible(old: &[(String, String)], new: &[(String, String)]) -> Vec<String> {
    let mut resolve = Resolve::default();
    let before = push(&mut resolve, old, "0.1.0");
    let after = push(&mut resolve, new, "0.1.1");
    WORLDS
        .iter()
        .filter_map(|w| {
            let prev = world(&resolve, before, w);
            let next = world(&resolve, after, w);
            wit_component::semver_check(resolve.clone(), prev, next)
                .err()
                .map(|e| format!("{w}: {e:#}"))
        })
        .collect()
}

fn current() -> Vec<(String, String)> {
    wit_files(&repo().join("wit"))
}

/// The current WIT with `from` replaced by `to` in `file` (which must
/// contain it: a patch that misses is a broken test, not a compatible change).
fn patched(file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    current()
        .into_iter()
        .map(|(name, text)| {
            if name == file {
                assert!(text.contains(from), "{file} has no {from:?}");
                let text = text.replacen(from, to, 1);
                (name, text)
            } else {
                (name, text)
            }
        })
        .collect()
}

#[test]
fn the_current_wit_accepts_every_plugin_built_against_0_1_0() {
    let frozen = wit_files(&repo().join("tests/golden/wit/0.1.0"));
    assert_eq!(frozen.len(), 7, "the frozen contract's files");
    let broken = incompatible(&frozen, &current());
    assert!(
        broken.is_empty(),
        "wit/ no longer accepts plugins built against adeploy:plugin@0.1.0 (docs/WIT.md says what may change):\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_new_host_function_is_compatible() {
    let grown = patched(
        "host.wit",
        "    now: func() -> u64;",
        "    now: func() -> u64;\n\n    uptime-ms: func() -> u64;",
    );
    assert_eq!(incompatible(&current(), &grown), Vec::<String>::new());
}

#[test]
fn a_new_world_is_compatible() {
    let grown = patched(
        "worlds.wit",
        "world hook-plugin {",
        "world notifier-plugin {\n    import host;\n    export hook;\n}\n\nworld hook-plugin {",
    );
    assert_eq!(incompatible(&current(), &grown), Vec::<String>::new());
}

#[test]
fn a_new_enum_case_breaks_every_plugin_that_uses_the_type() {
    let grown = patched(
        "types.wit",
        "        production,\n",
        "        production,\n        canary,\n",
    );
    let broken = incompatible(&current(), &grown);
    let worlds: Vec<&str> = broken
        .iter()
        .map(|b| b.split(':').next().unwrap_or_default())
        .collect();
    // `environment` is in the deployment context (strategies, hooks) and in
    // the detection; a metric provider never sees it.
    assert_eq!(
        worlds,
        ["detector-plugin", "strategy-plugin", "hook-plugin"],
        "{broken:#?}"
    );
}

#[test]
fn a_new_record_field_breaks_the_plugins_that_use_the_record() {
    let grown = patched(
        "types.wit",
        "        network-latency-ms: option<f64>,\n",
        "        network-latency-ms: option<f64>,\n        swap-percent: f64,\n",
    );
    let broken = incompatible(&current(), &grown);
    assert!(!broken.is_empty());
    assert!(
        broken.iter().any(|b| b.starts_with("strategy-plugin:")),
        "{broken:#?}"
    );
}

#[test]
fn a_new_exported_function_breaks_the_plugins_of_its_world() {
    let grown = patched(
        "hook.wit",
        "    describe: func() -> plugin-info;",
        "    describe: func() -> plugin-info;\n\n    teardown: func();",
    );
    let broken = incompatible(&current(), &grown);
    assert_eq!(broken.len(), 1, "{broken:#?}");
    assert!(broken[0].starts_with("hook-plugin:"), "{broken:#?}");
}

/// A component of `world` built from `files` by wit-component: every export
/// is an `unreachable` trap, so a call fails, but only after wasmtime
/// accepted its types.
fn dummy_component(files: &[(String, String)], world_name: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let package = push(&mut resolve, files, "0.1.0");
    let w = world(&resolve, package, world_name);
    let mut module = wit_component::dummy_module(&resolve, w, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, w, StringEncoding::UTF8, true)
        .unwrap();
    ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[tokio::test]
async fn wasmtime_refuses_a_component_whose_enum_has_one_more_case() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, bytes: Vec<u8>| {
        let path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        let host = &host;
        async move {
            host.load_file(&path, settings(Grants::default(), 2000, 64, "{}"))
                .await
        }
    };
    // Built from the real WIT: the types match, so the host gets as far as
    // calling `describe`, which the dummy traps in.
    let same = load("same", dummy_component(&current(), "strategy-plugin")).await;
    assert!(
        matches!(&same, Err(PluginError::Trap { function: "describe", reason, .. })
            if reason.contains("unreachable")),
        "{same:?}"
    );
    // One more `environment` case and nothing else: refused before any call.
    let grown = patched(
        "types.wit",
        "        production,\n",
        "        production,\n        canary,\n",
    );
    let err = load("grown", dummy_component(&grown, "strategy-plugin"))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    // Refused while the host binds the component's functions, before any of
    // its code runs: a link error naming the mismatch.
    assert!(
        matches!(&err, PluginError::Link { plugin, .. } if plugin == "grown"),
        "{err:?}"
    );
    assert!(
        msg.contains("type mismatch") && msg.contains("expected enum of 4 names, found 5 names"),
        "wasmtime's exact type check: {msg}"
    );
    assert!(!msg.contains("unreachable"), "never called: {msg}");
}
