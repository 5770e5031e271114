//! The built-in strategies' plans for 1, 5 and 40 services with dependencies,
//! and their on-progress decisions.

use std::collections::HashMap;

use adeploy::config::Config;
use adeploy::plugin::{
    Decision, DeploymentContext, Metrics, Progress, ProgressKind, RollbackScope, Rollout, Service,
    Step, WitEnvironment,
};

use crate::common::{builtins, ctx, empty_world, host, service};

fn five() -> Vec<Service> {
    vec![
        service("web", &["api"]),
        service("api", &["db"]),
        service("db", &[]),
        service("worker", &["db", "cache"]),
        service("cache", &[]),
    ]
}

/// 40 services in 4 tiers of 10; each service depends on its twin in the tier below.
fn forty() -> Vec<Service> {
    let mut v = Vec::new();
    for tier in (0..4).rev() {
        for i in 0..10 {
            let name = format!("t{tier}s{i}");
            let dep = format!("t{}s{i}", tier.max(1) - 1);
            v.push(if tier == 0 {
                service(&name, &[])
            } else {
                service(&name, &[dep.as_str()])
            });
        }
    }
    v
}

async fn plan(strategy: &str, services: Vec<Service>) -> (DeploymentContext, Rollout) {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let set = builtins(&host, &Config::embedded().unwrap()).await;
    let c = ctx(services, WitEnvironment::Staging);
    let r = set.get(strategy).unwrap().plan(&c).await.unwrap().value;
    (c, r)
}

fn wave_names(r: &Rollout) -> Vec<Vec<String>> {
    r.waves
        .iter()
        .map(|w| w.steps.iter().map(|s| s.service.clone()).collect())
        .collect()
}

/// Every dependency of a step is in an earlier wave, or earlier in the same wave.
fn assert_dependency_order(c: &DeploymentContext, r: &Rollout) {
    let mut pos: HashMap<&str, (usize, usize)> = HashMap::new();
    for (w, wave) in r.waves.iter().enumerate() {
        for (i, s) in wave.steps.iter().enumerate() {
            pos.insert(s.service.as_str(), (w, i));
        }
    }
    for s in &c.services {
        for d in &s.depends_on {
            assert!(
                pos[d.as_str()] < pos[s.name.as_str()],
                "{d} must come before {}",
                s.name
            );
        }
    }
}

#[tokio::test]
async fn conservative_one_service_per_wave_in_dependency_order() {
    let (c, r) = plan("conservative", five()).await;
    assert_eq!(
        wave_names(&r),
        vec![
            vec!["db"],
            vec!["cache"],
            vec!["api"],
            vec!["worker"],
            vec!["web"]
        ]
    );
    assert_dependency_order(&c, &r);
    assert_eq!(r.failure.rollback_scope, RollbackScope::All);
    assert_eq!(r.failure.max_failures, 0);
    assert!(r.validation.health_checks && r.validation.samples >= 3 && r.validation.soak_s > 0);
    let (_, r1) = plan("conservative", vec![service("solo", &[])]).await;
    assert_eq!(wave_names(&r1), vec![vec!["solo"]]);
    let (c40, r40) = plan("conservative", forty()).await;
    assert_eq!(r40.waves.len(), 40);
    assert_dependency_order(&c40, &r40);
}

#[tokio::test]
async fn balanced_about_a_quarter_per_wave() {
    let (c, r) = plan("balanced", five()).await;
    assert_eq!(
        wave_names(&r),
        vec![vec!["db", "cache"], vec!["api", "worker"], vec!["web"]]
    );
    assert_dependency_order(&c, &r);
    let (_, r1) = plan("balanced", vec![service("solo", &[])]).await;
    assert_eq!(wave_names(&r1), vec![vec!["solo"]]);
    let (c40, r40) = plan("balanced", forty()).await;
    assert_eq!(
        r40.waves.len(),
        4,
        "four tiers of ten: four waves of a quarter each"
    );
    assert!(r40.waves.iter().all(|w| w.steps.len() == 10));
    assert_dependency_order(&c40, &r40);
    assert_eq!(r40.failure.rollback_scope, RollbackScope::All);
    assert!(r40.validation.samples < 3 && r40.validation.samples >= 1);
}

