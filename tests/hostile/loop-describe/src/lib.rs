//! Hostile plugin `loop-describe`: a strategy whose `describe` (the first
//! call the host makes when it loads a plugin) never returns.

use adeploy_sdk::strategy::{Rollout, Strategy};
use adeploy_sdk::types::{DeploymentContext, PluginInfo};

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct LoopDescribe;

impl Strategy for LoopDescribe {
    fn describe() -> PluginInfo {
        loop {
            std::hint::spin_loop();
        }
    }

    fn plan(_ctx: DeploymentContext) -> Result<Rollout, String> {
        Err("never loaded".to_string())
    }
}

adeploy_sdk::export_strategy!(LoopDescribe);
