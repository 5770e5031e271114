//! What plugins are told about a deployment (the WIT `deployment-context`),
//! and the limits the config sets for it.

use std::time::Duration;

use crate::config::{Config, Environment, ResourceLimits, ServiceConfig};
use crate::monitor::Snapshot;
use crate::plugin::{DeploymentContext, Metrics, Service, WitResourceLimits};

use super::types::{DeploymentRequest, DeploymentSize};

/// The context strategy and hook plugins receive (each with its own config
/// filled in when it is called).
pub(crate) fn deployment_context(
    config: &Config,
    id: &str,
    req: &DeploymentRequest,
    environment: Environment,
    metrics: &Snapshot,
    limits: &ResourceLimits,
) -> DeploymentContext {
    DeploymentContext {
        deployment_id: id.to_string(),
        environment: environment.into(),
        size: match req.size {
            DeploymentSize::Small => crate::plugin::DeploymentSize::Small,
            DeploymentSize::Medium => crate::plugin::DeploymentSize::Medium,
            DeploymentSize::Large => crate::plugin::DeploymentSize::Large,
        },
        services: req
            .services
            .iter()
            .filter_map(|name| {
                let s = config.services.get(name)?;
                Some(Service {
                    name: name.clone(),
                    depends_on: s.depends_on.clone(),
                    hosts: config.hosts_of(name),
                    has_health_check: s.health.is_some(),
                    timeout_s: u32::try_from(service_timeout(s).as_secs()).unwrap_or(u32::MAX),
                })
            })
            .collect(),
        metrics: wit_metrics(metrics),
        limits: WitResourceLimits {
            cpu_limit: limits.cpu_limit,
            memory_limit: limits.memory_limit,
            concurrency: limits.concurrency,
        },
        max_time_minutes: req
            .max_time
            .map(|d| u32::try_from(d.as_secs().div_ceil(60)).unwrap_or(u32::MAX)),
        dry_run: req.dry_run,
        config: "{}".to_string(),
    }
}

/// A reading as plugins receive it.
pub(crate) fn wit_metrics(m: &Snapshot) -> Metrics {
    Metrics {
        cpu_percent: m.cpu_percent,
        memory_percent: m.memory_percent,
        disk_percent: m.disk_percent,
        load_per_core: m.load_per_core,
        network_latency_ms: m.network_latency_ms,
    }
}

/// `resource_limits.<strategy>`, else the balanced ones, else 70 % and 4.
pub(crate) fn limits_for(config: &Config, strategy: &str) -> ResourceLimits {
    config
        .resource_limits
        .get(strategy)
        .or_else(|| config.resource_limits.get("balanced"))
        .cloned()
        .unwrap_or(ResourceLimits {
            cpu_limit: 0.7,
            memory_limit: 0.7,
            concurrency: 4,
        })
}

/// A service's deadline for one deploy including its health checks.
pub(crate) fn service_timeout(s: &ServiceConfig) -> Duration {
    Duration::from_secs(s.timeout_s.unwrap_or(120).max(1))
}
