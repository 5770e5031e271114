//! Preflight of metric analysis: each requested service's analysis plan,
//! its providers looked up, and every query checked by its provider before
//! anything runs (on `--dry-run` too, whose plan shows the result).
//!
//! Why before anything runs: a query the backend rejects would otherwise
//! show up minutes later as an inconclusive verdict of every step, after
//! half the fleet was deployed. Rejection (bad syntax, a provider's bad
//! config or missing grant, an unknown provider plugin) is bad input naming
//! the service and the metric; a backend that cannot be reached right now is
//! not, since it may be back by the time the steps are analysed: the plan
//! says so, and the verdicts will.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::analysis::{AnalysisPlan, MetricPlan};
use crate::config::{Environment, placeholders};
use crate::exec::{self, CommandContext};
use crate::report::{AnalysisPlanView, MetricPlanView};

use super::super::Engine;
use super::super::analysis::{ServiceAnalysis, labels, lookup, request};
use super::super::error::EngineError;
use super::super::types::DeploymentRequest;
use super::versions::ServiceVersion;

/// The analyses of a deployment: what the steps run, and what the plan shows.
pub(crate) type Analyses = (BTreeMap<String, ServiceAnalysis>, Vec<AnalysisPlanView>);

impl Engine {
    /// Builds the analysis of every requested service that has one and
    /// checks each query (and baseline query) with its provider.
    pub(super) async fn plan_analysis(
        &self,
        id: &str,
        req: &DeploymentRequest,
        environment: Environment,
        strategy: &str,
        versions: &BTreeMap<String, ServiceVersion>,
    ) -> Result<Analyses, EngineError> {
        let mut runs = BTreeMap::new();
        let mut views = Vec::new();
        for name in &req.services {
            let Some(config) = self
                .config
                .services
                .get(name)
                .and_then(|s| s.analysis.as_ref())
            else {
                continue;
            };
            let plan = AnalysisPlan::new(name, config);
            let version = versions.get(name).cloned().unwrap_or_default();
            // The placeholders of the service's first step, as its commands see them.
            let host = self.config.hosts_of(name).first().cloned();
            let address = host
                .as_deref()
                .and_then(|h| self.config.inventory.hosts.get(h))
                .map_or("127.0.0.1".to_string(), |h| h.address.clone());
            let env = exec::command_env(
                &CommandContext {
                    deployment_id: id,
                    service: name,
                    strategy,
                    environment,
                    deployment_size: req.size.as_str(),
                    wave: 1,
                    host: host.as_deref(),
                    host_address: &address,
                    state_dir: &self.state_dir,
                    version: version.version.as_deref(),
                    previous_version: version.previous.as_deref(),
                },
                &[],
            );
            let mut providers = BTreeMap::new();
            let mut metrics = Vec::new();
            for m in &plan.metrics {
                let fail = |message: String, bad_input: bool| EngineError::Analysis {
                    service: name.clone(),
                    metric: m.name.clone(),
                    message,
                    bad_input,
                };
                let provider = self.plugins.metric_provider(&m.provider).map_err(|e| {
                    fail(
                        format!(
                            "metric '{}': provider '{}': {e} (plugins: {})",
                            m.name,
                            m.provider,
                            self.plugins.names().join(", ")
                        ),
                        true,
                    )
                })?;
                needs_version(m, version.version.is_some()).map_err(|msg| fail(msg, true))?;
                let (query, baseline, note) = check_queries(m, &env);
                let window = plan.window_ending(now_ms());
                let mut checks = Vec::new();
                for (role, text) in std::iter::once(("query", Some(&query)))
                    .chain(std::iter::once(("baseline", baseline.as_ref())))
                {
                    let Some(text) = text else { continue };
                    let asked = request(&m.name, text, window, labels(&env, role_label(role)));
                    match provider.check_query(&asked).await {
                        Ok(called) => {
                            let details: Vec<String> = called
                                .value
                                .iter()
                                .map(|d| format!("{}={}", d.key, d.value))
                                .collect();
                            checks.push(format!("{role} ok ({})", details.join(", ")));
                        }
                        Err(e) if e.is_bad_input() => {
                            let what = if role == "baseline" {
                                "baseline query: "
                            } else {
                                ""
                            };
                            return Err(fail(format!("{what}{e}"), true));
                        }
                        Err(e) => checks.push(format!("{role} not checked: {e}")),
                    }
                }
                if let Some(n) = note {
                    checks.push(n);
                }
                metrics.push(MetricPlanView {
                    name: m.name.clone(),
                    provider: m.provider.clone(),
                    query,
                    // Before there is a previous version, the baseline as written.
                    baseline: match (&m.baseline, version.previous.is_some()) {
                        (Some(_), true) => baseline.clone(),
                        (raw, _) => raw.clone(),
                    },
                    rule: m.rule.describe(plan.samples),
                    check: checks.join("; "),
                });
                providers.insert(m.name.clone(), Arc::clone(provider));
            }
            views.push(AnalysisPlanView {
                service: name.clone(),
                interval_s: config.interval_s,
                samples: plan.samples,
                inconclusive: self.config.inconclusive_policy(environment).as_str().into(),
                metrics,
            });
            runs.insert(name.clone(), ServiceAnalysis { plan, providers });
        }
        Ok((runs, views))
    }
}

/// `canary` for the query, `baseline` for the baseline query.
fn role_label(role: &str) -> &'static str {
    if role == "baseline" {
        "baseline"
    } else {
        "canary"
    }
}

/// A query that names `${ADEPLOY_VERSION}` needs a service with a version.
fn needs_version(m: &MetricPlan, has_version: bool) -> Result<(), String> {
    if has_version {
        return Ok(());
    }
    for text in std::iter::once(&m.query).chain(m.baseline.iter()) {
        if placeholders::used(text).is_ok_and(|names| names.contains(&"ADEPLOY_VERSION")) {
            return Err(format!(
                "metric '{}' uses ${{ADEPLOY_VERSION}} but the service has no version: set `version` in its config or pass --set-version SERVICE=VERSION",
                m.name
            ));
        }
    }
    Ok(())
}

/// The query and baseline query to check, placeholders filled in. Before a
/// service's first deployment with a version there is no previous version:
/// the baseline is checked with the new version in its place (the syntax is
/// what a check can tell), and the note says the comparison will be
/// inconclusive until then.
fn check_queries(
    m: &MetricPlan,
    env: &[(String, String)],
) -> (String, Option<String>, Option<String>) {
    let fill = |text: &str, stand_in: bool| {
        placeholders::substitute(text, |name| {
            lookup(env, name).or_else(|| match name {
                "ADEPLOY_PREVIOUS_VERSION" if stand_in => lookup(env, "ADEPLOY_VERSION"),
                _ => None,
            })
        })
        .unwrap_or_else(|_| text.to_string())
    };
    let query = fill(&m.query, false);
    let no_previous = lookup(env, "ADEPLOY_PREVIOUS_VERSION").is_none();
    let uses_previous =
        |t: &str| placeholders::used(t).is_ok_and(|n| n.contains(&"ADEPLOY_PREVIOUS_VERSION"));
    let mut note = None;
    if no_previous && uses_previous(&m.query) {
        note = Some("no previous version deployed yet: the query has no value for ${ADEPLOY_PREVIOUS_VERSION} and the metric will be inconclusive".to_string());
    }
    let baseline = m.baseline.as_deref().map(|b| {
        if no_previous && uses_previous(b) {
            note = Some(
                "no previous version deployed yet: the comparison will be inconclusive".to_string(),
            );
            fill(b, true)
        } else {
            fill(b, false)
        }
    });
    (query, baseline, note)
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}
