//! Metric providers: the [`MetricProvider`] trait,
//! [`export_metric_provider!`](crate::export_metric_provider), and helpers
//! for what every provider does (reading the window, mapping host errors).
//!
//! A provider fetches; the host judges. `query` returns the samples of one
//! series over the requested window (increasing timestamps, finite values,
//! at most [`MAX_SAMPLES`]); `check` validates a query cheaply for
//! `--dry-run`. The error kind matters to the host: `InvalidQuery` is the
//! operator's mistake (a config error naming the metric), `Unavailable`
//! means "no data this time" (the verdict is inconclusive).
//!
//! ```
//! use adeploy_sdk::provider::{MetricProvider, MetricQuery, ProviderError, Sample};
//! use adeploy_sdk::types::PluginInfo;
//!
//! /// Always the same value, once per step: a provider in a dozen lines.
//! struct Constant;
//!
//! impl MetricProvider for Constant {
//!     fn describe() -> PluginInfo {
//!         adeploy_sdk::info("constant", "0.1.0", "the query text as a number")
//!     }
//!     fn query(request: MetricQuery) -> Result<Vec<Sample>, ProviderError> {
//!         let value: f64 = request.query.trim().parse()
//!             .map_err(|_| ProviderError::InvalidQuery(format!("{:?} is not a number", request.query)))?;
//!         Ok(adeploy_sdk::provider::instants(&request.window)
//!             .map(|timestamp_ms| Sample { timestamp_ms, value })
//!             .collect())
//!     }
//! }
//!
//! adeploy_sdk::export_metric_provider!(Constant);
//! # fn main() {}
//! ```

use crate::host::HostError;
use crate::types::{Detail, PluginInfo};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "adeploy:plugin/metric-provider-plugin",
        pub_export_macro: true,
        default_bindings_module: "adeploy_sdk::provider::bindings",
        export_macro_name: "__export_metric_provider_world",
        with: { "adeploy:plugin/types@0.1.0": crate::types, "adeploy:plugin/host@0.1.0": crate::host },
    });
}

pub use bindings::exports::adeploy::plugin::metric_provider::{
    MetricQuery, ProviderError, Sample, TimeWindow,
};

/// The most samples one `query` may return (the host refuses more).
pub const MAX_SAMPLES: usize = 11_000;

/// A metric provider. Implement it and call
/// [`export_metric_provider!`](crate::export_metric_provider).
pub trait MetricProvider {
    /// Name, version and one-line description.
    fn describe() -> PluginInfo;

    /// The samples of the series `request.query` names over `request.window`.
    fn query(request: MetricQuery) -> Result<Vec<Sample>, ProviderError>;

    /// Checks `request.query` without reading a series. The default runs
    /// [`query`](Self::query) and reports how many samples it gave; override
    /// it when the backend has a cheaper way (a parse endpoint, an instant
    /// query).
    fn check(request: MetricQuery) -> Result<Vec<Detail>, ProviderError> {
        let samples = Self::query(request)?;
        Ok(vec![Detail {
            key: "samples".to_string(),
            value: samples.len().to_string(),
        }])
    }
}

