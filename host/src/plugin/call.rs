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

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::error::error_line;
use super::sandbox::{PluginState, Used};
use super::scope::{Allowance, Binding, DeploymentScope, OutputGate};
use super::{Plugin, PluginError, PluginEvent, PluginInfo, PluginKind, bindings};

/// The value a plugin call returned, with what happened during it.
#[derive(Debug, Clone)]
pub struct Called<T> {
    pub value: T,
    /// Logs and denials, in order.
    pub events: Vec<PluginEvent>,
    /// Events beyond the per-call limit, counted only.
    pub dropped_events: usize,
    pub elapsed: Duration,
    /// The granted capabilities the call used successfully.
    pub used: Used,
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

/// How much host memory one call's values may take: the most the host
/// copies out of the plugin in one lift (an export's answer, or the
/// arguments of one host import). Enforced by wasmtime while it lifts
/// ("hostcall fuel": every list costs its length times the host size of an
/// element, every string its bytes), so a 128 MiB guest cannot make the host
/// allocate millions of empty strings, or the same string a million times.
#[derive(Debug, Clone, Copy)]
pub(super) struct LiftLimit(pub usize);

impl LiftLimit {
    /// Enough for any answer within the text and entry caps of
    /// `validate.rs`, and for a host import's arguments.
    pub const BASE: LiftLimit = LiftLimit(1 << 20);

