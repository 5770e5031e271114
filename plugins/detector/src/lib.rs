//! `detector`: the built-in environment detector.
//!
//! It gathers evidence with every method the operator's rules describe —
//! the environment variable, the host name, network endpoints, filesystem
//! markers and running processes — all through host imports, so each probe is
//! subject to the plugin's grants. Each observation counts with its method's
//! weight (`rules.weights`) and [`Tally`] weighs them into an environment and
//! a confidence.
//!
//! A probe the host refuses (denied, invalid, failed) never fails the
//! detection: it becomes a note such as `hostname: denied: ...`, so the
//! operator sees which grant is missing. Plain absence is simply no evidence:
//! an unset variable, a missing file (`not-found`), and a network endpoint
//! that does not resolve or answer (`not-found`, `timeout`, `failed`) — on
//! any machine most endpoints of the other environments are unreachable.
//!
//! The plugin's own config JSON is ignored: everything comes from the rules.

use adeploy_sdk::detector::{Detection, DetectionRules, Detector, Tally};
use adeploy_sdk::host::{self, HostError, ProcessInfo};
use adeploy_sdk::types::{Environment, PluginInfo};

/// The detector; see the crate docs.
#[derive(Debug)]
pub struct EnvironmentDetector;

/// What the detector asks the machine: the host imports it uses, behind a
/// trait so the weighing can be tested natively with a fake machine.
trait Machine {
    fn env_var(&self, name: &str) -> Result<Option<String>, HostError>;
    fn hostname(&self) -> Result<String, HostError>;
    fn resolve(&self, name: &str) -> Result<Vec<String>, HostError>;
    fn tcp_probe(&self, host: &str, port: u16) -> Result<u32, HostError>;
    fn path_exists(&self, path: &str) -> Result<bool, HostError>;
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError>;
    fn list_processes(&self) -> Result<Vec<ProcessInfo>, HostError>;
}

/// The real machine, through the host.
struct Host;

/// Connect timeout of one network probe.
const PROBE_TIMEOUT_MS: u32 = 300;
/// How much of a marker file is searched for its `contains` text.
const MARKER_READ_BYTES: u32 = 65536;

impl Machine for Host {
    fn env_var(&self, name: &str) -> Result<Option<String>, HostError> {
        host::env_var(name)
    }
    fn hostname(&self) -> Result<String, HostError> {
        host::hostname()
    }
    fn resolve(&self, name: &str) -> Result<Vec<String>, HostError> {
        host::resolve(name)
    }
    fn tcp_probe(&self, host: &str, port: u16) -> Result<u32, HostError> {
        host::tcp_probe(host, port, PROBE_TIMEOUT_MS)
    }
    fn path_exists(&self, path: &str) -> Result<bool, HostError> {
        host::path_exists(path)
    }
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        host::read_file(path, MARKER_READ_BYTES)
    }
    fn list_processes(&self) -> Result<Vec<ProcessInfo>, HostError> {
        host::list_processes()
    }
}

/// `denied: needs grants.hostname`, for notes.
fn error_text(e: &HostError) -> String {
    match e {
        HostError::Denied(m) => format!("denied: {m}"),
        HostError::NotFound(m) => format!("not-found: {m}"),
        HostError::Timeout(m) => format!("timeout: {m}"),
        HostError::Invalid(m) => format!("invalid: {m}"),
        HostError::Failed(m) => format!("failed: {m}"),
    }
}

/// The environment a value such as `PROD` or `staging` names.
fn parse_environment(value: &str) -> Option<Environment> {
    match value.trim().to_ascii_lowercase().as_str() {
        "production" | "prod" | "prd" => Some(Environment::Production),
        "staging" | "stage" | "stg" => Some(Environment::Staging),
        "development" | "dev" => Some(Environment::Development),
        "local" => Some(Environment::Local),
        _ => None,
    }
}

/// The first non-empty pattern that is a case-insensitive substring of `text`.
fn first_match<'p>(text: &str, patterns: &'p [String]) -> Option<&'p str> {
    let text = text.to_lowercase();
    patterns
        .iter()
        .map(String::as_str)
        .find(|p| !p.is_empty() && text.contains(&p.to_lowercase()))
}

/// `name:port` → (`name`, Some(port)); `name` → (`name`, None); `[::1]:80` works too.
fn split_endpoint(pattern: &str) -> (&str, Option<u16>) {
    if let Some((name, port)) = pattern.rsplit_once(':')
        && let Ok(port) = port.parse::<u16>()
        && !name.is_empty()
        && (!name.contains(':') || name.starts_with('['))
    {
        return (
            name.trim_start_matches('[').trim_end_matches(']'),
            Some(port),
        );
    }
    (pattern, None)
}

