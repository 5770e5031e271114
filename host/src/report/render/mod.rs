//! Renderers of the report for people and CI: one self-contained HTML page
//! (timeline, resource charts and decision flow as inline SVG), JUnit XML,
//! a Markdown summary, and an HTML analytics page over the history.
//!
//! Why the renderers read a [`Document`] (the serialised report) rather than
//! [`Report`]: the report is a file people keep, written by many versions
//! of adeploy; rendering its JSON shape keeps old and new reports readable
//! and decouples the pages from the engine's typed vocabulary (decisions are
//! rendered as `decision_type` + `details`, whatever enum produces them).
//!
//! Escaping: every plugin-supplied string (service names, messages, decision
//! details) is hostile. HTML and SVG go through maud, which escapes all
//! interpolated text and attributes; JUnit through quick-xml's writer;
//! Markdown through [`markdown::escape`]. The HTML page also carries a
//! Content-Security-Policy that forbids scripts and every network fetch, so
//! an escaping mistake could not run anything either.

pub mod document;
pub mod history;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod svg;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use document::Document;
pub use history::{HistoryAnalytics, HistoryOptions, ModelPoint, history_page};

use super::Report;

/// What a report can be rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The report document itself (what `deployment_report_ID.json` holds).
    Json,
    /// One self-contained page.
    Html,
    /// A compact summary for GitHub step summaries and PR comments.
    Markdown,
    /// One testsuite per deployment, one testcase per step.
    Junit,
    /// The terminal summary.
    Text,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Html,
        Format::Markdown,
        Format::Junit,
        Format::Text,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Html => "html",
            Format::Markdown => "markdown",
            Format::Junit => "junit",
            Format::Text => "text",
        }
    }

    /// The file name suffix beside the JSON report:
    /// `deployment_report_ID` + this.
    pub fn suffix(self) -> &'static str {
        match self {
            Format::Json => ".json",
            Format::Html => ".html",
            Format::Markdown => ".md",
            Format::Junit => ".junit.xml",
            Format::Text => ".txt",
        }
    }

    /// A comma-separated list (`html,junit`), as `run --report-format`
    /// takes it; duplicates collapse.
    pub fn parse_list(list: &str) -> Result<Vec<Format>, RenderError> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let f: Format = part.parse()?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Format, RenderError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "html" => Format::Html,
            "markdown" | "md" => Format::Markdown,
            "junit" | "xml" => Format::Junit,
            "text" | "txt" => Format::Text,
            _ => {
                return Err(RenderError::UnknownFormat {
                    name: s.to_string(),
                });
            }
        })
    }
}

/// Errors of rendering and writing reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("unknown report format '{name}' (expected one of json, html, markdown, junit, text)")]
    UnknownFormat { name: String },
    #[error("the report cannot be serialised: {source}")]
    Serialise { source: serde_json::Error },
    #[error("the report is not valid JSON of a report: {source}")]
    Malformed { source: serde_json::Error },
    #[error("not an adeploy report: it has no {missing}")]
    NotAReport { missing: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Renders `report` as `format`.
pub fn render(report: &Report, format: Format) -> Result<String, RenderError> {
    match format {
        Format::Json => serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|source| RenderError::Serialise { source }),
        Format::Text => Ok(report.human_summary()),
        _ => Ok(render_document(&Document::from_report(report)?, format)),
    }
}

/// Renders a document (a report file of any version, possibly enriched with
/// the history's resource samples) as `format`.
pub fn render_document(doc: &Document, format: Format) -> String {
    match format {
        Format::Html => html::report_page(doc),
        Format::Markdown => markdown::summary(doc),
        Format::Junit => junit::testsuites(std::slice::from_ref(doc)),
        Format::Json => serde_json::to_string_pretty(doc).unwrap_or_default() + "\n",
        Format::Text => text(doc),
    }
}

/// The terminal summary of a document (for reports read back from a file
/// that this version's [`Report`] type does not parse).
fn text(doc: &Document) -> String {
    let s = &doc.deployment_summary;
    let mut out = format!(
        "{} {}: {} in {} with {} ({:.2} min)\n",
        s.id,
        if s.success { "succeeded" } else { "FAILED" },
        s.services.join(", "),
        s.environment,
        s.strategy_used,
        s.duration_minutes
    );
    for st in &doc.steps {
        out.push_str(&format!(
            "  wave {} {:<20} {:<10} {}\n",
            doc.wave_of(st),
            st.name(),
            st.status,
            st.message
        ));
    }
    out
}

/// Writes `report` as each of `formats` beside its JSON file
/// (`deployment_report_ID.json` → `deployment_report_ID.html`, ...),
/// atomically; returns the paths written. `Json` is skipped (the engine
/// writes it). `samples` (the history's metric samples of the deployment)
/// feed the HTML resource chart.
pub fn write_beside(
    report: &Report,
    json_path: &Path,
    formats: &[Format],
    samples: &[crate::history::MetricSample],
) -> Result<Vec<PathBuf>, RenderError> {
    let doc = Document::from_report(report)?.with_resource_samples(samples);
    let stem = json_path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".json").unwrap_or(n).to_string())
        .unwrap_or_else(|| format!("deployment_report_{}", doc.deployment_summary.id));
    let dir = json_path.parent().unwrap_or(Path::new("."));
    let mut written = Vec::new();
    for f in formats.iter().filter(|f| **f != Format::Json) {
        let path = dir.join(format!("{stem}{}", f.suffix()));
        write_text(&path, &render_document(&doc, *f))?;
        written.push(path);
    }
    Ok(written)
}

/// Appends the Markdown summary to `path` (GitHub's `$GITHUB_STEP_SUMMARY`),
/// creating it when missing.
pub fn append_markdown(report: &Report, path: &Path) -> Result<(), RenderError> {
    let md = render(report, Format::Markdown)?;
    let err = |source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    f.write_all(md.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)
}

/// Writes `text` to `path` atomically (temp file + rename).
pub fn write_text(path: &Path, text: &str) -> Result<(), RenderError> {
    let err = |source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_list() {
        assert_eq!("HTML".parse::<Format>().unwrap(), Format::Html);
        assert_eq!(
            Format::parse_list("html, junit,html,md").unwrap(),
            vec![Format::Html, Format::Junit, Format::Markdown]
        );
        let e = Format::parse_list("html,pdf").unwrap_err().to_string();
        assert!(e.contains("'pdf'") && e.contains("junit"), "{e}");
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
    }

    #[test]
    fn a_file_that_is_not_a_report_is_named_as_such() {
        let e = Document::from_json("{\"hello\": 1}")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "not an adeploy report: it has no deployment_summary");
        assert!(Document::from_json("{").is_err());
    }
}
