//! One readable line per decision: [`Decision::summary`].
//!
//! The decision log is typed for programs (`--json`, the report file, the
//! history) and read by people in `run`'s progress, `adeploy report` and the
//! Markdown and HTML reports. All of them use this one renderer, so a
//! decision reads the same everywhere: `strategy balanced chosen by rules
//! (confidence 0.70): staging starts at balanced`, not a JSON blob or a
//! `Debug` string. Plugin-supplied text (reasons, messages) is kept on one
//! line with control characters escaped; the HTML and Markdown renderers
//! escape the line again for their markup.

use serde_json::Value;

use crate::detect::DetectionSource;
use crate::history::StepStatus;

use super::decision::{Approval, Decision, LoadedModel};

/// `30`, `2.5`: seconds and minutes as messages show them.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

fn status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Cancelled => "cancelled",
    }
}

fn label(service: &str, host: Option<&str>) -> String {
    crate::history::step_label(service, host)
}

fn approval(a: &Approval) -> String {
    match a {
        Approval::Flag { user } => format!("{user} (--approve)"),
        Approval::Prompt { user } => format!("{user} (at the prompt)"),
    }
}

/// `: MESSAGE`, or nothing for an empty message.
fn colon(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// The words of a value older reports wrote in Rust's `Debug` form
/// (`rollbackscope::all`, `ProgressKind::StepFailed`,
/// `Decision::Rollback("web failed")`, `Decision::Pause(30)`); any other
/// text is returned as it is. Reports are kept, so their renderings read
/// well whichever version wrote them.
pub(crate) fn legacy_words(text: &str) -> String {
    let Some((kind, rest)) = text.split_once("::") else {
        return text.to_string();
    };
    let kind = kind.to_ascii_lowercase();
    let kebab = |name: &str| {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    // `Name("quoted \"text\"")` or `Name(30)` or `Name`.
    let (name, arg) = match rest.split_once('(') {
        Some((name, arg)) => (
            name,
            arg.strip_suffix(')').map(|a| {
                a.strip_prefix('"')
                    .and_then(|a| a.strip_suffix('"'))
                    .map(|q| q.replace("\\\"", "\"").replace("\\\\", "\\"))
                    .unwrap_or_else(|| a.to_string())
            }),
        ),
        None => (rest, None),
    };
    match (kind.as_str(), name, arg) {
        ("rollbackscope" | "progresskind", name, None) => kebab(name),
        ("decision", "Pause", Some(seconds)) => format!("pause {seconds} s"),
        ("decision", "Continue", None) => "continue".to_string(),
        ("decision", name @ ("Abort" | "Rollback"), Some(reason)) => {
            format!("{}: {reason}", name.to_ascii_lowercase())
        }
        _ => text.to_string(),
    }
}

/// The generic line of a decision this renderer has no sentence for: its
/// type in words and up to four scalar details.
fn generic(decision_type: &str, details: &Value) -> String {
    let mut out = decision_type.replace('_', " ");
    if let Value::Object(m) = details {
        let parts: Vec<String> = m
            .iter()
            .filter_map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.as_f64().map(num)?,
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some(format!("{} {text}", k.replace('_', " ")))
            })
            .take(4)
            .collect();
        if !parts.is_empty() {
            out.push_str(": ");
            out.push_str(&parts.join(", "));
        }
    }
    out
}

impl Decision {
    /// The decision as one line a person reads (no trailing newline).
    ///
    /// ```
    /// use adeploy::report::Decision;
    ///
    /// let d = Decision::Pause { seconds: 30.0, reason: "the strategy asked to pause".into() };
    /// assert_eq!(d.summary(), "pause 30 s: the strategy asked to pause");
    /// ```
    pub fn summary(&self) -> String {
        let line = self.sentence();
        crate::config::one_line(&line).into_owned()
    }

