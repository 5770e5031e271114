//! The per-call store data and the host imports a plugin may call.
//!
//! Why a fresh [`PluginState`] per call: a trapped instance can never be
//! entered again, and a fresh store costs microseconds, so every call starts
//! from a clean instance with clean limits. Everything the plugin may reach
//! goes through [`Sandbox`]: its grants, the world it looks at (root,
//! hostname, environment), and one shared HTTP client. WASI is linked with an
//! empty context: no preopened directories, no environment, no sockets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::host::{self, HostError, HttpRequest, HttpResponse, LogLevel, ProcessInfo};
use super::bindings::types;
use super::grants::{self, PathDenial};
use super::scope::OutputGate;
use crate::config::Grants;

/// Largest body `http-fetch` returns.
const MAX_HTTP_BODY: usize = 1 << 20;
/// Largest file `read-file` returns, whatever the plugin asks for.
const MAX_READ: u32 = 1 << 20;
/// Events a single call may record; more are counted, not kept.
const MAX_EVENTS: usize = 100;
/// Longest log line kept (or printed).
const MAX_LOG_LINE: usize = 1024;
/// Bytes of a plugin's stderr kept (a Rust guest's panic message lands there).
pub(crate) const STDERR_CAPACITY: usize = 4096;

/// Where the environment variables a plugin may read come from.
#[derive(Debug, Clone, Default)]
pub enum EnvSource {
    /// The adeploy process's own environment.
    #[default]
    Process,
    /// A fixed set (tests, embedding tools, `diagnostics --root`).
    Fixed(HashMap<String, String>),
}

/// The machine as plugins see it. Tests and `diagnostics --root` point it at
/// another tree; by default it is this machine.
#[derive(Debug, Clone)]
pub struct HostWorld {
    /// Plugins' absolute paths are taken under this directory (`/` by default).
    pub root: PathBuf,
    /// Reported by `hostname` instead of the real host name, when set.
    pub hostname: Option<String>,
    /// Source of `env-var`.
    pub env: EnvSource,
}

impl Default for HostWorld {
    fn default() -> Self {
        HostWorld {
            root: PathBuf::from("/"),
            hostname: None,
            env: EnvSource::Process,
        }
    }
}

/// Something a plugin did during a call that the operator may want to see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PluginEvent {
    /// A `log` call.
    Log { level: String, message: String },
    /// A host import refused for lack of a grant.
    Denied { capability: String, detail: String },
}

/// The granted capabilities a call used successfully (a detector may claim
/// a method only if it used its grant; see `detect`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Used {
    /// Read a set environment variable.
    pub env: bool,
    /// Read the host name.
    pub hostname: bool,
    /// Found or read a granted path.
    pub paths: bool,
    /// Resolved a name, or reached a granted endpoint.
    pub network: bool,
    /// Listed the processes.
    pub processes: bool,
}

impl Used {
    /// Whether any granted import was used.
    pub fn any(&self) -> bool {
        self.env || self.hostname || self.paths || self.network || self.processes
    }
}

/// What one plugin may do, shared by all its calls.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub plugin: String,
    pub grants: Grants,
    pub world: Arc<HostWorld>,
    pub http: Arc<OnceLock<reqwest::Client>>,
    /// Where this plugin's output goes when no deployment is running.
    pub gate: Arc<OutputGate>,
}

