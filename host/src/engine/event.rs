//! [`DeploymentEvent`]: what a deployment publishes while it runs. The CLI
//! renders this stream; an embedding tool receives the same one.
//!
//! Waves are numbered from 1 here, as in the decision log, the reports and
//! `ADEPLOY_WAVE`. (Only the WIT contract's `progress.wave` counts from 0.)

use serde::{Deserialize, Serialize};

use crate::plugin::Phase;
use crate::report::DecisionEntry;

/// Something that happened, for live progress. The final outcome is the
/// return value of [`Engine::deploy`](super::Engine::deploy), not an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentEvent {
    /// A decision, as it is recorded in the decision log.
    Decision(DecisionEntry),
    /// The strategy's plan (`service` or `service@host` per step).
    Planned {
        strategy: String,
        waves: Vec<Vec<String>>,
        concurrency: u32,
    },
    WaveStarted {
        /// Numbered from 1.
        wave: u32,
        waves: u32,
    },
    StepStarted {
        service: String,
        /// The inventory host of a fleet step.
        host: Option<String>,
        /// Numbered from 1.
        wave: u32,
    },
    StepFinished {
        service: String,
        host: Option<String>,
        ok: bool,
        message: String,
        seconds: f64,
    },
    Paused {
        seconds: u32,
        reason: String,
    },
    RollbackStarted {
        reason: String,
        /// `service` or `service@host` per step, in rollback order.
        services: Vec<String>,
    },
    StepRolledBack {
        service: String,
        host: Option<String>,
        ok: bool,
        message: String,
    },
    /// A hook ran: a config script (its command is the name) or a plugin.
    Hook {
        phase: Phase,
        name: String,
        ok: bool,
        message: String,
    },
    /// Repeated failures (`alerts.consecutive_failures`).
    Alert {
        message: String,
    },
    /// `experimental.enable_predictive_scaling` changed the concurrency.
    Scaled {
        from: u32,
        to: u32,
        reason: String,
    },
    /// Something the operator should fix that does not stop the deployment
    /// (a state directory other users can enter). Published once per
    /// process for each cause.
    Warning {
        message: String,
    },
    /// Another run deploys some of the same services to the same
    /// environment: this one waits for the deployment lock (sent when the
    /// wait starts and whenever the holder changes; its `Display` is the
    /// one-line message: "waiting for the lock of web held by deployment …
    /// of alice on runner-3 (pid …) since …").
    WaitingForLock(crate::history::LockWait),
    /// The shared history's database could not be reached: this
    /// deployment's records wait in the local journal (in the state
    /// directory) until the next run reaches the database, or `adeploy
    /// state sync`.
    HistoryJournaled {
        /// The history, password redacted.
        url: String,
        /// Writes waiting in the journal.
        pending: usize,
        journal: std::path::PathBuf,
    },
}
