//! Builds the built-in plugins (plugins/*) for wasm32-wasip2 and generates
//! `$OUT_DIR/builtins.rs`, which embeds them, so that a plain
//! `cargo build --release` gives a binary that works without a plugin directory.

use std::path::PathBuf;

const BUILTINS: &[(&str, &str)] = &[
    ("detector", "adeploy-plugin-detector"),
    ("conservative", "adeploy-plugin-conservative"),
    ("balanced", "adeploy-plugin-balanced"),
    ("aggressive", "adeploy-plugin-aggressive"),
    ("http-smoke", "adeploy-plugin-http-smoke"),
    ("prometheus", "adeploy-plugin-prometheus"),
    // Registered only when `experimental.enable_canary_deployments` is on.
    ("canary", "adeploy-plugin-canary"),
];

/// The source directories of `BUILTINS`, relative to the workspace root.
const BUILTIN_DIRS: &[&str] = &[
    "plugins/detector",
    "plugins/conservative",
    "plugins/balanced",
    "plugins/aggressive",
    "plugins/http-smoke",
    "plugins/prometheus",
    "plugins/examples/canary-rust",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let root = adeploy_guest_build::workspace_root(&manifest_dir)?;
    let target = adeploy_guest_build::target_dir(&out_dir)?;
    let packages: Vec<&str> = BUILTINS.iter().map(|(_, p)| *p).collect();
    // Each built-in's own directory, not all of plugins/: plugins/examples
    // also holds node_modules and the Python caches its builds write, which
    // must not re-run this script.
    let mut watch = vec!["sdk", "wit", "Cargo.toml"];
    watch.extend(BUILTIN_DIRS);
    let guests = adeploy_guest_build::build(&root, &target, &packages, &watch)?;
    let mut src = String::from(
        "/// The built-in plugins: (name, component bytes).\npub(crate) static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for ((name, _), guest) in BUILTINS.iter().zip(&guests) {
        src.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            guest.wasm.display().to_string()
        ));
    }
    src.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), src).map_err(|e| e.to_string())?;
    Ok(())
}
