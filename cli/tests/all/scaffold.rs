//! `adeploy plugins new`: every kind in every language scaffolds a project
//! whose one build command (`./build.sh`) gives a component that loads
//! without edits. Slow (nine builds, 3–5 min): one test does them all, one at
//! a time, the Rust projects sharing one cargo target dir.
//!
//! The JavaScript projects get the pinned jco that `plugins/examples` uses
//! (a `node_modules` symlink), so the test installs nothing; their build.sh
//! runs `npm install` itself only when `node_modules` lacks jco.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::World;
use crate::common::{adeploy, adeploy_command};
use crate::examples::{built_examples, repo_root, target_dir};

const KINDS: [&str; 3] = ["strategy", "detector", "hook"];
const LANGS: [&str; 3] = ["rust", "js", "python"];

fn build(dir: &Path) -> Result<(), String> {
    let o = Command::new("bash")
        .arg(dir.join("build.sh"))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("tmp/scaffold-target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: build.sh failed ({})\n{}{}",
            dir.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

#[test]
fn plugins_new_scaffolds_every_kind_and_language_that_build_and_load() {
    // The example build checks (loudly) that jco and componentize-py are installed.
    built_examples();
    let w = World::new();
    let root = w.dir.path();
    let state = w.state();
    let mut projects: Vec<(String, &str, PathBuf)> = Vec::new();
    for lang in LANGS {
        for kind in KINDS {
            let name = format!("my-{lang}-{kind}");
            let dir = root.join(&name);
            let o = adeploy(
                &[
                    "plugins",
                    "new",
                    &name,
                    "--kind",
                    kind,
                    "--lang",
                    lang,
                    "--dir",
                    dir.to_str().unwrap(),
                ],
                root,
                &state,
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains(&format!("build:   cd {} && ./build.sh", dir.display())),
                "{out}"
            );
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
            assert!(
                readme.contains("./build.sh"),
                "the README names the build command"
            );
            if lang == "js" {
                std::os::unix::fs::symlink(
                    repo_root().join("plugins/examples/node_modules"),
                    dir.join("node_modules"),
                )
                .unwrap();
            }
            projects.push((name, kind, dir));
        }
    }

    // Build one at a time: the other tests of this binary run meanwhile, and
    // some of them time real commands.
    let errors: Vec<String> = projects
        .iter()
        .filter_map(|(_, _, d)| build(d).err())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));

    // Each loads as built, with its manifest; a strategy plans a real deployment.
    let services = [
        w.service("a", &[], "{command: 'true'}"),
        w.service("b", &[], "{command: 'true'}"),
    ]
    .concat();
    let cfg = w.write_config(&services);
    for (name, kind, dir) in &projects {
        let wasm = dir.join(format!("{name}.wasm"));
        let o = adeploy(
            &["plugins", "inspect", "--json", wasm.to_str().unwrap()],
            root,
            &state,
        );
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["name"], name.as_str());
        assert_eq!(v["kind"], *kind, "{name}");
        assert_eq!(v["manifest"]["name"], name.as_str());
        assert_eq!(v["version"], "0.1.0");

        let dir_s = dir.to_str().unwrap();
        let o = if *kind == "strategy" {
            adeploy(
                &[
                    "run",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--plugins",
                    dir_s,
                    "--strategy",
                    name,
                    "--services",
                    "a",
                    "b",
                    "--environment",
                    "staging",
                    "--dry-run",
                    "--json",
                ],
                root,
                &state,
            )
        } else {
            // Detectors and hooks: every plugin of the directory is loaded and described.
            adeploy(
                &[
                    "plugins",
                    "list",
                    "--json",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--plugins",
                    dir_s,
                ],
                root,
                &state,
            )
        };
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if *kind == "strategy" {
            assert_eq!(
                v["report"]["plan"]["waves"],
                serde_json::json!([["a"], ["b"]]),
                "{name}"
            );
        } else {
            let names: Vec<&str> = v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&name.as_str()), "{name}: {names:?}");
        }
    }

    // The scaffolded detectors read APP_ENV when the config grants it.
    for lang in LANGS {
        let name = format!("my-{lang}-detector");
        let granted = root.join(format!("{name}.yaml"));
        std::fs::write(
            &granted,
            format!("plugins:\n  {name}: {{grants: {{env: [APP_ENV]}}}}\n"),
        )
        .unwrap();
        let o = adeploy_command(root, &state)
            .args([
                "diagnostics",
                "--json",
                "--config",
                granted.to_str().unwrap(),
                "--plugins",
            ])
            .arg(root.join(&name))
            .env("APP_ENV", "prod")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("APP_ENV=prod"),
            "{name}: {text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // The Rust strategy reads its config with the vendored SDK: its own key
    // works, a misspelt one refuses the deployment, naming the key.
    let rust_strategy = root.join("my-rust-strategy");
    assert!(rust_strategy.join("adeploy-sdk/src/config.rs").is_file());
    for (config, expected) in [
        ("{first_wave: 2}", Ok("the first 2 step(s), then the rest")),
        (
            "{first: 2}",
            Err("unknown config key `first` (accepted: first_wave, samples, interval_ms, soak_s)"),
        ),
    ] {
        let cfg = w.write_config(&services);
        let text = std::fs::read_to_string(&cfg).unwrap().replacen(
            "plugins:\n",
            &format!("plugins:\n  my-rust-strategy: {{config: {config}}}\n"),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        let o = adeploy(
            &[
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--plugins",
                rust_strategy.to_str().unwrap(),
                "--strategy",
                "my-rust-strategy",
                "--services",
                "a",
                "b",
                "--environment",
                "staging",
                "--dry-run",
                "--json",
            ],
            root,
            &state,
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        match expected {
            Ok(note) => {
                assert!(o.status.success(), "{config}: {stderr}");
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(v["report"]["plan"]["notes"][0], note, "{config}");
            }
            Err(message) => {
                assert_ne!(o.status.code(), Some(0), "{config}");
                assert!(stderr.contains(message), "{config}: {stderr}");
            }
        }
    }

    // Bad input: one line, exit 2, nothing created.
    let existing = projects[0].2.to_str().unwrap();
    for (args, expected) in [
        (
            vec![
                "plugins",
                "new",
                "My_Plugin",
                "--kind",
                "hook",
                "--lang",
                "js",
            ],
            "plugin name 'My_Plugin'",
        ),
        (
            vec![
                "plugins", "new", "fresh", "--kind", "hook", "--lang", "rust", "--dir", existing,
            ],
            "already exists",
        ),
    ] {
        let o = adeploy(&args, root, &state);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(expected) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    assert!(!root.join("My_Plugin").exists());
}
