//! Checking what plugins answer before anyone acts on it.
//!
//! Why in the host: a plugin is untrusted code, and its answers flow into the
//! execution, the decision log, the reports and the history. A plan must
//! deploy exactly the steps of the deployment, dependencies first; a
//! detection must be a probability with finite, non-negative weights; and no
//! answer may carry more than [`MAX_TEXT_BYTES`] of text or more entries
//! than the caps below. A failed check is a `Malformed` error naming the
//! plugin and the function.
//!
//! Bytes and counts are bounded twice: while wasmtime lifts the answer out
//! of the guest (the call's lift limit, `call.rs`, bounds the host memory
//! any shape can take), and here (the caps bound what reaches the decision
//! log, reports and history: 64 notes, not 40,000 that fit in a megabyte).

use std::collections::{HashMap, HashSet};

use super::{Decision, DeploymentContext, Detection, HookReport, PluginInfo, Rollout};
use crate::history::step_label;

/// How much text (notes, evidence, messages) one plugin call may return.
/// This keeps a chatty or hostile plugin from filling the decision log, the
/// reports and the history with megabytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A rollback or abort reason (or a plugin's own error message) longer than
/// this is cut (with a note).
pub const MAX_REASON_BYTES: usize = 4 * 1024;

/// Notes one answer may carry (a plan's, a detection's).
pub const MAX_NOTES: usize = 64;
/// Pieces of evidence one detection may carry.
pub const MAX_EVIDENCE: usize = 64;
/// Details (key/value pairs) one hook report or query check may carry.
pub const MAX_DETAILS: usize = 64;
/// Longest name and version `describe` may give.
pub const MAX_NAME_BYTES: usize = 128;
/// The largest weight a detector may give one piece of evidence: far above
/// any operator weight (the host lowers claims to those anyway), far below
/// where a sum of 64 of them could overflow or lose every smaller weight.
pub const MAX_WEIGHT: f64 = 1e6;
/// Longest description `describe` may give.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

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