/// Caps linear memory and remembers whether the cap was hit, so a failure can
/// be reported as "memory cap" rather than a generic trap.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub max_memory: usize,
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} MiB reached (wanted {} MiB)",
                self.max_memory >> 20,
                desired >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one store: one plugin call.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub stderr: MemoryOutputPipe,
    sandbox: Arc<Sandbox>,
    pub events: Vec<PluginEvent>,
    pub dropped_events: usize,
    /// The output gate of the deployment (or the host) this call is part of.
    gate: Arc<OutputGate>,
    /// Lines this call made the host print.
    printed: usize,
    /// The epoch callback ended the call at its deadline.
    pub deadline_hit: bool,
    /// What the call used of its grants.
    pub used: Used,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.sandbox.plugin)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    pub fn new(sandbox: Arc<Sandbox>, max_memory: usize, gate: Arc<OutputGate>) -> PluginState {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory,
                hit: false,
            },
            stderr,
            sandbox,
            events: Vec::new(),
            dropped_events: 0,
            gate,
            printed: 0,
            deadline_hit: false,
            used: Used::default(),
        }
    }

    /// Whether one more line of this plugin's output may be printed (see
    /// `scope.rs`: per call and per deployment).
    fn may_print(&mut self) -> bool {
        let ok = self.gate.admit(self.printed);
        if ok {
            self.printed += 1;
        }
        ok
    }

    fn record(&mut self, event: PluginEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped_events += 1;
        }
    }

    fn deny(&mut self, capability: &str, detail: String) -> HostError {
        let detail = truncate(detail, MAX_LOG_LINE);
        if self.may_print() {
            tracing::warn!(plugin = %self.sandbox.plugin, capability, "denied: {detail}");
        }
        self.record(PluginEvent::Denied {
            capability: capability.to_string(),
            detail: detail.clone(),
        });
        HostError::Denied(detail)
    }

    fn check_path(
        &mut self,
        capability: &str,
        path: &str,
    ) -> Result<Option<super::rootfs::Found>, HostError> {
        match grants::resolve_path(&self.sandbox.grants, &self.sandbox.world.root, path) {
            Ok(p) => Ok(p),
            Err(PathDenial::Invalid(m)) => Err(HostError::Invalid(m)),
            Err(PathDenial::Failed(m)) => Err(HostError::Failed(m)),
            Err(PathDenial::Denied(m)) => Err(self.deny(capability, m)),
        }
    }

    fn check_endpoint(&mut self, capability: &str, host: &str, port: u16) -> Result<(), HostError> {
        if grants::endpoint_allowed(&self.sandbox.grants, host, port) {
            Ok(())
        } else {
            Err(self.deny(
                capability,
                format!("{host}:{port} is not in grants.network"),
            ))
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn io_error(what: &str, e: &std::io::Error) -> HostError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound(format!("{what}: {e}")),
        std::io::ErrorKind::TimedOut => HostError::Timeout(format!("{what}: {e}")),
        _ => HostError::Failed(format!("{what}: {e}")),
    }
}

