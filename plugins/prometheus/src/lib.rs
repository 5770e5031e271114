//! `prometheus`: the built-in metric provider. It reads Prometheus's HTTP API
//! (`/api/v1/query_range` for a window, `/api/v1/query` for an instant and
//! for `check`) through the host's `http-fetch`, so it reaches exactly the
//! endpoints `plugins.prometheus.grants.network` lists and nothing else.
//!
//! Plugin config (JSON):
//!
//! ```json
//! {"address": "http://127.0.0.1:9090", "timeout_ms": 5000, "bearer_token_env": "PROM_TOKEN"}
//! ```
//!
//! - `address`: Prometheus's base URL (default `http://127.0.0.1:9090`; a
//!   path prefix such as `http://proxy/prometheus` is kept).
//! - `timeout_ms`: the deadline of one HTTP request (default: the call's
//!   deadline less 250 ms, so a slow Prometheus is reported as
//!   `unavailable` before the host stops the plugin).
//! - `bearer_token_env`: an environment variable holding a bearer token
//!   (read through `env-var`, so it needs `grants.env`).
//!
//! A query must give one series: a result with several series is an
//! `invalid-query` error asking for an aggregation (`sum`, `avg`, `max`).
//! NaN and infinite points (a rate of 0/0 with no traffic) are left out: no
//! value at that instant. Errors: Prometheus's `bad_data`/`execution`
//! (HTTP 400/422) → `invalid-query`; unreachable, timed out or 5xx →
//! `unavailable`; a missing grant → `denied`; a bad config → `bad-config`.

use adeploy_sdk::host::{self, HttpRequest, HttpResponse};
use adeploy_sdk::provider::{
    self, MAX_SAMPLES, MetricProvider, MetricQuery, ProviderError, Sample, TimeWindow,
};
use adeploy_sdk::types::{Detail, PluginInfo};
use serde::Deserialize;
use serde_json::Value;

/// The provider; see the crate docs.
#[derive(Debug)]
pub struct Prometheus;

/// Where Prometheus is when the config does not say.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:9090";

/// Time kept between the HTTP timeout and the call's deadline.
const DEADLINE_MARGIN_MS: u32 = 250;

/// The plugin's settings.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    /// Base URL without a trailing slash.
    address: String,
    timeout_ms: Option<u32>,
    bearer_token_env: Option<String>,
}

/// The config as the operator writes it (every key optional); read by the
/// SDK, which refuses unknown keys and values of the wrong type by name.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    address: Option<String>,
    timeout_ms: Option<u32>,
    bearer_token_env: Option<String>,
}

fn parse_settings(config: &str) -> Result<Settings, ProviderError> {
    let bad = ProviderError::BadConfig;
    let raw: Raw = adeploy_sdk::config::from_json(config).map_err(bad)?;
    let non_empty = |key: &str, v: Option<String>| match v {
        Some(s) if s.trim().is_empty() => Err(bad(format!(
            "config key `{key}` must be a non-empty string, got {s:?}"
        ))),
        other => Ok(other.map(|s| s.trim().to_string())),
    };
    let address = non_empty("address", raw.address)?.unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        return Err(bad(format!(
            "config key `address` must be an http:// or https:// URL, got {address:?}"
        )));
    }
    if raw.timeout_ms == Some(0) {
        return Err(bad(
            "config key `timeout_ms` must be a whole number of milliseconds above 0, got 0"
                .to_string(),
        ));
    }
    Ok(Settings {
        address: address.trim_end_matches('/').to_string(),
        timeout_ms: raw.timeout_ms,
        bearer_token_env: non_empty("bearer_token_env", raw.bearer_token_env)?,
    })
}

/// Milliseconds since the epoch as Prometheus's seconds with 3 decimals.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// One API request: the path under the address and its form parameters.
#[derive(Debug, Clone, PartialEq)]
struct ApiCall {
    path: &'static str,
    form: String,
}

/// The API call `query` makes for a window: a range query, or an instant
/// query at `end` when the step is 0. `eval_timeout_ms` bounds Prometheus's
/// own evaluation.
fn query_call(query: &str, window: &TimeWindow, eval_timeout_ms: u32) -> ApiCall {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("query", query);
    let path = if window.step_ms == 0 {
        form.append_pair("time", &seconds(window.end_ms));
        "/api/v1/query"
    } else {
        form.append_pair("start", &seconds(window.start_ms))
            .append_pair("end", &seconds(window.end_ms))
            .append_pair("step", &seconds(window.step_ms));
        "/api/v1/query_range"
    };
    // Float seconds: Prometheus's duration syntax has no fractions ("0.9s").
    form.append_pair("timeout", &seconds(u64::from(eval_timeout_ms)));
    ApiCall {
        path,
        form: form.finish(),
    }
}

/// Prometheus's answer envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

