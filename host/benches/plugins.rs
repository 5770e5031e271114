//! Plugin host costs: cold compile of a strategy component, warm load from the
//! on-disk cache (what a second process does: read, mmap, link, describe), instantiation
//! in a fresh store, and one `plan` call (instantiate + call) for 5 and 100
//! services. Run: `cargo bench -p adeploy --bench plugins`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use adeploy::plugin::{
    DeploymentContext, DeploymentSize, EnvSource, HostOptions, HostWorld, Metrics, PluginHost,
    PluginSettings, PluginSource, Service, WitEnvironment, WitResourceLimits, builtin_component,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn ctx(n: usize) -> DeploymentContext {
    let services = (0..n)
        .map(|i| Service {
            name: format!("svc{i}"),
            depends_on: if i >= 4 {
                vec![format!("svc{}", i - 4)]
            } else {
                vec![]
            },
            hosts: vec![],
            has_health_check: true,
            timeout_s: 60,
        })
        .collect();
    DeploymentContext {
        deployment_id: "deploy_bench".into(),
        environment: WitEnvironment::Staging,
        size: DeploymentSize::Medium,
        services,
        metrics: Metrics {
            cpu_percent: 10.0,
            memory_percent: 20.0,
            disk_percent: 30.0,
            load_per_core: 0.1,
            network_latency_ms: None,
        },
        limits: WitResourceLimits {
            cpu_limit: 0.7,
            memory_limit: 0.7,
            concurrency: 4,
        },
        max_time_minutes: None,
        dry_run: false,
        config: "{}".into(),
    }
}

fn host(cache: Option<std::path::PathBuf>) -> PluginHost {
    let world = HostWorld {
        env: EnvSource::Fixed(Default::default()),
        ..HostWorld::default()
    };
    PluginHost::new(HostOptions {
        cache_dir: cache,
        world,
        max_memory_mb: 1024,
    })
    .unwrap()
}

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
