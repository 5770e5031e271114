//! Ready-made inputs for plugin authors' native unit tests.
//!
//! Why: plugin crates also build and test natively (the export macros emit
//! the component exports only on `wasm32`), so a strategy's `plan` and
//! `on_progress` can be called directly from `#[test]`s. Their inputs are
//! large records most of whose fields a given test does not care about; these
//! builders fill them with fixed, plausible values so a test states only what
//! it checks, and every plugin's tests start from the same inputs.
//!
//! What: [`service`], [`metrics`], [`context`], [`progress`] and
//! [`metric_query`]. The values
//! they fill in are part of their documentation and stay stable; change any
//! field a test depends on with an assignment or struct update syntax
//! (`Progress { message: "timed out".into(), ..progress(kind, None) }`).
//!
//! The module holds plain constructors with no test-only dependencies, so it
//! is always compiled; a plugin that does not call it pays nothing for it.
//!
//! ```
//! use adeploy_sdk::strategy::{self, Decision, ProgressKind, Rollout, Strategy};
//! use adeploy_sdk::testing::{context, progress, service};
//! use adeploy_sdk::types::{DeploymentContext, Environment, PluginInfo};
//!
//! struct OneWave;
//!
//! impl Strategy for OneWave {
//!     fn describe() -> PluginInfo {
//!         adeploy_sdk::info("one-wave", "0.1.0", "everything at once")
//!     }
//!     fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
//!         # use adeploy_sdk::strategy::{FailurePolicy, RollbackScope, ValidationPolicy};
//!         Ok(Rollout {
//!             waves: strategy::single_wave(&ctx.services)?,
//!             concurrency: ctx.limits.concurrency,
//!             validation: ValidationPolicy { health_checks: true, samples: 1, interval_ms: 500, soak_s: 0 },
//!             failure: FailurePolicy { max_failures: 0, rollback_scope: RollbackScope::All },
//!             notes: vec![],
//!         })
//!     }
//! }
//!
//! let services = vec![service("db", &[], &[]), service("api", &["db"], &["h1", "h2"])];
//! let plan = OneWave::plan(context(Environment::Staging, services, "")).unwrap();
//! assert_eq!(plan.waves[0].steps.len(), 3);
//! assert_eq!(plan.concurrency, 3);
//!
//! let ctx = context(Environment::Staging, vec![], "");
//! let over = progress(ProgressKind::OverBudget, None);
//! assert!(matches!(OneWave::on_progress(ctx, over), Decision::Pause(10)));
//! ```

use crate::provider::{MetricQuery, TimeWindow};
use crate::strategy::{Progress, ProgressKind, Step};
use crate::types::{
    DeploymentContext, DeploymentSize, Detail, Environment, Metrics, ResourceLimits, Service,
};