/// One series of a matrix or vector result.
#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    metric: serde_json::Map<String, Value>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl Series {
    /// `{job="api", code="500"}`, for messages.
    fn labels(&self) -> String {
        let pairs: Vec<String> = self
            .metric
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or(v.to_string(), |s| format!("{s:?}"))
                )
            })
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
}

/// What an answer held: the result type and its series.
#[derive(Debug)]
struct Answer {
    result_type: String,
    series: Vec<Series>,
}

/// Turns an HTTP answer from Prometheus into its series, or the error the
/// host should see. `what` names the endpoint for messages.
fn read_answer(what: &str, response: &HttpResponse) -> Result<Answer, ProviderError> {
    let body = String::from_utf8_lossy(&response.body);
    let envelope: Option<Envelope> = serde_json::from_slice(&response.body).ok();
    let api_error = envelope.as_ref().and_then(|e| {
        (e.status == "error").then(|| {
            format!(
                "{} ({})",
                e.error.as_deref().unwrap_or("no message"),
                e.error_type.as_deref().unwrap_or("error")
            )
        })
    });
    match response.status {
        200..=299 => {}
        400 | 422 => {
            return Err(ProviderError::InvalidQuery(api_error.unwrap_or_else(
                || format!("{what} answered {}: {}", response.status, snippet(&body)),
            )));
        }
        401 | 403 => {
            return Err(ProviderError::Failed(format!(
                "{what} refused access ({}); give it a token with config key `bearer_token_env`",
                response.status
            )));
        }
        404 => {
            return Err(ProviderError::BadConfig(format!(
                "{what} does not exist (404): is config key `address` Prometheus's base URL?"
            )));
        }
        status if status >= 500 => {
            return Err(ProviderError::Unavailable(format!(
                "{what} answered {status}: {}",
                api_error.unwrap_or_else(|| snippet(&body))
            )));
        }
        status => {
            return Err(ProviderError::Failed(format!(
                "{what} answered {status}: {}",
                snippet(&body)
            )));
        }
    }
    let Some(envelope) = envelope else {
        let cut = if response.body.len() >= 1 << 20 {
            " (the answer was cut at 1 MiB: does the query select too many series?)"
        } else {
            ""
        };
        return Err(ProviderError::Failed(format!(
            "{what} answered something that is not Prometheus's JSON{cut}: {}",
            snippet(&body)
        )));
    };
    if let Some(error) = api_error {
        return Err(match envelope.error_type.as_deref() {
            Some("bad_data" | "execution") => ProviderError::InvalidQuery(error),
            Some("timeout" | "canceled" | "unavailable" | "internal") => {
                ProviderError::Unavailable(format!("{what}: {error}"))
            }
            _ => ProviderError::Failed(format!("{what}: {error}")),
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| ProviderError::Failed(format!("{what} answered success without data")))?;
    let series = match data.result_type.as_str() {
        "matrix" | "vector" => serde_json::from_value::<Vec<Series>>(data.result)
            .map_err(|e| ProviderError::Failed(format!("{what}: unexpected result shape: {e}")))?,
        "scalar" => {
            let value: (f64, String) = serde_json::from_value(data.result).map_err(|e| {
                ProviderError::Failed(format!("{what}: unexpected scalar shape: {e}"))
            })?;
            vec![Series {
                metric: serde_json::Map::new(),
                values: Vec::new(),
                value: Some(value),
            }]
        }
        other => {
            return Err(ProviderError::InvalidQuery(format!(
                "the query gives a {other}, not a number"
            )));
        }
    };
    Ok(Answer {
        result_type: data.result_type,
        series,
    })
}

/// The one series a query must give (none: no data).
fn one_series(series: Vec<Series>) -> Result<Option<Series>, ProviderError> {
    if series.len() > 1 {
        let shown: Vec<String> = series.iter().take(2).map(Series::labels).collect();
        return Err(ProviderError::InvalidQuery(format!(
            "the query gives {} series ({}{}); aggregate it to one, e.g. sum(...) or max(...)",
            series.len(),
            shown.join(", "),
            if series.len() > 2 { ", …" } else { "" }
        )));
    }
    Ok(series.into_iter().next())
}

/// The samples of a series: timestamps in ms, non-finite values left out.
fn samples(series: Series) -> Result<Vec<Sample>, ProviderError> {
    let points = series.values.into_iter().chain(series.value);
    let mut out = Vec::new();
    for (ts, text) in points {
        let value: f64 = text.parse().map_err(|_| {
            ProviderError::Failed(format!("a sample value {text:?} is not a number"))
        })?;
        if !value.is_finite() || !ts.is_finite() || ts < 0.0 {
            continue;
        }
        let timestamp_ms = (ts * 1000.0).round() as u64;
        if out
            .last()
            .is_some_and(|s: &Sample| s.timestamp_ms >= timestamp_ms)
        {
            continue;
        }
        out.push(Sample {
            timestamp_ms,
            value,
        });
        if out.len() == MAX_SAMPLES {
            break;
        }
    }
    Ok(out)
}

/// The first 200 characters of a body, on one line.
fn snippet(body: &str) -> String {
    let line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_string()
}

/// The HTTP timeout of one request under `deadline_ms`.
fn http_timeout(settings: &Settings, deadline_ms: u32) -> u32 {
    let budget = deadline_ms.saturating_sub(DEADLINE_MARGIN_MS).max(100);
    settings.timeout_ms.map_or(budget, |t| t.min(budget))
}

/// Sends one API call through `http-fetch`.
fn fetch(
    settings: &Settings,
    call: &ApiCall,
    timeout_ms: u32,
) -> Result<HttpResponse, ProviderError> {
    let url = format!("{}{}", settings.address, call.path);
    let what = format!("Prometheus at {}", settings.address);
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if let Some(var) = &settings.bearer_token_env {
        let token = host::env_var(var)
            .map_err(|e| provider::host_error(&format!("reading {var}"), e))?
            .ok_or_else(|| {
                ProviderError::BadConfig(format!(
                    "config key `bearer_token_env` names {var}, which is not set"
                ))
            })?;
        headers.push(("authorization".to_string(), format!("Bearer {token}")));
    }
    host::http_fetch(&HttpRequest {
        method: "POST".to_string(),
        url,
        headers,
        body: Some(call.form.clone().into_bytes()),
        timeout_ms,
    })
    .map_err(|e| provider::host_error(&what, e))
}

impl MetricProvider for Prometheus {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "prometheus",
            "0.1.0",
            "reads metrics from Prometheus's HTTP API",
        )
    }

    fn query(request: MetricQuery) -> Result<Vec<Sample>, ProviderError> {
        let settings = parse_settings(&request.config)?;
        let timeout = http_timeout(&settings, request.deadline_ms);
        let call = query_call(&request.query, &request.window, timeout);
        let response = fetch(&settings, &call, timeout)?;
        let what = format!("Prometheus at {}{}", settings.address, call.path);
        let answer = read_answer(&what, &response)?;
        if request.window.step_ms == 0 && answer.result_type == "matrix" {
            return Err(ProviderError::InvalidQuery(
                "the query is a range vector; take a value of it, e.g. rate(...[1m])".to_string(),
            ));
        }
        match one_series(answer.series)? {
            Some(series) => samples(series),
            None => Ok(Vec::new()),
        }
    }

    fn check(request: MetricQuery) -> Result<Vec<Detail>, ProviderError> {
        let settings = parse_settings(&request.config)?;
        let timeout = http_timeout(&settings, request.deadline_ms);
        let instant = TimeWindow {
            step_ms: 0,
            ..request.window
        };
        let call = query_call(&request.query, &instant, timeout);
        let response = fetch(&settings, &call, timeout)?;
        let what = format!("Prometheus at {}{}", settings.address, call.path);
        let answer = read_answer(&what, &response)?;
        if answer.result_type == "matrix" {
            return Err(ProviderError::InvalidQuery(
                "the query is a range vector; take a value of it, e.g. rate(...[1m])".to_string(),
            ));
        }
        let result_type = answer.result_type.clone();
        let series = usize::from(one_series(answer.series)?.is_some());
        Ok(vec![
            Detail {
                key: "result-type".to_string(),
                value: result_type,
            },
            Detail {
                key: "series".to_string(),
                value: series.to_string(),
            },
        ])
    }
}

