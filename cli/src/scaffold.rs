//! `adeploy plugins new`: a plugin project to start from, in Rust, JavaScript
//! or Python, for any of the four kinds.
//!
//! Why the projects are self-contained: a plugin author's repository should
//! not need this one. Each project carries a copy of `wit/` (the only thing a
//! plugin depends on), a manifest, a README and one build command
//! (`./build.sh`) that leaves `NAME.wasm` beside `NAME.toml`, so the project
//! directory is itself a `--plugins` directory. The Rust project uses
//! wit-bindgen directly rather than adeploy-sdk, which is not published.
//! The templates live in `cli/templates/` and are compiled into the binary.

use std::path::{Path, PathBuf};

use adeploy::plugin::PluginKind;

/// The SDK's sources, vendored into every Rust project (`adeploy-sdk/src/`),
/// so that a plugin written outside this repository gets the same traits,
/// export macros, helpers and typed config as the built-ins. Its bindings
/// read `../wit`, the project's copy of the WIT.
const SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("config.rs", include_str!("../../sdk/src/config.rs")),
    ("detector.rs", include_str!("../../sdk/src/detector.rs")),
    ("hook.rs", include_str!("../../sdk/src/hook.rs")),
    ("provider.rs", include_str!("../../sdk/src/provider.rs")),
    ("strategy.rs", include_str!("../../sdk/src/strategy.rs")),
    ("testing.rs", include_str!("../../sdk/src/testing.rs")),
];

/// The vendored SDK's manifest: the versions of the workspace's, pinned.
const SDK_MANIFEST: &str = include_str!("../templates/rust/sdk/Cargo.toml");

/// The WIT package, copied into every project.
const WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../wit/types.wit")),
    ("host.wit", include_str!("../../wit/host.wit")),
    ("detector.wit", include_str!("../../wit/detector.wit")),
    ("strategy.wit", include_str!("../../wit/strategy.wit")),
    ("hook.wit", include_str!("../../wit/hook.wit")),
    (
        "metric-provider.wit",
        include_str!("../../wit/metric-provider.wit"),
    ),
    ("worlds.wit", include_str!("../../wit/worlds.wit")),
];

const README: &str = include_str!("../templates/common/README.md");
const MANIFEST: &str = include_str!("../templates/common/manifest.toml");

/// The language of a scaffolded plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// wit-bindgen 0.63, `cargo build --target wasm32-wasip2`.
    Rust,
    /// jco 1.35 `componentize` (componentize-js 0.23).
    Js,
    /// componentize-py 0.25.1.
    Python,
}

impl Lang {
    /// The name `--lang` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `adeploy plugins new` was asked for.
#[derive(Debug, Clone)]
pub struct ScaffoldRequest {
    pub name: String,
    pub kind: PluginKind,
    pub lang: Lang,
    /// The project directory to create; it must not exist.
    pub dir: PathBuf,
}

/// A created project.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scaffolded {
    pub name: String,
    pub kind: PluginKind,
    pub lang: Lang,
    pub dir: PathBuf,
    /// Files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The one command that builds the component.
    pub build_command: String,
    /// Where the build leaves the component.
    pub component: PathBuf,
}

