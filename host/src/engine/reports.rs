//! Reports for people and CI, as queries: a stored report rendered as HTML,
//! Markdown, JUnit or JSON; the rendered files written beside a new
//! deployment's JSON report; and the analytics page over the history.
//!
//! Why in the engine: rendering needs the history (the machine's samples
//! over a deployment, the model's retrainings, the failure patterns), and an
//! embedding tool should get the same pages the CLI writes with one call.

use std::path::PathBuf;

use crate::history::{DeploymentRecord, HistoryBackend, MetricSample};
use crate::report::render::{self, Document, Format, HistoryAnalytics, HistoryOptions, ModelPoint};

use super::Engine;
use super::error::EngineError;
use super::learn;
use super::types::DeploymentOutcome;

/// The decision logs read for the model's accuracy over time: the newest
/// deployments' (each names the model it was chosen with), so the page
/// costs the same at 100 or 100,000 deployments.
const MODEL_LOGS: usize = 500;

/// The analytics across deployments, and the page that shows them.
#[derive(Debug, Clone)]
pub struct HistoryReport {
    pub analytics: HistoryAnalytics,
    pub options: HistoryOptions,
}

impl HistoryReport {
    /// The self-contained HTML page.
    pub fn html(&self) -> String {
        render::history::history_page_of(&self.analytics, &self.options)
    }
}

impl Engine {
    /// The stored report of deployment `id` as `format`. JSON is the file
    /// as written; the other formats render it (any adeploy version's) with
    /// the machine's samples the history kept for the deployment. Without
    /// the file on this machine (another runner of a shared history ran the
    /// deployment), the report rebuilt from the history is rendered.
    pub async fn render_report(&self, id: &str, format: Format) -> Result<String, EngineError> {
        let path = self.report_path(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Rebuilt from the history, or the typed reason there is
                // none (unknown id, or a deployment that never finished).
                let report = self.report(id).await?;
                serde_json::to_string_pretty(&report).map_err(|e| EngineError::InvalidReport {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(source) => {
                return Err(EngineError::Io {
                    what: format!("cannot read {}", path.display()),
                    source,
                });
            }
        };
        if format == Format::Json {
            return Ok(text);
        }
        let doc = Document::from_json(&text).map_err(|e| EngineError::InvalidReport {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let doc = doc.with_resource_samples(&self.samples_of(id).await);
        Ok(render::render_document(&doc, format))
    }

    /// Writes `outcome`'s report as each of `formats` beside its JSON file
    /// (`deployment_report_ID.html`, `.md`, `.junit.xml`) and returns the
    /// paths. Nothing for a dry run (it has no report file).
    pub async fn write_reports(
        &self,
        outcome: &DeploymentOutcome,
        formats: &[Format],
    ) -> Result<Vec<PathBuf>, EngineError> {
        let Some(json) = &outcome.report_path else {
            return Ok(Vec::new());
        };
        if formats.iter().all(|f| *f == Format::Json) {
            return Ok(Vec::new());
        }
        let samples = self.samples_of(&outcome.id).await;
        Ok(render::write_beside(
            &outcome.report,
            json,
            formats,
            &samples,
        )?)
    }

    /// The analytics across every finished deployment: success per strategy
    /// × environment over time, step durations per service, the model's
    /// accuracy at each retraining, failure patterns.
    pub async fn history_report(&self) -> Result<HistoryReport, EngineError> {
        let mut options = HistoryOptions::default();
        let Some(history) = self.existing_history().await? else {
            let analytics = HistoryAnalytics::compute(&[], &options);
            return Ok(HistoryReport { analytics, options });
        };
        let records: Vec<DeploymentRecord> = history.all_deployments().await?;
        let mut log = serde_json::to_value(history.audit(usize::MAX).await?)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default();
        for r in records.iter().rev().take(MODEL_LOGS) {
            let decisions = history.decisions(&r.id).await?;
            log.extend(
                decisions
                    .iter()
                    .filter_map(|d| serde_json::to_value(d).ok()),
            );
        }
        options.model = ModelPoint::from_log(&log);
        options.patterns = crate::ml::failure_patterns(&learn::outcomes(&records));
        let analytics = HistoryAnalytics::compute(&records, &options);
        Ok(HistoryReport { analytics, options })
    }

    /// Where deployment `id`'s JSON report is written and read.
    pub(super) fn report_path(&self, id: &str) -> PathBuf {
        self.state_dir
            .join("deployment_reports")
            .join(format!("deployment_report_{id}.json"))
    }

    /// The machine's samples over deployment `id` (none when the history
    /// cannot say: the page then has no resource chart).
    async fn samples_of(&self, id: &str) -> Vec<MetricSample> {
        let read = async {
            match self.existing_history().await? {
                Some(history) => Ok(history.samples(id).await?),
                None => Ok::<_, EngineError>(Vec::new()),
            }
        };
        match read.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("the report of {id} without resource samples: {e}");
                Vec::new()
            }
        }
    }
}
