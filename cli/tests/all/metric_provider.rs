//! Metric providers written outside this repository: the Python example
//! (`plugins/examples`) and the `adeploy plugins new --kind metric-provider`
//! templates, each built from source and queried through the host.

use adeploy::plugin::{MetricQuery, PluginKind, QueryError, TimeWindow};

use crate::common::{self, adeploy};

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

/// The Python example provider (`plugins/examples/json-metrics-py`), built
/// from source by `plugins/examples/build.sh`, against a loopback JSON
/// endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_provider_reads_a_json_endpoint() {
    use adeploy::config::Grants;
    use adeploy::plugin::{Manifest, PluginSettings};

    let server = common::HttpServer::start(
        200,
        r#"{"api": {"error_rate": 0.02, "name": "api",
                    "latency_ms": [[5000, 130.0], [1000, 120.5], [3000, 125.0], [99000, 1.0]]}}"#,
    );
    let wasm = crate::examples::built_examples().join("json-metrics.wasm");
    let dir = tempfile::tempdir().unwrap();
    let host = common::host(common::empty_world(dir.path()));
    let load = |network: Vec<String>| {
        let settings = PluginSettings {
            grants: Grants {
                network,
                ..Grants::default()
            },
            timeout_ms: 10_000,
            memory_mb: 256,
            config_json: format!(
                r#"{{"url": "http://127.0.0.1:{}/metrics.json"}}"#,
                server.port
            ),
            manifest: Manifest::beside(&wasm).unwrap(),
            ..PluginSettings::default()
        };
        host.load_file(&wasm, settings)
    };
    let plugin = load(vec![format!("127.0.0.1:{}", server.port)])
        .await
        .unwrap();
    assert_eq!(plugin.kind(), PluginKind::MetricProvider);
    assert_eq!(plugin.name(), "json-metrics");

    let window = TimeWindow {
        start_ms: 0,
        end_ms: 10_000,
        step_ms: 1_000,
    };
    let series = plugin
        .query(&request("latency", "api.latency_ms", window))
        .await
        .unwrap()
        .value;
    let got: Vec<(u64, f64)> = series.iter().map(|s| (s.timestamp_ms, s.value)).collect();
    assert_eq!(
        got,
        [(1000, 120.5), (3000, 125.0), (5000, 130.0)],
        "sorted, inside the window"
    );
    let current = plugin
        .query(&request("errors", "api.error_rate", window))
        .await
        .unwrap()
        .value;
    let got: Vec<(u64, f64)> = current.iter().map(|s| (s.timestamp_ms, s.value)).collect();
    assert_eq!(
        got,
        [(10_000, 0.02)],
        "a number is the value at the window's end"
    );
    assert_eq!(server.paths.lock().unwrap()[0], "/metrics.json");

    let missing = plugin
        .query(&request("errors", "api.nope", window))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, QueryError::InvalidQuery { message, .. }
            if message == "no key `nope` in api (keys: error_rate, latency_ms, name)"),
        "{missing:?}"
    );
    let text = plugin
        .check_query(&request("errors", "api.name", window))
        .await
        .unwrap_err();
    assert!(matches!(text, QueryError::InvalidQuery { .. }), "{text:?}");
    let details = plugin
        .check_query(&request("latency", "api.latency_ms", window))
        .await
        .unwrap()
        .value;
    assert_eq!(
        (details[0].key.as_str(), details[0].value.as_str()),
        ("kind", "series")
    );

    let ungranted = load(Vec::new()).await.unwrap();
    let denied = ungranted
        .query(&request("errors", "api.error_rate", window))
        .await
        .unwrap_err();
    assert!(matches!(denied, QueryError::Denied { .. }), "{denied:?}");
}

/// The metric-provider templates of `adeploy plugins new` (Rust, JavaScript,
/// Python):
/// each project's `./build.sh` gives a component that loads, answers a query
/// with a sample per step, and reports a bad query as `invalid-query` (so
/// each language's error convention in the template is right).
#[tokio::test(flavor = "multi_thread")]
async fn the_metric_provider_templates_build_load_and_answer() {
    use adeploy::plugin::{Manifest, PluginSettings};
    use std::process::{Command, Stdio};

    use crate::examples::{built_examples, repo_root, target_dir};

    // The example build checks (loudly) that jco and componentize-py are installed.
    built_examples();
    let root = tempfile::tempdir().unwrap();
    let host = common::host(common::empty_world(root.path()));
    for lang in ["rust", "js", "python"] {
        let name = format!("my-{lang}-provider");
        let dir = root.path().join(&name);
        let dir_arg = dir.to_str().unwrap();
        let state = root.path().join("state");
        let o = adeploy(
            &[
                "plugins",
                "new",
                &name,
                "--kind",
                "metric-provider",
                "--lang",
                lang,
                "--dir",
                dir_arg,
            ],
            root.path(),
            &state,
        );
        assert!(o.status.success(), "{name}: {o:?}");
        if lang == "js" {
            std::os::unix::fs::symlink(
                repo_root().join("plugins/examples/node_modules"),
                dir.join("node_modules"),
            )
            .unwrap();
        }
        let o = Command::new("bash")
            .arg(dir.join("build.sh"))
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", target_dir().join("tmp/scaffold-target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: build.sh failed\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let wasm = dir.join(format!("{name}.wasm"));
        let settings = PluginSettings {
            timeout_ms: 20_000,
            memory_mb: 256,
            manifest: Manifest::beside(&wasm).unwrap(),
            ..PluginSettings::default()
        };
        let plugin = host.load_file(&wasm, settings).await.unwrap();
        assert_eq!(plugin.kind(), PluginKind::MetricProvider, "{name}");
        let window = TimeWindow {
            start_ms: 1_000,
            end_ms: 5_000,
            step_ms: 2_000,
        };
        let samples = plugin
            .query(&request("m", "0.5", window))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .value;
        let got: Vec<(u64, f64)> = samples.iter().map(|s| (s.timestamp_ms, s.value)).collect();
        assert_eq!(got, [(1_000, 0.5), (3_000, 0.5), (5_000, 0.5)], "{name}");
        let bad = plugin
            .query(&request("m", "not a number", window))
            .await
            .unwrap_err();
        assert!(
            matches!(&bad, QueryError::InvalidQuery { message, .. } if message.contains("not a number")),
            "{name}: {bad:?}"
        );
        let details = plugin
            .check_query(&request("m", "0.25", window))
            .await
            .unwrap()
            .value;
        assert_eq!(details[0].value, "0.25", "{name}");
    }
}
