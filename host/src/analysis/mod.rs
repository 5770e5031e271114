//! The judge of metric analysis: samples in, verdicts out.
//!
//! Why a separate, pure module: the rules that decide whether a rollout
//! rolls back must be checkable on their own, against known statistical
//! results, without a Prometheus, a plugin or a deployment. Fetching samples
//! is a metric-provider plugin's job (`plugin::Plugin::query`); acting on a
//! verdict is the engine's. This module does no I/O.
//!
//! A metric is judged in one or both modes:
//!
//! - **threshold** ([`ThresholdRule`]): each sample against `min`/`max`; more
//!   than `failure_limit` samples out of bounds fails, and with
//!   `consecutive_successes: n` the latest `n` samples must all be in bounds.
//! - **comparison** ([`ComparisonRule`]): the samples against a baseline's
//!   (the version being replaced) with a Mann-Whitney U test
//!   ([`mann_whitney_u`]) at a confidence (0.98 by default, as Kayenta). A
//!   change fails only when it is significant, in the bad `direction`, and
//!   larger than the tolerance (relative to the baseline median, or an
//!   absolute amount), so a real but tiny change passes.
//!
//! No data (fewer than `min_samples`, or a provider that could not answer)
//! is [`Verdict::Inconclusive`]; what that means is a per-environment policy
//! (`environments.<env>.analysis.inconclusive`), applied by the engine.
//! A metric judged in both modes gets the worse of the two verdicts.
//!
//! [`MetricVerdict`] is one entry of the report's top-level `analysis` list:
//! which service, host and metric, the verdict and why, the samples, and the
//! outcome of each mode (for a comparison: the statistic, p-value and
//! effect size).

mod comparison;
mod mann_whitney;
mod threshold;

use serde::{Deserialize, Serialize};

pub use crate::config::Direction;
use crate::config::{DEFAULT_CONFIDENCE, MetricSpec, ServiceAnalysis, placeholders};
pub use comparison::{ComparisonOutcome, ComparisonRule};
pub use mann_whitney::{Alternative, MannWhitney, Method, mann_whitney_u, smallest_p_value};
pub use threshold::{ThresholdOutcome, ThresholdRule};

/// The verdict on one metric (or a step, or a deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The metric is within its rules.
    Pass,
    /// The metric broke a rule: the new version is worse.
    Fail,
    /// There was not enough data to tell.
    Inconclusive,
}

impl Verdict {
    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The worse of two verdicts: fail, then inconclusive, then pass.
    pub fn worst(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Pass => 0,
            Verdict::Inconclusive => 1,
            Verdict::Fail => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample of a metric, as reports keep it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub value: f64,
}

/// The time range a metric was read over (milliseconds since the epoch;
/// `step_ms` between samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub step_ms: u64,
}

/// How one metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub threshold: Option<ThresholdRule>,
    pub comparison: Option<ComparisonRule>,
    /// Fewer samples than this (on either side) is no data.
    pub min_samples: u32,
}

impl Rule {
    /// The rule a config metric describes, with the documented defaults
    /// (failure limit 0, confidence 0.98, tolerance 0.10, direction increase).
    pub fn from_spec(spec: &MetricSpec) -> Rule {
        Rule {
            threshold: (spec.min.is_some() || spec.max.is_some()).then(|| ThresholdRule {
                min: spec.min,
                max: spec.max,
                failure_limit: spec.failure_limit.unwrap_or(0),
                consecutive_successes: spec.consecutive_successes,
            }),
            comparison: spec.baseline.as_ref().map(|_| ComparisonRule {
                direction: spec.direction.unwrap_or_default(),
                confidence: spec.confidence.unwrap_or(DEFAULT_CONFIDENCE),
                tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
                absolute_tolerance: spec.absolute_tolerance.unwrap_or(0.0),
            }),
            min_samples: spec.min_samples.unwrap_or(1),
        }
    }
}

