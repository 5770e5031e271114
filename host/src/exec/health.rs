//! Health checks: one sample ([`probe`]) and a verdict ([`validate`]).
//!
//! A service declares exactly one check: an `http` URL that must answer with
//! `expect_status` (200 by default), a `tcp` `host:port` that must accept a
//! connection, or a `command` that must exit 0. Each sample has its own
//! deadline (`timeout_ms`, 2 s by default).
//!
//! An `http` check can also expect a body (`expect_body`, a substring;
//! `expect_body_regex`, a regular expression) and headers (`expect_headers`,
//! name → substring of the value), with the `${ADEPLOY_*}` placeholders
//! (`config::placeholders`: `${ADEPLOY_DEPLOYMENT_ID}`, `${ADEPLOY_VERSION}`,
//! `${ADEPLOY_SERVICE}`, …) replaced by the values in the run's environment
//! ([`RunOptions::env`]). That is what proves the
//! *new* instance answers: an old server still holding the port answers 200
//! too, but not with this deployment's id or version. A mismatch is an
//! unhealthy sample whose detail says what was expected and what came (the
//! first [`SHOWN_CHARS`] characters, on one line); at most [`MAX_BODY`] bytes
//! of a body are read.
//!
//! Why the verdict is shaped this way:
//!
//! - **Wait for N consecutive healthy samples.** A freshly deployed service
//!   takes a moment to come up, so unhealthy samples before the deadline are
//!   expected and only reset the count; one lucky answer from a crash-looping
//!   process is not enough either.
//! - **Then soak.** Some failures only show after the first requests (a
//!   worker that dies on its first real job). During the soak every sample
//!   must be healthy: the first failure is the verdict.
//! - **The deadline is hard,** for the soak too: it is the service's share of
//!   `--max-time`. Each sample's timeout is also cut to what is left of it.
//! - **HTTP without redirects, proxies or pooled connections.** A redirect is
//!   the service's answer (and could lead anywhere); a proxy would check the
//!   proxy; a kept-alive connection would hide that the service stopped
//!   accepting new ones.
//! - **Invalid specs are errors, unhealthy services are values.** A malformed
//!   URL or a health command that cannot be started will not get better by
//!   retrying until the deadline: both are [`ExecError`]s, returned at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use super::{ExecError, RunOptions, human, run_command};
use crate::config::{CommandSpec, HealthSpec, Template};

/// A probe's deadline when the spec gives no `timeout_ms`.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(2000);

/// The most of a body an `http` check reads to compare with its expectations.
pub const MAX_BODY: usize = 64 * 1024;

/// How much of an unexpected body or header value a message shows.
pub const SHOWN_CHARS: usize = 120;

/// One health sample.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeResult {
    /// The check passed.
    pub healthy: bool,
    /// What was observed, e.g. `HTTP 503 from http://…/health, expected 200`
    /// or `connect 127.0.0.1:5432 refused`.
    pub detail: String,
    /// How long the probe took.
    pub elapsed: Duration,
}

/// How [`validate`] turns samples into a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive healthy samples needed (0 is treated as 1).
    pub samples: u32,
    /// Pause between samples.
    pub interval: Duration,
    /// After that, how long every sample must stay healthy.
    pub soak: Duration,
}

impl Default for HealthPolicy {
    /// 3 samples 1 s apart, no soak.
    fn default() -> Self {
        HealthPolicy {
            samples: 3,
            interval: Duration::from_secs(1),
            soak: Duration::ZERO,
        }
    }
}

/// The verdict of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthOutcome {
    /// Enough consecutive healthy samples, and a clean soak.
    pub healthy: bool,
    /// Stopped because the deployment was cancelled.
    pub cancelled: bool,
    /// Probes taken, in both phases.
    pub samples_taken: u32,
    /// `3 healthy samples, 5 s soak`, or why the service is not healthy.
    pub message: String,
    /// From the first probe to the verdict.
    pub duration: Duration,
    /// Every probe, in order: when, whether healthy, and in which phase.
    pub probes: Vec<ProbeRecord>,
    /// When the soak began (none: no soak, or the samples never passed).
    pub soak_started_at: Option<DateTime<Utc>>,
}

/// One probe of [`validate`], as a report's timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    pub timestamp: DateTime<Utc>,
    pub healthy: bool,
    /// What was observed (see [`ProbeResult::detail`]).
    pub detail: String,
    /// Taken during the soak, after the consecutive samples passed.
    pub soak: bool,
}

/// Checks that `spec` names exactly one usable check, without probing.
/// `label` names the service in the error.
pub fn check_spec(spec: &HealthSpec, label: &str) -> Result<(), ExecError> {
    Check::parse(spec, label).map(|_| ())
}

/// Takes one sample of `spec`, with the spec's own timeout
/// (`opts.timeout` is not used). A health command runs with `opts`' label,
/// environment, working directory and log.
pub async fn probe(spec: &HealthSpec, opts: &RunOptions<'_>) -> Result<ProbeResult, ExecError> {
    let mut prober = Prober::new(spec, opts)?;
    prober.sample(opts, None).await
}

