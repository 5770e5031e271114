//! The Markdown summary: a few lines and one table, for GitHub step
//! summaries (`$GITHUB_STEP_SUMMARY`) and pull-request comments.
//!
//! Escaping is hand-written (a dozen characters) because no Markdown crate
//! exports an escaper for *writing* GitHub-flavoured Markdown: every
//! character that could start markup, a table cell or inline HTML is
//! backslash-escaped or written as an entity, and newlines become spaces,
//! so a service name or message stays one inert line of text.

use super::document::{Document, Outcome};
use super::svg::duration;

/// Steps listed one by one up to this many; beyond, only the ones that did
/// not succeed (a summary is read at a glance).
const MAX_ROWS: usize = 30;
/// Decisions listed in the folded decision flow.
const MAX_DECISIONS: usize = 60;

/// `text` as inert Markdown inline text: no emphasis, links, autolinks
/// (`http:`, `www.`, `a@b`), HTML, table cells, code or math.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev: [char; 3] = [' '; 3];
    for (i, c) in text.chars().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}'
            | '$' | ':' | '@' => {
                out.push('\\');
                out.push(c);
            }
            // A list marker at the start; the dot of `www.`.
            '-' | '+' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' if prev.iter().all(|p| p.eq_ignore_ascii_case(&'w')) => out.push_str("\\."),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
        prev = [prev[1], prev[2], c];
    }
    out
}

fn icon(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "✅",
        Outcome::Failed => "❌",
        Outcome::NotRun => "⏭️",
        Outcome::Other => "❔",
    }
}

/// The summary of one deployment.
pub fn summary(doc: &Document) -> String {
    let s = &doc.deployment_summary;
    let mut out = String::new();
    let status = if s.status.is_empty() {
        if s.success { "succeeded" } else { "failed" }.to_string()
    } else {
        s.status.replace('_', " ")
    };
    out.push_str(&format!(
        "### {} adeploy {} {}\n\n",
        if s.success { "✅" } else { "❌" },
        escape(&s.id),
        escape(&status)
    ));
    let (ok, failed, notrun, other) = doc.counts();
    let mut line = format!(
        "{} in **{}** with **{}** · {} · {} step(s): {} succeeded, {} failed, {} not run",
        escape(&s.services.join(", ")),
        escape(&s.environment),
        escape(&s.strategy_used),
        duration(s.duration_minutes * 60.0),
        doc.steps.len(),
        ok,
        failed,
        notrun
    );
    if other > 0 {
        line.push_str(&format!(", {other} other"));
    }
    if s.dry_run {
        line.push_str(" · dry run");
    }
    out.push_str(&line);
    out.push_str("\n\n");

    if !doc.steps.is_empty() {
        let mut steps: Vec<_> = doc.steps.iter().collect();
        steps.sort_by_key(|st| (st.wave, st.started_at.is_none(), st.started_at));
        let shown: Vec<_> = if steps.len() > MAX_ROWS {
            steps
                .iter()
                .copied()
                .filter(|st| st.outcome() != Outcome::Ok || st.rolled_back.is_some())
                .take(MAX_ROWS)
                .collect()
        } else {
            steps.clone()
        };
        out.push_str(
            "| Wave | Step | Status | Took | Message |\n| ---: | --- | --- | ---: | --- |\n",
        );
        for st in &shown {
            let rb = match (st.rolled_back, &st.rollback_message) {
                (Some(true), _) => ", rolled back".to_string(),
                (Some(false), m) => format!(
                    ", **rollback failed**: {}",
                    escape(m.as_deref().unwrap_or("unknown"))
                ),
                _ => String::new(),
            };
            let version = match (&st.version, &st.previous_version, st.rolled_back) {
                (Some(v), Some(p), Some(true)) => format!(" {} → {}", escape(v), escape(p)),
                (Some(v), _, _) => format!(" {}", escape(v)),
                _ => String::new(),
            };
            out.push_str(&format!(
                "| {} | {}{version} | {} {}{} | {} | {} |\n",
                doc.wave_of(st),
                escape(&st.name()),
                icon(st.outcome()),
                escape(&st.status.replace('_', " ")),
                rb,
                if st.started_at.is_some() {
                    duration(st.seconds)
                } else {
                    "—".into()
                },
                escape(&shorten(&st.message, 200))
            ));
        }
        if shown.len() < steps.len() {
            out.push_str(&format!(
                "\n{} more step(s) succeeded and are not listed.\n",
                steps.len() - shown.len()
            ));
        }
        out.push('\n');
    }

    if !doc.analysis.is_empty() {
        let count = |v: &str| doc.analysis.iter().filter(|a| a.verdict == v).count();
        out.push_str(&format!(
            "**Analysis:** {} pass, {} fail, {} inconclusive\n\n",
            count("pass"),
            count("fail"),
            count("inconclusive")
        ));
        for a in doc.analysis.iter().filter(|a| a.verdict != "pass") {
            out.push_str(&format!(
                "- {} **{}**{}\n",
                escape(&a.label()),
                escape(&a.verdict),
                a.message
                    .as_deref()
                    .map(|m| format!(": {}", escape(m)))
                    .unwrap_or_default()
            ));
        }
        if doc.analysis.iter().any(|a| a.verdict != "pass") {
            out.push('\n');
        }
    }

    for (title, items) in [
        ("Lessons", &doc.lessons_learned),
        ("Recommendations", &doc.recommendations),
    ] {
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("**{title}**\n\n"));
        for l in items.iter().take(10) {
            out.push_str(&format!("- {}\n", escape(&shorten(l, 300))));
        }
        out.push('\n');
    }

    if !doc.decision_process.is_empty() {
        out.push_str(&format!(
            "<details><summary>Decision flow ({} decisions)</summary>\n\n",
            doc.decision_process.len()
        ));
        for (i, d) in doc.decision_process.iter().enumerate().take(MAX_DECISIONS) {
            out.push_str(&format!(
                "{}. {}\n",
                i + 1,
                escape(&shorten(&d.summary(), 300))
            ));
        }
        if doc.decision_process.len() > MAX_DECISIONS {
            out.push_str(&format!(
                "\n{} more in the HTML and JSON reports.\n",
                doc.decision_process.len() - MAX_DECISIONS
            ));
        }
        out.push_str("\n</details>\n");
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_inert() {
        let e = escape("<script>alert(1)</script> | **x** [a](http://e) `c`\n# h");
        assert!(!e.contains('<') && !e.contains('\n'));
        assert!(!e.contains(" | ") && e.contains("\\|"));
        assert!(e.contains("\\*\\*x\\*\\*") && e.contains("\\[a\\]\\(http\\:"));
        assert!(e.contains("\\`c\\`") && e.contains("\\# h"));
    }
}
