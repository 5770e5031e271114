//! Hostile plugin `trap-detector`: a detector whose `detect` panics.

use adeploy_sdk::detector::{Detection, DetectionRules, Detector};
use adeploy_sdk::types::PluginInfo;

/// The plugin; see the crate docs.
#[derive(Debug)]
pub struct TrapDetector;

impl Detector for TrapDetector {
    fn describe() -> PluginInfo {
        adeploy_sdk::info(
            "trap-detector",
            "0.1.0",
            "hostile test plugin: detect panics",
        )
    }

    #[allow(clippy::panic, reason = "panicking is this plugin's purpose")]
    fn detect(_rules: DetectionRules, _config: String) -> Result<Detection, String> {
        panic!("hostile detector")
    }
}

adeploy_sdk::export_detector!(TrapDetector);