/// Probes `spec` every `policy.interval` until `policy.samples` consecutive
/// samples are healthy, then keeps probing for `policy.soak`, failing on the
/// first unhealthy sample. Gives up (unhealthy, with the last failure) at
/// `deadline`, or (cancelled) when `opts.cancel` says so.
///
/// `Err` only for an invalid spec or a health command that cannot be started.
pub async fn validate(
    spec: &HealthSpec,
    policy: &HealthPolicy,
    deadline: Instant,
    opts: &RunOptions<'_>,
) -> Result<HealthOutcome, ExecError> {
    let mut prober = Prober::new(spec, opts)?;
    let needed = policy.samples.max(1);
    let started = Instant::now();
    let mut run = Run {
        opts,
        started,
        taken: 0,
        last_logged: None,
        probes: Vec::new(),
        soak_started_at: None,
    };
    opts.log.line(
        opts.label,
        &format!(
            "health: {}, {needed} consecutive healthy sample(s) {} apart{}, deadline in {}",
            prober.check,
            human(policy.interval),
            if policy.soak.is_zero() {
                String::new()
            } else {
                format!(", then a {} soak", human(policy.soak))
            },
            human(deadline.saturating_duration_since(started)),
        ),
    );

    // Phase 1: wait for `needed` healthy samples in a row.
    let mut streak = 0;
    let mut last_failure: Option<String> = None;
    loop {
        if opts.is_cancelled() {
            return Ok(run.cancelled());
        }
        if Instant::now() >= deadline {
            let message = match &last_failure {
                Some(failure) if streak == 0 => format!(
                    "{failure} (not healthy by the deadline, {} samples)",
                    run.taken
                ),
                Some(failure) => format!(
                    "{streak} of {needed} consecutive healthy samples by the deadline; last failure: {failure}"
                ),
                None => "deadline reached before the first sample".to_string(),
            };
            return Ok(run.unhealthy(message));
        }
        let Some(result) = run.sample(&mut prober, deadline).await? else {
            return Ok(run.cancelled());
        };
        if result.healthy {
            streak += 1;
            if streak >= needed {
                break;
            }
        } else {
            streak = 0;
            last_failure = Some(result.detail);
        }
        if !run.pause(policy.interval, deadline).await {
            return Ok(run.cancelled());
        }
    }

    // Phase 2: soak; the first unhealthy sample is the verdict.
    if !policy.soak.is_zero() {
        let soak_start = Instant::now();
        run.soak_started_at = Some(Utc::now());
        let soak_end = soak_start + policy.soak;
        let until = soak_end.min(deadline);
        loop {
            if !run.pause(policy.interval, until).await {
                return Ok(run.cancelled());
            }
            if Instant::now() >= deadline && deadline < soak_end {
                return Ok(run.unhealthy(format!(
                    "deadline reached {} into the {} soak",
                    human(soak_start.elapsed()),
                    human(policy.soak)
                )));
            }
            let Some(result) = run.sample(&mut prober, deadline).await? else {
                return Ok(run.cancelled());
            };
            if !result.healthy {
                return Ok(run.unhealthy(format!(
                    "{} (unhealthy {} into the {} soak)",
                    result.detail,
                    human(soak_start.elapsed()),
                    human(policy.soak)
                )));
            }
            if Instant::now() >= soak_end {
                break;
            }
        }
    }

    let message = if policy.soak.is_zero() {
        format!("{needed} healthy samples")
    } else {
        format!("{needed} healthy samples, {} soak", human(policy.soak))
    };
    Ok(run.healthy(message))
}

/// The bookkeeping of one [`validate`] call.
struct Run<'o, 'a> {
    opts: &'o RunOptions<'a>,
    started: Instant,
    taken: u32,
    /// The last sample written to the log: only changes are logged.
    last_logged: Option<(bool, String)>,
    probes: Vec<ProbeRecord>,
    soak_started_at: Option<DateTime<Utc>>,
}

impl Run<'_, '_> {
    /// One sample, cut short by cancellation (`None`).
    async fn sample(
        &mut self,
        prober: &mut Prober<'_>,
        deadline: Instant,
    ) -> Result<Option<ProbeResult>, ExecError> {
        let at = Utc::now();
        let result = tokio::select! {
            result = prober.sample(self.opts, Some(deadline)) => result?,
            () = self.opts.cancelled() => return Ok(None),
        };
        self.taken += 1;
        self.probes.push(ProbeRecord {
            timestamp: at,
            healthy: result.healthy,
            detail: result.detail.clone(),
            soak: self.soak_started_at.is_some(),
        });
        let key = (result.healthy, result.detail.clone());
        if self.last_logged.as_ref() != Some(&key) {
            self.opts.log.line(
                self.opts.label,
                &format!(
                    "health sample {}: {} ({})",
                    self.taken,
                    if result.healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                    result.detail
                ),
            );
            self.last_logged = Some(key);
        }
        Ok(Some(result))
    }

    /// Sleeps `interval` (not past `until`); false when cancelled meanwhile.
    async fn pause(&self, interval: Duration, until: Instant) -> bool {
        let wake = (Instant::now() + interval).min(until);
        tokio::select! {
            () = sleep_until(wake) => true,
            () = self.opts.cancelled() => false,
        }
    }

