//! Hooks: the [`Hook`] trait and [`export_hook!`](crate::export_hook).

use crate::types::PluginInfo;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "adeploy:plugin/hook-plugin",
        pub_export_macro: true,
        default_bindings_module: "adeploy_sdk::hook::bindings",
        export_macro_name: "__export_hook_world",
        with: { "adeploy:plugin/types@0.1.0": crate::types, "adeploy:plugin/host@0.1.0": crate::host },
    });
}

pub use bindings::exports::adeploy::plugin::hook::{HookContext, HookReport, Phase};

/// A deployment hook. Implement it and call [`export_hook!`](crate::export_hook).
pub trait Hook {
    /// Name, version and one-line description.
    fn describe() -> PluginInfo;
    /// Runs at `phase`. What an `Err` means depends on the phase.
    fn run(phase: Phase, ctx: HookContext) -> Result<HookReport, String>;
}

/// Exports a type implementing [`Hook`] as the component's `hook` interface.
#[macro_export]
macro_rules! export_hook {
    ($ty:ty) => {
        // Native builds (tests, docs) cannot link component export names
        // (rust-lang/rust#141310); the export exists only in the component.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[doc(hidden)]
            struct __AdeployHookExport;

            impl $crate::hook::bindings::exports::adeploy::plugin::hook::Guest for __AdeployHookExport {
                fn describe() -> $crate::types::PluginInfo {
                    <$ty as $crate::hook::Hook>::describe()
                }
                fn run(
                    phase: $crate::hook::Phase,
                    ctx: $crate::hook::HookContext,
                ) -> ::core::result::Result<$crate::hook::HookReport, ::std::string::String> {
                    <$ty as $crate::hook::Hook>::run(phase, ctx)
                }
            }

            $crate::hook::bindings::__export_hook_world!(__AdeployHookExport with_types_in $crate::hook::bindings);
        };
    };
}

impl Phase {
    /// The kebab-case name used in configs and logs, e.g. `post-deployment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreDeployment => "pre-deployment",
            Phase::PostDeployment => "post-deployment",
            Phase::PreService => "pre-service",
            Phase::PostService => "post-service",
            Phase::OnFailure => "on-failure",
            Phase::OnRollback => "on-rollback",
        }
    }
}