impl host::Host for PluginState {
    async fn log(&mut self, level: LogLevel, message: String) {
        let message = truncate(message, MAX_LOG_LINE);
        let enabled = match level {
            LogLevel::Trace => tracing::enabled!(tracing::Level::TRACE),
            LogLevel::Debug => tracing::enabled!(tracing::Level::DEBUG),
            LogLevel::Info => tracing::enabled!(tracing::Level::INFO),
            LogLevel::Warn => tracing::enabled!(tracing::Level::WARN),
            LogLevel::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        let print = enabled && self.may_print();
        let plugin = self.sandbox.plugin.as_str();
        let level_name = match level {
            _ if !print => match level {
                LogLevel::Trace => "trace",
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error => "error",
            },
            LogLevel::Trace => {
                tracing::trace!(plugin, "{message}");
                "trace"
            }
            LogLevel::Debug => {
                tracing::debug!(plugin, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(plugin, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(plugin, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(plugin, "{message}");
                "error"
            }
        };
        self.record(PluginEvent::Log {
            level: level_name.to_string(),
            message,
        });
    }

    async fn now(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    async fn env_var(&mut self, name: String) -> Result<Option<String>, HostError> {
        if !grants::env_allowed(&self.sandbox.grants, &name) {
            return Err(self.deny(
                "env-var",
                format!("environment variable {name:?} is not in grants.env"),
            ));
        }
        let value = match &self.sandbox.world.env {
            EnvSource::Process => std::env::var(&name).ok(),
            EnvSource::Fixed(map) => map.get(&name).cloned(),
        };
        self.used.env |= value.is_some();
        Ok(value)
    }

    async fn hostname(&mut self) -> Result<String, HostError> {
        if !self.sandbox.grants.hostname {
            return Err(self.deny(
                "hostname",
                "the host name needs grants.hostname: true".to_string(),
            ));
        }
        if let Some(h) = &self.sandbox.world.hostname {
            self.used.hostname = true;
            return Ok(h.clone());
        }
        let name = sysinfo::System::host_name()
            .map_err(|e| HostError::Failed(format!("the host name is unknown: {e}")))?;
        self.used.hostname = true;
        Ok(name)
    }

    async fn path_exists(&mut self, path: String) -> Result<bool, HostError> {
        let found = self.check_path("path-exists", &path)?.is_some();
        self.used.paths |= found;
        Ok(found)
    }

    async fn read_file(&mut self, path: String, max_bytes: u32) -> Result<Vec<u8>, HostError> {
        let Some(found) = self.check_path("read-file", &path)? else {
            return Err(HostError::NotFound(format!("{path} does not exist")));
        };
        // A FIFO, socket or device is refused before it is opened for
        // reading (nothing can block on it); the regular file is read on a
        // blocking thread, which the call's deadline stops waiting for.
        if found.file_type() != rustix::fs::FileType::RegularFile {
            let e = super::rootfs::read_regular(&self.sandbox.world.root, &found, 0)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(HostError::Invalid(format!("{path}: {e}")));
        }
        let limit = u64::from(max_bytes.min(MAX_READ));
        let root = self.sandbox.world.root.clone();
        let read =
            tokio::task::spawn_blocking(move || super::rootfs::read_regular(&root, &found, limit))
                .await;
        match read {
            Ok(Ok(buf)) => {
                self.used.paths = true;
                Ok(buf)
            }
            Ok(Err(e)) => Err(io_error(&path, &e)),
            Err(e) => Err(HostError::Failed(format!("{path}: {e}"))),
        }
    }

    async fn list_processes(&mut self) -> Result<Vec<ProcessInfo>, HostError> {
        if !self.sandbox.grants.processes {
            return Err(self.deny(
                "list-processes",
                "listing processes needs grants.processes: true".to_string(),
            ));
        }
        let list = tokio::task::spawn_blocking(|| {
            use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
            let mut sys = System::new().map_err(|e| e.to_string())?;
            sys.refresh_processes_specifics(
                ProcessesToUpdate::All,
                true,
                ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
            );
            let mut out: Vec<ProcessInfo> = sys
                .processes()
                .iter()
                .map(|(pid, p)| ProcessInfo {
                    pid: pid.as_u32(),
                    name: p.name().to_string_lossy().into_owned(),
                    cmdline: p
                        .cmd()
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" "),
                })
                .collect();
            out.sort_by_key(|p| p.pid);
            Ok::<_, String>(out)
        })
        .await;
        match list {
            Ok(Ok(list)) => {
                self.used.processes = true;
                Ok(list)
            }
            Ok(Err(e)) => Err(HostError::Failed(format!("listing processes: {e}"))),
            Err(e) => Err(HostError::Failed(format!("listing processes: {e}"))),
        }
    }

    async fn resolve(&mut self, name: String) -> Result<Vec<String>, HostError> {
        if name.is_empty() {
            return Err(HostError::Invalid("empty host name".to_string()));
        }
        if !grants::name_allowed(&self.sandbox.grants, &name) {
            return Err(self.deny("resolve", format!("{name} is not in grants.network")));
        }
        match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => {
                let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                ips.sort();
                ips.dedup();
                self.used.network |= !ips.is_empty();
                Ok(ips)
            }
            Err(e) => Err(HostError::NotFound(format!("{name} does not resolve: {e}"))),
        }
    }

    async fn tcp_probe(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        self.check_endpoint("tcp-probe", &host, port)?;
        let started = Instant::now();
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_stream)) => {
                self.used.network = true;
                Ok(u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX))
            }
            Ok(Err(e)) => Err(io_error(&format!("{host}:{port}"), &e)),
            Err(_) => Err(HostError::Timeout(format!(
                "{host}:{port} did not answer within {timeout_ms} ms"
            ))),
        }
    }

    async fn http_fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| HostError::Invalid(format!("bad URL {:?}: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HostError::Invalid(format!(
                "unsupported URL scheme in {}",
                request.url
            )));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        self.check_endpoint("http-fetch", &host, port)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HostError::Invalid(format!("bad HTTP method {:?}", request.method)))?;
        let client = self
            .sandbox
            .http
            .get_or_init(|| {
                // No redirects: a redirect could lead to an endpoint the plugin
                // was never granted.
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default()
            })
            .clone();
        let mut builder = client
            .request(method, url)
            .timeout(Duration::from_millis(u64::from(request.timeout_ms.max(1))));
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                HostError::Timeout(format!("{}: {e}", request.url))
            } else {
                HostError::Failed(format!("{}: {e}", request.url))
            }
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HostError::Failed(format!("{}: reading body: {e}", request.url)))?
        {
            let room = MAX_HTTP_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_HTTP_BODY {
                break;
            }
        }
        self.used.network = true;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