    fn finish(&mut self, healthy: bool, cancelled: bool, message: String) -> HealthOutcome {
        self.opts.log.line(
            self.opts.label,
            &format!(
                "health: {}: {message}",
                if healthy { "healthy" } else { "not healthy" }
            ),
        );
        HealthOutcome {
            healthy,
            cancelled,
            samples_taken: self.taken,
            probes: std::mem::take(&mut self.probes),
            soak_started_at: self.soak_started_at,
            message,
            duration: self.started.elapsed(),
        }
    }

    fn healthy(&mut self, message: String) -> HealthOutcome {
        self.finish(true, false, message)
    }

    fn unhealthy(&mut self, message: String) -> HealthOutcome {
        self.finish(false, false, message)
    }

    fn cancelled(&mut self) -> HealthOutcome {
        self.finish(false, true, "cancelled".to_string())
    }
}

/// A validated spec.
#[derive(Debug)]
enum Check<'s> {
    Http {
        url: reqwest::Url,
        expect: u16,
        body: Option<Template>,
        body_regex: Option<Template>,
        headers: Vec<(reqwest::header::HeaderName, Template)>,
    },
    Tcp(&'s str),
    Command(&'s CommandSpec),
}

impl std::fmt::Display for Check<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Http { url, expect, .. } => write!(f, "GET {url} expecting {expect}"),
            Check::Tcp(addr) => write!(f, "TCP connect to {addr}"),
            Check::Command(cmd) => write!(f, "command `{cmd}`"),
        }
    }
}

impl<'s> Check<'s> {
    fn parse(spec: &'s HealthSpec, label: &str) -> Result<Check<'s>, ExecError> {
        let invalid = |reason: String| ExecError::Invalid {
            label: label.to_string(),
            what: "health check",
            reason,
        };
        let kinds = [
            spec.http.is_some(),
            spec.tcp.is_some(),
            spec.command.is_some(),
        ]
        .iter()
        .filter(|&&k| k)
        .count();
        if kinds != 1 {
            return Err(invalid(format!(
                "give exactly one of `http`, `tcp` or `command` (found {kinds})"
            )));
        }
        if spec.timeout_ms == Some(0) {
            return Err(invalid("`timeout_ms` must be positive".to_string()));
        }
        for (key, set) in [
            ("expect_status", spec.expect_status.is_some()),
            ("expect_body", spec.expect_body.is_some()),
            ("expect_body_regex", spec.expect_body_regex.is_some()),
            ("expect_headers", !spec.expect_headers.is_empty()),
        ] {
            if set && spec.http.is_none() {
                return Err(invalid(format!("`{key}` only applies to an `http` check")));
            }
        }
        if let Some(url) = &spec.http {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| invalid(format!("`http: {url}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(format!(
                    "`http: {url}` must be an http:// or https:// URL with a host"
                )));
            }
            let expect = spec.expect_status.unwrap_or(200);
            if !(100..=599).contains(&expect) {
                return Err(invalid(format!(
                    "`expect_status: {expect}` is not an HTTP status"
                )));
            }
            let template = |key: &str, text: &str| {
                Template::parse(text).map_err(|m| invalid(format!("`{key}`: {m}")))
            };
            let body = spec
                .expect_body
                .as_deref()
                .map(|t| template("expect_body", t))
                .transpose()?;
            let body_regex = spec
                .expect_body_regex
                .as_deref()
                .map(|t| template("expect_body_regex", t))
                .transpose()?;
            if let Some(t) = &body_regex {
                compile(t, |_| Some("x".to_string())).map_err(invalid)?;
            }
            let mut headers = Vec::with_capacity(spec.expect_headers.len());
            for (name, value) in &spec.expect_headers {
                let name =
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        invalid(format!("`expect_headers`: {name:?} is not a header name"))
                    })?;
                headers.push((name, template("expect_headers", value)?));
            }
            return Ok(Check::Http {
                url: parsed,
                expect,
                body,
                body_regex,
                headers,
            });
        }
        if let Some(addr) = &spec.tcp {
            let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !valid {
                return Err(invalid(format!("`tcp: {addr}` is not a host:port")));
            }
            return Ok(Check::Tcp(addr));
        }
        match &spec.command {
            Some(CommandSpec::Shell(s)) if s.trim().is_empty() => {
                Err(invalid("the `command` is empty".to_string()))
            }
            Some(CommandSpec::Argv(v)) if v.first().is_none_or(String::is_empty) => {
                Err(invalid("the `command` argument list is empty".to_string()))
            }
            Some(cmd) => Ok(Check::Command(cmd)),
            None => Err(invalid("no check given".to_string())),
        }
    }
}

