//! What a plugin can answer, through the host's checks: arbitrary rollouts
//! (for an arbitrary deployment), detections, hook reports and
//! `on-progress` decisions, shaped from the input bytes the way a hostile
//! guest could shape them (any counts, empty or huge strings, control
//! characters, NaN/±inf/subnormal/huge floats, unknown services and hosts,
//! dependency cycles), then through `adeploy::plugin::validate`, the
//! detection normaliser and `terminal::safe`.
//!
//! Properties: never panics; whatever is accepted keeps every invariant the
//! engine relies on — at most `MAX_NOTES` notes / `MAX_EVIDENCE` pieces of
//! evidence / `MAX_DETAILS` details, text within `MAX_TEXT_BYTES`, a
//! confidence in 0..1, weights finite in 0..=`MAX_WEIGHT`, a plan that
//! deploys every step of the deployment exactly once, only known services,
//! dependencies in earlier (or the same) waves, concurrency > 0; reasons
//! cut to `MAX_REASON_BYTES`; normalised weights never above the operator's
//! weight for the method; and every string, made terminal-safe, holds no
//! control or bidi character.

#![no_main]

use std::collections::{HashMap, HashSet};

use adeploy::config::{Config, Environment as CfgEnvironment, Grants};
use adeploy::detect::{EvidenceRecord, normalise};
use adeploy::plugin::validate;
use adeploy::plugin::{
    Decision, DeploymentContext, DeploymentSize, Detail, Detection, Evidence, FailurePolicy,
    HookReport, MAX_DETAILS, MAX_EVIDENCE, MAX_NOTES, MAX_REASON_BYTES, MAX_TEXT_BYTES, MAX_WEIGHT,
    Metrics, RollbackScope, Rollout, Service, Step, Used, ValidationPolicy, Wave, WitEnvironment,
    WitResourceLimits,
};
use libfuzzer_sys::fuzz_target;

/// Reads shapes out of the input; past its end every read is zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A count: usually small, sometimes around a cap, rarely large.
    fn count(&mut self) -> usize {
        match self.u8() {
            0..=199 => usize::from(self.u8() % 8),
            200..=239 => 60 + usize::from(self.u8() % 10),
            _ => usize::from(self.u8()) * 4,
        }
    }

    fn f64(&mut self) -> f64 {
        match self.u8() % 12 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => f64::MAX,
            4 => -0.0,
            5 => f64::MIN_POSITIVE / 2.0,
            6 => MAX_WEIGHT,
            7 => MAX_WEIGHT * (1.0 + f64::EPSILON),
            8 => f64::from(self.u8()) / 255.0,
            _ => f64::from_bits(u64::from(self.u32()) << 32 | u64::from(self.u32())),
        }
    }

    fn string(&mut self) -> String {
        const POOL: [&str; 12] = [
            "a", "api", "db", "\u{1b}[2J", "\u{1b}]0;t\u{7}", "\u{9b}", "\u{202e}", "\n", "é",
            "\0", "\u{2066}", "prod",
        ];
        match self.u8() {
            250..=255 => "x".repeat(usize::from(self.u8()) * 512),
            n => {
                let len = usize::from(n % 6);
                (0..len).map(|_| POOL[usize::from(self.u8()) % POOL.len()]).collect()
            }
        }
    }

    fn environment(&mut self) -> WitEnvironment {
        match self.u8() % 4 {
            0 => WitEnvironment::Local,
            1 => WitEnvironment::Development,
            2 => WitEnvironment::Staging,
            _ => WitEnvironment::Production,
        }
    }
}

const NAMES: [&str; 5] = ["api", "db", "web", "cache", "ghost"];

fn context(b: &mut Bytes) -> DeploymentContext {
    let n = 1 + usize::from(b.u8() % 4);
    let services = (0..n)
        .map(|i| Service {
            name: NAMES[i].to_string(),
            depends_on: (0..usize::from(b.u8() % 3))
                .map(|_| NAMES[usize::from(b.u8()) % n].to_string())
                .filter(|d| d != NAMES[i])
                .collect(),
            hosts: (0..usize::from(b.u8() % 3))
                .map(|h| format!("h{h}"))
                .collect(),
            has_health_check: b.u8() & 1 == 0,
            timeout_s: 60,
        })
        .collect();
    DeploymentContext {
        deployment_id: "deploy_fuzz".into(),
        environment: b.environment(),
        size: DeploymentSize::Medium,
        services,
        metrics: Metrics {
            cpu_percent: 1.0,
            memory_percent: 1.0,
            disk_percent: 1.0,
            load_per_core: 0.1,
            network_latency_ms: None,
        },
        limits: WitResourceLimits {
            cpu_limit: 0.7,
            memory_limit: 0.7,
            concurrency: 4,
        },
        max_time_minutes: None,
        dry_run: true,
        config: "{}".into(),
    }
}

