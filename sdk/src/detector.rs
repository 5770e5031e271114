//! Detectors: the [`Detector`] trait, [`export_detector!`](crate::export_detector),
//! and [`Tally`], which weighs evidence into an environment and a confidence.

use crate::types::{Environment, PluginInfo};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "adeploy:plugin/detector-plugin",
        pub_export_macro: true,
        default_bindings_module: "adeploy_sdk::detector::bindings",
        export_macro_name: "__export_detector_world",
        with: { "adeploy:plugin/types@0.1.0": crate::types, "adeploy:plugin/host@0.1.0": crate::host },
    });
}

pub use bindings::exports::adeploy::plugin::detector::{
    Detection, DetectionRules, Evidence, Marker, MethodWeights, PatternSet,
};

/// An environment detector. Implement it and call [`export_detector!`](crate::export_detector).
pub trait Detector {
    /// Name, version and one-line description.
    fn describe() -> PluginInfo;
    /// Examines the machine under the operator's rules; `config` is this
    /// plugin's own settings as JSON.
    fn detect(rules: DetectionRules, config: String) -> Result<Detection, String>;
}

/// Exports a type implementing [`Detector`] as the component's `detector` interface.
#[macro_export]
macro_rules! export_detector {
    ($ty:ty) => {
        // Native builds (tests, docs) cannot link component export names
        // (rust-lang/rust#141310); the export exists only in the component.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[doc(hidden)]
            struct __AdeployDetectorExport;

            impl $crate::detector::bindings::exports::adeploy::plugin::detector::Guest
                for __AdeployDetectorExport
            {
                fn describe() -> $crate::types::PluginInfo {
                    <$ty as $crate::detector::Detector>::describe()
                }
                fn detect(
                    rules: $crate::detector::DetectionRules,
                    config: ::std::string::String,
                ) -> ::core::result::Result<$crate::detector::Detection, ::std::string::String> {
                    <$ty as $crate::detector::Detector>::detect(rules, config)
                }
            }

            $crate::detector::bindings::__export_detector_world!(__AdeployDetectorExport with_types_in $crate::detector::bindings);
        };
    };
}

/// Collects evidence and weighs it: the environment with the most weight wins,
/// its confidence is its share of all the weight.
#[derive(Debug, Default)]
pub struct Tally {
    evidence: Vec<Evidence>,
    notes: Vec<String>,
}

impl Tally {
    /// Records one observation.
    pub fn add(&mut self, method: &str, environment: Environment, weight: f64, detail: String) {
        self.evidence.push(Evidence {
            method: method.to_string(),
            environment,
            weight,
            detail,
        });
    }

    /// Records something the operator should know (e.g. a denied probe).
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Weighs the evidence. Ties go to the more careful environment.
    pub fn finish(self) -> Detection {
        const ALL: [Environment; 4] = [
            Environment::Local,
            Environment::Development,
            Environment::Staging,
            Environment::Production,
        ];
        let total: f64 = self.evidence.iter().map(|e| e.weight.max(0.0)).sum();
        let mut best: Option<(Environment, f64)> = None;
        for env in ALL {
            let w: f64 = self
                .evidence
                .iter()
                .filter(|e| e.environment == env)
                .map(|e| e.weight.max(0.0))
                .sum();
            if w > 0.0 && best.is_none_or(|(_, bw)| w >= bw) {
                best = Some((env, w));
            }
        }
        match best {
            Some((env, w)) if total > 0.0 => Detection {
                environment: Some(env),
                confidence: (w / total).clamp(0.0, 1.0),
                evidence: self.evidence,
                notes: self.notes,
            },
            _ => Detection {
                environment: None,
                confidence: 0.0,
                evidence: self.evidence,
                notes: self.notes,
            },
        }
    }
}