/// `template` as a regular expression, the variables' values matched literally.
fn compile(
    template: &Template,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<regex::Regex, String> {
    let source = template
        .render(lookup, regex::escape)
        .map_err(|name| format!("`expect_body_regex` uses ${{{name}}}, which has no value"))?;
    regex::Regex::new(&source).map_err(|e| {
        format!(
            "`expect_body_regex` is not a regular expression: {}",
            crate::config::regex_error(&e)
        )
    })
}

/// What an `http` answer must carry besides its status, variables replaced.
#[derive(Debug, Default)]
struct Wanted {
    body: Option<String>,
    body_regex: Option<regex::Regex>,
    headers: Vec<(reqwest::header::HeaderName, String)>,
}

impl Wanted {
    fn is_empty(&self) -> bool {
        self.body.is_none() && self.body_regex.is_none() && self.headers.is_empty()
    }
}

/// A check plus what probing it repeatedly reuses (the HTTP client).
struct Prober<'s> {
    check: Check<'s>,
    wanted: Wanted,
    timeout: Duration,
    client: Option<reqwest::Client>,
}

impl<'s> Prober<'s> {
    /// Parses `spec` and replaces the variables of its expectations with the
    /// values in `opts.env`; a variable without a value is bad input.
    fn new(spec: &'s HealthSpec, opts: &RunOptions<'_>) -> Result<Self, ExecError> {
        let check = Check::parse(spec, opts.label)?;
        let invalid = |reason: String| ExecError::Invalid {
            label: opts.label.to_string(),
            what: "health check",
            reason,
        };
        let lookup = |name: &str| {
            opts.env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let missing = |key: &str, name: &str| {
            invalid(if name == "ADEPLOY_VERSION" {
                format!(
                    "`{key}` uses ${{ADEPLOY_VERSION}} but the service has no version: set `version` in its config or run --set-version SERVICE=VERSION"
                )
            } else {
                format!("`{key}` uses ${{{name}}}, which has no value in this run")
            })
        };
        let mut wanted = Wanted::default();
        if let Check::Http {
            body,
            body_regex,
            headers,
            ..
        } = &check
        {
            if let Some(t) = body {
                wanted.body = Some(
                    t.render(lookup, str::to_string)
                        .map_err(|n| missing("expect_body", n))?,
                );
            }
            if let Some(t) = body_regex {
                if let Err(name) = t.render(lookup, str::to_string) {
                    return Err(missing("expect_body_regex", name));
                }
                wanted.body_regex = Some(compile(t, lookup).map_err(invalid)?);
            }
            for (name, t) in headers {
                let value = t
                    .render(lookup, str::to_string)
                    .map_err(|n| missing("expect_headers", n))?;
                wanted.headers.push((name.clone(), value));
            }
        }
        Ok(Prober {
            check,
            wanted,
            timeout: spec
                .timeout_ms
                .map_or(DEFAULT_PROBE_TIMEOUT, Duration::from_millis),
            client: None,
        })
    }

    /// One sample; its timeout is cut to what is left before `deadline`.
    async fn sample(
        &mut self,
        opts: &RunOptions<'_>,
        deadline: Option<Instant>,
    ) -> Result<ProbeResult, ExecError> {
        let start = Instant::now();
        let limit = match deadline {
            Some(d) => self
                .timeout
                .min(d.saturating_duration_since(start))
                .max(Duration::from_millis(1)),
            None => self.timeout,
        };
        let (healthy, detail) = match &self.check {
            Check::Http { url, expect, .. } => {
                let client = match &self.client {
                    Some(client) => client.clone(),
                    None => match http_client() {
                        Ok(client) => {
                            self.client = Some(client.clone());
                            client
                        }
                        Err(e) => {
                            return Ok(ProbeResult {
                                healthy: false,
                                detail: format!("cannot create an HTTP client: {e}"),
                                elapsed: start.elapsed(),
                            });
                        }
                    },
                };
                http_probe(&client, url, *expect, &self.wanted, limit).await
            }
            Check::Tcp(addr) => tcp_probe(addr, limit).await,
            Check::Command(cmd) => {
                let opts = RunOptions {
                    timeout: limit,
                    ..*opts
                };
                let out = run_command(cmd, &opts).await?;
                if out.success {
                    (true, "health command exited 0".to_string())
                } else {
                    let mut detail = format!("health command `{cmd}`: {}", out.describe());
                    if let Some(line) = out.last_line() {
                        detail.push_str(": ");
                        detail.push_str(line);
                    }
                    (false, detail)
                }
            }
        };
        Ok(ProbeResult {
            healthy,
            detail,
            elapsed: start.elapsed(),
        })
    }
}

fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("adeploy-health/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn http_probe(
    client: &reqwest::Client,
    url: &reqwest::Url,
    expect: u16,
    wanted: &Wanted,
    limit: Duration,
) -> (bool, String) {
    let request = async {
        let response = client.get(url.clone()).timeout(limit).send().await?;
        let status = response.status().as_u16();
        if status != expect {
            return Ok((
                false,
                format!("HTTP {status} from {url}, expected {expect}"),
            ));
        }
        for (name, value) in &wanted.headers {
            match response.headers().get(name) {
                None => {
                    return Ok((
                        false,
                        format!(
                            "HTTP {status} from {url}, expected a {name} header containing {:?}, got none",
                            shown(value)
                        ),
                    ));
                }
                Some(got) => {
                    let got = String::from_utf8_lossy(got.as_bytes());
                    if !got.contains(value.as_str()) {
                        return Ok((
                            false,
                            format!(
                                "HTTP {status} from {url}, expected a {name} header containing {:?}, got {:?}",
                                shown(value),
                                shown(&got)
                            ),
                        ));
                    }
                }
            }
        }
        if wanted.body.is_none() && wanted.body_regex.is_none() {
            let detail = if wanted.is_empty() {
                format!("HTTP {status} from {url}")
            } else {
                format!("HTTP {status} from {url}, headers as expected")
            };
            return Ok((true, detail));
        }
        let body = read_body(response).await?;
        if let Some(text) = &wanted.body
            && !body.contains(text.as_str())
        {
            return Ok((
                false,
                format!(
                    "HTTP {status} from {url}, expected a body containing {:?}, got {:?}",
                    shown(text),
                    shown(&body)
                ),
            ));
        }
        if let Some(re) = &wanted.body_regex
            && !re.is_match(&body)
        {
            return Ok((
                false,
                format!(
                    "HTTP {status} from {url}, expected a body matching /{}/, got {:?}",
                    shown(re.as_str()),
                    shown(&body)
                ),
            ));
        }
        Ok::<_, reqwest::Error>((true, format!("HTTP {status} from {url}, body as expected")))
    };
    match timeout(limit, request).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) if e.is_timeout() => (
            false,
            format!("no answer from {url} within {}", human(limit)),
        ),
        Ok(Err(e)) if e.is_connect() => (
            false,
            format!("cannot connect to {url}: {}", root_cause(&e)),
        ),
        Ok(Err(e)) => (false, format!("GET {url} failed: {}", root_cause(&e))),
        Err(_) => (
            false,
            format!("no answer from {url} within {}", human(limit)),
        ),
    }
}

