//! The one way into a plugin: [`Plugin::call`].
//!
//! Every export goes through it: a fresh store from the typed
//! `InstancePre` (a trapped instance can never be entered again), the
//! plugin's memory cap (store limiter), an epoch deadline and a
//! `tokio::time::timeout` of the same length (which also bounds time spent
//! in host imports), and one classification of what went wrong (memory cap,
//! deadline, trap with the guest's last stderr line). An export method is a
//! few lines over it: instantiate, call, check the answer (`validate.rs`).
//!
//! Adding a plugin kind: generate its world in `bindings.rs`, add a
//! [`TypedPre`] variant (three match arms below) and a [`PluginKind`]
//! variant, and write its export method in `exports.rs`.

use std::time::{Duration, Instant};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::error::error_line;
use super::sandbox::PluginState;
use super::{EPOCH_TICK, Plugin, PluginError, PluginEvent, PluginInfo, PluginKind, bindings};

/// The value a plugin call returned, with what happened during it.
#[derive(Debug, Clone)]
pub struct Called<T> {
    pub value: T,
    /// Logs and denials, in order.
    pub events: Vec<PluginEvent>,
    /// Events beyond the per-call limit, counted only.
    pub dropped_events: usize,
    pub elapsed: Duration,
}

/// The instance-pre of a plugin, typed by its world: the only place that
/// lists the kinds.
pub(super) enum TypedPre {
    Detector(bindings::detector::DetectorPluginPre<PluginState>),
    Strategy(bindings::strategy::StrategyPluginPre<PluginState>),
    Hook(bindings::hook::HookPluginPre<PluginState>),
    Provider(bindings::provider::MetricProviderPluginPre<PluginState>),
}

impl TypedPre {
    pub(super) fn new(
        kind: PluginKind,
        pre: InstancePre<PluginState>,
    ) -> wasmtime::Result<TypedPre> {
        Ok(match kind {
            PluginKind::Detector => {
                TypedPre::Detector(bindings::detector::DetectorPluginPre::new(pre)?)
            }
            PluginKind::Strategy => {
                TypedPre::Strategy(bindings::strategy::StrategyPluginPre::new(pre)?)
            }
            PluginKind::Hook => TypedPre::Hook(bindings::hook::HookPluginPre::new(pre)?),
            PluginKind::MetricProvider => {
                TypedPre::Provider(bindings::provider::MetricProviderPluginPre::new(pre)?)
            }
        })
    }

    /// Instantiates without calling anything.
    pub(super) async fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<()> {
        match self {
            TypedPre::Detector(p) => p.instantiate_async(store).await.map(drop),
            TypedPre::Strategy(p) => p.instantiate_async(store).await.map(drop),
            TypedPre::Hook(p) => p.instantiate_async(store).await.map(drop),
            TypedPre::Provider(p) => p.instantiate_async(store).await.map(drop),
        }
    }

    /// Instantiates and calls `describe`, which every world exports.
    pub(super) async fn describe(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<PluginInfo> {
        match self {
            TypedPre::Detector(p) => {
                let i = p.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_detector().call_describe(store).await
            }
            TypedPre::Strategy(p) => {
                let i = p.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_strategy().call_describe(store).await
            }
            TypedPre::Hook(p) => {
                let i = p.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_hook().call_describe(store).await
            }
            TypedPre::Provider(p) => {
                let i = p.instantiate_async(&mut *store).await?;
                i.adeploy_plugin_metric_provider()
                    .call_describe(store)
                    .await
            }
        }
    }
}

impl Plugin {
    /// Runs `body` in a fresh store under the plugin's memory cap and
    /// deadline, and classifies a failure as a [`PluginError`] naming the
    /// plugin and `function`.
    pub(super) async fn call<T>(
        &self,
        function: &'static str,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<Called<T>, PluginError> {
        let started = Instant::now();
        let mut store = self.new_store();
        let outcome = tokio::time::timeout(self.timeout, body(&mut store)).await;
        let deadline_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let value = match outcome {
            Err(_elapsed) => {
                return Err(PluginError::Deadline {
                    plugin: self.name.clone(),
                    function,
                    deadline_ms,
                });
            }
            Ok(Err(e)) => return Err(self.classify(function, &e, store.data(), deadline_ms)),
            Ok(Ok(v)) => v,
        };
        let state = store.into_data();
        Ok(Called {
            value,
            events: state.events,
            dropped_events: state.dropped_events,
            elapsed: started.elapsed(),
        })
    }

    /// [`Plugin::call`] of an export that answers `result<T, string>`: the
    /// plugin's own `Err` is a refusal, and `check` judges an `Ok` answer (a
    /// failed check is a malformed value).
    pub(super) async fn call_checked<T>(
        &self,
        function: &'static str,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<Result<T, String>>,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Result<Called<T>, PluginError> {
        let Called {
            value,
            events,
            dropped_events,
            elapsed,
        } = self.call(function, body).await?;
        let value = value.map_err(|message| PluginError::Refused {
            plugin: self.name.clone(),
            function,
            message,
        })?;
        check(&value).map_err(|reason| PluginError::Malformed {
            plugin: self.name.clone(),
            function,
            reason,
        })?;
        Ok(Called {
            value,
            events,
            dropped_events,
            elapsed,
        })
    }

    /// A fresh store with the plugin's memory cap and epoch deadline.
    fn new_store(&self) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(self.sandbox.clone(), self.memory_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        let ticks = (self.timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        store
    }

    fn classify(
        &self,
        function: &'static str,
        e: &wasmtime::Error,
        state: &PluginState,
        deadline_ms: u64,
    ) -> PluginError {
        let plugin = self.name.clone();
        if state.limiter.hit {
            return PluginError::MemoryCap {
                plugin,
                function,
                cap_mib: (self.memory_bytes >> 20) as u64,
            };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return PluginError::Deadline {
                plugin,
                function,
                deadline_ms,
            };
        }
        let mut reason = e
            .downcast_ref::<Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| error_line(e));
        // A Rust guest prints its panic message to stderr before trapping.
        let stderr = state.stderr.contents();
        let text = String::from_utf8_lossy(&stderr);
        if let Some(line) = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("note: "))
        {
            reason = format!("{reason} (plugin stderr: {line})");
        }
        PluginError::Trap {
            plugin,
            function,
            reason,
        }
    }
}
