//! Host-side bindings of the `adeploy:plugin@0.1.0` worlds.
//!
//! The detector world generates the shared `types` and `host` interfaces; the
//! strategy, hook and metric-provider worlds reuse them through `with`, so a `DeploymentContext`
//! is one Rust type whichever world it is passed to.

#![allow(missing_docs, missing_debug_implementations)]

pub mod detector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adeploy:plugin/detector-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub mod strategy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adeploy:plugin/strategy-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "adeploy:plugin/types": crate::plugin::bindings::detector::adeploy::plugin::types,
            "adeploy:plugin/host": crate::plugin::bindings::detector::adeploy::plugin::host,
        },
    });
}

pub mod hook {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adeploy:plugin/hook-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "adeploy:plugin/types": crate::plugin::bindings::detector::adeploy::plugin::types,
            "adeploy:plugin/host": crate::plugin::bindings::detector::adeploy::plugin::host,
        },
    });
}

pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adeploy:plugin/metric-provider-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "adeploy:plugin/types": crate::plugin::bindings::detector::adeploy::plugin::types,
            "adeploy:plugin/host": crate::plugin::bindings::detector::adeploy::plugin::host,
        },
    });
}

pub use detector::adeploy::plugin::{host, types};
pub use detector::exports::adeploy::plugin::detector as detector_api;
pub use hook::exports::adeploy::plugin::hook as hook_api;
pub use provider::exports::adeploy::plugin::metric_provider as provider_api;
pub use strategy::exports::adeploy::plugin::strategy as strategy_api;