/// The first [`MAX_BODY`] bytes of the body, as text (invalid UTF-8 replaced).
async fn read_body(mut response: reqwest::Response) -> reqwest::Result<String> {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < MAX_BODY {
        match response.chunk().await? {
            Some(chunk) => {
                let room = MAX_BODY - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `text` cut to [`SHOWN_CHARS`] characters (with `…` when cut); the
/// caller quotes it with `{:?}`, which keeps it on one line.
fn shown(text: &str) -> String {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    let mut out: String = trimmed.chars().take(SHOWN_CHARS).collect();
    if trimmed.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

async fn tcp_probe(addr: &str, limit: Duration) -> (bool, String) {
    match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => (true, format!("connected to {addr}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            (false, format!("connect {addr} refused"))
        }
        Ok(Err(e)) => (false, format!("connect {addr} failed: {e}")),
        Err(_) => (
            false,
            format!("connect {addr}: no answer within {}", human(limit)),
        ),
    }
}

/// The innermost error of a chain (reqwest's outer layers say little).
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::DeploymentLog;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::watch;

    /// A loopback HTTP server answering request `n` (1-based) with
    /// `status(n)`; counts requests.
    struct TestServer {
        server: Arc<tiny_http::Server>,
        url: String,
        hits: Arc<AtomicUsize>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestServer {
        fn start(status: impl Fn(usize) -> u16 + Send + 'static) -> Self {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let addr = server.server_addr().to_ip().unwrap();
            let hits = Arc::new(AtomicUsize::new(0));
            let thread = {
                let server = Arc::clone(&server);
                let hits = Arc::clone(&hits);
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                        let code = status(n);
                        let mut response =
                            tiny_http::Response::from_string("body").with_status_code(code);
                        if code == 302 {
                            let location =
                                tiny_http::Header::from_bytes("Location", "/elsewhere").unwrap();
                            response = response.with_header(location);
                        }
                        let _ = request.respond(response);
                    }
                })
            };
            TestServer {
                server,
                url: format!("http://{addr}/health"),
                hits,
                thread: Some(thread),
            }
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A loopback server answering every request with `body` and `headers`.
    struct Answering {
        server: Arc<tiny_http::Server>,
        url: String,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Answering {
        fn start(body: &str, headers: &[(&str, &str)]) -> Answering {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let addr = server.server_addr().to_ip().unwrap();
            let body = body.to_string();
            let headers: Vec<tiny_http::Header> = headers
                .iter()
                .map(|(k, v)| tiny_http::Header::from_bytes(*k, *v).unwrap())
                .collect();
            let thread = {
                let server = Arc::clone(&server);
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        let mut response = tiny_http::Response::from_string(body.clone());
                        for h in &headers {
                            response.add_header(h.clone());
                        }
                        let _ = request.respond(response);
                    }
                })
            };
            Answering {
                server,
                url: format!("http://{addr}/health"),
                thread: Some(thread),
            }
        }
    }

    impl Drop for Answering {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn run_env(id: &str, version: Option<&str>) -> Vec<(String, String)> {
        let mut env = vec![
            ("ADEPLOY_DEPLOYMENT_ID".to_string(), id.to_string()),
            ("ADEPLOY_SERVICE".to_string(), "api".to_string()),
        ];
        if let Some(v) = version {
            env.push(("ADEPLOY_VERSION".to_string(), v.to_string()));
        }
        env
    }

    #[tokio::test]
    async fn http_body_must_name_this_deployment() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let server = Answering::start("version=1.2.3 deployment=deploy_2\n", &[]);
        let spec = HealthSpec {
            expect_body: Some("deployment=${ADEPLOY_DEPLOYMENT_ID}".into()),
            ..http(&server.url)
        };

        let env = run_env("deploy_2", None);
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let r = probe(&spec, &opts).await.unwrap();
        assert!(r.healthy, "{r:?}");
        assert_eq!(
            r.detail,
            format!("HTTP 200 from {}, body as expected", server.url)
        );

        // Another deployment's instance answers 200 too, but not as this one.
        let env = run_env("deploy_3", None);
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let r = probe(&spec, &opts).await.unwrap();
        assert!(!r.healthy);
        assert_eq!(
            r.detail,
            format!(
                "HTTP 200 from {}, expected a body containing \"deployment=deploy_3\", got \"version=1.2.3 deployment=deploy_2\"",
                server.url
            )
        );
        let out = validate(
            &spec,
            &fast(),
            Instant::now() + Duration::from_millis(300),
            &opts,
        )
        .await
        .unwrap();
        assert!(!out.healthy);
        assert!(
            out.message.contains("expected a body containing"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn http_body_regex_matches_the_version_literally() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let spec_for = |url: &str| HealthSpec {
            expect_body_regex: Some("^version=${ADEPLOY_VERSION}\\b".into()),
            ..http(url)
        };
        let env = run_env("d", Some("1.2"));
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let good = Answering::start("version=1.2 ok", &[]);
        assert!(probe(&spec_for(&good.url), &opts).await.unwrap().healthy);
        // `.` in the version is not a wildcard, and 1.23 is not 1.2.
        for body in ["version=1x2 ok", "version=1.23"] {
            let bad = Answering::start(body, &[]);
            let r = probe(&spec_for(&bad.url), &opts).await.unwrap();
            assert!(!r.healthy, "{body}: {r:?}");
            assert!(
                r.detail.ends_with(&format!(
                    "expected a body matching /^version=1\\.2\\b/, got {body:?}"
                )),
                "{r:?}"
            );
        }
    }

    #[tokio::test]
    async fn http_headers_are_expected_by_name_and_substring() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let env = run_env("d", Some("2.0"));
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let server = Answering::start("ok", &[("X-Service", "api"), ("X-Version", "v2.0-rc")]);
        let spec = |headers: &[(&str, &str)]| HealthSpec {
            expect_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..http(&server.url)
        };
        let r = probe(
            &spec(&[
                ("x-service", "${ADEPLOY_SERVICE}"),
                ("X-VERSION", "${ADEPLOY_VERSION}"),
            ]),
            &opts,
        )
        .await
        .unwrap();
        assert!(r.healthy, "{r:?}");
        assert!(r.detail.ends_with("headers as expected"), "{r:?}");

        let r = probe(&spec(&[("X-Version", "3.0")]), &opts).await.unwrap();
        assert!(!r.healthy);
        assert!(
            r.detail
                .ends_with("expected a x-version header containing \"3.0\", got \"v2.0-rc\""),
            "{r:?}"
        );
        let r = probe(&spec(&[("X-Commit", "abc")]), &opts).await.unwrap();
        assert!(!r.healthy);
        assert!(
            r.detail
                .ends_with("expected a x-commit header containing \"abc\", got none"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_long_or_multiline_body_is_shown_cut_on_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let body = format!("line one\nline two\n{}", "x".repeat(500));
        let server = Answering::start(&body, &[]);
        let spec = HealthSpec {
            expect_body: Some("ready".into()),
            ..http(&server.url)
        };
        let r = probe(&spec, &RunOptions::new("api health", tmp.path(), &log))
            .await
            .unwrap();
        assert!(!r.healthy);
        assert!(!r.detail.contains('\n'), "{r:?}");
        assert!(
            r.detail.contains("got \"line one\\nline two\\nxxx"),
            "{r:?}"
        );
        assert!(r.detail.ends_with("x…\""), "{r:?}");
        assert!(r.detail.len() < 300, "{}", r.detail.len());
    }

    #[tokio::test]
    async fn a_variable_without_a_value_is_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let env = run_env("d", None);
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let spec = HealthSpec {
            expect_body: Some("v=${ADEPLOY_VERSION}".into()),
            ..http("http://127.0.0.1:9/")
        };
        let err = probe(&spec, &opts).await.unwrap_err();
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "api health: invalid health check: `expect_body` uses ${ADEPLOY_VERSION} but the service has no version: set `version` in its config or run --set-version SERVICE=VERSION"
        );
        let typo = HealthSpec {
            expect_body: Some("${ADEPLOY_ID}".into()),
            ..http("http://127.0.0.1:9/")
        };
        assert!(
            check_spec(&typo, "api")
                .unwrap_err()
                .to_string()
                .contains("unknown placeholder ${ADEPLOY_ID}")
        );
        let on_tcp = HealthSpec {
            tcp: Some("127.0.0.1:9".into()),
            expect_body: Some("x".into()),
            ..HealthSpec::default()
        };
        assert!(
            check_spec(&on_tcp, "api")
                .unwrap_err()
                .to_string()
                .contains("`expect_body` only applies")
        );
    }

    fn http(url: &str) -> HealthSpec {
        HealthSpec {
            http: Some(url.to_string()),
            ..HealthSpec::default()
        }
    }

    fn fast() -> HealthPolicy {
        HealthPolicy {
            samples: 3,
            interval: Duration::from_millis(50),
            soak: Duration::ZERO,
        }
    }

    fn in_secs(s: u64) -> Instant {
        Instant::now() + Duration::from_secs(s)
    }

    #[tokio::test]
    async fn http_probe_healthy_unhealthy_and_expected_status() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);

        let ok = TestServer::start(|_| 200);
        let r = probe(&http(&ok.url), &opts).await.unwrap();
        assert!(r.healthy, "{r:?}");
        assert_eq!(r.detail, format!("HTTP 200 from {}", ok.url));

        let down = TestServer::start(|_| 503);
        let r = probe(&http(&down.url), &opts).await.unwrap();
        assert!(!r.healthy);
        assert_eq!(
            r.detail,
            format!("HTTP 503 from {}, expected 200", down.url)
        );

        let spec = HealthSpec {
            expect_status: Some(503),
            ..http(&down.url)
        };
        assert!(probe(&spec, &opts).await.unwrap().healthy);
    }

    #[tokio::test]
    async fn http_redirects_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);
        let server = TestServer::start(|n| if n == 1 { 302 } else { 200 });
        let r = probe(&http(&server.url), &opts).await.unwrap();
        assert!(!r.healthy);
        assert!(r.detail.starts_with("HTTP 302 from "), "{r:?}");
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn http_connection_refused_is_unhealthy() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);
        let port = closed_port();
        let r = probe(&http(&format!("http://127.0.0.1:{port}/")), &opts)
            .await
            .unwrap();
        assert!(!r.healthy);
        assert!(
            r.detail.starts_with("cannot connect to http://127.0.0.1:"),
            "{r:?}"
        );
    }

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn tcp_probe_open_and_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("db health", tmp.path(), &log);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let spec = HealthSpec {
            tcp: Some(addr.clone()),
            ..HealthSpec::default()
        };
        let r = probe(&spec, &opts).await.unwrap();
        assert!(r.healthy, "{r:?}");
        assert_eq!(r.detail, format!("connected to {addr}"));

        drop(listener);
        let r = probe(&spec, &opts).await.unwrap();
        assert!(!r.healthy);
        assert_eq!(r.detail, format!("connect {addr} refused"));
    }

    #[tokio::test]
    async fn command_probe_uses_the_exit_status() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(&tmp.path().join("logs"), chrono::Local::now()).unwrap();
        let env = vec![("ADEPLOY_SERVICE".to_string(), "worker".to_string())];
        let opts = RunOptions {
            env: &env,
            ..RunOptions::new("worker health", tmp.path(), &log)
        };
        let spec = HealthSpec {
            command: Some(CommandSpec::Shell(
                "test -f \"$ADEPLOY_SERVICE.ready\" || { echo not ready yet; exit 1; }".into(),
            )),
            ..HealthSpec::default()
        };
        let r = probe(&spec, &opts).await.unwrap();
        assert!(!r.healthy);
        assert!(r.detail.ends_with("exit status 1: not ready yet"), "{r:?}");

        std::fs::write(tmp.path().join("worker.ready"), "").unwrap();
        let r = probe(&spec, &opts).await.unwrap();
        assert!(r.healthy, "{r:?}");

        let slow = HealthSpec {
            command: Some(CommandSpec::Shell("sleep 5".into())),
            timeout_ms: Some(200),
            ..HealthSpec::default()
        };
        let r = probe(&slow, &opts).await.unwrap();
        assert!(!r.healthy);
        assert!(r.detail.contains("timed out after 200 ms"), "{r:?}");

        let missing = HealthSpec {
            command: Some(CommandSpec::Argv(vec!["/nonexistent/check".into()])),
            ..HealthSpec::default()
        };
        let err = probe(&missing, &opts).await.unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn invalid_specs_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api", tmp.path(), &log);
        let bad = [
            HealthSpec::default(),
            HealthSpec {
                tcp: Some("127.0.0.1:80".into()),
                ..http("http://127.0.0.1/")
            },
            http("not a url"),
            http("ftp://example.com/"),
            HealthSpec {
                expect_status: Some(42),
                ..http("http://127.0.0.1/")
            },
            HealthSpec {
                tcp: Some("localhost".into()),
                ..HealthSpec::default()
            },
            HealthSpec {
                tcp: Some("127.0.0.1:99999".into()),
                ..HealthSpec::default()
            },
            HealthSpec {
                tcp: Some("127.0.0.1:80".into()),
                expect_status: Some(200),
                ..HealthSpec::default()
            },
            HealthSpec {
                command: Some(CommandSpec::Argv(vec![])),
                ..HealthSpec::default()
            },
            HealthSpec {
                timeout_ms: Some(0),
                ..http("http://127.0.0.1/")
            },
        ];
        for spec in &bad {
            let err = check_spec(spec, "api").unwrap_err();
            assert!(err.is_bad_input());
            assert!(
                err.to_string().starts_with("api: invalid health check: "),
                "{err}"
            );
            assert!(probe(spec, &opts).await.is_err(), "{spec:?}");
            let v = validate(spec, &fast(), in_secs(5), &opts).await;
            assert!(matches!(v, Err(ExecError::Invalid { .. })), "{spec:?}");
        }
        assert!(check_spec(&http("https://example.com:8443/health"), "api").is_ok());
    }

    #[tokio::test]
    async fn validate_waits_for_consecutive_healthy_samples() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);

        // Comes up after the 2nd request.
        let server = TestServer::start(|n| if n <= 2 { 503 } else { 200 });
        let out = validate(&http(&server.url), &fast(), in_secs(20), &opts)
            .await
            .unwrap();
        assert!(out.healthy && !out.cancelled, "{out:?}");
        assert_eq!(out.samples_taken, 5);
        assert_eq!(server.hits(), 5);
        assert_eq!(out.message, "3 healthy samples");

        // A failure in between resets the count.
        let flaky = TestServer::start(|n| if n == 2 { 503 } else { 200 });
        let out = validate(&http(&flaky.url), &fast(), in_secs(20), &opts)
            .await
            .unwrap();
        assert!(out.healthy, "{out:?}");
        assert_eq!(out.samples_taken, 5);

        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains("[api health] health sample 1: unhealthy (HTTP 503 from"),
            "{text}"
        );
        assert!(text.contains("[api health] health: healthy: 3 healthy samples"));
    }

    #[tokio::test]
    async fn validate_soaks_after_the_samples() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);

        let steady = TestServer::start(|_| 200);
        let policy = HealthPolicy {
            samples: 2,
            interval: Duration::from_millis(50),
            soak: Duration::from_millis(300),
        };
        let out = validate(&http(&steady.url), &policy, in_secs(20), &opts)
            .await
            .unwrap();
        assert!(out.healthy, "{out:?}");
        assert_eq!(out.message, "2 healthy samples, 300 ms soak");
        assert!(out.samples_taken >= 3, "{out:?}");
        assert!(out.duration >= Duration::from_millis(300));

        // Healthy for the first 3 requests, then down: fails during the soak.
        let dies = TestServer::start(|n| if n <= 3 { 200 } else { 503 });
        let policy = HealthPolicy {
            samples: 3,
            interval: Duration::from_millis(50),
            soak: Duration::from_secs(10),
        };
        let out = validate(&http(&dies.url), &policy, in_secs(30), &opts)
            .await
            .unwrap();
        assert!(!out.healthy && !out.cancelled, "{out:?}");
        assert_eq!(out.samples_taken, 4);
        assert!(out.message.starts_with("HTTP 503 from"), "{out:?}");
        assert!(out.message.contains("into the 10 s soak"), "{out:?}");
    }

    #[tokio::test]
    async fn validate_gives_up_at_the_deadline_with_the_last_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let opts = RunOptions::new("api health", tmp.path(), &log);
        let port = closed_port();
        let server = TestServer::start(|_| 503);
        let deadline = Instant::now() + Duration::from_millis(400);
        let out = validate(&http(&server.url), &fast(), deadline, &opts)
            .await
            .unwrap();
        assert!(!out.healthy && !out.cancelled, "{out:?}");
        assert!(out.samples_taken >= 1);
        assert!(Instant::now() >= deadline);
        assert!(
            out.message
                .starts_with(&format!("HTTP 503 from {}, expected 200", server.url)),
            "{out:?}"
        );
        assert!(
            out.message.contains("not healthy by the deadline"),
            "{out:?}"
        );

        // The soak is bounded by the deadline too.
        let steady = TestServer::start(|_| 200);
        let policy = HealthPolicy {
            samples: 1,
            interval: Duration::from_millis(50),
            soak: Duration::from_secs(30),
        };
        let deadline = Instant::now() + Duration::from_millis(400);
        let out = validate(&http(&steady.url), &policy, deadline, &opts)
            .await
            .unwrap();
        assert!(!out.healthy, "{out:?}");
        assert!(out.message.starts_with("deadline reached"), "{out:?}");

        // TCP as well.
        let spec = HealthSpec {
            tcp: Some(format!("127.0.0.1:{port}")),
            ..HealthSpec::default()
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let out = validate(&spec, &fast(), deadline, &opts).await.unwrap();
        assert!(!out.healthy);
        assert!(
            out.message
                .starts_with(&format!("connect 127.0.0.1:{port} refused")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn validate_stops_when_cancelled() {
        let tmp = tempfile::tempdir().unwrap();
        let log = DeploymentLog::create(tmp.path(), chrono::Local::now()).unwrap();
        let (tx, rx) = watch::channel(false);
        let opts = RunOptions {
            cancel: Some(&rx),
            ..RunOptions::new("api health", tmp.path(), &log)
        };
        let server = TestServer::start(|_| 503);
        let (spec, policy) = (http(&server.url), fast());
        let started = Instant::now();
        let (out, _) = tokio::join!(validate(&spec, &policy, in_secs(60), &opts), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send_replace(true);
        });
        let out = out.unwrap();
        assert!(out.cancelled && !out.healthy, "{out:?}");
        assert_eq!(out.message, "cancelled");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
