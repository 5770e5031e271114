//! JUnit XML: one `<testsuite>` per deployment, one `<testcase>` per step
//! (named `service@host`), valid against the Apache Ant JUnit schema that
//! Jenkins, GitLab and GitHub's test reporters read (kept in
//! `tests/schemas/junit.xsd`).
//!
//! How steps map to JUnit (the schema allows one of skipped, error or
//! failure per testcase):
//! - succeeded → a passing testcase;
//! - failed or cancelled → `<failure type="failed|cancelled">` with the
//!   step's message (and its rollback's);
//! - skipped or never started → `<skipped>` with the reason;
//! - succeeded, then rolled back because another step failed →
//!   `<skipped>`: the change did not stay, but the step did not fail (one
//!   root cause shows as one failure);
//! - a rollback that failed → `<error type="rollback_failed">`: something
//!   is left in a state nobody chose, which needs a person.
//!
//! A failed deployment without a failed step (a hook, the deadline before
//! any step, a refusal) gets one `deployment` testcase that fails, so CI
//! never shows a failed deployment as green.
//!
//! Written with quick-xml's writer, which escapes text and attributes;
//! characters XML 1.0 forbids even escaped (terminal escapes in command
//! output) are replaced first.

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::document::{Document, Outcome, StepView};

/// The XML of `docs` as one `<testsuites>` document.
pub fn testsuites(docs: &[Document]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing to a Vec cannot fail; an error would only drop the tail.
    let _ = write_all(&mut w, docs);
    String::from_utf8(w.into_inner()).unwrap_or_default() + "\n"
}

/// What one testcase carries.
enum Verdict {
    Pass,
    Failure {
        kind: &'static str,
        message: String,
        text: String,
    },
    Error {
        kind: &'static str,
        message: String,
        text: String,
    },
    Skipped {
        message: String,
    },
}

fn verdict(st: &StepView) -> Verdict {
    let rollback = st.rollback_message.clone().unwrap_or_default();
    match (st.outcome(), st.rolled_back) {
        (_, Some(false)) => Verdict::Error {
            kind: "rollback_failed",
            message: format!(
                "rollback failed: {}",
                if rollback.is_empty() {
                    "unknown"
                } else {
                    &rollback
                }
            ),
            text: format!(
                "{}\nstep: {} — {}\nrollback: {}",
                st.name(),
                st.status,
                st.message,
                rollback
            ),
        },
        (Outcome::Failed, rb) => Verdict::Failure {
            kind: if st.status == "cancelled" {
                "cancelled"
            } else {
                "failed"
            },
            message: st.message.clone(),
            text: format!(
                "{}: {}{}",
                st.name(),
                st.message,
                if rb == Some(true) {
                    "\nrolled back"
                } else {
                    ""
                }
            ),
        },
        (Outcome::Ok, Some(true)) => Verdict::Skipped {
            message: format!(
                "deployed, then rolled back: {}",
                if rollback.is_empty() {
                    "rolled back"
                } else {
                    &rollback
                }
            ),
        },
        (Outcome::Ok, _) => Verdict::Pass,
        (Outcome::NotRun, _) => Verdict::Skipped {
            message: if st.message.is_empty() {
                st.status.clone()
            } else {
                st.message.clone()
            },
        },
        (Outcome::Other, _) => Verdict::Failure {
            kind: "unknown_status",
            message: format!("status {}: {}", st.status, st.message),
            text: st.message.clone(),
        },
    }
}