/// Exports a type implementing [`MetricProvider`] as the component's
/// `metric-provider` interface.
#[macro_export]
macro_rules! export_metric_provider {
    ($ty:ty) => {
        // Native builds (tests, docs) cannot link component export names
        // (rust-lang/rust#141310); the export exists only in the component.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[doc(hidden)]
            struct __AdeployMetricProviderExport;

            impl $crate::provider::bindings::exports::adeploy::plugin::metric_provider::Guest
                for __AdeployMetricProviderExport
            {
                fn describe() -> $crate::types::PluginInfo {
                    <$ty as $crate::provider::MetricProvider>::describe()
                }
                fn query(
                    request: $crate::provider::MetricQuery,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::provider::Sample>,
                    $crate::provider::ProviderError,
                > {
                    <$ty as $crate::provider::MetricProvider>::query(request)
                }
                fn check(
                    request: $crate::provider::MetricQuery,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::types::Detail>,
                    $crate::provider::ProviderError,
                > {
                    <$ty as $crate::provider::MetricProvider>::check(request)
                }
            }

            $crate::provider::bindings::__export_metric_provider_world!(__AdeployMetricProviderExport with_types_in $crate::provider::bindings);
        };
    };
}

/// The timestamps a window asks for: `start, start + step, …` up to `end`
/// (at most [`MAX_SAMPLES`]); only `end` for an instant query (`step-ms` 0).
pub fn instants(window: &TimeWindow) -> impl Iterator<Item = u64> + use<> {
    let (start, end, step) = (window.start_ms, window.end_ms, window.step_ms);
    let (first, step, count) = if step == 0 {
        (end, 1, 1)
    } else if end < start {
        (start, step, 0)
    } else {
        (
            start,
            step,
            ((end - start) / step + 1).min(MAX_SAMPLES as u64),
        )
    };
    (0..count).map(move |i| first + i * step)
}

/// The value of label `key` in a query (`service`, `version`, …), if the
/// host sent it.
pub fn label<'a>(request: &'a MetricQuery, key: &str) -> Option<&'a str> {
    request
        .labels
        .iter()
        .find(|d| d.key == key)
        .map(|d| d.value.as_str())
}

/// The provider error for a failed host import made on the way to the
/// backend `what` (e.g. `Prometheus at http://127.0.0.1:9090`): a denial
/// stays a denial, a bad URL is the plugin's config, and anything the
/// network did (refused, timed out, unresolvable) means the backend is
/// unavailable.
pub fn host_error(what: &str, e: HostError) -> ProviderError {
    match e {
        HostError::Denied(m) => ProviderError::Denied(m),
        HostError::Invalid(m) => ProviderError::BadConfig(format!("{what}: {m}")),
        HostError::Timeout(m) => ProviderError::Unavailable(format!("{what}: timed out: {m}")),
        HostError::NotFound(m) => ProviderError::Unavailable(format!("{what}: not found: {m}")),
        HostError::Failed(m) => ProviderError::Unavailable(format!("{what}: {m}")),
    }
}

impl ProviderError {
    /// The kebab-case name of the error kind, e.g. `invalid-query`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::InvalidQuery(_) => "invalid-query",
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::Denied(_) => "denied",
            ProviderError::BadConfig(_) => "bad-config",
            ProviderError::Failed(_) => "failed",
        }
    }

    /// The message the error carries.
    pub fn message(&self) -> &str {
        match self {
            ProviderError::InvalidQuery(m)
            | ProviderError::Unavailable(m)
            | ProviderError::Denied(m)
            | ProviderError::BadConfig(m)
            | ProviderError::Failed(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_ms: u64, end_ms: u64, step_ms: u64) -> TimeWindow {
        TimeWindow {
            start_ms,
            end_ms,
            step_ms,
        }
    }

    #[test]
    fn instants_cover_the_window_by_step() {
        let all: Vec<u64> = instants(&window(1000, 5000, 2000)).collect();
        assert_eq!(all, [1000, 3000, 5000]);
        let all: Vec<u64> = instants(&window(1000, 5999, 2000)).collect();
        assert_eq!(all, [1000, 3000, 5000]);
        assert_eq!(instants(&window(1000, 5000, 0)).collect::<Vec<_>>(), [5000]);
        assert_eq!(instants(&window(5000, 1000, 10)).count(), 0);
        assert_eq!(instants(&window(0, u64::MAX / 2, 1)).count(), MAX_SAMPLES);
    }

    #[test]
    fn host_errors_map_to_provider_errors() {
        let e = host_error("x", HostError::Denied("grants.network".into()));
        assert_eq!(e.kind(), "denied");
        let e = host_error("x", HostError::Failed("connection refused".into()));
        assert_eq!(
            (e.kind(), e.message()),
            ("unavailable", "x: connection refused")
        );
        let e = host_error("x", HostError::Timeout("slow".into()));
        assert_eq!(e.message(), "x: timed out: slow");
        let e = host_error("x", HostError::Invalid("bad URL".into()));
        assert_eq!(e.kind(), "bad-config");
    }
}
