//! Hostile plugin `trap-describe`: a strategy that panics already in
//! `describe`, the first call the host makes when it loads a plugin.

use adeploy_sdk::strategy::{Rollout, Strategy};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct TrapDescribe;

impl Strategy for TrapDescribe {
    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn describe() -> PluginInfo {
        panic!("hostile describe")
    }

    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn plan(_ctx: DeploymentContext) -> Result<Rollout, String> {
        panic!("hostile plan")
    }
}

adeploy_sdk::export_strategy!(TrapDescribe);
