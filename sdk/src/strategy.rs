//! Strategies: the [`Strategy`] trait, [`export_strategy!`](crate::export_strategy),
//! helpers that turn services into dependency-ordered waves, and
//! [`step_label`] for naming a step in decisions and notes.

use std::collections::{HashMap, HashSet};

use crate::types::{DeploymentContext, PluginInfo, Service};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "adeploy:plugin/strategy-plugin",
        pub_export_macro: true,
        default_bindings_module: "adeploy_sdk::strategy::bindings",
        export_macro_name: "__export_strategy_world",
        with: { "adeploy:plugin/types@0.1.0": crate::types, "adeploy:plugin/host@0.1.0": crate::host },
    });
}

pub use bindings::exports::adeploy::plugin::strategy::{
    Decision, FailurePolicy, Progress, ProgressKind, RollbackScope, Rollout, Step,
    ValidationPolicy, Wave,
};

/// A rollout strategy. Implement it and call [`export_strategy!`](crate::export_strategy).
pub trait Strategy {
    /// Name, version and one-line description.
    fn describe() -> PluginInfo;

    /// Shapes the deployment into waves. An `Err` refuses the deployment.
    fn plan(ctx: DeploymentContext) -> Result<Rollout, String>;

    /// Decides what happens after each progress event. The default goes on
    /// (a failed step included) and pauses 10 s while the machine is over the
    /// strategy's budget. It never rolls back by itself: the host enforces the
    /// plan's failure policy either way (more than `max_failures` failed steps
    /// fail the deployment and roll back by `rollback_scope`), so the default
    /// defers to the plan.
    fn on_progress(_ctx: DeploymentContext, event: Progress) -> Decision {
        match event.kind {
            ProgressKind::OverBudget => Decision::Pause(10),
            _ => Decision::Continue,
        }
    }
}

/// Exports a type implementing [`Strategy`] as the component's `strategy` interface.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        // Native builds (tests, docs) cannot link component export names
        // (rust-lang/rust#141310); the export exists only in the component.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[doc(hidden)]
            struct __AdeployStrategyExport;

            impl $crate::strategy::bindings::exports::adeploy::plugin::strategy::Guest
                for __AdeployStrategyExport
            {
                fn describe() -> $crate::types::PluginInfo {
                    <$ty as $crate::strategy::Strategy>::describe()
                }
                fn plan(
                    ctx: $crate::types::DeploymentContext,
                ) -> ::core::result::Result<$crate::strategy::Rollout, ::std::string::String> {
                    <$ty as $crate::strategy::Strategy>::plan(ctx)
                }
                fn on_progress(
                    ctx: $crate::types::DeploymentContext,
                    event: $crate::strategy::Progress,
                ) -> $crate::strategy::Decision {
                    <$ty as $crate::strategy::Strategy>::on_progress(ctx, event)
                }
            }

            $crate::strategy::bindings::__export_strategy_world!(__AdeployStrategyExport with_types_in $crate::strategy::bindings);
        };
    };
}

/// The services in an order that puts every service after the services it
/// depends on, keeping the operator's order where dependencies allow.
/// Dependencies on services outside this deployment count as already met.
/// A cycle is an error naming the services on it.
pub fn dependency_order(services: &[Service]) -> Result<Vec<&Service>, String> {
    let names: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut ordered = Vec::with_capacity(services.len());
    while ordered.len() < services.len() {
        let before = ordered.len();
        for service in services {
            if placed.contains(service.name.as_str()) {
                continue;
            }
            let ready = service
                .depends_on
                .iter()
                .all(|d| !names.contains(d.as_str()) || placed.contains(d.as_str()));
            if ready {
                placed.insert(service.name.as_str());
                ordered.push(service);
            }
        }
        if ordered.len() == before {
            let mut stuck: Vec<&str> = services
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| !placed.contains(n))
                .collect();
            stuck.sort_unstable();
            return Err(format!(
                "dependency cycle among services: {}",
                stuck.join(", ")
            ));
        }
    }
    Ok(ordered)
}

/// The steps of one service: one per host, or one local step.
pub fn steps_of(service: &Service) -> Vec<Step> {
    if service.hosts.is_empty() {
        vec![Step {
            service: service.name.clone(),
            host: None,
        }]
    } else {
        service
            .hosts
            .iter()
            .map(|h| Step {
                service: service.name.clone(),
                host: Some(h.clone()),
            })
            .collect()
    }
}

/// Splits the deployment into waves of at most `wave_size` steps (at least 1),
/// in dependency order: a step joins the current wave only when every service
/// it depends on was completed in an earlier wave.
pub fn waves(services: &[Service], wave_size: usize) -> Result<Vec<Wave>, String> {
    let wave_size = wave_size.max(1);
    let ordered = dependency_order(services)?;
    let in_deployment: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    // wave index in which each service's last step lands
    let mut done_in: HashMap<&str, usize> = HashMap::new();
    let mut waves: Vec<Wave> = Vec::new();
    let mut current: Vec<Step> = Vec::new();
    for service in ordered {
        let needs_new_wave = service.depends_on.iter().any(|d| {
            in_deployment.contains(d.as_str())
                && done_in.get(d.as_str()).is_some_and(|&w| w >= waves.len())
        });
        if needs_new_wave && !current.is_empty() {
            waves.push(Wave {
                steps: std::mem::take(&mut current),
                pause_after_s: 0,
            });
        }
        for step in steps_of(service) {
            if current.len() == wave_size {
                waves.push(Wave {
                    steps: std::mem::take(&mut current),
                    pause_after_s: 0,
                });
            }
            current.push(step);
        }
        done_in.insert(service.name.as_str(), waves.len());
    }
    if !current.is_empty() {
        waves.push(Wave {
            steps: current,
            pause_after_s: 0,
        });
    }
    Ok(waves)
}