impl Rule {
    /// The rule in words, one line (`max 0.05, 1 of 5 samples may be out of
    /// bounds; vs baseline: an increase over 10 % at confidence 0.98 fails`).
    pub fn describe(&self, samples: u32) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.threshold {
            let mut p = match (t.min, t.max) {
                (Some(min), Some(max)) => format!("within {}..{}", number(min), number(max)),
                (Some(min), None) => format!("min {}", number(min)),
                (None, Some(max)) => format!("max {}", number(max)),
                (None, None) => "no bounds".to_string(),
            };
            if t.failure_limit > 0 {
                p.push_str(&format!(
                    ", {} of {samples} samples may be out of bounds",
                    t.failure_limit
                ));
            }
            if let Some(n) = t.consecutive_successes {
                p.push_str(&format!(", the last {n} within"));
            }
            parts.push(p);
        }
        if let Some(c) = &self.comparison {
            let change = match c.direction {
                Direction::Increase => "an increase",
                Direction::Decrease => "a decrease",
                Direction::Either => "a change",
            };
            let mut tolerance = format!("{} %", number(c.tolerance * 100.0));
            if c.absolute_tolerance > 0.0 {
                tolerance.push_str(&format!(" and {}", number(c.absolute_tolerance)));
            }
            parts.push(format!(
                "vs baseline: {change} over {tolerance} at confidence {} fails",
                number(c.confidence)
            ));
        }
        parts.join("; ")
    }
}

/// The relative change of the median a comparison tolerates by default.
pub const DEFAULT_TOLERANCE: f64 = 0.10;

/// The verdict on one metric's samples, with what each mode found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// One line: why (the failing mode's reason first).
    pub reason: String,
    pub threshold: Option<ThresholdOutcome>,
    pub comparison: Option<ComparisonOutcome>,
}

/// Judges `samples` (in time order) by `rule`; `baseline` is used by the
/// comparison (ignored without one).
pub fn judge(rule: &Rule, samples: &[Point], baseline: &[Point]) -> Judgement {
    let min = rule.min_samples as usize;
    let threshold = rule.threshold.map(|t| t.judge(samples, min));
    let comparison = rule.comparison.map(|c| c.judge(samples, baseline, min));
    let mut verdict = Verdict::Pass;
    let mut reasons: Vec<(Verdict, String)> = Vec::new();
    if let Some(t) = &threshold {
        verdict = verdict.worst(t.verdict);
        reasons.push((t.verdict, format!("threshold: {}", t.reason)));
    }
    if let Some(c) = &comparison {
        verdict = verdict.worst(c.verdict);
        reasons.push((c.verdict, format!("comparison: {}", c.reason)));
    }
    // The reason that decided the verdict first.
    reasons.sort_by_key(|(v, _)| *v != verdict);
    let reason = if reasons.is_empty() {
        "no rule to judge by".to_string()
    } else {
        reasons
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join("; ")
    };
    Judgement {
        verdict: if threshold.is_none() && comparison.is_none() {
            Verdict::Inconclusive
        } else {
            verdict
        },
        reason,
        threshold,
        comparison,
    }
}

/// One entry of the report's `analysis` list: a metric of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    pub service: String,
    /// The fleet host of the step (none for a local service).
    pub host: Option<String>,
    pub metric: String,
    /// The metric-provider plugin that read it.
    pub provider: String,
    pub verdict: Verdict,
    pub reason: String,
    pub window: Window,
    /// The query as sent (placeholders filled in).
    pub query: String,
    /// The baseline query as sent, for comparisons.
    pub baseline_query: Option<String>,
    pub samples: Vec<Point>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_samples: Vec<Point>,
    pub threshold: Option<ThresholdOutcome>,
    pub comparison: Option<ComparisonOutcome>,
    /// Why there is no data, when a query failed (the provider's error).
    pub error: Option<String>,
    /// The rule it was judged by (what `adeploy analyze` compares a new
    /// config's rule with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
}

