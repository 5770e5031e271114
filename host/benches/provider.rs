//! One metric-provider call end to end: the built-in `prometheus` component
//! in a fresh store → the host's `http-fetch` (grant check, HTTP over
//! loopback) → a real Prometheus (Debian's `prometheus`, started here on a
//! loopback port, scraping a test service under load every second) → the
//! JSON answer parsed in the guest → the samples validated by the host.
//! Measured: a range query of 5 samples (one metric of one step), a range
//! query of 300 samples, an instant query, and Prometheus answering the same
//! range query over plain HTTP without the plugin (the floor).
//! Run: `cargo bench -p adeploy --bench provider`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adeploy::config::Config;
use adeploy::plugin::{MetricQuery, PluginSet, TimeWindow};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/all/prometheus_support.rs"]
mod prometheus_support;
#[allow(dead_code)] // ctx is for the strategy benchmarks
mod support;

use prometheus_support::{Behaviour, Load, Prometheus, TestService, encode, http_get};

const ERROR_RATE: &str = "sum(rate(http_requests_total{version=\"v1\",code=\"500\"}[5s])) / sum(rate(http_requests_total{version=\"v1\"}[5s]))";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn request(window: TimeWindow) -> MetricQuery {
    MetricQuery {
        metric: "error-rate".into(),
        query: ERROR_RATE.into(),
        window,
        labels: Vec::new(),
        config: String::new(),
        deadline_ms: 0,
    }
}

fn benches(c: &mut Criterion) {
    let service = TestService::start(&[("v1", Behaviour::ERRORS)]);
    let _load = Load::start(service.port, &[Some("v1")], Duration::from_millis(20));
    let prometheus = Prometheus::start(&[service.target()]);
    prometheus.wait_for(ERROR_RATE, Duration::from_secs(60));
    // Five minutes of history would take five minutes; a range query's cost
    // depends on the points asked for, so ask for 300 at a 20 ms step.
    std::thread::sleep(Duration::from_secs(8));
    let end = now_ms();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let yaml = format!(
        "plugins:\n  prometheus:\n    config: {{address: \"{}\"}}\n    grants: {{network: [\"{}\"]}}\n    limits: {{timeout_ms: 5000}}\n",
        prometheus.address(),
        prometheus.endpoint()
    );
    let config = Config::from_layers(&yaml, Path::new("bench.yaml")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = support::host(Some(cache.path().to_path_buf()));
    let set = rt.block_on(PluginSet::load(&host, &config, &[])).unwrap();
    let provider = set.metric_provider("prometheus").unwrap().clone();

    let five = request(TimeWindow {
        start_ms: end - 4_000,
        end_ms: end,
        step_ms: 1_000,
    });
    let many = request(TimeWindow {
        start_ms: end - 5_980,
        end_ms: end,
        step_ms: 20,
    });
    let instant = request(TimeWindow {
        start_ms: end,
        end_ms: end,
        step_ms: 0,
    });
    for (what, r, n) in [
        ("5", &five, 5),
        ("300", &many, 300),
        ("instant", &instant, 1),
    ] {
        let got = rt.block_on(provider.query(r)).unwrap().value.len();
        assert_eq!(got, n, "{what}: {got} samples");
    }

    let mut g = c.benchmark_group("provider");
    g.sample_size(50);
    g.bench_function("prometheus_range_query_5_samples", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(provider.query(&five).await.unwrap()) })
    });
    g.bench_function("prometheus_range_query_300_samples", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(provider.query(&many).await.unwrap()) })
    });
    g.bench_function("prometheus_instant_query", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(provider.query(&instant).await.unwrap()) })
    });
    g.bench_function("plain_http_range_query_5_samples", |b| {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=1",
            encode(ERROR_RATE),
            (end - 4_000) as f64 / 1000.0,
            end as f64 / 1000.0
        );
        b.iter(|| black_box(http_get(prometheus.port(), &path).unwrap()))
    });
    g.finish();
}

criterion_group!(provider, benches);
criterion_main!(provider);
