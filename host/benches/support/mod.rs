//! What the plugin benchmarks share: a deployment context of `n` services
//! and a plugin host with an empty world.

use adeploy::plugin::{
    DeploymentContext, DeploymentSize, EnvSource, HostOptions, HostWorld, Metrics, PluginHost,
    Service, WitEnvironment, WitResourceLimits,
};

/// `n` services, every one after the fourth depending on the one four before.
pub fn ctx(n: usize) -> DeploymentContext {
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

/// A host with the given component cache and an empty world.
pub fn host(cache: Option<std::path::PathBuf>) -> PluginHost {
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