fn count(what: &str, n: usize, max: usize) -> Result<(), String> {
    if n > max {
        return Err(format!(
            "{n} {what}, more than the {max} a plugin may return"
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

/// What `describe` says: a short name and version, a description of at most
/// [`MAX_DESCRIPTION_BYTES`].
pub fn plugin_info(info: &PluginInfo) -> Result<(), String> {
    for (what, text, max) in [
        ("name", &info.name, MAX_NAME_BYTES),
        ("version", &info.version, MAX_NAME_BYTES),
        ("description", &info.description, MAX_DESCRIPTION_BYTES),
    ] {
        if text.len() > max {
            return Err(format!(
                "the {what} is {} bytes, more than the {max} describe may return",
                text.len()
            ));
        }
    }
    Ok(())
}

/// A detection: at most [`MAX_EVIDENCE`] pieces of evidence and
/// [`MAX_NOTES`] notes within the text budget, a confidence in 0..1, and
/// finite, non-negative weights up to [`MAX_WEIGHT`] (NaN, infinities and
/// overflowing weights refused).
pub fn detection(d: &mut Detection) -> Result<(), String> {
    count("pieces of evidence", d.evidence.len(), MAX_EVIDENCE)?;
    count("notes", d.notes.len(), MAX_NOTES)?;
    text_budget(
        "evidence details and notes",
        d.evidence
            .iter()
            .flat_map(|e| [e.method.as_str(), e.detail.as_str()])
            .chain(d.notes.iter().map(String::as_str)),
    )?;
    if !(d.confidence.is_finite() && (0.0..=1.0).contains(&d.confidence)) {
        return Err(format!("confidence {} is outside 0..1", d.confidence));
    }
    if let Some(e) = d
        .evidence
        .iter()
        .find(|e| !(e.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&e.weight)))
    {
        return Err(format!(
            "evidence {} has weight {:e}; weights are finite, from 0 to {MAX_WEIGHT:e}",
            crate::terminal::safe(&format!("{:?}", e.detail)),
            e.weight
        ));
    }
    Ok(())
}

/// A rollout must deploy every step of the context exactly once, name only
/// known services and hosts, deploy no service in a wave before one of its
/// dependencies (within a wave the host orders them), run at least one step
/// at a time, and carry at most [`MAX_NOTES`] notes.
pub fn rollout(ctx: &DeploymentContext, r: &Rollout) -> Result<(), String> {
    count("notes", r.notes.len(), MAX_NOTES)?;
    text_budget("the plan's notes", r.notes.iter().map(String::as_str))?;
    if r.concurrency == 0 {
        return Err("concurrency is 0".to_string());
    }
    if r.validation.health_checks && r.validation.samples == 0 {
        return Err("health checks with 0 samples".to_string());
    }
    let mut expected: HashSet<(&str, Option<&str>)> = HashSet::new();
    for s in &ctx.services {
        if s.hosts.is_empty() {
            expected.insert((s.name.as_str(), None));
        } else {
            for h in &s.hosts {
                expected.insert((s.name.as_str(), Some(h.as_str())));
            }
        }
    }
    // Counted before anything is hashed: a plan cannot be longer than the
    // deployment it plans.
    let planned: usize = r.waves.iter().map(|w| w.steps.len()).sum();
    if r.waves.len() > expected.len() || planned > expected.len() {
        return Err(format!(
            "the plan has {} waves and {planned} steps, but this deployment has {} steps",
            r.waves.len(),
            expected.len()
        ));
    }
    let mut seen = HashSet::new();
    // The wave (from 1) in which each service's last step runs.
    let mut last_wave: HashMap<&str, usize> = HashMap::new();
    for (i, wave) in r.waves.iter().enumerate() {
        if wave.steps.is_empty() {
            return Err(format!("wave {} is empty", i + 1));
        }
        for step in &wave.steps {
            let key = (step.service.as_str(), step.host.as_deref());
            let label = crate::terminal::safe(&step_label(&step.service, step.host.as_deref()))
                .into_owned();
            if !expected.contains(&key) {
                return Err(format!(
                    "wave {} has step {label:?}, which is not part of this deployment",
                    i + 1
                ));
            }
            if !seen.insert(key) {
                return Err(format!("step {label:?} appears twice"));
            }
            last_wave.insert(key.0, i + 1);
        }
    }
    if let Some((name, host)) = expected.iter().find(|k| !seen.contains(*k)) {
        let label = step_label(name, *host);
        return Err(format!("the plan leaves out step {label:?}"));
    }
    // Dependencies first: every step of a dependency runs in an earlier wave
    // than (or the same wave as) the first step of its dependent.
    let services: HashMap<&str, &super::Service> =
        ctx.services.iter().map(|s| (s.name.as_str(), s)).collect();
    for (i, wave) in r.waves.iter().enumerate() {
        for step in &wave.steps {
            let Some(service) = services.get(step.service.as_str()) else {
                continue;
            };
            for dep in &service.depends_on {
                if let Some(&w) = last_wave.get(dep.as_str())
                    && w > i + 1
                {
                    return Err(format!(
                        "wave {} deploys {:?} before its dependency {dep:?} (wave {w})",
                        i + 1,
                        step.service
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A hook's report: at most [`MAX_DETAILS`] details, its message and details
/// within the text budget.
pub fn hook_report(r: &mut HookReport) -> Result<(), String> {
    count("details", r.details.len(), MAX_DETAILS)?;
    text_budget(
        "the report's message and details",
        std::iter::once(r.message.as_str()).chain(
            r.details
                .iter()
                .flat_map(|d| [d.key.as_str(), d.value.as_str()]),
        ),
    )
}

/// An on-progress decision: abort and rollback reasons are cut to
/// [`MAX_REASON_BYTES`].
pub fn decision(d: &mut Decision) {
    if let Decision::Abort(r) | Decision::Rollback(r) = d {
        cap_reason(r);
    }
}
