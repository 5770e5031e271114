//! Plugin host costs: cold compile of a strategy component, warm load from the
//! on-disk cache (what a second process does: read, mmap, link, describe), instantiation
//! in a fresh store, and one `plan` call (instantiate + call) for 5 and 100
//! services. Run: `cargo bench -p adeploy --bench plugins`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use adeploy::plugin::{PluginSettings, PluginSource, builtin_component};
use criterion::{Criterion, criterion_group, criterion_main};

mod support;
use support::{ctx, host};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes = builtin_component("balanced").unwrap();
    let cache = tempfile::tempdir().unwrap();

    let mut g = c.benchmark_group("plugin");
    g.sample_size(10);
    g.bench_function("cold_compile", |b| {
        let h = host(None);
        b.to_async(&rt).iter(|| async {
            black_box(
                h.load(
                    "balanced",
                    PluginSource::BuiltIn,
                    bytes,
                    PluginSettings::default(),
                )
                .await
                .unwrap(),
            )
        })
    });
    // Fill the cache once; every later load reads the artifact from disk.
    rt.block_on(host(Some(cache.path().to_path_buf())).load(
        "balanced",
        PluginSource::BuiltIn,
        bytes,
        PluginSettings::default(),
    ))
    .unwrap();
    g.sample_size(50);
    g.bench_function("warm_load_from_cache", |b| {
        let h = host(Some(cache.path().to_path_buf()));
        b.to_async(&rt).iter(|| async {
            black_box(
                h.load(
                    "balanced",
                    PluginSource::BuiltIn,
                    bytes,
                    PluginSettings::default(),
                )
                .await
                .unwrap(),
            )
        })
    });
    g.finish();

    let h = host(Some(cache.path().to_path_buf()));
    let plugin = rt
        .block_on(h.load(
            "balanced",
            PluginSource::BuiltIn,
            bytes,
            PluginSettings::default(),
        ))
        .unwrap();
    c.bench_function("plugin/instantiate", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(plugin.instantiate().await.unwrap()) })
    });
    c.bench_function("plugin/describe", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(plugin.describe().await.unwrap()) })
    });
    for n in [5, 100] {
        let cx = ctx(n);
        c.bench_function(&format!("plugin/plan_{n}_services"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(plugin.plan(&cx).await.unwrap()) })
        });
    }
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
