//! What a deployment writes down as it goes: the decision log (each entry
//! also published as an event) and the audit log.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::secret::Redactor;
use crate::history::{AuditEntry, DecisionRecord, HistoryBackend, HistoryStore};
use crate::report::{Decision, DecisionEntry};

use super::event::DeploymentEvent;

/// A deployment's decision log. Every entry is also published as a
/// [`DeploymentEvent::Decision`]; secrets are redacted from both.
pub(crate) struct DecisionLog {
    entries: Vec<DecisionEntry>,
    events: Option<UnboundedSender<DeploymentEvent>>,
    redactor: Arc<Redactor>,
}

impl DecisionLog {
    pub fn new(events: Option<UnboundedSender<DeploymentEvent>>, redactor: Arc<Redactor>) -> Self {
        DecisionLog {
            entries: Vec::new(),
            events,
            redactor,
        }
    }

    /// Records `decision` now.
    pub fn record(&mut self, decision: Decision) {
        let entry = self.redactor.redact_value(&DecisionEntry::now(decision));
        tracing::debug!(
            decision = %entry.decision.decision_type(),
            details = %entry.decision.details(),
            "decision"
        );
        self.emit(DeploymentEvent::Decision(entry.clone()));
        self.entries.push(entry);
    }

    /// Publishes `event` (redacted) to the caller's channel, if any.
    pub fn emit(&self, event: DeploymentEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(self.redactor.redact_value(&event));
        }
    }

    /// A warning for the operator: a [`DeploymentEvent::Warning`] when
    /// someone listens, else a `tracing` warning (an embedding without an
    /// event channel still sees it in its logs).
    pub fn warn(&self, message: String) {
        match &self.events {
            Some(_) => self.emit(DeploymentEvent::Warning { message }),
            None => tracing::warn!("{message}"),
        }
    }

    /// Every entry so far, oldest first.
    pub fn entries(&self) -> &[DecisionEntry] {
        &self.entries
    }

    /// The entries from `from` on, in the history's form.
    pub fn records_from(&self, from: usize) -> Vec<DecisionRecord> {
        self.entries
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(DecisionEntry::to_record)
            .collect()
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }
}

/// Appends to the audit log of `history`; a failure to do so is a
/// warning, since the action itself already happened.
pub(crate) async fn audit(history: &HistoryStore, action: &str, details: serde_json::Value) {
    let entry = AuditEntry {
        timestamp: Utc::now(),
        user: crate::history::current_user(),
        action: action.to_string(),
        details,
    };
    if let Err(e) = history.append_audit(&entry).await {
        tracing::warn!("cannot write the audit log: {e}");
    }
}