/// Why a project was not created. Nothing is written in any of these cases
/// except `Write`, which removes what it had created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    #[error(
        "plugin name '{name}' {reason}; use lowercase letters, digits and single dashes, starting with a letter (e.g. my-canary)"
    )]
    BadName { name: String, reason: &'static str },
    #[error("{} already exists; choose another NAME or --dir", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Checks a plugin name: 1 to 64 of `a-z`, `0-9` and `-`, starting with a
/// letter, no trailing or doubled dash. It names the crate, the npm package,
/// the component file and the config key, so it must suit all of them.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |reason| {
        Err(ScaffoldError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 64 {
        return bad("is longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("does not start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return bad("has characters other than a-z, 0-9 and -");
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("has a trailing or doubled dash");
    }
    Ok(())
}

fn world_name(kind: PluginKind) -> String {
    format!("{}-plugin", kind.interface())
}

/// The files of a project, as (relative path, contents, executable).
fn files(req: &ScaffoldRequest) -> Vec<(PathBuf, String, bool)> {
    let name = req.name.as_str();
    let kind = req.kind;
    let description = format!("a {} {kind} plugin", req.lang.display_name());
    let source = match (req.lang, kind) {
        (Lang::Rust, PluginKind::Strategy) => include_str!("../templates/rust/strategy.rs"),
        (Lang::Rust, PluginKind::Detector) => include_str!("../templates/rust/detector.rs"),
        (Lang::Rust, PluginKind::Hook) => include_str!("../templates/rust/hook.rs"),
        (Lang::Js, PluginKind::Strategy) => include_str!("../templates/js/strategy.js"),
        (Lang::Js, PluginKind::Detector) => include_str!("../templates/js/detector.js"),
        (Lang::Js, PluginKind::Hook) => include_str!("../templates/js/hook.js"),
        (Lang::Python, PluginKind::Strategy) => include_str!("../templates/python/strategy.py"),
        (Lang::Python, PluginKind::Detector) => include_str!("../templates/python/detector.py"),
        (Lang::Python, PluginKind::Hook) => include_str!("../templates/python/hook.py"),
        (Lang::Rust, PluginKind::MetricProvider) => {
            include_str!("../templates/rust/metric-provider.rs")
        }
        (Lang::Js, PluginKind::MetricProvider) => {
            include_str!("../templates/js/metric-provider.js")
        }
        (Lang::Python, PluginKind::MetricProvider) => {
            include_str!("../templates/python/metric-provider.py")
        }
    };
    let (grants, use_line) = match kind {
        PluginKind::Detector => (
            "env = [\"APP_ENV\"]",
            format!(
                "adeploy diagnostics --plugins .   # with plugins.{name}.grants.env: [APP_ENV] in the config"
            ),
        ),
        PluginKind::Strategy => (
            "",
            format!("adeploy run --plugins . --strategy {name} --services …"),
        ),
        PluginKind::Hook => (
            "",
            "adeploy run --plugins . --services …   # hooks run at every phase".to_string(),
        ),
        PluginKind::MetricProvider => (
            "",
            format!(
                "adeploy run --plugins . --services …   # with `provider: {name}` in services.<svc>.analysis.metrics"
            ),
        ),
    };
    let build_notes = match req.lang {
        Lang::Rust => "It runs `cargo build --release --target wasm32-wasip2` (adding the target \
                       with rustup when it is missing) and copies the component here. The plugin \
                       is written with adeploy-sdk, vendored in `adeploy-sdk/` (the sources of \
                       adeploy's `sdk/` crate: traits, export macros, helpers, typed config; \
                       `cargo doc --open -p adeploy-sdk` shows them); `cargo test` runs its unit \
                       tests natively."
            .to_string(),
        Lang::Js => {
            "It installs the pinned jco into `node_modules` on the first run (`npm install`; \
                     needs Node.js 20), then runs `npm run build` (`jco componentize`)."
                .to_string()
        }
        Lang::Python => "It runs `componentize-py`; install it first with \
                         `pip install componentize-py==0.25.1`."
            .to_string(),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{kind}}", kind.interface())
            .replace("{{world}}", kind.world())
            .replace("{{world_name}}", &world_name(kind))
            .replace("{{lang}}", req.lang.as_str())
            .replace("{{language}}", req.lang.display_name())
            .replace("{{description}}", &description)
            .replace("{{grants}}", grants)
            .replace("{{use_line}}", &use_line)
            .replace("{{build_notes}}", &build_notes)
    };
    let mut out: Vec<(PathBuf, String, bool)> = vec![
        ("README.md".into(), fill(README), false),
        (format!("{name}.toml").into(), fill(MANIFEST), false),
    ];
    for (file, text) in WIT {
        out.push((Path::new("wit").join(file), (*text).to_string(), false));
    }
    match req.lang {
        Lang::Rust => {
            out.push((
                Path::new("adeploy-sdk").join("Cargo.toml"),
                SDK_MANIFEST.to_string(),
                false,
            ));
            for (file, text) in SDK {
                out.push((
                    Path::new("adeploy-sdk/src").join(file),
                    (*text).to_string(),
                    false,
                ));
            }
            out.push((
                "Cargo.toml".into(),
                fill(include_str!("../templates/rust/Cargo.toml")),
                false,
            ));
            out.push(("src/lib.rs".into(), fill(source), false));
            out.push((
                "build.sh".into(),
                fill(include_str!("../templates/rust/build.sh")),
                true,
            ));
            out.push((".gitignore".into(), "/target\n*.wasm\n".into(), false));
        }
        Lang::Js => {
            out.push((
                "package.json".into(),
                fill(include_str!("../templates/js/package.json")),
                false,
            ));
            out.push((format!("{name}.js").into(), fill(source), false));
            out.push((
                "build.sh".into(),
                fill(include_str!("../templates/js/build.sh")),
                true,
            ));
            out.push((".gitignore".into(), "node_modules/\n*.wasm\n".into(), false));
        }
        Lang::Python => {
            out.push(("app.py".into(), fill(source), false));
            out.push((
                "build.sh".into(),
                fill(include_str!("../templates/python/build.sh")),
                true,
            ));
            out.push((".gitignore".into(), "__pycache__/\n*.wasm\n".into(), false));
        }
    }
    out
}

/// Creates the project. The directory must not exist (its parent may not
/// either); on a write error the directory is removed again.
pub fn scaffold(req: &ScaffoldRequest) -> Result<Scaffolded, ScaffoldError> {
    check_name(&req.name)?;
    if req.dir.exists() {
        return Err(ScaffoldError::Exists {
            path: req.dir.clone(),
        });
    }
    let files = files(req);
    let write_all = || -> Result<(), ScaffoldError> {
        for (rel, text, executable) in &files {
            let path = req.dir.join(rel);
            let err = |source| ScaffoldError::Write {
                path: path.clone(),
                source,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            std::fs::write(&path, text).map_err(err)?;
            if *executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(err)?;
            }
        }
        Ok(())
    };
    if let Err(e) = write_all() {
        let _ = std::fs::remove_dir_all(&req.dir);
        return Err(e);
    }
    Ok(Scaffolded {
        name: req.name.clone(),
        kind: req.kind,
        lang: req.lang,
        dir: req.dir.clone(),
        files: files.into_iter().map(|(rel, _, _)| rel).collect(),
        build_command: "./build.sh".to_string(),
        component: req.dir.join(format!("{}.wasm", req.name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendored SDK is all of `sdk/src`, with the dependencies of
    /// `sdk/Cargo.toml` at the workspace's versions.
    #[test]
    fn the_vendored_sdk_is_the_whole_sdk_at_the_workspace_versions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("sdk/src"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut vendored: Vec<String> = SDK.iter().map(|(f, _)| f.to_string()).collect();
        vendored.sort();
        assert_eq!(
            vendored, on_disk,
            "cli/src/scaffold.rs SDK lists every file of sdk/src"
        );

        let sdk = std::fs::read_to_string(root.join("sdk/Cargo.toml")).unwrap();
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let deps = sdk
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap();
        for line in deps.lines().filter(|l| l.contains(".workspace = true")) {
            let name = line.split(".workspace").next().unwrap().trim();
            let pinned = workspace
                .lines()
                .find(|l| l.starts_with(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("{name} is not in [workspace.dependencies]"));
            let vendored = SDK_MANIFEST
                .lines()
                .find(|l| l.starts_with(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("the vendored SDK manifest lacks {name}"));
            assert_eq!(
                vendored, pinned,
                "cli/templates/rust/sdk/Cargo.toml pins {name} as the workspace does"
            );
        }
    }

    #[test]
    fn names_that_suit_every_language() {
        for ok in ["canary", "my-canary2", "a"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Canary",
            "2fast",
            "my_canary",
            "my--canary",
            "canary-",
            "a b",
            "ä",
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("plugin name '{bad}' ")), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn every_project_has_wit_manifest_readme_and_build_script() {
        let tmp = tempfile::tempdir().unwrap();
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            for kind in [
                PluginKind::Strategy,
                PluginKind::Detector,
                PluginKind::Hook,
                PluginKind::MetricProvider,
            ] {
                let dir = tmp.path().join(format!("{lang}-{kind}"));
                let req = ScaffoldRequest {
                    name: "my-plugin".into(),
                    kind,
                    lang,
                    dir: dir.clone(),
                };
                let done = scaffold(&req).unwrap();
                for f in ["README.md", "my-plugin.toml", "build.sh", "wit/worlds.wit"] {
                    assert!(dir.join(f).is_file(), "{lang} {kind}: {f}");
                }
                for (rel, _) in WIT {
                    assert!(dir.join("wit").join(rel).is_file());
                }
                // The vendored SDK is copied as it is (its format strings
                // have braces of their own).
                let all: String = done
                    .files
                    .iter()
                    .filter(|f| !f.starts_with("adeploy-sdk"))
                    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
                    .collect();
                assert!(!all.contains("{{"), "{lang} {kind}: a placeholder is left");
                let manifest =
                    adeploy::plugin::Manifest::read(&dir.join("my-plugin.toml")).unwrap();
                assert_eq!((manifest.name.as_str(), manifest.kind), ("my-plugin", kind));
                assert!(matches!(
                    scaffold(&req).unwrap_err(),
                    ScaffoldError::Exists { .. }
                ));
            }
        }
    }
}
