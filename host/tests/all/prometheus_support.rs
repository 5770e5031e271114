//! The real parts metric analysis is tested with: a Prometheus of its own
//! (Debian's `prometheus`, installed by `.ci/run`) and a small test service
//! whose behaviour the test sets per version, driven by load the test
//! generates. Self-contained (std, tiny_http, tempfile), so the provider
//! benchmark includes this file too (`#[path]`).
//!
//! - [`Prometheus::start`] runs `prometheus` with a temporary config (1 s
//!   scrape and evaluation interval, the given targets), its TSDB in a
//!   temporary directory and its API on a loopback port chosen at run time;
//!   never the package's system service. Stopped (killed) on drop;
//!   [`Prometheus::pause`] / [`Prometheus::resume`] freeze it (SIGSTOP) to
//!   make it hang rather than refuse.
//! - [`TestService`] serves `GET /work?version=V` (or the active version)
//!   and `GET /metrics` in Prometheus's text format:
//!   `http_requests_total{version, code}` and the histogram
//!   `http_request_duration_seconds{version}`. [`Behaviour`] sets a
//!   version's error ratio (every n-th request of ten answers 500) and added
//!   latency. `GET /admin/activate?version=V` switches the active version,
//!   so a deploy command can "deploy" by calling it.
//! - [`Load`] sends requests to the service from a background thread until
//!   dropped.
//! - [`metrics_world`] and [`analysed_config`]: the three together, and an
//!   adeploy config that deploys versions of the test service under
//!   analysis (the flow tests of the library and the CLI).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A free loopback port (bound, read and released; good enough for a
/// process started right after, and retried if not).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A Prometheus server of this test's own.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, job `api`) every
    /// second, and waits until its API is ready (up to 30 s).
    pub fn start(targets: &[String]) -> Prometheus {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the prometheus binary is not installed: apt-get install -y prometheus (.ci/run does)"
            )
        });
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            let config = format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: api\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            );
            let config_path = dir.path().join("prometheus.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                // Its own process group: SIGSTOP (pause) must stick. In the
                // test runner's group, which may be orphaned (a runner whose
                // shell is gone), the kernel answers a stopped member with
                // SIGHUP + SIGCONT when another member exits.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut p = Prometheus { child, port, dir };
            match p.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return p,
                Err(e) => last_error = e,
            }
        }
        panic!("prometheus did not start: {last_error}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status}: {}", self.log()));
            }
            if http_get(self.port, "/-/ready").is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("not ready within {limit:?}: {}", self.log()))
    }

    /// Its log (startup errors, warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id (a test may kill it from a deploy command).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`, the provider's `address`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, the provider's `grants.network` entry.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The value of an instant query, when it gives one series.
    pub fn instant(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(query));
        let (status, body) = http_get(self.port, &path).ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` gives a finite value (up to `limit`); panics with
    /// the log otherwise.
    pub fn wait_for(&self, query: &str, limit: Duration) -> f64 {
        let started = Instant::now();
        loop {
            if let Some(v) = self.instant(query).filter(|v| v.is_finite()) {
                return v;
            }
            assert!(
                started.elapsed() < limit,
                "prometheus has no value for {query} after {limit:?}; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills it (as an outage would).
    pub fn stop(&mut self) {
        if self.running() {
            self.resume();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Freezes it (SIGSTOP): connections are accepted by the kernel but
    /// never answered, like a hung server. Returns once every thread is
    /// stopped (signals are delivered asynchronously).
    pub fn pause(&self) {
        let pid = self.child.id();
        signal(pid, "STOP");
        let started = Instant::now();
        while !all_threads_stopped(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "prometheus (pid {pid}) did not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Whether every thread of `pid` is stopped (state `T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([Path::new("/usr/bin").to_path_buf()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Percent-encodes a query-string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// How one version of the test service behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Share of requests answered with 500, in tenths (3: 30 %): of every
    /// ten requests to the version, the first this many fail.
    pub errors_in_ten: u32,
    /// Added to every request's latency.
    pub extra_latency_ms: u64,
}

impl Behaviour {
    /// No errors, no added latency.
    pub const GOOD: Behaviour = Behaviour {
        errors_in_ten: 0,
        extra_latency_ms: 0,
    };
    /// 30 % errors.
    pub const ERRORS: Behaviour = Behaviour {
        errors_in_ten: 3,
        extra_latency_ms: 0,
    };
    /// +200 ms latency.
    pub const SLOW: Behaviour = Behaviour {
        errors_in_ten: 0,
        extra_latency_ms: 200,
    };
}

/// Upper bounds of the latency histogram, in seconds.
/// The first is wide enough that a good version's requests (1 ms of work)
/// all land in it even on a busy machine.
const BUCKETS: [f64; 7] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// What a version has served.
#[derive(Debug, Default, Clone)]
struct Counts {
    ok: u64,
    errors: u64,
    /// Per bucket of `BUCKETS`, then +Inf (cumulative when exposed).
    buckets: [u64; BUCKETS.len() + 1],
    seconds: f64,
}

#[derive(Debug, Default)]
struct ServiceState {
    behaviours: BTreeMap<String, Behaviour>,
    counts: BTreeMap<String, Counts>,
    /// Requests started, per version (decides which ones fail).
    requests: BTreeMap<String, u64>,
    active: String,
}

/// The service under analysis; see the module docs. Stops when dropped.
pub struct TestService {
    pub port: u16,
    state: Arc<Mutex<ServiceState>>,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

impl TestService {
    /// Starts with `versions` and their behaviours; the first is active.
    pub fn start(versions: &[(&str, Behaviour)]) -> TestService {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(ServiceState {
            behaviours: versions.iter().map(|(v, b)| (v.to_string(), *b)).collect(),
            active: versions
                .first()
                .map(|(v, _)| v.to_string())
                .unwrap_or_default(),
            ..ServiceState::default()
        }));
        // Slow versions sleep in the handler: several workers keep /metrics
        // answering while requests wait.
        let workers = (0..8)
            .map(|_| {
                let (server, state) = (server.clone(), state.clone());
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        handle(&state, request);
                    }
                })
            })
            .collect();
        TestService {
            port,
            state,
            server,
            workers,
        }
    }

    /// `127.0.0.1:PORT`, Prometheus's scrape target.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sets how `version` behaves from now on.
    pub fn set(&self, version: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .behaviours
            .insert(version.to_string(), behaviour);
    }

    /// Makes `version` the one `/work` without a version serves.
    pub fn activate(&self, version: &str) {
        self.state.lock().unwrap().active = version.to_string();
    }

    /// Requests served so far, per version: (ok, errors).
    pub fn served(&self, version: &str) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        s.counts.get(version).map_or((0, 0), |c| (c.ok, c.errors))
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 1..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn handle(state: &Mutex<ServiceState>, request: tiny_http::Request) {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or_default();
    let respond = |request: tiny_http::Request, status: u16, body: String| {
        let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status));
    };
    match path {
        "/metrics" => {
            let text = exposition(&state.lock().unwrap());
            respond(request, 200, text);
        }
        "/admin/activate" => match query_param(&url, "version") {
            Some(v) if state.lock().unwrap().behaviours.contains_key(v) => {
                state.lock().unwrap().active = v.to_string();
                respond(request, 200, format!("active: {v}\n"));
            }
            _ => respond(request, 400, "unknown version\n".to_string()),
        },
        "/work" => {
            let started = Instant::now();
            let (version, behaviour, n) = {
                let mut s = state.lock().unwrap();
                let version = query_param(&url, "version")
                    .map(str::to_string)
                    .unwrap_or_else(|| s.active.clone());
                let Some(b) = s.behaviours.get(&version).copied() else {
                    drop(s);
                    respond(request, 404, "unknown version\n".to_string());
                    return;
                };
                let n = s.requests.entry(version.clone()).or_default();
                *n += 1;
                let n = *n;
                (version, b, n)
            };
            std::thread::sleep(Duration::from_millis(1 + behaviour.extra_latency_ms));
            let error = (n % 10) < u64::from(behaviour.errors_in_ten);
            let seconds = started.elapsed().as_secs_f64();
            {
                let mut s = state.lock().unwrap();
                let c = s.counts.entry(version.clone()).or_default();
                if error {
                    c.errors += 1;
                } else {
                    c.ok += 1;
                }
                let bucket = BUCKETS
                    .iter()
                    .position(|le| seconds <= *le)
                    .unwrap_or(BUCKETS.len());
                c.buckets[bucket] += 1;
                c.seconds += seconds;
            }
            let status = if error { 500 } else { 200 };
            respond(request, status, format!("{version}\n"));
        }
        _ => respond(request, 404, "not found\n".to_string()),
    }
}

