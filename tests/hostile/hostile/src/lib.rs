//! Hostile plugin `hostile`: a strategy that misbehaves in the way its plugin
//! config asks (`{"mode": "...", "path": "..."}`), so one component covers
//! several attacks:
//!
//! - `recurse`: `plan` recurses without bound (the wasm stack overflows);
//! - `bloat`: `plan` returns a valid rollout carrying megabytes of notes;
//! - `trap-progress`: `plan` is fine, `on-progress` panics on every event;
//! - `empty-notes`: 3 million empty plan notes (counts, not bytes);
//! - `empty-waves`: 2 million empty waves;
//! - `many-steps`: the same step 1 million times in one wave;
//! - `log-flood`: `plan` calls `log` 200,000 times, then plans normally;
//! - `deny-flood`: `plan` asks for a secret variable 200,000 times (each a
//!   denial), then plans normally;
//! - `exit`: `plan` calls `exit(0)`;
//! - `read`: `plan` reads `path` and refuses with what happened
//!   (`read: ok: <text>` or `read: err: <error>`), so a test sees the
//!   host's answer in the refusal;
//! - `sleep`: `plan` sleeps 30 s through WASI's monotonic clock;
//! - `dependent-first`: `plan` puts every service in its own wave in the
//!   *reverse* dependency order (a dependent before its dependency);
//! - `pause-max`: `on-progress` answers `Pause(u32::MAX)`; the plan's wave
//!   pause is `u32::MAX` as well;
//! - `slow-progress`: `on-progress` spins until its deadline;
//! - `escape`: plan notes and a rollback reason carrying terminal escapes
//!   (CSI, OSC, C1, bidi overrides);
//! - `refuse-escape`: `plan` refuses with a message carrying them;
//! - `wasi-probe`: `plan` tries what WASI offers through Rust's std (files,
//!   sockets, environment, arguments, clocks, random) and refuses with one
//!   `key=outcome` per line, so a test can check what the linker gives.

use adeploy_sdk::host::{self, HostError, LogLevel};
use adeploy_sdk::strategy::{self, Decision, Progress, Rollout, Step, Strategy, Wave};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct Hostile;

fn setting(ctx: &DeploymentContext, key: &str) -> String {
    adeploy_sdk::parse_config(&ctx.config)
        .ok()
        .and_then(|v| v.get(key).and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_default()
}

fn mode(ctx: &DeploymentContext) -> String {
    setting(ctx, "mode")
}

/// What a terminal must never receive raw: clear screen, a window title
/// (OSC), a C1 CSI, a bidi override and a bell.
pub const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}evil\u{7}";

/// Recursion the optimiser cannot turn into a loop: every frame keeps a
/// buffer alive across the call.
#[inline(never)]
fn deep(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if n == 0 {
        0
    } else {
        buf[(n % 64) as usize].wrapping_add(deep(std::hint::black_box(n + 1)))
    }
}

fn error_text(e: &HostError) -> String {
    match e {
        HostError::Denied(m) => format!("Denied({m:?})"),
        HostError::NotFound(m) => format!("NotFound({m:?})"),
        HostError::Timeout(m) => format!("Timeout({m:?})"),
        HostError::Invalid(m) => format!("Invalid({m:?})"),
        HostError::Failed(m) => format!("Failed({m:?})"),
    }
}

/// See `wasi-probe` in the crate docs.
fn wasi_probe(port: &str) -> String {
    use std::hash::BuildHasher;
    let ok_or = |r: Result<String, String>| r.unwrap_or_else(|e| format!("err: {e}"));
    let mut lines = vec![
        format!(
            "fs-read={}",
            ok_or(
                std::fs::read("/etc/passwd")
                    .map(|b| format!("ok: {} bytes", b.len()))
                    .map_err(|e| e.kind().to_string())
            )
        ),
        format!(
            "fs-list={}",
            ok_or(
                std::fs::read_dir("/")
                    .map(|d| format!("ok: {} entries", d.count()))
                    .map_err(|e| e.kind().to_string())
            )
        ),
        format!(
            "fs-write={}",
            ok_or(
                std::fs::write("/tmp/hostile-was-here", "x")
                    .map(|()| "ok".to_string())
                    .map_err(|e| e.kind().to_string())
            )
        ),
        format!(
            "tcp={}",
            ok_or(
                std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                    .map(|_| "ok".to_string())
                    .map_err(|e| e.kind().to_string())
            )
        ),
        format!("env={}", std::env::vars().count()),
        format!("args={}", std::env::args().count()),
    ];
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() > 1_600_000_000)
        .unwrap_or(false);
    lines.push(format!("wall-clock={wall}"));
    let t = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    lines.push(format!("sleep={}", t.elapsed().as_millis() >= 20));
    let a = std::collections::hash_map::RandomState::new().hash_one(1u8);
    let b = std::collections::hash_map::RandomState::new().hash_one(1u8);
    lines.push(format!("random-seeds-differ={}", a != b));
    lines.join("\n")
}

