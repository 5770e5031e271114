//! Calling metric providers: [`Plugin::query`] and [`Plugin::check_query`].
//!
//! Why the provider's own errors get their own type: what the host does next
//! depends on the kind. A query the backend rejects is the operator's mistake
//! (a config error naming the metric, exit 2 before anything runs); a backend
//! that cannot be reached means "no data this time" (the verdict is
//! inconclusive); a plugin that traps or overruns its deadline is contained
//! like any plugin ([`PluginError`]). [`QueryError`] keeps these apart and
//! names the metric and the plugin in every message.
//!
//! What a provider returns is checked before anyone judges it: at most
//! [`MAX_SAMPLES`] samples, finite values, strictly increasing timestamps.

use std::sync::Arc;

use super::bindings::types::Detail;
use super::call::LiftLimit;
use super::{Called, Plugin, PluginError, PluginKind, PluginSet, TypedPre};

pub use super::bindings::provider_api::{MetricQuery, ProviderError, Sample, TimeWindow};

/// The most samples one `query` may return (Prometheus's own limit per series).
pub const MAX_SAMPLES: usize = 11_000;

/// Why a metric query gave no samples. Every variant names the metric and
/// the provider plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The backend rejected the query: the operator must fix it.
    #[error("metric '{metric}': provider '{plugin}' rejects the query: {message}")]
    InvalidQuery {
        plugin: String,
        metric: String,
        message: String,
    },
    /// The backend could not be reached, timed out or failed.
    #[error("metric '{metric}': provider '{plugin}' cannot read its backend: {message}")]
    Unavailable {
        plugin: String,
        metric: String,
        message: String,
    },
    /// The host refused an import the provider needs (a missing grant).
    #[error("metric '{metric}': provider '{plugin}' was denied: {message}")]
    Denied {
        plugin: String,
        metric: String,
        message: String,
    },
    /// The provider's own config (`plugins.<name>.config`) is wrong.
    #[error("metric '{metric}': provider '{plugin}' has a bad config: {message}")]
    BadConfig {
        plugin: String,
        metric: String,
        message: String,
    },
    /// The provider failed for another reason it reported.
    #[error("metric '{metric}': provider '{plugin}' failed: {message}")]
    Failed {
        plugin: String,
        metric: String,
        message: String,
    },
    /// The plugin itself failed: trap, deadline, memory cap, malformed samples.
    #[error("metric '{metric}': {source}")]
    Plugin {
        metric: String,
        #[source]
        source: PluginError,
    },
}

impl QueryError {
    /// The metric the query was for.
    pub fn metric(&self) -> &str {
        match self {
            QueryError::InvalidQuery { metric, .. }
            | QueryError::Unavailable { metric, .. }
            | QueryError::Denied { metric, .. }
            | QueryError::BadConfig { metric, .. }
            | QueryError::Failed { metric, .. }
            | QueryError::Plugin { metric, .. } => metric,
        }
    }

    /// The provider plugin.
    pub fn plugin(&self) -> &str {
        match self {
            QueryError::InvalidQuery { plugin, .. }
            | QueryError::Unavailable { plugin, .. }
            | QueryError::Denied { plugin, .. }
            | QueryError::BadConfig { plugin, .. }
            | QueryError::Failed { plugin, .. } => plugin,
            QueryError::Plugin { source, .. } => source.plugin(),
        }
    }

    /// True when the operator's config is at fault (the query, the plugin's
    /// config or grants, the plugin file): bad input, exit code 2. False for
    /// what happens at run time (an unavailable backend, a trapping plugin),
    /// which leaves the metric without data (inconclusive).
    pub fn is_bad_input(&self) -> bool {
        match self {
            QueryError::InvalidQuery { .. }
            | QueryError::Denied { .. }
            | QueryError::BadConfig { .. } => true,
            QueryError::Unavailable { .. } | QueryError::Failed { .. } => false,
            QueryError::Plugin { source, .. } => source.is_bad_input(),
        }
    }