fn step(b: &mut Bytes, ctx: &DeploymentContext) -> Step {
    let s = &ctx.services[usize::from(b.u8()) % ctx.services.len()];
    let service = if b.u8() == 255 {
        b.string()
    } else {
        s.name.clone()
    };
    let host = match b.u8() % 4 {
        0 => None,
        1 => Some(b.string()),
        _ => s
            .hosts
            .get(usize::from(b.u8()) % s.hosts.len().max(1))
            .cloned(),
    };
    Step { service, host }
}

fn rollout(b: &mut Bytes, ctx: &DeploymentContext) -> Rollout {
    let waves = (0..b.count())
        .map(|_| Wave {
            steps: (0..b.count()).map(|_| step(b, ctx)).collect(),
            pause_after_s: b.u32(),
        })
        .collect();
    Rollout {
        waves,
        concurrency: b.u32() % 4,
        validation: ValidationPolicy {
            health_checks: b.u8() & 1 == 0,
            samples: b.u32(),
            interval_ms: b.u32(),
            soak_s: b.u32(),
        },
        failure: FailurePolicy {
            max_failures: b.u32(),
            rollback_scope: match b.u8() % 3 {
                0 => RollbackScope::None,
                1 => RollbackScope::Failed,
                _ => RollbackScope::All,
            },
        },
        notes: (0..b.count()).map(|_| b.string()).collect(),
    }
}

fn text_bytes<'a>(texts: impl Iterator<Item = &'a str>) -> usize {
    texts.map(str::len).sum()
}

