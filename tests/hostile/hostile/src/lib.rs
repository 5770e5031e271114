//! Hostile plugin `hostile`: a strategy that misbehaves in the way its plugin
//! config asks (`{"mode": "..."}`), so one component covers several attacks:
//!
//! - `recurse`: `plan` recurses without bound (the wasm stack overflows);
//! - `bloat`: `plan` returns a valid rollout carrying megabytes of notes;
//! - `trap-progress`: `plan` is fine, `on-progress` panics on every event.

use adeploy_sdk::strategy::{self, Decision, Progress, Rollout, Strategy};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct Hostile;

fn mode(ctx: &DeploymentContext) -> String {
    adeploy_sdk::parse_config(&ctx.config)
        .ok()
        .and_then(|v| v.get("mode").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_default()
}

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

impl Strategy for Hostile {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "hostile",
            "0.1.0",
            "hostile test plugin: recursion, huge values, traps",
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
            _ => {}
        }
        Ok(rollout)
    }

    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn on_progress(ctx: DeploymentContext, _event: Progress) -> Decision {
        if mode(&ctx) == "trap-progress" {
            panic!("hostile on-progress")
        }
        Decision::Continue
    }
}

adeploy_sdk::export_strategy!(Hostile);