adeploy_sdk::export_metric_provider!(Prometheus);

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn window(start_ms: u64, end_ms: u64, step_ms: u64) -> TimeWindow {
        TimeWindow {
            start_ms,
            end_ms,
            step_ms,
        }
    }

    #[test]
    fn settings_default_to_the_local_prometheus() {
        let s = parse_settings("{}").unwrap();
        assert_eq!(s.address, DEFAULT_ADDRESS);
        assert_eq!((s.timeout_ms, s.bearer_token_env), (None, None));
        let s =
            parse_settings(r#"{"address": "https://p.example/prom/", "timeout_ms": 900}"#).unwrap();
        assert_eq!(s.address, "https://p.example/prom");
        assert_eq!(s.timeout_ms, Some(900));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let message = |config: &str| match parse_settings(config) {
            Err(ProviderError::BadConfig(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(r#"{"adress": "x"}"#),
            "unknown config key `adress` (accepted: address, timeout_ms, bearer_token_env)"
        );
        assert!(message(r#"{"address": "127.0.0.1:9090"}"#).contains("http:// or https://"));
        assert!(message(r#"{"timeout_ms": 0}"#).contains("`timeout_ms`"));
        assert!(message(r#"{"timeout_ms": "1s"}"#).contains("`timeout_ms`"));
        assert!(message("[1]").contains("JSON object"));
    }

    #[test]
    fn range_and_instant_calls() {
        let call = query_call(
            r#"sum(rate(x{code=~"5.."}[10s]))"#,
            &window(1_700_000_000_123, 1_700_000_010_000, 2_000),
            900,
        );
        assert_eq!(call.path, "/api/v1/query_range");
        assert_eq!(
            call.form,
            "query=sum%28rate%28x%7Bcode%3D%7E%225..%22%7D%5B10s%5D%29%29\
             &start=1700000000.123&end=1700000010.000&step=2.000&timeout=0.900"
        );
        let call = query_call("up", &window(0, 5_000, 0), 1000);
        assert_eq!(call.path, "/api/v1/query");
        assert_eq!(call.form, "query=up&time=5.000&timeout=1.000");
    }

    #[test]
    fn a_matrix_becomes_samples_in_ms_without_nan() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"api"},"values":[[1700000000,"0.5"],[1700000002.5,"NaN"],
             [1700000004,"+Inf"],[1700000006,"0.25"]]}]}}"#;
        let answer = read_answer("p", &response(200, body)).unwrap();
        let series = one_series(answer.series).unwrap().unwrap();
        let s = samples(series).unwrap();
        assert_eq!(
            s.iter()
                .map(|s| (s.timestamp_ms, s.value))
                .collect::<Vec<_>>(),
            [(1_700_000_000_000, 0.5), (1_700_000_006_000, 0.25)]
        );
    }

    #[test]
    fn vector_and_scalar_give_one_sample_and_an_empty_result_none() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[12.5,"3"]}]}}"#;
        let series = one_series(read_answer("p", &response(200, body)).unwrap().series)
            .unwrap()
            .unwrap();
        let s = samples(series).unwrap();
        assert_eq!((s[0].timestamp_ms, s[0].value), (12_500, 3.0));
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
        let series = one_series(read_answer("p", &response(200, body)).unwrap().series)
            .unwrap()
            .unwrap();
        assert_eq!(samples(series).unwrap()[0].value, 7.0);
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            one_series(read_answer("p", &response(200, body)).unwrap().series)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn several_series_are_an_invalid_query_naming_them() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"code":"200"},"value":[1,"1"]},{"metric":{"code":"500"},"value":[1,"2"]},
            {"metric":{"code":"503"},"value":[1,"2"]}]}}"#;
        let answer = read_answer("p", &response(200, body)).unwrap();
        match one_series(answer.series) {
            Err(ProviderError::InvalidQuery(m)) => {
                assert!(m.starts_with("the query gives 3 series"), "{m}");
                assert!(m.contains(r#"{code="500"}"#), "{m}");
                assert!(m.contains("sum(...)"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_map_by_status_and_error_type() {
        let bad =
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected )"}"#;
        assert!(matches!(
            read_answer("p", &response(400, bad)),
            Err(ProviderError::InvalidQuery(m)) if m == "1:5: parse error: unexpected ) (bad_data)"
        ));
        let exec = r#"{"status":"error","errorType":"execution","error":"too many samples"}"#;
        assert!(matches!(
            read_answer("p", &response(422, exec)),
            Err(ProviderError::InvalidQuery(_))
        ));
        let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert!(matches!(
            read_answer("p", &response(503, timeout)),
            Err(ProviderError::Unavailable(m)) if m.contains("query timed out")
        ));
        assert!(matches!(
            read_answer("p", &response(502, "<html>bad gateway</html>")),
            Err(ProviderError::Unavailable(m)) if m.contains("bad gateway")
        ));
        assert!(matches!(
            read_answer("p", &response(404, "404 page not found")),
            Err(ProviderError::BadConfig(m)) if m.contains("`address`")
        ));
        assert!(matches!(
            read_answer("p", &response(401, "")),
            Err(ProviderError::Failed(m)) if m.contains("bearer_token_env")
        ));
        assert!(matches!(
            read_answer("p", &response(200, "<html>not prometheus</html>")),
            Err(ProviderError::Failed(m)) if m.contains("not Prometheus's JSON")
        ));
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert!(matches!(
            read_answer("p", &response(200, string)),
            Err(ProviderError::InvalidQuery(_))
        ));
    }

    #[test]
    fn the_http_timeout_stays_under_the_deadline() {
        let s = parse_settings("{}").unwrap();
        assert_eq!(http_timeout(&s, 2000), 1750);
        assert_eq!(http_timeout(&s, 100), 100);
        let s = parse_settings(r#"{"timeout_ms": 500}"#).unwrap();
        assert_eq!(http_timeout(&s, 2000), 500);
        assert_eq!(http_timeout(&s, 600), 350);
    }
}
