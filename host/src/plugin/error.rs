//! [`PluginError`]: every way loading or calling a plugin can fail, each
//! naming the plugin, sorted into bad input (the file or its configuration:
//! exit code 2) and runtime failures (exit code 1).

use std::path::PathBuf;

use super::{PluginKind, SUPPORTED_WIT};

/// A plugin failure. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("plugin '{plugin}': cannot read {}: {source}", path.display())]
    Read {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin '{plugin}': {} is not a WebAssembly file", path.display())]
    NotWasm { plugin: String, path: PathBuf },
    #[error(
        "plugin '{plugin}': {} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        path.display()
    )]
    CoreModule { plugin: String, path: PathBuf },
    #[error(
        "plugin '{plugin}' implements no adeploy world (expected an export adeploy:plugin/{} @{SUPPORTED_WIT}); it exports: {exports}",
        PluginKind::listed()
    )]
    UnknownWorld { plugin: String, exports: String },
    #[error(
        "plugin '{plugin}' was built against adeploy:plugin@{found}; this adeploy supports adeploy:plugin@{SUPPORTED_WIT}: rebuild it with a matching adeploy-sdk/WIT"
    )]
    IncompatibleVersion { plugin: String, found: String },
    #[error("plugin '{plugin}' does not compile: {reason}")]
    Compile { plugin: String, reason: String },
    #[error("plugin '{plugin}' cannot be linked: {reason}")]
    Link { plugin: String, reason: String },
    #[error("plugin '{plugin}': sha256 of {} is {actual}, but the config pins {expected}; refusing to load it", path.display())]
    DigestMismatch {
        plugin: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "plugin '{plugin}': bad manifest {location}: {}",
        crate::config::one_line(reason)
    )]
    Manifest {
        plugin: String,
        path: PathBuf,
        /// `path`, or `path:line:column` when the position is known.
        location: String,
        reason: String,
    },
    #[error("plugin '{plugin}' is a {actual} plugin, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("no plugin named '{plugin}' (known: {known})")]
    NotFound { plugin: String, known: String },
    #[error("plugin '{plugin}' trapped in {function}: {reason}")]
    Trap {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin '{plugin}' exceeded its {deadline_ms} ms deadline in {function}")]
    Deadline {
        plugin: String,
        function: &'static str,
        deadline_ms: u64,
    },
    #[error("plugin '{plugin}' hit its memory cap of {cap_mib} MiB in {function}")]
    MemoryCap {
        plugin: String,
        function: &'static str,
        cap_mib: u64,
    },
    #[error("plugin '{plugin}' returned a malformed value from {function}: {reason}")]
    Malformed {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin '{plugin}' refused in {function}: {message}")]
    Refused {
        plugin: String,
        function: &'static str,
        message: String,
    },
    #[error(
        "plugin '{plugin}' was stopped in {function}: the deployment's plugin time budget of {budget_ms} ms (plugin_defaults.deployment_budget_ms) is used up"
    )]
    Budget {
        plugin: String,
        function: &'static str,
        budget_ms: u64,
    },
    #[error(
        "plugin '{plugin}' was stopped in {function}: the deployment's deadline (--max-time or thresholds.max_deployment_time) was reached"
    )]
    DeploymentDeadline {
        plugin: String,
        function: &'static str,
    },
    #[error(
        "plugin '{plugin}' called exit({code}) in {function}: a plugin returns its answer, it must not end its process"
    )]
    Exited {
        plugin: String,
        function: &'static str,
        code: i32,
    },
    #[error(
        "plugin '{plugin}' passed the host more than {limit_bytes} bytes in {function} (the most the host copies out of a plugin in one call); refused"
    )]
    TooLarge {
        plugin: String,
        function: &'static str,
        limit_bytes: u64,
    },
    #[error(
        "plugin name {}: {reason}",
        crate::terminal::safe(&format!("{name:?}"))
    )]
    BadName { name: String, reason: String },
    #[error(
        "plugin '{plugin}' ({}) would replace the built-in {plugin} plugin, but plugin_defaults.allow_overrides is false",
        path.display()
    )]
    OverrideForbidden { plugin: String, path: PathBuf },
    #[error(
        "plugin '{plugin}' ({}) is a {actual} plugin, but it would replace the built-in {expected} plugin '{plugin}': an override must be of the same kind",
        path.display()
    )]
    OverrideKind {
        plugin: String,
        path: PathBuf,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("plugin host: {0}")]
    Engine(String),
}

impl PluginError {
    /// The plugin the error is about (empty for engine errors).
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Read { plugin, .. }
            | PluginError::NotWasm { plugin, .. }
            | PluginError::CoreModule { plugin, .. }
            | PluginError::UnknownWorld { plugin, .. }
            | PluginError::IncompatibleVersion { plugin, .. }
            | PluginError::Compile { plugin, .. }
            | PluginError::Link { plugin, .. }
            | PluginError::DigestMismatch { plugin, .. }
            | PluginError::Manifest { plugin, .. }
            | PluginError::WrongKind { plugin, .. }
            | PluginError::NotFound { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Deadline { plugin, .. }
            | PluginError::MemoryCap { plugin, .. }
            | PluginError::Malformed { plugin, .. }
            | PluginError::Refused { plugin, .. }
            | PluginError::Budget { plugin, .. }
            | PluginError::DeploymentDeadline { plugin, .. }
            | PluginError::Exited { plugin, .. }
            | PluginError::TooLarge { plugin, .. }
            | PluginError::OverrideForbidden { plugin, .. }
            | PluginError::OverrideKind { plugin, .. } => plugin,
            PluginError::BadName { name, .. } => name,
            PluginError::Engine(_) => "",
        }
    }

    /// The export the error happened in, for errors of a call.
    pub fn function(&self) -> Option<&'static str> {
        match self {
            PluginError::Trap { function, .. }
            | PluginError::Deadline { function, .. }
            | PluginError::MemoryCap { function, .. }
            | PluginError::Malformed { function, .. }
            | PluginError::Refused { function, .. }
            | PluginError::Budget { function, .. }
            | PluginError::DeploymentDeadline { function, .. }
            | PluginError::Exited { function, .. }
            | PluginError::TooLarge { function, .. } => Some(function),
            _ => None,
        }
    }

    /// True for errors caused by the plugin file or its configuration (bad
    /// input, exit code 2), false for failures while it runs. A plugin that
    /// fails while it is being loaded (`describe`, or instantiating it) is a
    /// bad plugin file, whatever the failure.
    pub fn is_bad_input(&self) -> bool {
        if self.function() == Some("describe") {
            return !matches!(
                self,
                PluginError::Budget { .. } | PluginError::DeploymentDeadline { .. }
            );
        }
        !matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::Deadline { .. }
                | PluginError::MemoryCap { .. }
                | PluginError::Malformed { .. }
                | PluginError::Refused { .. }
                | PluginError::Budget { .. }
                | PluginError::DeploymentDeadline { .. }
                | PluginError::Exited { .. }
                | PluginError::TooLarge { .. }
                | PluginError::Engine(_)
        )
    }
}

/// The first line of an error chain (`{e:#}`), control characters escaped:
/// a wasmtime error may carry a multi-line backtrace, a message is one line.
pub(crate) fn error_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    crate::config::one_line(text.lines().next().unwrap_or_default()).into_owned()
}
