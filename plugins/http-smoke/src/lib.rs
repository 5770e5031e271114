//! `http-smoke`: a hook that smoke-tests HTTP endpoints, by default after the
//! deployment, so a deployment whose service answers wrongly fails (and rolls
//! back) instead of being reported as done.
//!
//! Plugin config (JSON):
//!
//! ```json
//! {"checks": [{"url": "http://127.0.0.1:8080/health", "expect_status": 200,
//!              "method": "GET", "contains": "ok", "timeout_ms": 2000,
//!              "phases": ["post-deployment"]}]}
//! ```
//!
//! `checks` and each check's `url` are required; the defaults are
//! `expect_status` 200, `method` `GET`, `timeout_ms` 2000, `phases`
//! `["post-deployment"]`, and no `contains` (the body is not looked at).
//! In `pre-service` and `post-service`, `{service}` in a url becomes the
//! service's name. Requests go through the host's `http-fetch`, so the urls
//! need `grants.network`. The first failing check fails the hook.

use adeploy_sdk::hook::{Hook, HookContext, HookReport, Phase};
use adeploy_sdk::host::{self, HostError, HttpRequest, HttpResponse};
use adeploy_sdk::types::{Detail, PluginInfo};
use serde_json::{Map, Value};

/// The hook; see the crate docs.
#[derive(Debug)]
pub struct HttpSmoke;

/// One configured check.
#[derive(Debug, Clone, PartialEq)]
struct Check {
    url: String,
    expect_status: u16,
    method: String,
    contains: Option<String>,
    timeout_ms: u32,
    phases: Vec<Phase>,
}

const PHASES: [Phase; 6] = [
    Phase::PreDeployment,
    Phase::PostDeployment,
    Phase::PreService,
    Phase::PostService,
    Phase::OnFailure,
    Phase::OnRollback,
];

/// Reads the checks from the plugin config; errors name the offending key.
fn parse_checks(config: &str) -> Result<Vec<Check>, String> {
    let Value::Object(root) = adeploy_sdk::parse_config(config)? else {
        return Err("plugin config must be a JSON object".to_string());
    };
    if let Some(key) = root.keys().find(|k| *k != "checks") {
        return Err(format!("unknown config key `{key}` (accepted: checks)"));
    }
    let checks = match root.get("checks") {
        Some(Value::Array(checks)) => checks,
        Some(other) => return Err(format!("config key `checks` must be a list, got {other}")),
        None => return Err("config key `checks` is missing".to_string()),
    };
    checks
        .iter()
        .enumerate()
        .map(|(i, check)| match check {
            Value::Object(check) => parse_check(&format!("checks[{i}]"), check),
            other => Err(format!(
                "config key `checks[{i}]` must be an object, got {other}"
            )),
        })
        .collect()
}

fn parse_check(at: &str, check: &Map<String, Value>) -> Result<Check, String> {
    const KEYS: [&str; 6] = [
        "url",
        "expect_status",
        "method",
        "contains",
        "timeout_ms",
        "phases",
    ];
    if let Some(key) = check.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown config key `{at}.{key}` (accepted: {})",
            KEYS.join(", ")
        ));
    }
    let string = |key: &str| -> Result<Option<String>, String> {
        match check.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "config key `{at}.{key}` must be a non-empty string, got {other}"
            )),
        }
    };
    let number = |key: &str, max: u64| -> Result<Option<u64>, String> {
        match check.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| *n <= max).map(Some).ok_or_else(|| {
                format!("config key `{at}.{key}` must be a whole number up to {max}, got {v}")
            }),
        }
    };
    let url = string("url")?.ok_or_else(|| format!("config key `{at}.url` is missing"))?;
    let phases = match check.get("phases") {
        None => vec![Phase::PostDeployment],
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                PHASES
                    .into_iter()
                    .find(|p| name.as_str() == Some(p.as_str()))
                    .ok_or_else(|| {
                        format!("config key `{at}.phases` has {name}, which is not a phase")
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "config key `{at}.phases` must be a list, got {other}"
            ));
        }
    };
    Ok(Check {
        url,
        expect_status: number("expect_status", u64::from(u16::MAX))?.map_or(200, |n| n as u16),
        method: string("method")?.map_or_else(|| "GET".to_string(), |m| m.to_ascii_uppercase()),
        contains: string("contains")?,
        timeout_ms: number("timeout_ms", u64::from(u32::MAX))?.map_or(2000, |n| n as u32),
        phases,
    })
}

/// The url to fetch in `phase`: `{service}` is filled in for the service phases.
fn expand_url(url: &str, phase: Phase, service: Option<&str>) -> String {
    match (phase, service) {
        (Phase::PreService | Phase::PostService, Some(service)) => {
            url.replace("{service}", service)
        }
        _ => url.to_string(),
    }
}

/// Whether a response passes `check`; the error is one line for the operator.
fn judge(check: &Check, url: &str, answer: Result<HttpResponse, HostError>) -> Result<u16, String> {
    let what = format!("{} {url}", check.method);
    let response = answer.map_err(|e| {
        let (kind, message) = match &e {
            HostError::Denied(m) => ("denied", m),
            HostError::NotFound(m) => ("not-found", m),
            HostError::Timeout(m) => ("timeout", m),
            HostError::Invalid(m) => ("invalid", m),
            HostError::Failed(m) => ("failed", m),
        };
        format!("{what}: {kind}: {message}")
    })?;
    if response.status != check.expect_status {
        return Err(format!(
            "{what}: got status {}, expected {}",
            response.status, check.expect_status
        ));
    }
    if let Some(text) = &check.contains
        && !String::from_utf8_lossy(&response.body).contains(text.as_str())
    {
        return Err(format!(
            "{what}: got a body without {text:?}, expected it to contain {text:?}"
        ));
    }
    Ok(response.status)
}