fn write_all(w: &mut Writer<Vec<u8>>, docs: &[Document]) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let suites: Vec<(Vec<Case>, &Document)> = docs.iter().map(|d| (cases(d), d)).collect();
    // The schema's <testsuites> has no attributes: the totals are per suite.
    w.create_element("testsuites").write_inner_content(|w| {
        for (id, (cases, doc)) in suites.iter().enumerate() {
            suite(w, id, doc, cases)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// One testcase: name, classname, seconds, verdict.
type Case = (String, String, f64, Verdict);

fn cases(doc: &Document) -> Vec<Case> {
    let s = &doc.deployment_summary;
    let mut steps: Vec<&StepView> = doc.steps.iter().collect();
    steps.sort_by_key(|st| (st.wave, st.started_at.is_none(), st.started_at));
    let mut out: Vec<Case> = steps
        .iter()
        .map(|st| {
            let mut v = verdict(st);
            // The step's metric verdicts explain its failure.
            if let Verdict::Failure { text, .. } | Verdict::Error { text, .. } = &mut v {
                for a in doc
                    .analysis
                    .iter()
                    .filter(|a| a.service == st.service && a.host == st.host)
                {
                    text.push_str(&format!(
                        "\nanalysis {}: {}{}",
                        a.metric,
                        a.verdict,
                        a.message
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ));
                }
            }
            let seconds = if st.seconds.is_finite() {
                st.seconds.max(0.0)
            } else {
                0.0
            };
            (
                st.name(),
                format!("{}.wave{}", s.id, doc.wave_of(st)),
                seconds,
                v,
            )
        })
        .collect();
    let any_failed = out
        .iter()
        .any(|c| matches!(c.3, Verdict::Failure { .. } | Verdict::Error { .. }));
    if !s.success && !any_failed {
        let message = doc
            .decision_process
            .iter()
            .rev()
            .find(|d| d.decision_type == "deployment_finished")
            .and_then(|d| d.details["message"].as_str().map(String::from))
            .unwrap_or_else(|| format!("the deployment ended {}", s.status.replace('_', " ")));
        out.push((
            "deployment".into(),
            s.id.clone(),
            s.duration_minutes * 60.0,
            Verdict::Failure {
                kind: "deployment_failed",
                message: message.clone(),
                text: message,
            },
        ));
    }
    out
}

fn suite(
    w: &mut Writer<Vec<u8>>,
    id: usize,
    doc: &Document,
    cases: &[Case],
) -> std::io::Result<()> {
    let s = &doc.deployment_summary;
    let count = |f: fn(&Verdict) -> bool| cases.iter().filter(|c| f(&c.3)).count().to_string();
    let timestamp = s
        .started_at
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00".into());
    let name = if s.id.trim().is_empty() {
        "deployment"
    } else {
        s.id.as_str()
    };
    w.create_element("testsuite")
        .with_attribute(("name", clean(name).as_ref()))
        .with_attribute(("package", "adeploy"))
        .with_attribute(("id", id.to_string().as_str()))
        .with_attribute(("timestamp", timestamp.as_str()))
        .with_attribute(("hostname", "localhost"))
        .with_attribute(("tests", cases.len().to_string().as_str()))
        .with_attribute((
            "failures",
            count(|v| matches!(v, Verdict::Failure { .. })).as_str(),
        ))
        .with_attribute((
            "errors",
            count(|v| matches!(v, Verdict::Error { .. })).as_str(),
        ))
        .with_attribute((
            "skipped",
            count(|v| matches!(v, Verdict::Skipped { .. })).as_str(),
        ))
        .with_attribute(("time", secs(s.duration_minutes * 60.0).as_str()))
        .write_inner_content(|w| {
            w.create_element("properties").write_inner_content(|w| {
                let services = s.services.join(",");
                for (k, v) in [
                    ("strategy", s.strategy_used.as_str()),
                    ("environment", s.environment.as_str()),
                    ("status", s.status.as_str()),
                    ("services", services.as_str()),
                    ("dry_run", if s.dry_run { "true" } else { "false" }),
                ] {
                    w.create_element("property")
                        .with_attribute(("name", k))
                        .with_attribute(("value", clean(v).as_ref()))
                        .write_empty()?;
                }
                Ok(())
            })?;
            for (name, class, t, v) in cases {
                let name = if name.trim().is_empty() {
                    "(unnamed)"
                } else {
                    name.as_str()
                };
                let el = w
                    .create_element("testcase")
                    .with_attribute(("name", clean(name).as_ref()))
                    .with_attribute(("classname", clean(class).as_ref()))
                    .with_attribute(("time", secs(*t).as_str()));
                match v {
                    Verdict::Pass => {
                        el.write_empty()?;
                    }
                    Verdict::Skipped { message } => {
                        el.write_inner_content(|w| {
                            w.create_element("skipped")
                                .with_attribute(("message", clean(message).as_ref()))
                                .write_empty()?;
                            Ok(())
                        })?;
                    }
                    Verdict::Failure {
                        kind,
                        message,
                        text,
                    }
                    | Verdict::Error {
                        kind,
                        message,
                        text,
                    } => {
                        let tag = if matches!(v, Verdict::Error { .. }) {
                            "error"
                        } else {
                            "failure"
                        };
                        el.write_inner_content(|w| {
                            w.create_element(tag)
                                .with_attribute(("message", clean(message).as_ref()))
                                .with_attribute(("type", *kind))
                                .write_text_content(body(text))?;
                            Ok(())
                        })?;
                    }
                }
            }
            let out = system_out(doc);
            w.create_element("system-out")
                .write_text_content(body(&out))?;
            w.create_element("system-err").write_empty()?;
            Ok(())
        })?;
    Ok(())
}

/// The decision flow and the lessons, as plain lines.
fn system_out(doc: &Document) -> String {
    let mut out = String::new();
    for d in &doc.decision_process {
        out.push_str(&d.decision_type);
        if !d.details.is_null() {
            out.push(' ');
            out.push_str(&serde_json::to_string(&d.details).unwrap_or_default());
        }
        out.push('\n');
    }
    for l in &doc.lessons_learned {
        out.push_str(&format!("lesson: {l}\n"));
    }
    for r in &doc.recommendations {
        out.push_str(&format!("recommendation: {r}\n"));
    }
    out
}

/// Element text: only `<`, `>` and `&` need escaping there (quotes stay
/// readable in CI logs).
fn body(text: &str) -> BytesText<'static> {
    BytesText::from_escaped(partial_escape(clean(text).as_ref()).into_owned())
}

fn secs(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        format!("{s:.3}")
    } else {
        "0.000".into()
    }
}

/// `s` without the characters XML 1.0 forbids (controls other than tab,
/// newline and carriage return; surrogates cannot occur in a `str`; U+FFFE
/// and U+FFFF), each replaced by U+FFFD.
fn clean(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    };
    if s.chars().any(bad) {
        Cow::Owned(
            s.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_replaced() {
        assert_eq!(clean("a\u{1b}[31mb\tc"), "a\u{FFFD}[31mb\tc");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }
}
