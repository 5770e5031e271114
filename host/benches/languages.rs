//! The canary strategy in Rust, JavaScript and Python, side by side: cold
//! compile (no cache), warm load from the on-disk cache (read + mmap + link +
//! `describe`), instantiation in a fresh store, and one `plan` call (fresh
//! store + call + plan validation) for 5 and 100 services.
//!
//! Run: `cargo bench -p adeploy --bench languages`. The components come from
//! `plugins/examples/build.sh` (run here; it rebuilds only what changed and
//! needs the tools of `plugins/examples/install-tools.sh`). Cold compiles of
//! the 12–18 MB JS/Python components take seconds, so they are timed with a
//! plain loop of three (median printed), not criterion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adeploy::plugin::{PluginHost, PluginSettings, PluginSource};
use criterion::{Criterion, criterion_group, criterion_main};

mod support;
use support::{ctx, host};

const CANARIES: [&str; 3] = ["canary-rust", "canary-js", "canary-py"];

fn settings() -> PluginSettings {
    PluginSettings {
        timeout_ms: 10_000,
        memory_mb: 256,
        ..PluginSettings::default()
    }
}

/// Builds the examples and returns their directory.
fn examples() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = target.join("plugin-examples");
    let status = std::process::Command::new("bash")
        .arg(root.join("plugins/examples/build.sh"))
        .arg(&out)
        .env("ADEPLOY_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "plugins/examples/build.sh failed; see plugins/examples/install-tools.sh"
    );
    out
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = examples();
    for name in CANARIES {
        let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
        let load = |h: &PluginHost| {
            rt.block_on(h.load(name, PluginSource::Path(dir.join(name)), &bytes, settings()))
                .unwrap()
        };

        // Cold compile: a plain loop, the median of three.
        let mut cold: Vec<Duration> = (0..3)
            .map(|_| {
                let h = host(None);
                let t = Instant::now();
                black_box(load(&h));
                t.elapsed()
            })
            .collect();
        cold.sort();
        println!(
            "{name}/cold_compile: median {:.2?} of {:?} ({} bytes)",
            cold[1],
            cold,
            bytes.len()
        );

        let cache = tempfile::tempdir().unwrap();
        let warm = host(Some(cache.path().to_path_buf()));
        load(&warm); // fills the cache
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        g.bench_function("warm_load_from_cache", |b| {
            let h = host(Some(cache.path().to_path_buf()));
            b.iter(|| black_box(load(&h)))
        });
        let plugin = load(&warm);
        g.bench_function("instantiate", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(plugin.instantiate().await.unwrap()) })
        });
        for n in [5, 100] {
            let cx = ctx(n);
            g.bench_function(format!("plan_{n}_services"), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(plugin.plan(&cx).await.unwrap()) })
            });
        }
        g.finish();
    }
}

criterion_group!(language_benches, benches);
criterion_main!(language_benches);