/// Which metric of which step a verdict is about, and what was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub service: String,
    pub host: Option<String>,
    pub metric: String,
    pub provider: String,
    pub window: Window,
    pub query: String,
    pub baseline_query: Option<String>,
}

impl MetricVerdict {
    /// Judges the samples of `subject` by `rule`.
    pub fn judged(
        subject: Subject,
        rule: &Rule,
        samples: Vec<Point>,
        baseline: Vec<Point>,
    ) -> MetricVerdict {
        let j = judge(rule, &samples, &baseline);
        MetricVerdict {
            service: subject.service,
            host: subject.host,
            metric: subject.metric,
            provider: subject.provider,
            verdict: j.verdict,
            reason: j.reason,
            window: subject.window,
            query: subject.query,
            baseline_query: subject.baseline_query,
            samples,
            baseline_samples: baseline,
            threshold: j.threshold,
            comparison: j.comparison,
            error: None,
            rule: Some(*rule),
        }
    }

    /// The same verdict, noting the rule it stands for (a verdict without
    /// data was judged by none).
    pub fn with_rule(mut self, rule: &Rule) -> MetricVerdict {
        self.rule = Some(*rule);
        self
    }

    /// An inconclusive verdict for a metric whose query failed: `error` says
    /// why (one line, naming the provider).
    pub fn without_data(subject: Subject, error: String) -> MetricVerdict {
        MetricVerdict {
            service: subject.service,
            host: subject.host,
            metric: subject.metric,
            provider: subject.provider,
            verdict: Verdict::Inconclusive,
            reason: format!("no data: {error}"),
            window: subject.window,
            query: subject.query,
            baseline_query: subject.baseline_query,
            samples: Vec::new(),
            baseline_samples: Vec::new(),
            threshold: None,
            comparison: None,
            error: Some(error),
            rule: None,
        }
    }
}

/// The verdict of a set of metrics (a step, a deployment): the worst one;
/// `pass` when there are none.
pub fn overall<'a>(verdicts: impl IntoIterator<Item = &'a MetricVerdict>) -> Verdict {
    verdicts
        .into_iter()
        .fold(Verdict::Pass, |acc, v| acc.worst(v.verdict))
}

/// A service's analysis, ready to run: the window shape and each metric's
/// queries and rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisPlan {
    pub service: String,
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Samples per metric and step.
    pub samples: u32,
    pub metrics: Vec<MetricPlan>,
}

/// One metric of an [`AnalysisPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    pub name: String,
    pub provider: String,
    /// The query, placeholders not yet filled in.
    pub query: String,
    pub baseline: Option<String>,
    pub rule: Rule,
}

impl AnalysisPlan {
    /// The plan of `service`'s `analysis` config section.
    pub fn new(service: &str, config: &ServiceAnalysis) -> AnalysisPlan {
        AnalysisPlan {
            service: service.to_string(),
            interval_ms: config.interval_s.saturating_mul(1000),
            samples: config.samples,
            metrics: config
                .metrics
                .iter()
                .map(|m| MetricPlan {
                    name: m.name.clone(),
                    provider: m.provider.clone(),
                    query: m.query.clone(),
                    baseline: m.baseline.clone(),
                    rule: Rule::from_spec(m),
                })
                .collect(),
        }
    }

    /// How long the samples take: `(samples − 1) × interval` (the soak an
    /// analysis needs after the step is healthy).
    pub fn duration_ms(&self) -> u64 {
        u64::from(self.samples.saturating_sub(1)).saturating_mul(self.interval_ms)
    }

    /// The window of the samples that end at `end_ms`.
    pub fn window_ending(&self, end_ms: u64) -> Window {
        Window {
            start_ms: end_ms.saturating_sub(self.duration_ms()),
            end_ms,
            step_ms: self.interval_ms,
        }
    }
}