/// The Prometheus text format of everything served so far.
fn exposition(s: &ServiceState) -> String {
    let mut out = String::new();
    out.push_str("# HELP http_requests_total Requests served, by version and status code.\n");
    out.push_str("# TYPE http_requests_total counter\n");
    for (v, c) in &s.counts {
        out.push_str(&format!(
            "http_requests_total{{version=\"{v}\",code=\"200\"}} {}\n",
            c.ok
        ));
        out.push_str(&format!(
            "http_requests_total{{version=\"{v}\",code=\"500\"}} {}\n",
            c.errors
        ));
    }
    out.push_str("# HELP http_request_duration_seconds Request latency, by version.\n");
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (v, c) in &s.counts {
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += c.buckets[i];
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{version=\"{v}\",le=\"{le}\"}} {cumulative}\n"
            ));
        }
        cumulative += c.buckets[BUCKETS.len()];
        out.push_str(&format!(
            "http_request_duration_seconds_bucket{{version=\"{v}\",le=\"+Inf\"}} {cumulative}\n"
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_sum{{version=\"{v}\"}} {}\n",
            c.seconds
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_count{{version=\"{v}\"}} {cumulative}\n"
        ));
    }
    out
}

/// Requests to a [`TestService`] from background threads until dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// One thread per entry of `versions` (`None`: the active version),
    /// each sending a request every `every`.
    pub fn start(port: u16, versions: &[Option<&str>], every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = versions
            .iter()
            .map(|v| {
                let path = match v {
                    Some(v) => format!("/work?version={v}"),
                    None => "/work".to_string(),
                };
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = http_get(port, &path);
                        std::thread::sleep(every);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// Deployments under analysis (the library's and the CLI's flow tests).

/// `error-rate` of a version: 500s over all requests, 5 s rate.
pub fn error_rate(version: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{version=\"{version}\",code=\"500\"}}[5s])) / sum(rate(http_requests_total{{version=\"{version}\"}}[5s]))"
    )
}

/// p95 latency of a version, 5 s rate.
pub fn p95(version: &str) -> String {
    format!(
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{version=\"{version}\"}}[5s])))"
    )
}

/// The service config: deploy activates `${ADEPLOY_VERSION}`, rollback the
/// previous version; health is the service answering; the analysis is the
/// error rate (threshold, `max`) and the p95 latency against the previous
/// version (comparison). `inconclusive` is staging's policy.
pub fn analysed_config(
    service: &TestService,
    prometheus_endpoint: &str,
    order: &Path,
    max_error_rate: f64,
    inconclusive: &str,
) -> String {
    let activate = |var: &str| {
        format!(
            "python3 -c \"import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:{}/admin/activate?version=' + os.environ['{var}'])\" && echo \"{var} ${var}\" >> {}",
            service.port,
            order.display()
        )
    };
    let q = |t: &str| t.replace('\'', "''");
    format!(
        "resource_limits:\n  conservative: {{cpu_limit: 1.0, memory_limit: 1.0, concurrency: 2}}\n\
         thresholds: {{high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}}\n\
         plugins:\n  conservative: {{config: {{samples: 1, interval_ms: 50, soak_s: 0}}}}\n  prometheus:\n    config: {{address: 'http://{prometheus_endpoint}'}}\n    grants: {{network: ['{prometheus_endpoint}']}}\n    limits: {{timeout_ms: 3000}}\n\
         environments:\n  staging:\n    analysis: {{inconclusive: {inconclusive}}}\n\
         services:\n  api:\n    version: v1\n    deploy: '{}'\n    rollback: '{}'\n    health: {{http: 'http://127.0.0.1:{}/metrics'}}\n    timeout_s: 30\n    analysis:\n      interval_s: 1\n      samples: 5\n      metrics:\n        - name: error-rate\n          provider: prometheus\n          query: '{}'\n          max: {max_error_rate}\n          failure_limit: 1\n        - name: latency-p95\n          provider: prometheus\n          query: '{}'\n          baseline: '{}'\n          tolerance: 0.5\n",
        q(&activate("ADEPLOY_VERSION")),
        q(&activate("ADEPLOY_PREVIOUS_VERSION")),
        service.port,
        q(&error_rate("${ADEPLOY_VERSION}")),
        q(&p95("${ADEPLOY_VERSION}")),
        q(&p95("${ADEPLOY_PREVIOUS_VERSION}")),
    )
}

/// The test service (v1, v2 good; v3 30 % errors; v4 +200 ms), load on
/// every version (old and new run side by side, as in a canary), and a
/// Prometheus scraping it that already has rates for every version.
pub fn metrics_world() -> (TestService, Load, Prometheus) {
    let service = TestService::start(&[
        ("v1", Behaviour::GOOD),
        ("v2", Behaviour::GOOD),
        ("v3", Behaviour::ERRORS),
        ("v4", Behaviour::SLOW),
    ]);
    let load = Load::start(
        service.port,
        &[Some("v1"), Some("v2"), Some("v3"), Some("v4")],
        Duration::from_millis(20),
    );
    let prometheus = Prometheus::start(&[service.target()]);
    for v in ["v1", "v2", "v3", "v4"] {
        prometheus.wait_for(&error_rate(v), Duration::from_secs(40));
        prometheus.wait_for(&p95(v), Duration::from_secs(40));
    }
    (service, load, prometheus)
}