impl Strategy for Hostile {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "hostile",
            "0.1.0",
            "hostile test plugin: recursion, huge values, floods, traps",
        )
    }

    fn plan(ctx: DeploymentContext) -> Result<Rollout, String> {
        let mut rollout = Rollout {
            waves: strategy::single_wave(&ctx.services)?,
            concurrency: 1,
            validation: strategy::ValidationPolicy {
                health_checks: false,
                samples: 1,
                interval_ms: 0,
                soak_s: 0,
            },
            failure: strategy::FailurePolicy {
                max_failures: 0,
                rollback_scope: strategy::RollbackScope::All,
            },
            notes: Vec::new(),
        };
        match mode(&ctx).as_str() {
            "recurse" => {
                let d = deep(1);
                rollout.notes.push(d.to_string());
            }
            "bloat" => {
                // 8 MiB of notes in 1 KiB pieces.
                rollout.notes = (0..8192).map(|i| format!("{i:01024}")).collect();
            }
            "empty-notes" => rollout.notes = vec![String::new(); 3_000_000],
            "empty-waves" => {
                rollout.waves = vec![
                    Wave {
                        steps: Vec::new(),
                        pause_after_s: 0,
                    };
                    2_000_000
                ];
            }
            "many-steps" => {
                let step = Step {
                    service: ctx
                        .services
                        .first()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    host: None,
                };
                rollout.waves = vec![Wave {
                    steps: vec![step; 1_000_000],
                    pause_after_s: 0,
                }];
            }
            "log-flood" => {
                for i in 0..200_000u32 {
                    host::log(LogLevel::Warn, &format!("flood line {i}"));
                }
            }
            "deny-flood" => {
                for _ in 0..200_000u32 {
                    let _ = host::env_var("SECRET_TOKEN");
                }
            }
            "exit" => std::process::exit(0),
            "read" => {
                let path = setting(&ctx, "path");
                return Err(match host::read_file(&path, 4096) {
                    Ok(bytes) => format!("read: ok: {}", String::from_utf8_lossy(&bytes)),
                    Err(e) => format!("read: err: {}", error_text(&e)),
                });
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(30)),
            "dependent-first" => {
                let order = strategy::dependency_order(&ctx.services)?;
                rollout.waves = order
                    .iter()
                    .rev()
                    .map(|s| Wave {
                        steps: strategy::steps_of(s),
                        pause_after_s: 0,
                    })
                    .collect();
            }
            "pause-max" => {
                for w in &mut rollout.waves {
                    w.pause_after_s = u32::MAX;
                }
            }
            "escape" => rollout.notes.push(format!("note {ESCAPES} end")),
            "refuse-escape" => return Err(format!("no {ESCAPES} end")),
            "wasi-probe" => return Err(wasi_probe(&setting(&ctx, "port"))),
            _ => {}
        }
        Ok(rollout)
    }

    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn on_progress(ctx: DeploymentContext, _event: Progress) -> Decision {
        match mode(&ctx).as_str() {
            "trap-progress" => panic!("hostile on-progress"),
            "pause-max" => Decision::Pause(u32::MAX),
            "slow-progress" => loop {
                std::hint::spin_loop();
            },
            "escape" => Decision::Rollback(format!("reason {ESCAPES} end")),
            _ => Decision::Continue,
        }
    }
}

adeploy_sdk::export_strategy!(Hostile);