/// Every step in one wave, in dependency order (the host still starts a step
/// only after the services it depends on are done).
pub fn single_wave(services: &[Service]) -> Result<Vec<Wave>, String> {
    let steps: Vec<Step> = dependency_order(services)?
        .into_iter()
        .flat_map(steps_of)
        .collect();
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Wave {
        steps,
        pause_after_s: 0,
    }])
}

/// Number of steps the deployment has in total.
pub fn step_count(services: &[Service]) -> usize {
    services.iter().map(|s| s.hosts.len().max(1)).sum()
}

/// A short human name for a step, for rollback reasons and notes:
/// `api on web-1` for a fleet step, `api` for a local step, and `a step` when
/// a progress event carries none.
///
/// Why: the reason in a [`Decision::Rollback`] or [`Decision::Abort`] is read
/// by the operator, so every strategy should name steps the same way. Pass it
/// `event.step.as_ref()` in [`Strategy::on_progress`].
///
/// ```
/// use adeploy_sdk::strategy::{step_label, Step};
///
/// let fleet = Step { service: "api".into(), host: Some("web-1".into()) };
/// let local = Step { service: "api".into(), host: None };
/// assert_eq!(step_label(Some(&fleet)), "api on web-1");
/// assert_eq!(step_label(Some(&local)), "api");
/// assert_eq!(step_label(None), "a step");
/// ```
pub fn step_label(step: Option<&Step>) -> String {
    match step {
        Some(Step {
            service,
            host: Some(host),
        }) => format!("{service} on {host}"),
        Some(Step {
            service,
            host: None,
        }) => service.clone(),
        None => "a step".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, deps: &[&str]) -> Service {
        Service {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            hosts: vec![],
            has_health_check: true,
            timeout_s: 60,
        }
    }

    fn names(waves: &[Wave]) -> Vec<Vec<String>> {
        waves
            .iter()
            .map(|w| w.steps.iter().map(|s| s.service.clone()).collect())
            .collect()
    }

    #[test]
    fn dependency_order_puts_dependencies_first_and_keeps_operator_order() {
        let s = [
            svc("web", &["api"]),
            svc("api", &["db"]),
            svc("db", &[]),
            svc("docs", &[]),
        ];
        let order: Vec<&str> = dependency_order(&s)
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["db", "docs", "api", "web"]);
    }

    #[test]
    fn dependency_cycle_is_an_error_naming_the_services() {
        let s = [svc("a", &["b"]), svc("b", &["a"]), svc("c", &[])];
        let err = dependency_order(&s).unwrap_err();
        assert_eq!(err, "dependency cycle among services: a, b");
    }

    #[test]
    fn waves_never_put_a_service_beside_its_dependency() {
        let s = [
            svc("db", &[]),
            svc("cache", &[]),
            svc("api", &["db"]),
            svc("web", &["api"]),
        ];
        assert_eq!(
            names(&waves(&s, 3).unwrap()),
            vec![vec!["db", "cache"], vec!["api"], vec!["web"]]
        );
    }

    #[test]
    fn waves_split_at_wave_size() {
        let s: Vec<Service> = (0..5).map(|i| svc(&format!("s{i}"), &[])).collect();
        assert_eq!(
            names(&waves(&s, 2).unwrap()),
            vec![vec!["s0", "s1"], vec!["s2", "s3"], vec!["s4"]]
        );
    }

    #[test]
    fn fleet_services_become_one_step_per_host() {
        let mut s = svc("api", &[]);
        s.hosts = vec!["h1".into(), "h2".into(), "h3".into()];
        let w = waves(&[s], 2).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].steps[1].host.as_deref(), Some("h2"));
        assert_eq!(step_count(&[svc("x", &[])]), 1);
    }

    #[test]
    fn step_label_names_service_and_host() {
        let fleet = Step {
            service: "api".into(),
            host: Some("web-1".into()),
        };
        let local = Step {
            service: "api".into(),
            host: None,
        };
        assert_eq!(step_label(Some(&fleet)), "api on web-1");
        assert_eq!(step_label(Some(&local)), "api");
        assert_eq!(step_label(None), "a step");
    }
}

#[cfg(test)]
mod default_on_progress {
    use super::*;
    use crate::testing::{context, progress, service};
    use crate::types::{Environment, PluginInfo};

    /// A strategy that keeps the default `on_progress`.
    struct Plain;

    impl Strategy for Plain {
        fn describe() -> PluginInfo {
            crate::info("plain", "0.1.0", "defaults")
        }
        fn plan(_: DeploymentContext) -> Result<Rollout, String> {
            Err("unused".to_string())
        }
    }

    /// The default defers failures to the plan's failure policy (the host
    /// rolls back past `max_failures`) and pauses while over budget.
    #[test]
    fn continues_after_a_failure_and_pauses_over_budget() {
        let ctx = || context(Environment::Production, vec![service("api", &[], &[])], "");
        let step = Some(Step {
            service: "api".to_string(),
            host: None,
        });
        assert!(matches!(
            Plain::on_progress(ctx(), progress(ProgressKind::StepFailed, step.clone())),
            Decision::Continue
        ));
        assert!(matches!(
            Plain::on_progress(ctx(), progress(ProgressKind::OverBudget, None)),
            Decision::Pause(10)
        ));
        for kind in [
            ProgressKind::WaveStarted,
            ProgressKind::StepSucceeded,
            ProgressKind::WaveFinished,
        ] {
            assert!(matches!(
                Plain::on_progress(ctx(), progress(kind, step.clone())),
                Decision::Continue
            ));
        }
    }
}