#[tokio::test]
async fn aggressive_one_wave_rolls_back_only_failures() {
    let (c, r) = plan("aggressive", five()).await;
    assert_eq!(r.waves.len(), 1);
    assert_eq!(r.waves[0].steps.len(), 5);
    assert_dependency_order(&c, &r);
    assert_eq!(r.failure.rollback_scope, RollbackScope::Failed);
    assert_eq!(r.failure.max_failures, 2, "up to half of 5 steps may fail");
    assert_eq!(r.validation.samples, 1);
    assert_eq!(
        r.concurrency, 4,
        "the strategy's concurrency comes from the resource limits"
    );
    let (c40, r40) = plan("aggressive", forty()).await;
    assert_eq!(r40.waves.len(), 1);
    assert_eq!(r40.waves[0].steps.len(), 40);
    assert_dependency_order(&c40, &r40);
}

#[tokio::test]
async fn empty_deployment_and_cycles_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let set = builtins(&host, &Config::embedded().unwrap()).await;
    for s in ["conservative", "balanced", "aggressive"] {
        let err = set
            .get(s)
            .unwrap()
            .plan(&ctx(vec![], WitEnvironment::Staging))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("plugin '{s}' refused in plan: no services to deploy")
        );
        let cyc = ctx(
            vec![service("a", &["b"]), service("b", &["a"])],
            WitEnvironment::Staging,
        );
        let err = set
            .get(s)
            .unwrap()
            .plan(&cyc)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dependency cycle among services: a, b"),
            "{err}"
        );
    }
}

fn progress(kind: ProgressKind, failed: u32, total: u32) -> Progress {
    Progress {
        kind,
        wave: 0,
        waves_total: 1,
        step: Some(Step {
            service: "api".into(),
            host: None,
        }),
        message: "health check failed: 503".into(),
        succeeded: total - failed,
        failed,
        remaining: 0,
        elapsed_ms: 1000,
        metrics: Metrics {
            cpu_percent: 95.0,
            memory_percent: 50.0,
            disk_percent: 10.0,
            load_per_core: 2.0,
            network_latency_ms: Some(1.0),
        },
    }
}

#[tokio::test]
async fn on_progress_decisions() {
    let root = tempfile::tempdir().unwrap();
    let host = host(empty_world(root.path()));
    let set = builtins(&host, &Config::embedded().unwrap()).await;
    let c = ctx(five(), WitEnvironment::Production);
    let decide = |name: &'static str, p: Progress| {
        let set = &set;
        let c = &c;
        async move {
            set.get(name)
                .unwrap()
                .on_progress(c, &p)
                .await
                .unwrap()
                .value
        }
    };
    assert!(
        matches!(decide("conservative", progress(ProgressKind::StepFailed, 1, 5)).await, Decision::Rollback(m) if m.contains("api"))
    );
    assert!(matches!(
        decide("conservative", progress(ProgressKind::OverBudget, 0, 5)).await,
        Decision::Pause(30)
    ));
    assert!(matches!(
        decide("balanced", progress(ProgressKind::StepFailed, 1, 5)).await,
        Decision::Rollback(_)
    ));
    assert!(matches!(
        decide("balanced", progress(ProgressKind::OverBudget, 0, 5)).await,
        Decision::Pause(15)
    ));
    assert!(matches!(
        decide("balanced", progress(ProgressKind::StepSucceeded, 0, 5)).await,
        Decision::Continue
    ));
    assert!(matches!(
        decide("aggressive", progress(ProgressKind::StepFailed, 1, 5)).await,
        Decision::Continue
    ));
    assert!(matches!(
        decide("aggressive", progress(ProgressKind::StepFailed, 3, 5)).await,
        Decision::Rollback(_)
    ));
    assert!(matches!(
        decide("aggressive", progress(ProgressKind::OverBudget, 0, 5)).await,
        Decision::Continue
    ));
}
