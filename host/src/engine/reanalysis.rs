//! Retrospective analysis (`adeploy analyze ID`): re-runs the metric
//! analysis of a recorded deployment over its recorded windows, judged by
//! the rules of the engine's config, so "would this rule have caught last
//! Tuesday's release?" has an answer before the rule guards the next one.
//!
//! What is replayed: each verdict of the deployment's report keeps the
//! queries as they were sent (placeholders filled in with that deployment's
//! versions and ids), the window and the rule. Those queries are asked again
//! over the same window; the rule comes from the config's
//! `services.<svc>.analysis.metrics[name]` when the metric is still there
//! (else the recorded rule, and the result says so). Nothing is written:
//! the deployment's record and report stay as they were.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::analysis::{self as judge, MetricVerdict, Rule, Subject, Verdict};
use crate::config::Config;

use super::Engine;
use super::analysis::{labels, read, request};
use super::error::EngineError;

/// The result of [`Engine::analyze`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reanalysis {
    /// The deployment re-analysed.
    pub id: String,
    /// The config whose rules judged (none: the embedded default).
    pub config: Option<PathBuf>,
    /// The verdict then (the worst of the recorded metrics).
    pub recorded_verdict: Verdict,
    /// The verdict now, by the config's rules (the worst of the metrics).
    pub verdict: Verdict,
    pub metrics: Vec<ReanalysedMetric>,
}

/// One metric of a [`Reanalysis`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReanalysedMetric {
    pub service: String,
    pub host: Option<String>,
    pub metric: String,
    /// The verdict recorded at the time, and the rule it was judged by.
    pub recorded: Verdict,
    pub recorded_rule: Option<String>,
    /// The rule judged by now, in words.
    pub rule: String,
    /// `config` (the metric's rule in the config) or `recorded` (the metric
    /// is no longer in the config: its recorded rule).
    pub rule_source: String,
    /// The verdict now differs from the recorded one.
    pub changed: bool,
    /// The new verdict, with its samples and statistics.
    pub result: MetricVerdict,
}

impl Reanalysis {
    /// Lines for the terminal.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{}: analysis {} then, {} now{}\n",
            self.id,
            self.recorded_verdict,
            self.verdict,
            match &self.config {
                Some(p) => format!(" (rules of {})", p.display()),
                None => " (rules of the default config)".to_string(),
            }
        );
        for m in &self.metrics {
            out.push_str(&format!(
                "  {} {}: {} → {}{} — {}\n    rule ({}): {}\n",
                crate::history::step_label(&m.service, m.host.as_deref()),
                m.metric,
                m.recorded,
                m.result.verdict,
                if m.changed { " (changed)" } else { "" },
                m.result.reason,
                m.rule_source,
                m.rule,
            ));
            if let Some(r) = &m.recorded_rule
                && *r != m.rule
            {
                out.push_str(&format!("    recorded rule: {r}\n"));
            }
        }
        out
    }
}

impl Engine {
    /// Re-runs the metric analysis of deployment `id` over its recorded
    /// windows with the rules of this engine's config. Bad input (exit 2):
    /// an unknown deployment, one without a report or without analysis, a
    /// provider that is not loaded.
    pub async fn analyze(&self, id: &str) -> Result<Reanalysis, EngineError> {
        let report = self.report(id).await?;
        if report.analysis.is_empty() {
            return Err(EngineError::NoAnalysis { id: id.to_string() });
        }
        let mut metrics = Vec::with_capacity(report.analysis.len());
        for old in &report.analysis {
            let spec = metric_spec(&self.config, &old.service, &old.metric);
            let (rule, source, provider_name, samples_n) = match &spec {
                Some((rule, provider, samples)) => (*rule, "config", provider.clone(), *samples),
                None => (
                    old.rule.unwrap_or(Rule {
                        threshold: None,
                        comparison: None,
                        min_samples: 1,
                    }),
                    "recorded",
                    old.provider.clone(),
                    u32::try_from(old.samples.len()).unwrap_or(u32::MAX),
                ),
            };
            let provider = self.plugins.metric_provider(&provider_name).map_err(|e| {
                EngineError::Analysis {
                    service: old.service.clone(),
                    metric: old.metric.clone(),
                    message: format!("metric '{}': {e}", old.metric),
                    bad_input: true,
                }
            })?;
            let env = vec![("ADEPLOY_SERVICE".to_string(), old.service.clone())]
                .into_iter()
                .chain(
                    old.host
                        .iter()
                        .map(|h| ("ADEPLOY_HOST".to_string(), h.clone())),
                )
                .collect::<Vec<_>>();
            let subject = Subject {
                service: old.service.clone(),
                host: old.host.clone(),
                metric: old.metric.clone(),
                provider: provider_name.clone(),
                window: old.window,
                query: old.query.clone(),
                baseline_query: old.baseline_query.clone(),
            };
            let result = match read(
                provider,
                &request(&old.metric, &old.query, old.window, labels(&env, "canary")),
            )
            .await
            {
                Err(e) => MetricVerdict::without_data(subject, e.to_string()).with_rule(&rule),
                Ok(samples) => {
                    let baseline = match &old.baseline_query {
                        None => Ok(Vec::new()),
                        Some(b) => read(
                            provider,
                            &request(&old.metric, b, old.window, labels(&env, "baseline")),
                        )
                        .await
                        .map_err(|e| format!("baseline: {e}")),
                    };
                    let (baseline, error) = match baseline {
                        Ok(b) => (b, None),
                        Err(e) => (Vec::new(), Some(e)),
                    };
                    let mut v = MetricVerdict::judged(subject, &rule, samples, baseline);
                    if old.baseline_query.is_none() && rule.comparison.is_some() {
                        v.error = Some(
                            "the deployment had no baseline query (no previous version): nothing to compare with"
                                .to_string(),
                        );
                    } else if error.is_some() {
                        v.error = error;
                    }
                    v
                }
            };
            metrics.push(ReanalysedMetric {
                service: old.service.clone(),
                host: old.host.clone(),
                metric: old.metric.clone(),
                recorded: old.verdict,
                recorded_rule: old.rule.map(|r| r.describe(samples_n)),
                rule: rule.describe(samples_n),
                rule_source: source.to_string(),
                changed: result.verdict != old.verdict,
                result,
            });
        }
        Ok(Reanalysis {
            id: id.to_string(),
            config: self.config.source.clone(),
            recorded_verdict: judge::overall(&report.analysis),
            verdict: metrics
                .iter()
                .fold(Verdict::Pass, |acc, m| acc.worst(m.result.verdict)),
            metrics,
        })
    }
}

/// The rule, provider and sample count of `service`'s metric `metric` in
/// `config`, if it is still there.
fn metric_spec(config: &Config, service: &str, metric: &str) -> Option<(Rule, String, u32)> {
    let analysis = config.services.get(service)?.analysis.as_ref()?;
    let spec = analysis.metrics.iter().find(|m| m.name == metric)?;
    Some((
        Rule::from_spec(spec),
        spec.provider.clone(),
        analysis.samples,
    ))
}
