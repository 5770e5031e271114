//! Hostile plugin `trap-hook`: a hook whose `run` panics at every phase.

use adeploy_sdk::hook::{Hook, HookContext, HookReport, Phase};
use adeploy_sdk::types::PluginInfo;

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct TrapHook;

impl Hook for TrapHook {
    fn describe() -> PluginInfo {
        adeploy_sdk::info("trap-hook", "0.1.0", "hostile test plugin: run panics")
    }

    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn run(phase: Phase, _ctx: HookContext) -> Result<HookReport, String> {
        panic!("hostile hook at {}", phase.as_str())
    }
}

adeploy_sdk::export_hook!(TrapHook);