    fn sentence(&self) -> String {
        match self {
            Decision::ExperimentalActive {
                switch,
                strategy,
                source,
                adaptive_candidate,
            } => format!(
                "experimental {switch} is on: strategy {strategy} ({source}){}",
                if *adaptive_candidate {
                    ", a candidate of the adaptive choice"
                } else {
                    ""
                }
            ),
            Decision::EnvironmentDetected(d) => {
                let from = match d.source {
                    DetectionSource::Operator => "from --environment".to_string(),
                    DetectionSource::EnvVar => "from the environment variable".to_string(),
                    DetectionSource::Evidence => format!(
                        "from {} piece(s) of evidence, confidence {:.2}",
                        d.evidence.len(),
                        d.confidence
                    ),
                    DetectionSource::Default => format!(
                        "the default: the evidence is not clear (confidence {:.2})",
                        d.confidence
                    ),
                };
                format!("environment {} ({from})", d.environment)
            }
            Decision::EnvironmentSettings {
                environment,
                overrides,
            } => format!(
                "environments.{environment} applies: {}",
                overrides
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Decision::ApprovalRequired {
                environment,
                approval: a,
                dry_run,
                named_by,
            } => format!(
                "{environment} needs an approval{}: {}{}",
                if named_by.is_empty() {
                    String::new()
                } else {
                    format!(" (named by {})", named_by.join(", "))
                },
                a.as_ref().map_or("none given".to_string(), |a| format!(
                    "given by {}",
                    approval(a)
                )),
                if *dry_run { " (dry run)" } else { "" }
            ),
            Decision::PluginOverride {
                plugin,
                kind,
                source,
                sha256,
                grants_withheld,
            } => format!(
                "the built-in {kind} plugin '{plugin}' is replaced by {source} (sha256 {}){}",
                sha256.get(..12).unwrap_or(sha256),
                grants_withheld
                    .as_deref()
                    .map(|w| format!("; it runs without grants: {w}"))
                    .unwrap_or_default()
            ),
            Decision::NetworkLatency { endpoints } => format!(
                "network latency: {}",
                endpoints
                    .iter()
                    .map(|e| match (e.ms, &e.error) {
                        (Some(ms), _) => format!("{} {ms:.1} ms", e.endpoint),
                        (None, err) => format!(
                            "{} no answer ({})",
                            e.endpoint,
                            err.as_deref().unwrap_or("unknown")
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Decision::SystemMetrics {
                snapshot: s,
                cpu_basis,
            } => format!(
                "machine: CPU {:.1}%, memory {:.1}%, disk {:.1}%, load {:.2} per core{}{}",
                s.cpu_percent,
                s.memory_percent,
                s.disk_percent,
                s.load_per_core,
                s.network_latency_ms
                    .map(|ms| format!(", latency {ms:.1} ms"))
                    .unwrap_or_default(),
                cpu_basis
                    .map(|b| format!(" (CPU: {b})"))
                    .unwrap_or_default()
            ),
            Decision::ModelDiscarded { reason } => {
                format!("the stored model was discarded ({reason}); rules decide")
            }
            Decision::HistoryLoaded {
                deployments,
                in_environment,
                recent_success_rate,
                training_samples,
                model,
            } => format!(
                "history: {deployments} deployment(s), {in_environment} in this environment{}, {training_samples} to learn from; model: {}",
                recent_success_rate
                    .map(|r| format!(" ({} recent success)", percent(r)))
                    .unwrap_or_default(),
                match model {
                    None => "none yet".to_string(),
                    Some(LoadedModel::Discarded(_)) => "discarded".to_string(),
                    Some(LoadedModel::Trained {
                        samples,
                        oob_accuracy,
                        ..
                    }) => format!(
                        "trained on {samples}{}",
                        oob_accuracy
                            .map(|a| format!(", out-of-bag accuracy {a:.2}"))
                            .unwrap_or_default()
                    ),
                }
            ),
            Decision::StrategySelected { strategy, source } => {
                format!("strategy {strategy}, named by the {source}")
            }
            Decision::StrategyPredicted {
                strategy,
                confidence,
                method,
                reasons,
                ..
            } => format!(
                "strategy {strategy} chosen by {method} (confidence {confidence:.2}){}",
                colon(&reasons.join("; "))
            ),
            Decision::MaxTimeCheck(m) => {
                let limit = format!("--max-time {} min", num(m.max_time_minutes));
                let took = m
                    .estimate
                    .as_ref()
                    .map(|e| {
                        format!(
                            "similar deployments took {} min (median of {})",
                            num((e.minutes * 10.0).round() / 10.0),
                            e.samples
                        )
                    })
                    .unwrap_or_default();
                match (m.feasible, &m.switched_to, m.forced) {
                    (None, ..) => format!(
                        "{limit} not judged: {}",
                        m.reason.as_deref().unwrap_or("nothing to judge by")
                    ),
                    (Some(true), ..) => format!("{limit} fits {}: {took}", m.strategy),
                    (Some(false), Some(to), _) => {
                        format!(
                            "{limit} is too short for {} ({took}): switched to {to}",
                            m.strategy
                        )
                    }
                    (Some(false), None, Some(true)) => {
                        format!(
                            "{limit} is too short for {} ({took}); --force goes ahead",
                            m.strategy
                        )
                    }
                    (Some(false), None, _) => {
                        format!("{limit} is too short for {} ({took}): refused", m.strategy)
                    }
                }
            }
            Decision::RollbackPrediction {
                strategy,
                reason,
                p_failure,
                threshold,
                basis,
                action,
                ..
            } => match p_failure {
                None => format!(
                    "no failure prediction for {strategy}: {}",
                    reason.as_deref().unwrap_or("nothing to predict from")
                ),
                Some(p) => format!(
                    "predicted failure {} of {strategy} (threshold {}, {}): {}",
                    percent(*p),
                    threshold.map(percent).unwrap_or_else(|| "none".into()),
                    basis.as_deref().unwrap_or("no basis given"),
                    action.as_deref().unwrap_or("none")
                ),
            },
            Decision::SafetyOverride {
                applied,
                from,
                to,
                reason,
            } => match (applied, from, to) {
                (Some(false), ..) => "no safety override".to_string(),
                (_, Some(from), Some(to)) => format!(
                    "safety override: {from} → {to}{}",
                    reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                _ => "safety override".to_string(),
            },
            Decision::ResourcesCalculated { strategy, limits } => format!(
                "limits of {strategy}: CPU {}, memory {}, {} step(s) at a time",
                percent(limits.cpu_limit),
                percent(limits.memory_limit),
                limits.concurrency
            ),
            Decision::Validation {
                passed,
                problems,
                forced,
            } => match (problems.is_empty(), *forced, *passed) {
                (true, ..) => "memory and disk are within their thresholds".to_string(),
                (false, true, _) => format!("{}; --force goes ahead", problems.join("; ")),
                (false, false, true) => problems.join("; "),
                (false, false, false) => format!("refused: {}", problems.join("; ")),
            },
            Decision::Plan(p) => format!(
                "plan of {}: {} step(s) in {} wave(s), {} at a time, {} health sample(s) {} ms apart, {} s soak, rollback scope {}",
                p.strategy,
                p.waves.iter().map(Vec::len).sum::<usize>(),
                p.waves.len(),
                p.concurrency,
                p.samples,
                p.interval_ms,
                p.soak_s,
                legacy_words(&p.rollback_scope)
            ),
            Decision::DryRun { reason, .. } => reason.clone(),
            Decision::Approved { approval: a } => format!("approved by {}", approval(a)),
            Decision::RecoveredInterrupted { deployments } => format!(
                "marked interrupted (cut off by a crash): {}",
                deployments.join(", ")
            ),
            Decision::SshConnectionReuse { enabled, reason } => format!(
                "ssh connection reuse {}: {reason}",
                if *enabled { "on" } else { "off" }
            ),
            Decision::Hook {
                phase,
                hook,
                ok,
                message,
                ..
            } => format!(
                "hook {hook} at {phase} {}{}",
                if *ok { "ran" } else { "FAILED" },
                colon(message)
            ),
            Decision::StrategyDecision { event, decision } => format!(
                "after {} the strategy decided: {}",
                legacy_words(event),
                legacy_words(decision)
            ),
            Decision::StrategyDecisionFailed { error } => format!(
                "the strategy could not decide ({error}); the plan's failure policy applies"
            ),
            Decision::Aborted { reason } => format!("aborted: {reason}"),
            Decision::StepTaskFailed { error } => format!("a step ended without a result: {error}"),
            Decision::StepFinished {
                service,
                host,
                wave,
                status: st,
                message,
                seconds,
            } => format!(
                "wave {wave}: {} {} in {seconds:.1} s{}",
                label(service, host.as_deref()),
                status(*st),
                colon(message)
            ),
            Decision::FailurePolicy {
                failures,
                max_failures,
            } => format!(
                "{failures} failed step(s), more than the plan tolerates ({max_failures}): the deployment fails"
            ),
            Decision::PredictiveScaling {
                from, to, reason, ..
            } => format!("concurrency {from} → {to}: {reason}"),
            Decision::PredictiveScalingSkipped { reason } => {
                format!("predictive scaling waits for a trend: {reason}")
            }
            Decision::Pause { seconds, reason } => {
                format!("pause {} s{}", num(*seconds), colon(reason))
            }
            Decision::BackUnderBudget {
                cpu_percent,
                memory_percent,
            } => format!(
                "back under the budget (CPU {cpu_percent:.0}%, memory {memory_percent:.0}%)"
            ),
            Decision::OverBudget { message } => message.clone(),
            Decision::RollbackStarted { reason, services } => {
                format!("rolling back {} ({reason})", services.join(", "))
            }
            Decision::StepRolledBack {
                service,
                host,
                ok,
                message,
            } => {
                let verb = if *ok {
                    "rolled back"
                } else {
                    "ROLLBACK FAILED"
                };
                format!(
                    "{} {verb}{}",
                    label(service, host.as_deref()),
                    if message.eq_ignore_ascii_case(verb) {
                        String::new()
                    } else {
                        colon(message)
                    }
                )
            }
            Decision::DeploymentFinished {
                status, message, ..
            } => format!("{}{}", status.as_str().replace('_', " "), colon(message)),
            Decision::ModelRetraining {
                reason,
                in_background,
            } => format!(
                "the strategy model retrains{}: {reason}",
                if *in_background {
                    " in the background"
                } else {
                    ""
                }
            ),
            Decision::Alert {
                alerts, threshold, ..
            } => format!(
                "ALERT: {} (alerts.consecutive_failures {threshold})",
                alerts.join("; ")
            ),
            Decision::Other {
                decision_type,
                details,
            } => generic(decision_type, details),
            // Kinds added later read generically until they get a sentence.
            #[allow(unreachable_patterns)]
            other => generic(&other.decision_type(), &other.details()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;
    use serde_json::json;

    #[test]
    fn decisions_read_as_sentences_not_json_or_debug() {
        let pause = Decision::Pause {
            seconds: 30.0,
            reason: "the strategy asked to pause".into(),
        };
        assert_eq!(pause.summary(), "pause 30 s: the strategy asked to pause");
        let d = Decision::StrategyDecision {
            event: "step-failed".into(),
            decision: "rollback: error rate".into(),
        };
        assert_eq!(
            d.summary(),
            "after step-failed the strategy decided: rollback: error rate"
        );
        let d = Decision::StepFinished {
            service: "api".into(),
            host: Some("web-1".into()),
            wave: 1,
            status: StepStatus::Failed,
            message: "health check failed".into(),
            seconds: 2.04,
        };
        assert_eq!(
            d.summary(),
            "wave 1: api@web-1 failed in 2.0 s: health check failed"
        );
        let d = Decision::ApprovalRequired {
            environment: Environment::Production,
            approval: Some(Approval::Flag { user: "ana".into() }),
            dry_run: false,
            named_by: vec!["--environment (production)".into()],
        };
        assert_eq!(
            d.summary(),
            "production needs an approval (named by --environment (production)): given by ana (--approve)"
        );
    }

    #[test]
    fn debug_strings_of_older_reports_read_as_words() {
        assert_eq!(legacy_words("rollbackscope::all"), "all");
        assert_eq!(legacy_words("ProgressKind::StepFailed"), "step-failed");
        assert_eq!(legacy_words("Decision::Pause(30)"), "pause 30 s");
        assert_eq!(
            legacy_words("Decision::Rollback(\"web failed: \\\"x\\\"\")"),
            "rollback: web failed: \"x\""
        );
        assert_eq!(legacy_words("a::b that is text"), "a::b that is text");
        assert_eq!(legacy_words("step-failed"), "step-failed");
    }

    #[test]
    fn unknown_decisions_read_generically_and_stay_on_one_line() {
        let d = Decision::Other {
            decision_type: "metric_verdict".into(),
            details: json!({ "metric": "error_rate", "verdict": "fail\n\u{1b}[2J", "nested": {} }),
        };
        let s = d.summary();
        assert_eq!(
            s,
            "metric verdict: metric error_rate, verdict fail\\n\\u{1b}[2J"
        );
        assert!(!s.contains('\n') && !s.contains('\u{1b}'));
    }
}
