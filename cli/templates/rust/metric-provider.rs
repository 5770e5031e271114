//! {{name}}: an adeploy metric provider. The host calls `query` for the
//! samples of one series over a time window, and judges them itself
//! (thresholds, comparison with a baseline); `check` validates a query for
//! `--dry-run` (see wit/metric-provider.wit). This one reads the query text
//! as a number and returns it at every instant of the window: replace it
//! with a call to your monitoring system through `adeploy_sdk::host::http_fetch`
//! (granted by `plugins.{{name}}.grants.network`).
//!
//! It is written with adeploy-sdk (vendored in `adeploy-sdk/`): the trait,
//! the export macro, the window's instants and typed config.

use adeploy_sdk::provider::{MetricProvider, MetricQuery, ProviderError, Sample};
use adeploy_sdk::types::{Detail, PluginInfo};

struct Plugin;

fn value(request: &MetricQuery) -> Result<f64, ProviderError> {
    // No settings yet: refuse any, naming the key.
    let adeploy_sdk::config::NoKeys {} =
        adeploy_sdk::config::from_json(&request.config).map_err(ProviderError::BadConfig)?;
    request.query.trim().parse().map_err(|_| {
        ProviderError::InvalidQuery(format!("{:?} is not a number", request.query))
    })
}

impl MetricProvider for Plugin {
    fn describe() -> PluginInfo {
        adeploy_sdk::info("{{name}}", "0.1.0", "{{description}}")
    }

    fn query(request: MetricQuery) -> Result<Vec<Sample>, ProviderError> {
        let value = value(&request)?;
        adeploy_sdk::debug(&format!("{{name}}: {} = {value}", request.metric));
        Ok(adeploy_sdk::provider::instants(&request.window)
            .map(|timestamp_ms| Sample { timestamp_ms, value })
            .collect())
    }

    fn check(request: MetricQuery) -> Result<Vec<Detail>, ProviderError> {
        let value = value(&request)?;
        Ok(vec![Detail { key: "value".to_string(), value: value.to_string() }])
    }
}

adeploy_sdk::export_metric_provider!(Plugin);