    fn from_provider(plugin: &str, metric: &str, e: ProviderError) -> QueryError {
        let (plugin, metric) = (plugin.to_string(), metric.to_string());
        let cap = |mut m: String| {
            super::validate::cap_reason(&mut m);
            crate::config::one_line(&m).into_owned()
        };
        match e {
            ProviderError::InvalidQuery(m) => QueryError::InvalidQuery {
                plugin,
                metric,
                message: cap(m),
            },
            ProviderError::Unavailable(m) => QueryError::Unavailable {
                plugin,
                metric,
                message: cap(m),
            },
            ProviderError::Denied(m) => QueryError::Denied {
                plugin,
                metric,
                message: cap(m),
            },
            ProviderError::BadConfig(m) => QueryError::BadConfig {
                plugin,
                metric,
                message: cap(m),
            },
            ProviderError::Failed(m) => QueryError::Failed {
                plugin,
                metric,
                message: cap(m),
            },
        }
    }
}

impl Plugin {
    /// Calls a metric provider's `query` and checks the samples. The
    /// request's `config` and `deadline-ms` are replaced by this plugin's
    /// own config and deadline.
    pub async fn query(&self, request: &MetricQuery) -> Result<Called<Vec<Sample>>, QueryError> {
        let metric = request.metric.clone();
        let wrap = |source| QueryError::Plugin {
            metric: metric.clone(),
            source,
        };
        let TypedPre::Provider(pre) = &self.typed else {
            return Err(wrap(self.wrong_kind(PluginKind::MetricProvider)));
        };
        let own = self.own_request(request);
        let called = self
            .call(
                "query",
                LiftLimit::with(MAX_SAMPLES, std::mem::size_of::<Sample>()),
                async |store| {
                    let i = pre.instantiate_async(&mut *store).await?;
                    i.adeploy_plugin_metric_provider()
                        .call_query(store, &own)
                        .await
                },
            )
            .await
            .map_err(wrap)?;
        let called =
            transpose(called).map_err(|e| QueryError::from_provider(&self.name, &metric, e))?;
        validate_samples(&called.value).map_err(|r| wrap(self.malformed_answer("query", r)))?;
        Ok(called)
    }

    /// Calls a metric provider's `check` (for `--dry-run`): whether the
    /// query would work, and what the provider learnt about it.
    pub async fn check_query(
        &self,
        request: &MetricQuery,
    ) -> Result<Called<Vec<Detail>>, QueryError> {
        let metric = request.metric.clone();
        let wrap = |source| QueryError::Plugin {
            metric: metric.clone(),
            source,
        };
        let TypedPre::Provider(pre) = &self.typed else {
            return Err(wrap(self.wrong_kind(PluginKind::MetricProvider)));
        };
        let own = self.own_request(request);
        let called = self
            .call("check", LiftLimit::BASE, async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_metric_provider()
                    .call_check(store, &own)
                    .await
            })
            .await
            .map_err(wrap)?;
        let called =
            transpose(called).map_err(|e| QueryError::from_provider(&self.name, &metric, e))?;
        if called.value.len() > super::validate::MAX_DETAILS {
            return Err(wrap(self.malformed_answer(
                "check",
                format!(
                    "{} details, more than the {} a plugin may return",
                    called.value.len(),
                    super::validate::MAX_DETAILS
                ),
            )));
        }
        super::validate::text_budget(
            "the check's details",
            called
                .value
                .iter()
                .flat_map(|d| [d.key.as_str(), d.value.as_str()]),
        )
        .map_err(|r| wrap(self.malformed_answer("check", r)))?;
        Ok(called)
    }

    fn malformed_answer(&self, function: &'static str, reason: String) -> PluginError {
        PluginError::Malformed {
            plugin: self.name.clone(),
            function,
            reason,
        }
    }

    /// The request as this plugin receives it: its own config and deadline.
    fn own_request(&self, request: &MetricQuery) -> MetricQuery {
        let mut own = request.clone();
        own.config.clone_from(&self.config_json);
        own.deadline_ms = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        own
    }
}

