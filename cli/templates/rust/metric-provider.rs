//! {{name}}: an adeploy metric provider. The host calls `query` for the
//! samples of one series over a time window, and judges them itself
//! (thresholds, comparison with a baseline); `check` validates a query for
//! `--dry-run` (see wit/metric-provider.wit). This one reads the query text
//! as a number and returns it at every instant of the window: replace it
//! with a call to your monitoring system through `http-fetch` (granted by
//! `plugins.{{name}}.grants.network`).

wit_bindgen::generate!({
    path: "wit",
    world: "adeploy:plugin/metric-provider-plugin",
    generate_all,
});

use adeploy::plugin::host::{LogLevel, log};
use adeploy::plugin::types::{Detail, PluginInfo};
use exports::adeploy::plugin::metric_provider::{Guest, MetricQuery, ProviderError, Sample};

struct Plugin;

fn value(request: &MetricQuery) -> Result<f64, ProviderError> {
    request.query.trim().parse().map_err(|_| {
        ProviderError::InvalidQuery(format!("{:?} is not a number", request.query))
    })
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: "0.1.0".to_string(),
            description: "{{description}}".to_string(),
        }
    }

    fn query(request: MetricQuery) -> Result<Vec<Sample>, ProviderError> {
        let value = value(&request)?;
        let w = request.window;
        log(LogLevel::Debug, &format!("{{name}}: {} = {value}", request.metric));
        if w.step_ms == 0 {
            return Ok(vec![Sample { timestamp_ms: w.end_ms, value }]);
        }
        let count = (w.end_ms.saturating_sub(w.start_ms) / w.step_ms + 1).min(11_000);
        Ok((0..count)
            .map(|i| Sample { timestamp_ms: w.start_ms + i * w.step_ms, value })
            .collect())
    }

    fn check(request: MetricQuery) -> Result<Vec<Detail>, ProviderError> {
        let value = value(&request)?;
        Ok(vec![Detail { key: "value".to_string(), value: value.to_string() }])
    }
}

export!(Plugin);