impl Hook for HttpSmoke {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "http-smoke",
            "0.1.0",
            "checks HTTP endpoints answer as expected",
        )
    }

    fn run(phase: Phase, ctx: HookContext) -> Result<HookReport, String> {
        let checks: Vec<Check> = parse_checks(&ctx.deployment.config)?
            .into_iter()
            .filter(|c| c.phases.contains(&phase))
            .collect();
        if checks.is_empty() {
            return Ok(HookReport {
                message: format!("no checks for {}", phase.as_str()),
                details: Vec::new(),
            });
        }
        let mut details = Vec::with_capacity(checks.len());
        for check in &checks {
            let url = expand_url(&check.url, phase, ctx.service.as_deref());
            let started = host::now();
            let answer = host::http_fetch(&HttpRequest {
                method: check.method.clone(),
                url: url.clone(),
                headers: Vec::new(),
                body: None,
                timeout_ms: check.timeout_ms,
            });
            let ms = host::now().saturating_sub(started);
            let status = judge(check, &url, answer)?;
            details.push(Detail {
                key: url,
                value: format!("{status} in {ms} ms"),
            });
        }
        let n = checks.len();
        Ok(HookReport {
            message: format!("{n} check{} passed", if n == 1 { "" } else { "s" }),
            details,
        })
    }
}

adeploy_sdk::export_hook!(HttpSmoke);

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Result<HttpResponse, HostError> {
        Ok(HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn defaults_apply() {
        let checks =
            parse_checks(r#"{"checks":[{"url":"http://127.0.0.1:8080/health"}]}"#).unwrap();
        assert_eq!(
            checks,
            vec![Check {
                url: "http://127.0.0.1:8080/health".into(),
                expect_status: 200,
                method: "GET".into(),
                contains: None,
                timeout_ms: 2000,
                phases: vec![Phase::PostDeployment],
            }]
        );
    }

    #[test]
    fn every_key_is_read() {
        let checks = parse_checks(
            r#"{"checks":[{"url":"http://h/{service}","expect_status":204,"method":"head",
                "contains":"ok","timeout_ms":50,"phases":["pre-service","on-rollback"]}]}"#,
        )
        .unwrap();
        let c = &checks[0];
        assert_eq!(
            (c.expect_status, c.method.as_str(), c.timeout_ms),
            (204, "HEAD", 50)
        );
        assert_eq!(c.contains.as_deref(), Some("ok"));
        assert_eq!(c.phases, vec![Phase::PreService, Phase::OnRollback]);
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = |config: &str| parse_checks(config).unwrap_err();
        assert!(err("{}").contains("`checks`"));
        assert!(err(r#"{"checks": {}}"#).contains("`checks`"));
        assert!(err(r#"{"checks": [], "check": []}"#).contains("`check`"));
        assert!(err(r#"{"checks": [1]}"#).contains("`checks[0]`"));
        assert!(err(r#"{"checks": [{}]}"#).contains("`checks[0].url`"));
        assert!(err(r#"{"checks": [{"url": 5}]}"#).contains("`checks[0].url`"));
        let bad_status = r#"{"checks": [{"url": "http://h/", "expect_status": 70000}]}"#;
        assert!(err(bad_status).contains("`checks[0].expect_status`"));
        let bad_timeout = r#"{"checks": [{"url": "http://h/", "timeout_ms": "2s"}]}"#;
        assert!(err(bad_timeout).contains("`checks[0].timeout_ms`"));
        let bad_phase = r#"{"checks": [{"url": "http://h/"}, {"url": "x", "phases": ["after"]}]}"#;
        assert!(err(bad_phase).contains("`checks[1].phases`"));
        let unknown = r#"{"checks": [{"url": "http://h/", "expect": 200}]}"#;
        assert!(err(unknown).contains("`checks[0].expect`"));
    }

    #[test]
    fn service_is_filled_in_for_service_phases_only() {
        let url = "http://{service}.local/health";
        assert_eq!(
            expand_url(url, Phase::PostService, Some("api")),
            "http://api.local/health"
        );
        assert_eq!(
            expand_url(url, Phase::PreService, Some("db")),
            "http://db.local/health"
        );
        assert_eq!(expand_url(url, Phase::PostDeployment, Some("api")), url);
        assert_eq!(expand_url(url, Phase::PostService, None), url);
    }

    #[test]
    fn judging_responses() {
        let mut check = parse_checks(r#"{"checks":[{"url":"http://h/","contains":"ok"}]}"#)
            .unwrap()
            .remove(0);
        assert_eq!(judge(&check, "http://h/", response(200, "all ok")), Ok(200));
        assert_eq!(
            judge(&check, "http://h/", response(503, "ok")).unwrap_err(),
            "GET http://h/: got status 503, expected 200"
        );
        assert!(
            judge(&check, "http://h/", response(200, "nope"))
                .unwrap_err()
                .starts_with("GET http://h/: got a body without \"ok\"")
        );
        assert_eq!(
            judge(
                &check,
                "http://h/",
                Err(HostError::Denied("needs grants.network h:80".into()))
            )
            .unwrap_err(),
            "GET http://h/: denied: needs grants.network h:80"
        );
        check.contains = None;
        assert_eq!(judge(&check, "http://h/", response(200, "")), Ok(200));
    }
}
