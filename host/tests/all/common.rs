//! Shared helpers: a plugin host with a test cache, contexts, a loopback HTTP
//! server, and [`World`] (a state dir, an order file and a config). The CLI
//! crate's test binary (cli/tests/all) includes this file too and adds the
//! helpers that run the `adeploy` binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use adeploy::config::{Config, Grants};
use adeploy::engine::{Engine, EngineOptions};
use adeploy::plugin::{
    DeploymentContext, DeploymentSize, EnvSource, HostOptions, HostWorld, Metrics, PluginHost,
    PluginSet, PluginSettings, Service, WitEnvironment, WitResourceLimits,
};

/// The component cache shared by every test run (speeds up reruns; each
/// entry is keyed by digest and engine settings, so sharing is safe).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// Held by the tests that measure this process's RSS and by the tests that
/// fill a lot of guest memory or start many plugin hosts (containment.rs),
/// so the one does not see the other's pages.
pub static MEMORY_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// The golden files of both test binaries: `tests/golden/` at the
/// repository's root.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

/// Compares `actual` with the golden file `tests/golden/NAME`; with
/// `BLESS=1` in the environment, writes it instead. Read the diff of a
/// blessed file before committing it.
pub fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden file (BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// A state dir, an order file the commands append to, and a config.
pub struct World {
    pub dir: tempfile::TempDir,
    pub order: PathBuf,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let order = dir.path().join("order.txt");
        World { dir, order }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Lines of the order file (`deploy api`, `rollback api`, ...).
    pub fn order(&self) -> Vec<String> {
        std::fs::read_to_string(&self.order)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// A config (YAML) with generous limits and `services` (YAML, indented by 2).
    pub fn config_yaml(&self, services: &str) -> String {
        format!(
            "resource_limits:\n  conservative: {{cpu_limit: 1.0, memory_limit: 1.0, concurrency: 2}}\n  balanced: {{cpu_limit: 1.0, memory_limit: 1.0, concurrency: 4}}\n  aggressive: {{cpu_limit: 1.0, memory_limit: 1.0, concurrency: 8}}\n\
             thresholds: {{high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}}\n\
             plugins:\n  conservative: {{config: {{samples: 1, interval_ms: 50, soak_s: 0}}}}\n  balanced: {{config: {{samples: 1, interval_ms: 50}}}}\n\
             services:\n{services}"
        )
    }

    pub fn write_config(&self, services: &str) -> PathBuf {
        self.write_config_with(services, "")
    }

    /// [`World::write_config`] with more top-level YAML appended.
    pub fn write_config_with(&self, services: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, self.config_yaml(services) + extra).unwrap();
        path
    }

    pub async fn engine(&self, services: &str) -> Engine {
        self.engine_with(services, "").await
    }

    /// Like [`World::engine`], with more top-level YAML appended to the config.
    pub async fn engine_with(&self, services: &str, extra: &str) -> Engine {
        self.engine_with_options(services, extra, self.options())
            .await
    }

    /// Like [`World::engine_with`], with other engine options.
    pub async fn engine_with_options(
        &self,
        services: &str,
        extra: &str,
        options: EngineOptions,
    ) -> Engine {
        let config = Config::load(Some(&self.write_config_with(services, extra))).unwrap();
        Engine::new(config, options).await.unwrap()
    }

    /// The engine options every test uses: this world's state dir, the
    /// shared component cache, a plain world for detectors.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            state_dir: Some(self.state()),
            host: Some(HostOptions {
                cache_dir: Some(cache_dir()),
                world: empty_world(Path::new("/")),
                max_memory_mb: 256,
            }),
            ..EngineOptions::default()
        }
    }

    /// A service that appends `deploy NAME` / `rollback NAME` to the order file.
    pub fn service(&self, name: &str, deps: &[&str], health: &str) -> String {
        let o = self.order.display();
        format!(
            "  {name}:\n    deploy: 'echo \"deploy {name}\" >> {o}'\n    rollback: 'echo \"rollback {name}\" >> {o}'\n    depends_on: [{}]\n    health: {health}\n    timeout_s: 20\n",
            deps.join(", ")
        )
    }
}
