//! Checking what plugins answer before anyone acts on it.
//!
//! Why in the host: a plugin is untrusted code, and its answers flow into the
//! execution, the decision log, the reports and the history. A plan must
//! deploy exactly the steps of the deployment; a detection must be a
//! probability with non-negative weights; and no answer may carry more text
//! than [`MAX_TEXT_BYTES`]. A failed check is a `Malformed` error naming the
//! plugin and the function.

use std::collections::HashSet;

use super::{DeploymentContext, Detection, HookReport, Rollout};
use crate::history::step_label;

/// How much text (notes, evidence, messages) one plugin call may return.
/// A plugin's memory cap already bounds what the host lifts; this keeps a
/// chatty or hostile plugin from filling the decision log, the reports and
/// the history with megabytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A rollback or abort reason longer than this is cut (with a note).
pub const MAX_REASON_BYTES: usize = 4 * 1024;

pub(super) fn text_budget<'a>(
    what: &str,
    texts: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let total: usize = texts.map(str::len).sum();
    if total > MAX_TEXT_BYTES {
        return Err(format!(
            "{what} are {total} bytes, more than the {MAX_TEXT_BYTES} a plugin may return"
        ));
    }
    Ok(())
}

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary.
pub(super) fn cap_reason(reason: &mut String) {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let cut = reason.len() - end;
        reason.truncate(end);
        reason.push_str(&format!("… ({cut} more bytes cut)"));
    }
}

pub(super) fn detection(d: &Detection) -> Result<(), String> {
    text_budget(
        "evidence details and notes",
        d.evidence
            .iter()
            .flat_map(|e| [e.method.as_str(), e.detail.as_str()])
            .chain(d.notes.iter().map(String::as_str)),
    )?;
    if !(0.0..=1.0).contains(&d.confidence) {
        return Err(format!("confidence {} is outside 0..1", d.confidence));
    }
    if let Some(e) = d
        .evidence
        .iter()
        .find(|e| !e.weight.is_finite() || e.weight < 0.0)
    {
        return Err(format!("evidence {:?} has weight {}", e.detail, e.weight));
    }
    Ok(())
}

/// A rollout must deploy every step of the context exactly once, name only
/// known services and hosts, and run at least one step at a time.
pub(super) fn rollout(ctx: &DeploymentContext, r: &Rollout) -> Result<(), String> {
    text_budget("the plan's notes", r.notes.iter().map(String::as_str))?;
    if r.concurrency == 0 {
        return Err("concurrency is 0".to_string());
    }
    if r.validation.health_checks && r.validation.samples == 0 {
        return Err("health checks with 0 samples".to_string());
    }
    let mut expected: HashSet<(String, Option<String>)> = HashSet::new();
    for s in &ctx.services {
        if s.hosts.is_empty() {
            expected.insert((s.name.clone(), None));
        } else {
            for h in &s.hosts {
                expected.insert((s.name.clone(), Some(h.clone())));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, wave) in r.waves.iter().enumerate() {
        if wave.steps.is_empty() {
            return Err(format!("wave {} is empty", i + 1));
        }
        for step in &wave.steps {
            let key = (step.service.clone(), step.host.clone());
            let label = step_label(&step.service, step.host.as_deref());
            if !expected.contains(&key) {
                return Err(format!(
                    "wave {} has step {label:?}, which is not part of this deployment",
                    i + 1
                ));
            }
            if !seen.insert(key) {
                return Err(format!("step {label:?} appears twice"));
            }
        }
    }
    if let Some((name, host)) = expected.iter().find(|k| !seen.contains(*k)) {
        let label = step_label(name, host.as_deref());
        return Err(format!("the plan leaves out step {label:?}"));
    }
    Ok(())
}

/// A hook's report: its message and details within the text budget.
pub(super) fn hook_report(r: &HookReport) -> Result<(), String> {
    text_budget(
        "the report's message and details",
        std::iter::once(r.message.as_str()).chain(
            r.details
                .iter()
                .flat_map(|d| [d.key.as_str(), d.value.as_str()]),
        ),
    )
}
