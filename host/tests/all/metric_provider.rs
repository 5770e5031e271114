//! The built-in `prometheus` metric provider (the real component, loaded as
//! a built-in with its config and grants) against a real Prometheus scraping
//! a real test service, and the judge on what it reads: good queries give
//! samples, a malformed query is an invalid-query error, a stopped or hung
//! Prometheus is `unavailable` within the plugin's deadline, a missing grant
//! is a denial.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adeploy::analysis::{self, Point, Rule, Verdict};
use adeploy::config::{Config, MetricSpec};
use adeploy::plugin::{
    MetricQuery, PluginError, PluginHost, PluginKind, PluginSet, QueryError, Sample, TimeWindow,
};

use crate::common;
use crate::prometheus_support::{Behaviour, Load, Prometheus, TestService, free_port};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The plugin host and the built-in plugins, with `plugins.prometheus`
/// pointing at `address`, granted `network` and given a `timeout_ms` deadline.
async fn providers(address: &str, network: &[String], timeout_ms: u64) -> (PluginHost, PluginSet) {
    let grants: Vec<String> = network.iter().map(|n| format!("\"{n}\"")).collect();
    let yaml = format!(
        "plugins:\n  prometheus:\n    config: {{address: \"{address}\"}}\n    grants: {{network: [{}]}}\n    limits: {{timeout_ms: {timeout_ms}}}\n",
        grants.join(", ")
    );
    let config = Config::from_layers(&yaml, Path::new("analysis.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = common::host(common::empty_world(dir.path()));
    let set = PluginSet::load(&host, &config, &[]).await.unwrap();
    (host, set)
}

fn request(metric: &str, query: &str, window: TimeWindow) -> MetricQuery {
    MetricQuery {
        metric: metric.to_string(),
        query: query.to_string(),
        window,
        labels: Vec::new(),
        // Both replaced by the host with the plugin's own.
        config: String::new(),
        deadline_ms: 0,
    }
}

/// The last `seconds` seconds in 1 s steps.
fn last(seconds: u64) -> TimeWindow {
    let end = now_ms();
    TimeWindow {
        start_ms: end - seconds * 1000,
        end_ms: end,
        step_ms: 1000,
    }
}

fn points(samples: &[Sample]) -> Vec<Point> {
    samples
        .iter()
        .map(|s| Point {
            timestamp_ms: s.timestamp_ms,
            value: s.value,
        })
        .collect()
}

fn rule(yaml: &str) -> Rule {
    let spec: MetricSpec = adeploy::config::parse_yaml(yaml, Path::new("metric.yaml")).unwrap();
    Rule::from_spec(&spec)
}

fn error_rate(version: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{version=\"{version}\",code=\"500\"}}[5s])) / sum(rate(http_requests_total{{version=\"{version}\"}}[5s]))"
    )
}

fn p95(version: &str) -> String {
    format!(
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{version=\"{version}\"}}[5s])))"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_provider_reads_real_metrics_and_the_judge_tells_good_from_bad() {
    let service = TestService::start(&[
        ("v1", Behaviour::GOOD),
        ("v2", Behaviour::ERRORS),
        ("v3", Behaviour::SLOW),
        ("v4", Behaviour::GOOD),
    ]);
    let _load = Load::start(
        service.port,
        &[Some("v1"), Some("v2"), Some("v3"), Some("v4")],
        Duration::from_millis(20),
    );
    let prometheus = Prometheus::start(&[service.target()]);
    // rate() over 5 s needs two scrapes; then 6 s of values for the window.
    for v in ["v1", "v2", "v3", "v4"] {
        prometheus.wait_for(&error_rate(v), Duration::from_secs(30));
        prometheus.wait_for(&p95(v), Duration::from_secs(30));
    }
    let data_from = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let window = TimeWindow {
        start_ms: data_from,
        ..last(0)
    };

    let (_host, set) = providers(&prometheus.address(), &[prometheus.endpoint()], 5000).await;
    let provider = set.metric_provider("prometheus").unwrap();
    assert_eq!(provider.kind(), PluginKind::MetricProvider);

    let read = |query: String| {
        let req = request("m", &query, window);
        async move {
            let called = provider.query(&req).await.unwrap();
            points(&called.value)
        }
    };
    let good = read(error_rate("v1")).await;
    let bad = read(error_rate("v2")).await;
    assert!(good.len() >= 5, "a good query gives samples: {good:?}");
    assert!(
        good.windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms)
    );
    assert!(
        good.iter().all(|p| p.value == 0.0),
        "v1 serves no errors: {good:?}"
    );
    assert!(
        bad.iter().all(|p| (0.2..=0.4).contains(&p.value)),
        "v2 fails 30% of its requests: {bad:?}"
    );
    assert!(bad.len() >= 5, "{bad:?}");

    // Threshold mode: the error rate under 5 %, one slip tolerated.
    let threshold =
        rule("{name: error-rate, provider: prometheus, query: q, max: 0.05, failure_limit: 1}");
    assert_eq!(
        analysis::judge(&threshold, &good, &[]).verdict,
        Verdict::Pass
    );
    let j = analysis::judge(&threshold, &bad, &[]);
    assert_eq!(j.verdict, Verdict::Fail, "{}", j.reason);

    // Comparison mode: p95 latency of v3 (+200 ms) and v4 (as good) against v1.
    let comparison =
        rule("{name: latency-p95, provider: prometheus, query: q, baseline: b, tolerance: 0.10}");
    let baseline = read(p95("v1")).await;
    let slow = read(p95("v3")).await;
    let same = read(p95("v4")).await;
    let j = analysis::judge(&comparison, &slow, &baseline);
    assert_eq!(
        j.verdict,
        Verdict::Fail,
        "{} {slow:?} vs {baseline:?}",
        j.reason
    );
    let c = j.comparison.unwrap();
    assert!(c.p_value.unwrap() < 0.02, "{c:?}");
    assert!(c.effect_size.unwrap() > 1.0, "{c:?}");
    let j = analysis::judge(&comparison, &same, &baseline);
    assert_eq!(
        j.verdict,
        Verdict::Pass,
        "{} {same:?} vs {baseline:?}",
        j.reason
    );

    // An instant query (step 0) gives one sample at the end of the window.
    let instant = provider
        .query(&request(
            "m",
            &error_rate("v2"),
            TimeWindow {
                step_ms: 0,
                ..window
            },
        ))
        .await
        .unwrap()
        .value;
    assert_eq!(instant.len(), 1);
    assert_eq!(instant[0].timestamp_ms, window.end_ms);

    // check: what the dry run would see.
    let details = provider
        .check_query(&request("m", &error_rate("v1"), window))
        .await
        .unwrap()
        .value;
    let shown: Vec<(String, String)> = details.into_iter().map(|d| (d.key, d.value)).collect();
    assert_eq!(
        shown,
        [
            ("result-type".to_string(), "vector".to_string()),
            ("series".to_string(), "1".to_string())
        ]
    );
    // A series nobody serves is no data, not an error.
    let none = provider
        .query(&request("m", &error_rate("v9"), window))
        .await
        .unwrap();
    assert!(none.value.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_prometheus_rejects_is_an_invalid_query_naming_the_metric() {
    let prometheus = Prometheus::start(&[]);
    let (_host, set) = providers(&prometheus.address(), &[prometheus.endpoint()], 5000).await;
    let provider = set.metric_provider("prometheus").unwrap();
    for (query, expected) in [
        ("sum(rate(http_requests_total[5s])", "parse error"),
        (
            "vector(1) or label_replace(vector(2), \"x\", \"y\", \"\", \"\")",
            "2 series",
        ),
        ("up[5s]", "range vector"),
    ] {
        let req = request("error-rate", query, last(5));
        let checked = provider.check_query(&req).await.unwrap_err();
        let QueryError::InvalidQuery {
            plugin,
            metric,
            message,
        } = &checked
        else {
            panic!("{query}: {checked:?}");
        };
        assert_eq!(
            (plugin.as_str(), metric.as_str()),
            ("prometheus", "error-rate")
        );
        assert!(message.contains(expected), "{query}: {message}");
        assert!(
            checked.is_bad_input(),
            "a rejected query is the operator's to fix"
        );
        let text = checked.to_string();
        assert!(
            text.starts_with("metric 'error-rate': provider 'prometheus' rejects the query: "),
            "{text}"
        );
        if query != "up[5s]" {
            let queried = provider.query(&req).await.unwrap_err();
            assert!(
                matches!(queried, QueryError::InvalidQuery { .. }),
                "{query}: {queried:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_or_hung_prometheus_is_unavailable_within_the_deadline() {
    let mut prometheus = Prometheus::start(&[]);
    let (_host, set) = providers(&prometheus.address(), &[prometheus.endpoint()], 1500).await;
    let provider = set.metric_provider("prometheus").unwrap();
    let req = request("error-rate", "vector(0.5)", last(3));
    let up = provider.query(&req).await.unwrap();
    assert_eq!(up.value.len(), 4, "{:?}", up.value);

    // Hung: the connection is accepted and never answered. The provider's
    // HTTP timeout (the deadline less a margin) gives up first: unavailable,
    // not a plugin that overran its deadline.
    prometheus.pause();
    let hung = provider.query(&req).await;
    prometheus.resume();
    let hung = hung.unwrap_err();
    assert!(
        matches!(&hung, QueryError::Unavailable { message, .. } if message.contains("timed out")),
        "{hung:?}"
    );
    assert!(!hung.is_bad_input());

    // Stopped: connection refused.
    prometheus.stop();
    let down = provider.query(&req).await.unwrap_err();
    let QueryError::Unavailable {
        plugin, message, ..
    } = &down
    else {
        panic!("{down:?}");
    };
    assert_eq!(plugin, "prometheus");
    assert!(message.contains(&prometheus.address()), "{message}");
    let checked = provider.check_query(&req).await.unwrap_err();
    assert!(
        matches!(checked, QueryError::Unavailable { .. }),
        "{checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_network_grant_the_provider_is_denied() {
    let address = format!("http://127.0.0.1:{}", free_port());
    let (_host, set) = providers(&address, &[], 2000).await;
    let provider = set.metric_provider("prometheus").unwrap();
    let err = provider
        .query(&request("error-rate", "up", last(3)))
        .await
        .unwrap_err();
    let QueryError::Denied { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("grants.network"), "{message}");
    assert!(err.is_bad_input());

    // A provider is only looked up as one: other kinds are refused by name.
    let wrong = set.metric_provider("balanced").unwrap_err();
    assert!(matches!(wrong, PluginError::WrongKind { .. }), "{wrong}");
    assert_eq!(
        wrong.to_string(),
        "plugin 'balanced' is a strategy plugin, not a metric-provider"
    );
    // And a strategy cannot be asked for metrics.
    let balanced = set.get("balanced").unwrap();
    let err = balanced
        .query(&request("m", "up", last(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Plugin { .. }), "{err:?}");
}