/// A service named `name` that depends on `deps` and deploys to `hosts` (none:
/// a local service), with a health check and a 60 s timeout.
pub fn service(name: &str, deps: &[&str], hosts: &[&str]) -> Service {
    Service {
        name: name.to_string(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        has_health_check: true,
        timeout_s: 60,
    }
}

/// A quiet machine, well within any budget: CPU 10 %, memory 20 %, disk 30 %,
/// load 0.1 per core, no network latency measured.
pub fn metrics() -> Metrics {
    Metrics {
        cpu_percent: 10.0,
        memory_percent: 20.0,
        disk_percent: 30.0,
        load_per_core: 0.1,
        network_latency_ms: None,
    }
}

/// A deployment `deploy_1` of `services` to `environment` with the plugin
/// config `config` (a JSON string; empty counts as `{}`): medium size,
/// [`metrics`], limits of CPU 0.8, memory 0.8 and concurrency 3, no time
/// limit, not a dry run.
pub fn context(
    environment: Environment,
    services: Vec<Service>,
    config: &str,
) -> DeploymentContext {
    DeploymentContext {
        deployment_id: "deploy_1".to_string(),
        environment,
        size: DeploymentSize::Medium,
        services,
        metrics: metrics(),
        limits: ResourceLimits {
            cpu_limit: 0.8,
            memory_limit: 0.8,
            concurrency: 3,
        },
        max_time_minutes: None,
        dry_run: false,
        config: config.to_string(),
    }
}

/// A progress event of `kind` about `step`, one second in: wave 0 of 3,
/// 1 step succeeded, 1 failed, 1 remaining, the message
/// `health check failed: 503`, and [`metrics`].
pub fn progress(kind: ProgressKind, step: Option<Step>) -> Progress {
    Progress {
        kind,
        wave: 0,
        waves_total: 3,
        step,
        message: "health check failed: 503".to_string(),
        succeeded: 1,
        failed: 1,
        remaining: 1,
        elapsed_ms: 1000,
        metrics: metrics(),
    }
}

/// A metric query for a provider's tests: metric `m`, the query text
/// `query`, the window 1,000,000 ms to 1,010,000 ms since the epoch in 2 s
/// steps (6 instants), labels `service` = `api` and `role` = `canary`, the
/// plugin config `config` (a JSON string; empty counts as `{}`) and a 2 s
/// deadline.
pub fn metric_query(query: &str, config: &str) -> MetricQuery {
    MetricQuery {
        metric: "m".to_string(),
        query: query.to_string(),
        window: TimeWindow {
            start_ms: 1_000_000,
            end_ms: 1_010_000,
            step_ms: 2_000,
        },
        labels: vec![
            Detail {
                key: "service".to_string(),
                value: "api".to_string(),
            },
            Detail {
                key: "role".to_string(),
                value: "canary".to_string(),
            },
        ],
        config: config.to_string(),
        deadline_ms: 2_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_fills_deps_hosts_and_a_health_check() {
        let s = service("api", &["db"], &["h1", "h2"]);
        assert_eq!(s.name, "api");
        assert_eq!(s.depends_on, ["db"]);
        assert_eq!(s.hosts, ["h1", "h2"]);
        assert!(s.has_health_check);
        assert_eq!(s.timeout_s, 60);
        assert!(service("db", &[], &[]).hosts.is_empty());
    }

    #[test]
    fn context_carries_its_arguments_and_the_documented_defaults() {
        let c = context(
            Environment::Production,
            vec![service("a", &[], &[])],
            r#"{"samples": 2}"#,
        );
        assert_eq!(c.environment, Environment::Production);
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.config, r#"{"samples": 2}"#);
        assert_eq!(c.deployment_id, "deploy_1");
        assert_eq!(c.size, DeploymentSize::Medium);
        assert_eq!(
            (
                c.limits.cpu_limit,
                c.limits.memory_limit,
                c.limits.concurrency
            ),
            (0.8, 0.8, 3)
        );
        assert_eq!(c.max_time_minutes, None);
        assert!(!c.dry_run);
        assert_eq!(c.metrics.cpu_percent, 10.0);
    }

    #[test]
    fn progress_carries_kind_and_step() {
        let step = Step {
            service: "api".into(),
            host: Some("h1".into()),
        };
        let p = progress(ProgressKind::StepFailed, Some(step));
        assert_eq!(p.kind, ProgressKind::StepFailed);
        assert_eq!(p.step.map(|s| s.service), Some("api".to_string()));
        assert_eq!((p.wave, p.waves_total), (0, 3));
        assert_eq!((p.succeeded, p.failed, p.remaining), (1, 1, 1));
        assert_eq!(p.message, "health check failed: 503");
        assert_eq!(p.metrics.memory_percent, 20.0);
    }

    #[test]
    fn metric_query_has_six_instants_and_the_labels() {
        let q = metric_query("up", "{}");
        assert_eq!(crate::provider::instants(&q.window).count(), 6);
        assert_eq!(crate::provider::label(&q, "service"), Some("api"));
        assert_eq!(crate::provider::label(&q, "version"), None);
        assert_eq!((q.query.as_str(), q.deadline_ms), ("up", 2_000));
    }
}