fn by_env_var(m: &impl Machine, rules: &DetectionRules, tally: &mut Tally) {
    let name = rules.env_var.as_str();
    if name.is_empty() {
        return;
    }
    match m.env_var(name) {
        Ok(Some(value)) => match parse_environment(&value) {
            Some(env) => tally.add(
                "env-var",
                env,
                rules.weights.env_var,
                format!("{name}={value:?} names {}", env.as_str()),
            ),
            None => tally.note(format!(
                "env-var: {name}={value:?} names no known environment"
            )),
        },
        Ok(None) | Err(HostError::NotFound(_)) => {}
        Err(e) => tally.note(format!("env-var: {name}: {}", error_text(&e))),
    }
}

fn by_hostname(m: &impl Machine, rules: &DetectionRules, tally: &mut Tally) {
    if rules.hostname_patterns.is_empty() {
        return;
    }
    let name = match m.hostname() {
        Ok(name) => name.to_lowercase(),
        Err(e) => return tally.note(format!("hostname: {}", error_text(&e))),
    };
    for set in &rules.hostname_patterns {
        if let Some(pattern) = first_match(&name, &set.patterns) {
            tally.add(
                "hostname",
                set.environment,
                rules.weights.hostname,
                format!("hostname {name:?} matches {pattern:?}"),
            );
        }
    }
}

fn by_network(m: &impl Machine, rules: &DetectionRules, tally: &mut Tally) {
    for set in &rules.network_patterns {
        for pattern in &set.patterns {
            let detail = match split_endpoint(pattern) {
                (name, Some(port)) => m
                    .tcp_probe(name, port)
                    .map(|ms| format!("endpoint {pattern} answers ({ms} ms)")),
                (name, None) => m.resolve(name).and_then(|addrs| {
                    if addrs.is_empty() {
                        Err(HostError::NotFound(name.to_string()))
                    } else {
                        Ok(format!("{name} resolves to {}", addrs.join(", ")))
                    }
                }),
            };
            match detail {
                Ok(detail) => tally.add("network", set.environment, rules.weights.network, detail),
                // An endpoint that does not answer or resolve is plain absence.
                Err(HostError::NotFound(_) | HostError::Timeout(_) | HostError::Failed(_)) => {}
                Err(e) => tally.note(format!("network: {pattern}: {}", error_text(&e))),
            }
        }
    }
}

fn by_filesystem(m: &impl Machine, rules: &DetectionRules, tally: &mut Tally) {
    for marker in &rules.filesystem_markers {
        let path = marker.path.as_str();
        let found = match m.path_exists(path) {
            Ok(true) => match marker.contains.as_deref().filter(|t| !t.is_empty()) {
                None => Ok(Some(format!("{path:?} exists"))),
                Some(text) => m.read_file(path).map(|bytes| {
                    String::from_utf8_lossy(&bytes)
                        .contains(text)
                        .then(|| format!("{path:?} contains {text:?}"))
                }),
            },
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(detail)) => tally.add(
                "filesystem",
                marker.environment,
                rules.weights.filesystem,
                detail,
            ),
            Ok(None) | Err(HostError::NotFound(_)) => {}
            Err(e) => tally.note(format!("filesystem: {path}: {}", error_text(&e))),
        }
    }
}

fn by_process(m: &impl Machine, rules: &DetectionRules, tally: &mut Tally) {
    if rules.process_patterns.is_empty() {
        return;
    }
    let processes = match m.list_processes() {
        Ok(list) => list,
        Err(e) => return tally.note(format!("process: {}", error_text(&e))),
    };
    for set in &rules.process_patterns {
        let hit = processes
            .iter()
            .find_map(|p| first_match(&p.name, &set.patterns).map(|pattern| (p, pattern)));
        if let Some((p, pattern)) = hit {
            tally.add(
                "process",
                set.environment,
                rules.weights.process,
                format!("process {:?} (pid {}) matches {pattern:?}", p.name, p.pid),
            );
        }
    }
}

/// Every method in turn, weighed together.
fn detect_on(m: &impl Machine, rules: &DetectionRules) -> Detection {
    let mut tally = Tally::default();
    by_env_var(m, rules, &mut tally);
    by_hostname(m, rules, &mut tally);
    by_network(m, rules, &mut tally);
    by_filesystem(m, rules, &mut tally);
    by_process(m, rules, &mut tally);
    tally.finish()
}

