//! What the plugin benchmarks share: a deployment context of `n` services
//! and a plugin host with an empty world.

use adeploy::plugin::{
    DeploymentContext, EnvSource, HostOptions, HostWorld, PluginHost, WitEnvironment,
};

// The tests' helpers, shared by path: one deployment-context builder for the
// tests and the benchmarks.
#[allow(dead_code, unused_imports, clippy::panic)]
#[path = "../../tests/all/common.rs"]
mod common;

/// `n` services, every one after the fourth depending on the one four before,
/// in the tests' staging context (`common::ctx`) named `deploy_bench`.
pub fn ctx(n: usize) -> DeploymentContext {
    let services = (0..n)
        .map(|i| {
            let dep = (i >= 4).then(|| format!("svc{}", i - 4));
            let deps: Vec<&str> = dep.iter().map(String::as_str).collect();
            common::service(&format!("svc{i}"), &deps)
        })
        .collect();
    DeploymentContext {
        deployment_id: "deploy_bench".into(),
        ..common::ctx(services, WitEnvironment::Staging)
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