impl MetricPlan {
    /// The query and baseline query with `value(name)` filled in for the
    /// `${ADEPLOY_...}` placeholders; an error names the metric and the
    /// placeholder (e.g. no previous version yet: the metric has no data).
    pub fn queries<'v>(
        &self,
        value: impl Fn(&str) -> Option<&'v str> + Copy,
    ) -> Result<(String, Option<String>), String> {
        let fill = |text: &str| {
            placeholders::substitute(text, value)
                .map_err(|e| format!("metric '{}': {e}", self.name))
        };
        let query = fill(&self.query)?;
        let baseline = self.baseline.as_deref().map(fill).transpose()?;
        Ok((query, baseline))
    }
}

/// A number for people: four significant digits, no trailing zeros
/// (`0.003968`, `201`, `0.05`).
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 12) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                timestamp_ms: 1_000 + 2_000 * i as u64,
                value: *v,
            })
            .collect()
    }

    fn spec(yaml: &str) -> MetricSpec {
        crate::config::parse_yaml(yaml, std::path::Path::new("m.yaml")).unwrap()
    }

    fn subject(metric: &str) -> Subject {
        Subject {
            service: "api".into(),
            host: None,
            metric: metric.into(),
            provider: "prometheus".into(),
            window: Window {
                start_ms: 1_000,
                end_ms: 9_000,
                step_ms: 2_000,
            },
            query: "q".into(),
            baseline_query: None,
        }
    }

    #[test]
    fn rules_from_the_config_carry_the_defaults() {
        let r = Rule::from_spec(&spec("{name: e, provider: p, query: q, max: 0.05}"));
        assert_eq!(
            r.threshold,
            Some(ThresholdRule {
                min: None,
                max: Some(0.05),
                failure_limit: 0,
                consecutive_successes: None
            })
        );
        assert_eq!((r.comparison, r.min_samples), (None, 1));
        let r = Rule::from_spec(&spec("{name: l, provider: p, query: q, baseline: b}"));
        assert_eq!(
            r.comparison,
            Some(ComparisonRule {
                direction: Direction::Increase,
                confidence: 0.98,
                tolerance: 0.10,
                absolute_tolerance: 0.0
            })
        );
        assert_eq!(r.threshold, None);
    }

    #[test]
    fn both_modes_give_the_worse_verdict_and_its_reason_first() {
        let rule = Rule::from_spec(&spec(
            "{name: l, provider: p, query: q, baseline: b, max: 500}",
        ));
        let slow = points(&[300.0, 305.0, 298.0, 310.0, 301.0]);
        let base = points(&[100.0, 102.0, 98.0, 101.0, 99.0]);
        let j = judge(&rule, &slow, &base);
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(j.threshold.as_ref().unwrap().verdict, Verdict::Pass);
        assert!(
            j.reason.starts_with("comparison: the median changed +201"),
            "{}",
            j.reason
        );
        assert!(
            j.reason.contains("; threshold: all 5 samples ≤ 500"),
            "{}",
            j.reason
        );
        // No baseline data: inconclusive even though the threshold passes.
        let j = judge(&rule, &slow, &[]);
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert!(
            j.reason.starts_with("comparison: no baseline samples"),
            "{}",
            j.reason
        );
    }

    #[test]
    fn verdicts_serialise_as_the_report_entry() {
        let rule = Rule::from_spec(&spec(
            "{name: error-rate, provider: p, query: q, max: 0.05}",
        ));
        let v = MetricVerdict::judged(
            subject("error-rate"),
            &rule,
            points(&[0.3, 0.31, 0.29]),
            vec![],
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["metric"], "error-rate");
        assert_eq!(json["samples"][0]["timestamp_ms"], 1000);
        assert_eq!(json["samples"][0]["value"], 0.3);
        assert_eq!(json["threshold"]["max"], 0.05);
        assert_eq!(json["threshold"]["out_of_bounds"], 3);
        assert!(json.get("baseline_samples").is_none());
        let back: MetricVerdict = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);

        let rule = Rule::from_spec(&spec("{name: l, provider: p, query: q, baseline: b}"));
        let v = MetricVerdict::judged(
            subject("l"),
            &rule,
            points(&[300.0, 305.0, 298.0, 310.0, 301.0]),
            points(&[100.0, 102.0, 98.0, 101.0, 99.0]),
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["comparison"]["statistic"], 25.0);
        assert_eq!(json["comparison"]["p_value"], 1.0 / 252.0);
        assert_eq!(json["comparison"]["effect_size"], 2.01);
        assert_eq!(json["comparison"]["direction"], "increase");
        assert_eq!(json["comparison"]["alternative"], "greater");
        assert_eq!(json["comparison"]["method"], "exact");
    }

    #[test]
    fn a_failed_query_is_inconclusive_with_the_error() {
        let v = MetricVerdict::without_data(
            subject("e"),
            "provider 'prometheus' cannot read its backend: connection refused".into(),
        );
        assert_eq!(v.verdict, Verdict::Inconclusive);
        assert!(v.reason.starts_with("no data: provider 'prometheus'"));
        assert!(v.error.is_some());
    }

    #[test]
    fn overall_is_the_worst() {
        let pass = MetricVerdict::judged(
            subject("a"),
            &Rule::from_spec(&spec("{name: a, provider: p, query: q, max: 1}")),
            points(&[0.5]),
            vec![],
        );
        let none = MetricVerdict::without_data(subject("b"), "down".into());
        assert_eq!(overall([&pass]), Verdict::Pass);
        assert_eq!(overall([&pass, &none]), Verdict::Inconclusive);
        assert_eq!(overall(std::iter::empty()), Verdict::Pass);
        assert_eq!(Verdict::Fail.worst(Verdict::Inconclusive), Verdict::Fail);
    }

    #[test]
    fn plans_fill_placeholders_and_shape_the_window() {
        let config: ServiceAnalysis = crate::config::parse_yaml(
            "interval_s: 2\nsamples: 5\nmetrics:\n  - {name: l, provider: prometheus, query: 'p95{v=\"${ADEPLOY_VERSION}\"}', baseline: 'p95{v=\"${ADEPLOY_PREVIOUS_VERSION}\"}'}\n",
            std::path::Path::new("a.yaml"),
        )
        .unwrap();
        let plan = AnalysisPlan::new("api", &config);
        assert_eq!((plan.interval_ms, plan.duration_ms()), (2_000, 8_000));
        assert_eq!(
            plan.window_ending(100_000),
            Window {
                start_ms: 92_000,
                end_ms: 100_000,
                step_ms: 2_000
            }
        );
        let m = &plan.metrics[0];
        let values = |n: &str| match n {
            "ADEPLOY_VERSION" => Some("2.0"),
            "ADEPLOY_PREVIOUS_VERSION" => Some("1.9"),
            _ => None,
        };
        assert_eq!(
            m.queries(values).unwrap(),
            (
                "p95{v=\"2.0\"}".to_string(),
                Some("p95{v=\"1.9\"}".to_string())
            )
        );
        let first_deploy = |n: &str| (n == "ADEPLOY_VERSION").then_some("1.0");
        assert_eq!(
            m.queries(first_deploy).unwrap_err(),
            "metric 'l': placeholder ${ADEPLOY_PREVIOUS_VERSION} has no value in this deployment"
        );
    }

    #[test]
    fn numbers_for_people() {
        for (v, s) in [
            (0.003968253968, "0.003968"),
            (200.99999999999997, "201"),
            (0.05, "0.05"),
            (0.0, "0"),
            (-3.5, "-3.5"),
            (123456.7, "123457"),
            (1e-13, "0"),
        ] {
            assert_eq!(number(v), s, "{v}");
        }
    }
}
