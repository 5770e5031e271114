//! Metric analysis inside the deploy flow, with real parts: a Prometheus of
//! the test's own scraping a test service whose versions behave as the test
//! says (good; 30 % errors; +200 ms), deployments through the engine whose
//! deploy command activates the version and whose rollback activates the
//! previous one. The good version passes with `pass` verdicts; the bad ones
//! roll back with the failing metric named in the step, the report and the
//! history; a malformed query is refused before anything runs; `analyze`
//! re-judges a recorded deployment with another config's rules; Prometheus
//! stopped mid-run is inconclusive, handled by the environment's policy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use adeploy::analysis::Verdict;
use adeploy::config::{Config, Environment};
use adeploy::engine::{Decision, DeploymentRequest, Engine, EngineError, Question, StepStatus};
use adeploy::history::{DeploymentStatus, PhaseKind};

use crate::common::World;
use crate::prometheus_support::{analysed_config, error_rate, metrics_world, p95};

async fn engine(w: &World, yaml: &str) -> Engine {
    let path = w.dir.path().join("analysis.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    Engine::new(config, w.options()).await.unwrap()
}

fn deploy(version: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: vec!["api".into()],
        strategy: Some("conservative".into()),
        environment: Some(Environment::Staging),
        versions: [("api".to_string(), version.to_string())].into(),
        ..DeploymentRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_passes_good_versions_rolls_back_bad_ones_and_replays_with_new_rules() {
    let (service, _load, mut prometheus) = metrics_world();
    let w = World::new();
    let endpoint = prometheus.endpoint();
    let pass_policy = analysed_config(&service, &endpoint, &w.order, 0.05, "pass");
    let engine_pass = engine(&w, &pass_policy).await;

    // The first version has nothing to compare with: the latency comparison
    // is inconclusive, which staging's policy (here) passes.
    let first = engine_pass.deploy(deploy("v1"), None, None).await.unwrap();
    assert!(first.success, "{}", first.report.human_summary());
    let verdicts: Vec<(&str, Verdict)> = first
        .report
        .analysis
        .iter()
        .map(|v| (v.metric.as_str(), v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("error-rate", Verdict::Pass),
            ("latency-p95", Verdict::Inconclusive)
        ]
    );
    assert!(
        first.report.analysis[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no previous version of api"),
        "{:?}",
        first.report.analysis[1]
    );

    // A good version: every verdict passes; the comparison has its numbers.
    let good = engine_pass.deploy(deploy("v2"), None, None).await.unwrap();
    assert!(good.success, "{}", good.report.human_summary());
    assert_eq!(good.report.analysis.len(), 2);
    for v in &good.report.analysis {
        assert_eq!(v.verdict, Verdict::Pass, "{v:?}");
        assert!(v.samples.len() >= 4, "{v:?}");
        assert_eq!(v.service, "api");
    }
    let latency = &good.report.analysis[1];
    assert_eq!(latency.baseline_query.as_deref(), Some(p95("v1").as_str()));
    let c = latency.comparison.as_ref().unwrap();
    assert!(c.p_value.is_some() && c.statistic.is_some(), "{c:?}");
    let step = &good.report.steps[0];
    assert!(
        step.message.contains("analysis passed (2 metrics)"),
        "{}",
        step.message
    );
    assert!(step.phases.iter().any(|p| p.kind == PhaseKind::Analysis));
    let json = serde_json::to_value(&good.report).unwrap();
    assert_eq!(json["analysis"][0]["verdict"], "pass");
    assert_eq!(json["analysis"][0]["metric"], "error-rate");
    assert!(json["analysis"][1]["comparison"]["p_value"].is_number());
    let decided: Vec<_> = good
        .report
        .decision_process
        .iter()
        .filter_map(|d| match &d.decision {
            Decision::AnalysisVerdict {
                metric, verdict, ..
            } => Some((metric.clone(), *verdict)),
            _ => None,
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("error-rate".to_string(), Verdict::Pass),
            ("latency-p95".to_string(), Verdict::Pass)
        ]
    );

    // 30 % errors: the error rate fails, the step fails naming the metric,
    // and the deployment rolls back to the previous version (v2).
    let bad = engine_pass.deploy(deploy("v3"), None, None).await.unwrap();
    assert_eq!(bad.status, DeploymentStatus::RolledBack);
    let step = &bad.report.steps[0];
    assert_eq!(step.status, StepStatus::Failed);
    assert!(
        step.message
            .starts_with("analysis failed: metric 'error-rate' failed"),
        "{}",
        step.message
    );
    assert_eq!(step.rolled_back, Some(true));
    assert_eq!(step.previous_version.as_deref(), Some("v2"));
    assert_eq!(
        w.order().last().map(String::as_str),
        Some("ADEPLOY_PREVIOUS_VERSION v2")
    );
    let error_rate_verdict = &bad.report.analysis[0];
    assert_eq!(error_rate_verdict.verdict, Verdict::Fail);
    assert!(
        error_rate_verdict
            .samples
            .iter()
            .all(|p| (0.2..=0.4).contains(&p.value)),
        "{error_rate_verdict:?}"
    );
    assert!(
        bad.report
            .lessons_learned
            .iter()
            .any(|l| l.contains("failed its analysis on error-rate")),
        "{:?}",
        bad.report.lessons_learned
    );
    assert!(
        bad.report
            .human_summary()
            .contains("analysis api error-rate: fail"),
        "{}",
        bad.report.human_summary()
    );
    // The history says so too (`list`), and the learning sees a failure.
    let listed = engine_pass.list(1).await.unwrap();
    assert_eq!(listed[0].id, bad.id);
    assert!(listed[0].steps[0].message.contains("error-rate"));
    assert!(
        listed[0]
            .summary
            .as_deref()
            .unwrap_or_default()
            .contains("error-rate"),
        "{:?}",
        listed[0].summary
    );
    assert!(
        !adeploy::engine::learn::outcome_of(&listed[0])
            .unwrap()
            .success
    );

    // +200 ms: the latency comparison against v2 fails, with its statistics.
    let slow = engine_pass.deploy(deploy("v4"), None, None).await.unwrap();
    assert_eq!(
        slow.status,
        DeploymentStatus::RolledBack,
        "{}",
        slow.report.human_summary()
    );
    let latency = slow
        .report
        .analysis
        .iter()
        .find(|v| v.metric == "latency-p95")
        .unwrap();
    assert_eq!(latency.verdict, Verdict::Fail, "{latency:?}");
    let c = latency.comparison.as_ref().unwrap();
    assert!(c.p_value.unwrap() < 0.02, "{c:?}");
    assert!(c.effect_size.unwrap() > 0.5, "{c:?}");
    assert!(
        slow.report.steps[0].message.contains("latency-p95"),
        "{}",
        slow.report.steps[0].message
    );

    // Retrospective: with a looser threshold, the bad release would have
    // passed its error rate; with the same rules it fails again.
    let loose = analysed_config(&service, &endpoint, &w.order, 0.5, "pass");
    let engine_loose = engine(&w, &loose).await;
    let again = engine_loose.analyze(&bad.id).await.unwrap();
    assert_eq!(again.recorded_verdict, Verdict::Fail);
    let er = again
        .metrics
        .iter()
        .find(|m| m.metric == "error-rate")
        .unwrap();
    assert_eq!(er.recorded, Verdict::Fail);
    assert_eq!(er.result.verdict, Verdict::Pass, "{er:?}");
    assert!(er.changed);
    assert_eq!(er.rule_source, "config");
    assert!(er.rule.starts_with("max 0.5"), "{}", er.rule);
    assert_eq!(er.result.window, bad.report.analysis[0].window);
    assert_eq!(er.result.query, error_rate("v3"));
    let same = engine_pass.analyze(&bad.id).await.unwrap();
    assert_eq!(same.verdict, Verdict::Fail);
    assert!(same.describe().contains("error-rate: fail → fail"));
    // A deployment without analysis, or an unknown id, is bad input.
    let err = engine_pass.analyze("deploy_nope").await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");

    // A malformed query is refused before anything runs, naming the
    // service and the metric: nothing is deployed or recorded.
    let broken = pass_policy.replace(
        "query: 'sum(rate(http_requests_total",
        "query: 'sum(rate(http_requests_total[",
    );
    assert_ne!(broken, pass_policy);
    let engine_broken = engine(&w, &broken).await;
    let before = (w.order().len(), engine_pass.list(100).await.unwrap().len());
    for dry_run in [true, false] {
        let err = engine_broken
            .deploy(
                DeploymentRequest {
                    dry_run,
                    ..deploy("v2")
                },
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(
            matches!(&err, EngineError::Analysis { service, metric, .. } if service == "api" && metric == "error-rate"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("services.api.analysis: metric 'error-rate': provider 'prometheus' rejects the query"),
            "{text}"
        );
    }
    assert_eq!(
        (w.order().len(), engine_pass.list(100).await.unwrap().len()),
        before
    );

    // The dry run shows the analysis plan and what the provider said.
    let dry = engine_pass
        .deploy(
            DeploymentRequest {
                dry_run: true,
                ..deploy("v2")
            },
            None,
            None,
        )
        .await
        .unwrap();
    let plan = dry.report.plan.as_ref().unwrap();
    let a = &plan.analysis[0];
    assert_eq!((a.service.as_str(), a.samples, a.interval_s), ("api", 5, 1));
    assert_eq!(a.metrics[0].query, error_rate("v2"));
    assert!(
        a.metrics[0]
            .check
            .starts_with("query ok (result-type=vector"),
        "{:?}",
        a.metrics[0]
    );
    assert_eq!(a.metrics[1].baseline.as_deref(), Some(p95("v2").as_str()));
    assert!(a.describe().contains("error-rate (prometheus): max 0.05"));

    // Prometheus stops mid-run (the deploy command kills it): the metrics
    // are inconclusive within the plugin's deadline, never a hang; with
    // `fail` the step fails and rolls back.
    let fail_policy = analysed_config(&service, &endpoint, &w.order, 0.05, "fail");
    let engine_fail = engine(&w, &fail_policy).await;
    let pid = prometheus.pid();
    let killing = fail_policy.replace("    deploy: '", &format!("    deploy: 'kill -9 {pid}; "));
    let engine_killing = engine(&w, &killing).await;
    let started = std::time::Instant::now();
    let down = engine_killing
        .deploy(deploy("v2"), None, None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(down.status, DeploymentStatus::RolledBack);
    assert!(
        down.report
            .analysis
            .iter()
            .all(|v| v.verdict == Verdict::Inconclusive),
        "{:?}",
        down.report.analysis
    );
    let message = &down.report.steps[0].message;
    assert!(
        message.starts_with(
            "analysis inconclusive (environments.staging.analysis.inconclusive: fail)"
        ),
        "{message}"
    );
    assert!(message.contains("cannot read its backend"), "{message}");
    prometheus.stop();
    drop(engine_fail);

    // `ask`: without a prompt it fails; an operator who says yes passes it.
    let ask_policy = analysed_config(&service, &endpoint, &w.order, 0.05, "ask");
    let engine_ask = engine(&w, &ask_policy).await;
    let unasked = engine_ask.deploy(deploy("v2"), None, None).await.unwrap();
    assert_eq!(unasked.status, DeploymentStatus::RolledBack);
    assert!(
        unasked.report.steps[0]
            .message
            .contains("no --interactive prompt to ask"),
        "{}",
        unasked.report.steps[0].message
    );
    let asked = Arc::new(Mutex::new(Vec::new()));
    let sink = asked.clone();
    let confirm: adeploy::engine::Confirm = Box::new(move |q| {
        if let Question::Inconclusive(a) = q {
            sink.lock()
                .unwrap()
                .push((a.step.clone(), a.verdicts.len()));
        }
        true
    });
    let yes = engine_ask
        .deploy(deploy("v2"), None, Some(confirm))
        .await
        .unwrap();
    assert!(yes.success, "{}", yes.report.human_summary());
    assert_eq!(*asked.lock().unwrap(), [("api".to_string(), 2)]);
    assert!(yes.report.decision_process.iter().any(|d| matches!(
        &d.decision,
        Decision::AnalysisVerdict { policy: Some(p), .. } if p == "ask: yes"
    )));
}