    /// The base plus `n` items of `each` bytes (a plan's steps, a query's
    /// samples).
    pub fn with(n: usize, each: usize) -> LiftLimit {
        LiftLimit(Self::BASE.0.saturating_add(n.saturating_mul(each)))
    }
}

/// The most time `describe` may take while a plugin is loaded, whatever the
/// plugin's own deadline: loading must stay bounded. The plugin's own
/// deadline applies below it (2 s by default), so a looping `describe` is
/// stopped at that; an operator who gives a JavaScript or Python component
/// a longer deadline (their first instance starts slower, seconds on a busy
/// 2-core machine with a cold cache) gets it, up to this.
const DESCRIBE_DEADLINE: Duration = Duration::from_secs(15);

impl Plugin {
    /// Runs `body` in a fresh store under the plugin's memory cap, its
    /// deadline (cut to what the current [`DeploymentScope`] allows), and the
    /// lift limit, and classifies a failure as a [`PluginError`] naming the
    /// plugin and `function`. The call's time is charged to the scope.
    pub(super) async fn call<T>(
        &self,
        function: &'static str,
        lift: LiftLimit,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<Called<T>, PluginError> {
        let scope = DeploymentScope::current();
        let own = if function == "describe" {
            self.timeout.min(DESCRIBE_DEADLINE)
        } else {
            self.timeout
        };
        let allowance = match &scope {
            Some(s) => s.allowance(own),
            None => Allowance {
                time: own,
                binding: Binding::Own,
            },
        };
        let out_of_time = |binding: Binding| match binding {
            Binding::Own => PluginError::Deadline {
                plugin: self.name.clone(),
                function,
                deadline_ms: u64::try_from(own.as_millis()).unwrap_or(u64::MAX),
            },
            Binding::Budget => PluginError::Budget {
                plugin: self.name.clone(),
                function,
                budget_ms: scope.as_ref().map_or(0, |s| {
                    u64::try_from(s.budget().as_millis()).unwrap_or(u64::MAX)
                }),
            },
            Binding::Deadline => PluginError::DeploymentDeadline {
                plugin: self.name.clone(),
                function,
            },
        };
        if allowance.time.is_zero() {
            return Err(out_of_time(allowance.binding));
        }
        let gate = scope
            .as_ref()
            .map_or_else(|| self.sandbox.gate.clone(), |s| s.gate().clone());
        let started = Instant::now();
        let mut store = self.new_store(started + allowance.time, lift, gate);
        // The epoch callback stops a spinning guest at the wall-clock
        // deadline; the timeout also stops a guest waiting in a host import.
        let outcome = tokio::time::timeout(allowance.time, body(&mut store)).await;
        let elapsed = started.elapsed();
        if let Some(s) = &scope {
            s.charge(elapsed);
        }
        let value = match outcome {
            Err(_elapsed) => return Err(out_of_time(allowance.binding)),
            Ok(Err(e)) => {
                if store.data().deadline_hit
                    || matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                {
                    return Err(out_of_time(allowance.binding));
                }
                return Err(self.classify(function, &e, store.data(), lift));
            }
            Ok(Ok(v)) => v,
        };
        let state = store.into_data();
        Ok(Called {
            value,
            events: state.events,
            dropped_events: state.dropped_events,
            elapsed,
            used: state.used,
        })
    }

    /// [`Plugin::call`] of an export that answers `result<T, string>`: the
    /// plugin's own `Err` is a refusal (its message cut to
    /// [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES)), and `check` judges an
    /// `Ok` answer (a failed check is a malformed value).
    pub(super) async fn call_checked<T>(
        &self,
        function: &'static str,
        lift: LiftLimit,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<Result<T, String>>,
        check: impl FnOnce(&mut T) -> Result<(), String>,
    ) -> Result<Called<T>, PluginError> {
        let Called {
            value,
            events,
            dropped_events,
            elapsed,
            used,
        } = self.call(function, lift, body).await?;
        let mut value = value.map_err(|mut message| {
            super::validate::cap_reason(&mut message);
            PluginError::Refused {
                plugin: self.name.clone(),
                function,
                message,
            }
        })?;
        check(&mut value).map_err(|reason| PluginError::Malformed {
            plugin: self.name.clone(),
            function,
            reason,
        })?;
        Ok(Called {
            value,
            events,
            dropped_events,
            elapsed,
            used,
        })
    }

    /// A fresh store with the plugin's memory cap, the lift limit, and an
    /// epoch callback that ends the call at `deadline` (wall clock: the
    /// epoch ticker only says when to look, so a ticker slowed by a busy
    /// machine cannot stretch a deadline) and yields to the runtime between
    /// ticks.
    fn new_store(
        &self,
        deadline: Instant,
        lift: LiftLimit,
        gate: Arc<OutputGate>,
    ) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(self.sandbox.clone(), self.memory_bytes, gate),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(lift.0);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    fn classify(
        &self,
        function: &'static str,
        e: &wasmtime::Error,
        state: &PluginState,
        lift: LiftLimit,
    ) -> PluginError {
        let plugin = self.name.clone();
        if state.limiter.hit {
            return PluginError::MemoryCap {
                plugin,
                function,
                cap_mib: (self.memory_bytes >> 20) as u64,
            };
        }
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Exited {
                plugin,
                function,
                code: exit.0,
            };
        }
        if format!("{e:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
            return PluginError::TooLarge {
                plugin,
                function,
                limit_bytes: lift.0 as u64,
            };
        }
        // Exports whose types differ from this host's WIT (a component
        // built against another version of the contract): wasmtime checks
        // them when it binds the instance's functions, before any guest code
        // runs. A link error, not a trap (docs/WIT.md).
        if e.downcast_ref::<Trap>().is_none() && format!("{e:#}").contains(TYPE_MISMATCH) {
            return PluginError::Link {
                plugin,
                reason: format!(
                    "its exports do not have the types of adeploy:plugin's WIT ({})",
                    error_line(e)
                ),
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
            let line = crate::config::one_line(line);
            reason = format!("{reason} (plugin stderr: {line})");
        }
        PluginError::Trap {
            plugin,
            function,
            reason,
        }
    }
}

/// What wasmtime says when a lift runs out of hostcall fuel (its error type
/// is private; `hostcall_fuel_message_is_recognised` in the tests pins the
/// text).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// What wasmtime says when a component's export has other types than the
/// bindings expect (pinned by `wit_contract::wasmtime_refuses_a_component_
/// whose_enum_has_one_more_case`).
const TYPE_MISMATCH: &str = "type mismatch";