impl Detector for EnvironmentDetector {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "detector",
            "0.1.0",
            "weighs env var, host name, network, filesystem and process evidence",
        )
    }

    /// `config` is ignored: the operator's `rules` say everything.
    fn detect(rules: DetectionRules, _config: String) -> Result<Detection, String> {
        Ok(detect_on(&Host, &rules))
    }
}

adeploy_sdk::export_detector!(EnvironmentDetector);

#[cfg(test)]
mod tests {
    use super::*;
    use adeploy_sdk::detector::{Marker, MethodWeights, PatternSet};
    use std::collections::HashMap;

    /// A machine whose answers are set by the test; anything not set is absent.
    #[derive(Default)]
    struct Fake {
        env: HashMap<String, String>,
        hostname: Option<Result<String, HostError>>,
        dns: HashMap<String, Vec<String>>,
        open: HashMap<(String, u16), u32>,
        files: HashMap<String, String>,
        denied_paths: Vec<String>,
        processes: Option<Result<Vec<ProcessInfo>, HostError>>,
    }

    impl Machine for Fake {
        fn env_var(&self, name: &str) -> Result<Option<String>, HostError> {
            Ok(self.env.get(name).cloned())
        }
        fn hostname(&self) -> Result<String, HostError> {
            self.hostname
                .clone()
                .unwrap_or(Err(HostError::Denied("needs grants.hostname".into())))
        }
        fn resolve(&self, name: &str) -> Result<Vec<String>, HostError> {
            self.dns
                .get(name)
                .cloned()
                .ok_or_else(|| HostError::NotFound(name.into()))
        }
        fn tcp_probe(&self, host: &str, port: u16) -> Result<u32, HostError> {
            if host == "denied.example" {
                return Err(HostError::Denied("needs grants.network".into()));
            }
            self.open
                .get(&(host.to_string(), port))
                .copied()
                .ok_or_else(|| HostError::Timeout("no answer".into()))
        }
        fn path_exists(&self, path: &str) -> Result<bool, HostError> {
            if self.denied_paths.iter().any(|p| p == path) {
                return Err(HostError::Denied(format!("{path} is not granted")));
            }
            Ok(self.files.contains_key(path))
        }
        fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
            self.files
                .get(path)
                .map(|c| c.clone().into_bytes())
                .ok_or_else(|| HostError::NotFound(path.into()))
        }
        fn list_processes(&self) -> Result<Vec<ProcessInfo>, HostError> {
            self.processes.clone().unwrap_or(Ok(Vec::new()))
        }
    }

    fn set(environment: Environment, patterns: &[&str]) -> PatternSet {
        PatternSet {
            environment,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn rules() -> DetectionRules {
        DetectionRules {
            env_var: "DEPLOYMENT_ENVIRONMENT".into(),
            hostname_patterns: vec![
                set(Environment::Production, &["prod", "prd"]),
                set(Environment::Staging, &["stg", "staging"]),
            ],
            network_patterns: vec![
                set(
                    Environment::Production,
                    &["db.prod.internal:5432", "denied.example:1"],
                ),
                set(Environment::Development, &["dev.internal"]),
            ],
            filesystem_markers: vec![
                Marker {
                    environment: Environment::Local,
                    path: "/.dockerenv".into(),
                    contains: None,
                },
                Marker {
                    environment: Environment::Production,
                    path: "/proc/1/cgroup".into(),
                    contains: Some("kubepods".into()),
                },
                Marker {
                    environment: Environment::Staging,
                    path: "/secret".into(),
                    contains: None,
                },
            ],
            process_patterns: vec![set(Environment::Development, &["webpack", "nodemon"])],
            weights: MethodWeights {
                env_var: 1.0,
                hostname: 0.5,
                network: 0.3,
                filesystem: 0.2,
                process: 0.1,
            },
        }
    }

    fn proc(pid: u32, name: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            cmdline: name.into(),
        }
    }

    #[test]
    fn environment_names_are_recognised() {
        assert_eq!(parse_environment(" PROD "), Some(Environment::Production));
        assert_eq!(parse_environment("prd"), Some(Environment::Production));
        assert_eq!(parse_environment("Stage"), Some(Environment::Staging));
        assert_eq!(parse_environment("stg"), Some(Environment::Staging));
        assert_eq!(parse_environment("dev"), Some(Environment::Development));
        assert_eq!(
            parse_environment("development"),
            Some(Environment::Development)
        );
        assert_eq!(parse_environment("LOCAL"), Some(Environment::Local));
        assert_eq!(parse_environment("qa"), None);
    }

    #[test]
    fn endpoints_split_into_name_and_port() {
        assert_eq!(split_endpoint("db:5432"), ("db", Some(5432)));
        assert_eq!(split_endpoint("db"), ("db", None));
        assert_eq!(split_endpoint("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_endpoint("::1"), ("::1", None));
        assert_eq!(split_endpoint("db:http"), ("db:http", None));
    }

    #[test]
    fn every_method_contributes_weighted_evidence() {
        let fake = Fake {
            env: HashMap::from([("DEPLOYMENT_ENVIRONMENT".into(), "Production".into())]),
            hostname: Some(Ok("WEB-PROD-1".into())),
            dns: HashMap::from([("dev.internal".into(), vec!["10.0.0.7".into()])]),
            open: HashMap::from([(("db.prod.internal".into(), 5432), 4)]),
            files: HashMap::from([
                ("/.dockerenv".into(), String::new()),
                ("/proc/1/cgroup".into(), "0::/kubepods/besteffort".into()),
            ]),
            denied_paths: vec![],
            processes: Some(Ok(vec![
                proc(1, "init"),
                proc(42, "Nodemon"),
                proc(43, "webpack"),
            ])),
        };
        let d = detect_on(&fake, &rules());
        let seen: Vec<(&str, Environment, f64, &str)> = d
            .evidence
            .iter()
            .map(|e| {
                (
                    e.method.as_str(),
                    e.environment,
                    e.weight,
                    e.detail.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "env-var",
                    Environment::Production,
                    1.0,
                    "DEPLOYMENT_ENVIRONMENT=\"Production\" names production"
                ),
                (
                    "hostname",
                    Environment::Production,
                    0.5,
                    "hostname \"web-prod-1\" matches \"prod\""
                ),
                (
                    "network",
                    Environment::Production,
                    0.3,
                    "endpoint db.prod.internal:5432 answers (4 ms)"
                ),
                (
                    "network",
                    Environment::Development,
                    0.3,
                    "dev.internal resolves to 10.0.0.7"
                ),
                (
                    "filesystem",
                    Environment::Local,
                    0.2,
                    "\"/.dockerenv\" exists"
                ),
                (
                    "filesystem",
                    Environment::Production,
                    0.2,
                    "\"/proc/1/cgroup\" contains \"kubepods\""
                ),
                (
                    "process",
                    Environment::Development,
                    0.1,
                    "process \"Nodemon\" (pid 42) matches \"nodemon\""
                ),
            ]
        );
        assert_eq!(d.environment, Some(Environment::Production));
        assert!((d.confidence - 2.0 / 2.6).abs() < 1e-9, "{}", d.confidence);
        // the denied endpoint is a note, the silent one is just absent
        assert_eq!(
            d.notes,
            vec!["network: denied.example:1: denied: needs grants.network"]
        );
    }

    #[test]
    fn denials_become_notes_and_absence_is_silent() {
        let fake = Fake {
            env: HashMap::from([("DEPLOYMENT_ENVIRONMENT".into(), "qa".into())]),
            hostname: None,
            denied_paths: vec!["/secret".into()],
            processes: Some(Err(HostError::Denied("needs grants.processes".into()))),
            files: HashMap::from([("/proc/1/cgroup".into(), "0::/".into())]),
            ..Fake::default()
        };
        let d = detect_on(&fake, &rules());
        assert!(d.evidence.is_empty(), "{:?}", d.evidence);
        assert_eq!(d.environment, None);
        assert_eq!(d.confidence, 0.0);
        assert_eq!(
            d.notes,
            vec![
                "env-var: DEPLOYMENT_ENVIRONMENT=\"qa\" names no known environment",
                "hostname: denied: needs grants.hostname",
                "network: denied.example:1: denied: needs grants.network",
                "filesystem: /secret: denied: /secret is not granted",
                "process: denied: needs grants.processes",
            ]
        );
    }

    #[test]
    fn one_evidence_item_per_pattern_set() {
        let mut r = rules();
        r.hostname_patterns = vec![set(Environment::Staging, &["stg", "web"])];
        r.process_patterns = vec![set(Environment::Production, &["postgres"])];
        let fake = Fake {
            hostname: Some(Ok("web-stg-2".into())),
            processes: Some(Ok(vec![proc(7, "postgres"), proc(8, "postgres")])),
            ..Fake::default()
        };
        let d = detect_on(&fake, &r);
        let methods: Vec<&str> = d.evidence.iter().map(|e| e.method.as_str()).collect();
        assert_eq!(methods, ["hostname", "process"]);
        assert!(d.evidence[1].detail.contains("pid 7"));
    }
}
