//! Shared helpers: a plugin host with a test cache, contexts, a loopback HTTP server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use adeploy::config::{Config, Grants};
use adeploy::plugin::{
    DeploymentContext, DeploymentSize, EnvSource, HostOptions, HostWorld, Metrics, PluginHost,
    PluginSet, PluginSettings, Service, WitEnvironment, WitResourceLimits,
};

/// The component cache shared by every test run (speeds up reruns; each
/// entry is keyed by digest and engine settings, so sharing is safe).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// The `adeploy` binary as a user runs it from `cwd` with state dir `state`:
/// the shared component cache, no inherited `ADEPLOY_CONFIG` or
/// `DEPLOYMENT_ENVIRONMENT`, no stdin. Add arguments, environment and output
/// handling as the test needs.
pub fn adeploy_command(cwd: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adeploy"));
    c.current_dir(cwd)
        .env("ADEPLOY_CACHE_DIR", cache_dir())
        .env("ADEPLOY_STATE_DIR", state)
        .env_remove("ADEPLOY_CONFIG")
        .env_remove("DEPLOYMENT_ENVIRONMENT")
        .stdin(Stdio::null());
    c
}

/// Runs `adeploy ARGS` (see [`adeploy_command`]) to completion.
pub fn adeploy(args: &[&str], cwd: &Path, state: &Path) -> Output {
    adeploy_command(cwd, state).args(args).output().unwrap()
}

/// A world with no environment, a fixed hostname and an empty root.
pub fn empty_world(root: &std::path::Path) -> HostWorld {
    HostWorld {
        root: root.to_path_buf(),
        hostname: Some("plain-box".into()),
        env: EnvSource::Fixed(HashMap::new()),
    }
}

pub fn host(world: HostWorld) -> PluginHost {
    PluginHost::new(HostOptions {
        cache_dir: Some(cache_dir()),
        world,
        max_memory_mb: 1024,
    })
    .unwrap()
}

pub async fn builtins(host: &PluginHost, config: &Config) -> PluginSet {
    PluginSet::load(host, config, &[]).await.unwrap()
}

pub fn settings(
    grants: Grants,
    timeout_ms: u64,
    memory_mb: u64,
    config_json: &str,
) -> PluginSettings {
    PluginSettings {
        grants,
        timeout_ms,
        memory_mb,
        config_json: config_json.to_string(),
        ..PluginSettings::default()
    }
}

pub fn service(name: &str, deps: &[&str]) -> Service {
    Service {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        hosts: vec![],
        has_health_check: true,
        timeout_s: 60,
    }
}

pub fn ctx(services: Vec<Service>, environment: WitEnvironment) -> DeploymentContext {
    DeploymentContext {
        deployment_id: "deploy_test".into(),
        environment,
        size: DeploymentSize::Medium,
        services,
        metrics: Metrics {
            cpu_percent: 10.0,
            memory_percent: 20.0,
            disk_percent: 30.0,
            load_per_core: 0.1,
            network_latency_ms: None,
        },
        limits: WitResourceLimits {
            cpu_limit: 0.7,
            memory_limit: 0.7,
            concurrency: 4,
        },
        max_time_minutes: None,
        dry_run: false,
        config: "{}".into(),
    }
}

/// A loopback HTTP server answering every request with `status` and `body`;
/// counts requests. Stops when dropped.
pub struct HttpServer {
    pub port: u16,
    pub hits: Arc<AtomicU16>,
    /// Request paths in arrival order.
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(status: u16, body: &'static str) -> HttpServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let hits = Arc::new(AtomicU16::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, h, p) = (server.clone(), hits.clone(), paths.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                h.fetch_add(1, Ordering::SeqCst);
                p.lock().unwrap().push(req.url().to_string());
                let _ =
                    req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
        HttpServer {
            port,
            hits,
            paths,
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