/// Every string a renderer might print, made safe, holds nothing a terminal
/// would act on.
fn assert_terminal_safe(text: &str) {
    let safe = adeploy::terminal::safe(text);
    assert!(
        !safe.chars().any(|c| c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
        "unsafe after terminal::safe: {safe:?}"
    );
}

fn check_rollout(b: &mut Bytes) {
    let ctx = context(b);
    let r = rollout(b, &ctx);
    for n in &r.notes {
        assert_terminal_safe(n);
    }
    if validate::rollout(&ctx, &r).is_err() {
        return;
    }
    assert!(r.notes.len() <= MAX_NOTES);
    assert!(text_bytes(r.notes.iter().map(String::as_str)) <= MAX_TEXT_BYTES);
    assert!(r.concurrency > 0, "accepted concurrency 0");
    // Every step of the deployment exactly once, nothing else.
    let mut want: HashSet<(String, Option<String>)> = HashSet::new();
    for s in &ctx.services {
        if s.hosts.is_empty() {
            want.insert((s.name.clone(), None));
        } else {
            for h in &s.hosts {
                want.insert((s.name.clone(), Some(h.clone())));
            }
        }
    }
    let mut seen = HashSet::new();
    let mut first_wave: HashMap<&str, usize> = HashMap::new();
    let mut last_wave: HashMap<&str, usize> = HashMap::new();
    for (i, w) in r.waves.iter().enumerate() {
        for s in &w.steps {
            let key = (s.service.clone(), s.host.clone());
            assert!(want.contains(&key), "accepted an unknown step {key:?}");
            assert!(seen.insert(key.clone()), "accepted a repeated step {key:?}");
            first_wave.entry(&s.service).or_insert(i);
            last_wave.insert(&s.service, i);
        }
    }
    assert_eq!(seen, want, "accepted a plan that misses steps");
    for s in &ctx.services {
        for dep in &s.depends_on {
            if let (Some(mine), Some(theirs)) =
                (first_wave.get(s.name.as_str()), last_wave.get(dep.as_str()))
            {
                assert!(
                    theirs <= mine,
                    "accepted {} in wave {mine} before its dependency {dep} (wave {theirs})",
                    s.name
                );
            }
        }
    }
}

fn check_detection(b: &mut Bytes) {
    let environment = (b.u8() & 1 == 0).then(|| b.environment());
    let mut d = Detection {
        environment,
        confidence: b.f64(),
        evidence: (0..b.count())
            .map(|_| Evidence {
                method: match b.u8() % 7 {
                    0 => "env-var".into(),
                    1 => "hostname".into(),
                    2 => "network".into(),
                    3 => "filesystem".into(),
                    4 => "process".into(),
                    _ => b.string(),
                },
                environment: b.environment(),
                weight: b.f64(),
                detail: b.string(),
            })
            .collect(),
        notes: (0..b.count()).map(|_| b.string()).collect(),
    };
    if validate::detection(&mut d).is_err() {
        return;
    }
    assert!(d.evidence.len() <= MAX_EVIDENCE);
    assert!(d.notes.len() <= MAX_NOTES);
    assert!(d.confidence.is_finite() && (0.0..=1.0).contains(&d.confidence));
    assert!(
        text_bytes(
            d.evidence
                .iter()
                .flat_map(|e| [e.method.as_str(), e.detail.as_str()])
                .chain(d.notes.iter().map(String::as_str))
        ) <= MAX_TEXT_BYTES
    );
    for e in &d.evidence {
        assert!(e.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&e.weight));
        assert_terminal_safe(&e.detail);
    }
    // The host's normalisation under arbitrary grants and use.
    let grants = Grants {
        env: if b.u8() & 1 == 0 { vec!["X".into()] } else { vec![] },
        paths: if b.u8() & 1 == 0 { vec!["/".into()] } else { vec![] },
        network: if b.u8() & 1 == 0 { vec!["*:*".into()] } else { vec![] },
        hostname: b.u8() & 1 == 0,
        processes: b.u8() & 1 == 0,
    };
    let used = Used {
        env: b.u8() & 1 == 0,
        hostname: b.u8() & 1 == 0,
        paths: b.u8() & 1 == 0,
        network: b.u8() & 1 == 0,
        processes: b.u8() & 1 == 0,
    };
    let config = config();
    let rules = &config.environment_detection;
    let w = &rules.weights;
    let strongest = [w.env_var, w.hostname, w.network, w.filesystem, w.process]
        .into_iter()
        .fold(0.0_f64, f64::max);
    let mut records: Vec<EvidenceRecord> = d
        .evidence
        .iter()
        .map(|e| EvidenceRecord {
            detector: "fuzz".into(),
            method: e.method.clone(),
            environment: CfgEnvironment::from(e.environment),
            weight: e.weight,
            detail: e.detail.clone(),
            claimed_weight: None,
            ignored: None,
        })
        .collect();
    normalise(&mut records, &grants, &used, rules);
    for r in &records {
        assert!(r.weight.is_finite() && r.weight >= 0.0 && r.weight <= strongest);
        if r.ignored.is_some() {
            assert_eq!(r.weight, 0.0);
        }
    }
}

fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| Config::embedded().expect("the embedded config loads"))
}

fn check_hook_report(b: &mut Bytes) {
    let mut r = HookReport {
        message: b.string(),
        details: (0..b.count())
            .map(|_| Detail {
                key: b.string(),
                value: b.string(),
            })
            .collect(),
    };
    if validate::hook_report(&mut r).is_err() {
        return;
    }
    assert!(r.details.len() <= MAX_DETAILS);
    assert!(
        text_bytes(
            std::iter::once(r.message.as_str())
                .chain(r.details.iter().flat_map(|d| [d.key.as_str(), d.value.as_str()]))
        ) <= MAX_TEXT_BYTES
    );
    assert_terminal_safe(&r.message);
}

fn check_decision(b: &mut Bytes) {
    let reason = b.string();
    let mut d = match b.u8() % 4 {
        0 => Decision::Continue,
        1 => Decision::Pause(b.u32()),
        2 => Decision::Abort(reason),
        _ => Decision::Rollback(reason),
    };
    validate::decision(&mut d);
    if let Decision::Abort(r) | Decision::Rollback(r) = &d {
        // Cut to the cap, plus the note saying how much was cut.
        assert!(r.len() <= MAX_REASON_BYTES + 64, "a reason of {} bytes", r.len());
        assert_terminal_safe(r);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    match b.u8() % 4 {
        0 => check_rollout(&mut b),
        1 => check_detection(&mut b),
        2 => check_hook_report(&mut b),
        _ => check_decision(&mut b),
    }
});