/// At most [`MAX_SAMPLES`] samples, each finite, timestamps strictly increasing.
fn validate_samples(samples: &[Sample]) -> Result<(), String> {
    if samples.len() > MAX_SAMPLES {
        return Err(format!(
            "{} samples, more than the {MAX_SAMPLES} a query may return",
            samples.len()
        ));
    }
    if let Some((i, s)) = samples
        .iter()
        .enumerate()
        .find(|(_, s)| !s.value.is_finite())
    {
        return Err(format!(
            "sample {i} (at {} ms) has the value {}; leave out points without a value",
            s.timestamp_ms, s.value
        ));
    }
    if let Some(i) = samples
        .windows(2)
        .position(|w| w[1].timestamp_ms <= w[0].timestamp_ms)
    {
        return Err(format!(
            "sample {} (at {} ms) is not later than the one before it (at {} ms); samples must be in increasing time order",
            i + 1,
            samples[i + 1].timestamp_ms,
            samples[i].timestamp_ms
        ));
    }
    Ok(())
}

impl PluginSet {
    /// The metric provider called `name`: an error when there is no such
    /// plugin or it is of another kind.
    pub fn metric_provider(&self, name: &str) -> Result<&Arc<Plugin>, PluginError> {
        let plugin = self.get(name)?;
        if plugin.kind() != PluginKind::MetricProvider {
            return Err(plugin.wrong_kind(PluginKind::MetricProvider));
        }
        Ok(plugin)
    }
}

/// Turns `Called<Result<T, E>>` into `Result<Called<T>, E>`.
fn transpose<T, E>(called: Called<Result<T, E>>) -> Result<Called<T>, E> {
    let Called {
        value,
        events,
        dropped_events,
        elapsed,
        used,
    } = called;
    value.map(|value| Called {
        value,
        events,
        dropped_events,
        elapsed,
        used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(timestamp_ms: u64, value: f64) -> Sample {
        Sample {
            timestamp_ms,
            value,
        }
    }

    #[test]
    fn good_samples_pass() {
        assert_eq!(validate_samples(&[]), Ok(()));
        assert_eq!(
            validate_samples(&[s(1, 0.5), s(2, -3.0), s(9, 0.0)]),
            Ok(())
        );
    }

    #[test]
    fn non_finite_values_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = validate_samples(&[s(1, 0.5), s(2, bad)]).unwrap_err();
            assert!(err.starts_with("sample 1 (at 2 ms) has the value"), "{err}");
        }
    }

    #[test]
    fn unsorted_or_repeated_timestamps_are_refused() {
        let err = validate_samples(&[s(1, 0.5), s(3, 1.0), s(2, 1.0)]).unwrap_err();
        assert!(
            err.starts_with("sample 2 (at 2 ms) is not later than the one before it (at 3 ms)"),
            "{err}"
        );
        assert!(validate_samples(&[s(1, 0.5), s(1, 0.5)]).is_err());
    }

    #[test]
    fn too_many_samples_are_refused() {
        let many: Vec<Sample> = (0..=MAX_SAMPLES as u64).map(|t| s(t, 1.0)).collect();
        let err = validate_samples(&many).unwrap_err();
        assert!(err.contains("more than the 11000"), "{err}");
        assert_eq!(validate_samples(&many[..MAX_SAMPLES]), Ok(()));
    }

    #[test]
    fn errors_name_metric_and_plugin_and_sort_bad_input() {
        let e = QueryError::from_provider(
            "prometheus",
            "error-rate",
            ProviderError::InvalidQuery("1:5: parse error\nsecond line".into()),
        );
        assert_eq!(
            e.to_string(),
            "metric 'error-rate': provider 'prometheus' rejects the query: 1:5: parse error\\nsecond line"
        );
        assert!(e.is_bad_input());
        assert_eq!((e.metric(), e.plugin()), ("error-rate", "prometheus"));
        let e = QueryError::from_provider(
            "prometheus",
            "m",
            ProviderError::Unavailable("refused".into()),
        );
        assert!(!e.is_bad_input());
        let e = QueryError::from_provider("p", "m", ProviderError::Denied("grants".into()));
        assert!(e.is_bad_input());
    }
}
