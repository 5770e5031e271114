//! Metric analysis in the deploy flow: what preflight checks, what a step
//! runs after its health checks, and what `adeploy analyze` re-runs.
//!
//! The judge ([`crate::analysis`]) is pure; this file is the I/O around it,
//! written once for the three callers: the placeholders of a step (the
//! values of its command environment), the labels a provider is told, one
//! query through a metric-provider plugin, and one metric judged from its
//! query and baseline. Why here and not in `execute/`: preflight checks the
//! same queries before anything runs, and `Engine::analyze` re-queries a
//! recorded deployment's windows; all three must fill placeholders and ask
//! providers the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::analysis::{
    self as judge, AnalysisPlan, MetricPlan, MetricVerdict, Point, Subject, Window,
};
use crate::plugin::{Detail, MetricQuery, Plugin, QueryError, TimeWindow};

/// A service's analysis, ready for its steps: the plan and the provider of
/// each metric (by metric name).
#[derive(Clone)]
pub(crate) struct ServiceAnalysis {
    pub plan: AnalysisPlan,
    pub providers: BTreeMap<String, Arc<Plugin>>,
}

impl std::fmt::Debug for ServiceAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAnalysis")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// The value of placeholder `name` in a command environment (the last
/// entry wins, as for the command itself).
pub(crate) fn lookup<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a provider is told about a query (for providers that select by tags
/// rather than by query text): service, environment, deployment id,
/// version, previous version and host when known, and the `role`
/// (`canary` for the query, `baseline` for the baseline query).
pub(crate) fn labels(env: &[(String, String)], role: &str) -> Vec<Detail> {
    let mut out: Vec<Detail> = [
        ("service", "ADEPLOY_SERVICE"),
        ("environment", "ADEPLOY_ENVIRONMENT"),
        ("deployment-id", "ADEPLOY_DEPLOYMENT_ID"),
        ("version", "ADEPLOY_VERSION"),
        ("previous-version", "ADEPLOY_PREVIOUS_VERSION"),
        ("host", "ADEPLOY_HOST"),
    ]
    .into_iter()
    .filter_map(|(key, var)| {
        lookup(env, var).map(|v| Detail {
            key: key.to_string(),
            value: v.to_string(),
        })
    })
    .collect();
    out.push(Detail {
        key: "role".to_string(),
        value: role.to_string(),
    });
    out
}

/// The request of one query over `window`.
pub(crate) fn request(
    metric: &str,
    query: &str,
    window: Window,
    labels: Vec<Detail>,
) -> MetricQuery {
    MetricQuery {
        metric: metric.to_string(),
        query: query.to_string(),
        window: TimeWindow {
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            step_ms: window.step_ms,
        },
        labels,
        // Both replaced by the host with the plugin's own.
        config: String::new(),
        deadline_ms: 0,
    }
}

/// One query through `provider`: its samples as the judge reads them.
pub(crate) async fn read(
    provider: &Plugin,
    request: &MetricQuery,
) -> Result<Vec<Point>, QueryError> {
    let called = provider.query(request).await?;
    Ok(called
        .value
        .iter()
        .map(|s| Point {
            timestamp_ms: s.timestamp_ms,
            value: s.value,
        })
        .collect())
}

/// What to query for one metric of one step.
pub(crate) struct MetricQueries<'a> {
    pub service: &'a str,
    pub host: Option<&'a str>,
    pub metric: &'a MetricPlan,
    pub provider: &'a Plugin,
    pub window: Window,
    /// The query, placeholders filled in.
    pub query: String,
    /// The baseline query, placeholders filled in; `Err(why)` when it cannot
    /// be (no previous version yet).
    pub baseline: Option<Result<String, String>>,
    pub env: &'a [(String, String)],
}

/// Queries a metric (and its baseline) and judges it by `rule`: a verdict,
/// inconclusive with the provider's error when a query gives no data.
pub(crate) async fn judge_metric(q: MetricQueries<'_>, rule: &judge::Rule) -> MetricVerdict {
    let subject = Subject {
        service: q.service.to_string(),
        host: q.host.map(str::to_string),
        metric: q.metric.name.clone(),
        provider: q.metric.provider.clone(),
        window: q.window,
        query: q.query.clone(),
        baseline_query: q.baseline.as_ref().and_then(|b| b.as_ref().ok().cloned()),
    };
    let name = &q.metric.name;
    let samples = match read(
        q.provider,
        &request(name, &q.query, q.window, labels(q.env, "canary")),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return MetricVerdict::without_data(subject, e.to_string()).with_rule(rule),
    };
    let (baseline, missing) = match &q.baseline {
        None => (Vec::new(), None),
        Some(Err(why)) => (Vec::new(), Some(why.clone())),
        Some(Ok(b)) => match read(
            q.provider,
            &request(name, b, q.window, labels(q.env, "baseline")),
        )
        .await
        {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(format!("baseline: {e}"))),
        },
    };
    let mut v = MetricVerdict::judged(subject, rule, samples, baseline);
    if let Some(why) = missing {
        v.error = Some(why);
    }
    v
}

/// The first verdict of `verdicts` with `verdict`, as one line naming the
/// metric: `metric 'error-rate' failed: threshold: …`.
pub(crate) fn first_line(verdicts: &[MetricVerdict], verdict: judge::Verdict) -> Option<String> {
    verdicts.iter().find(|v| v.verdict == verdict).map(|v| {
        let what = match verdict {
            judge::Verdict::Fail => "failed",
            judge::Verdict::Inconclusive => "is inconclusive",
            judge::Verdict::Pass => "passed",
        };
        let error = match (&v.error, verdict) {
            (Some(e), judge::Verdict::Inconclusive) if !v.reason.contains(e.as_str()) => {
                format!(" ({e})")
            }
            _ => String::new(),
        };
        format!("metric '{}' {what}: {}{error}", v.metric, v.reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_carry_what_is_known_and_the_role() {
        let env = vec![
            ("ADEPLOY_SERVICE".to_string(), "api".to_string()),
            ("ADEPLOY_VERSION".to_string(), "1.0".to_string()),
            ("ADEPLOY_VERSION".to_string(), "1.1".to_string()),
        ];
        let l: Vec<(String, String)> = labels(&env, "baseline")
            .into_iter()
            .map(|d| (d.key, d.value))
            .collect();
        assert_eq!(
            l,
            [
                ("service".to_string(), "api".to_string()),
                ("version".to_string(), "1.1".to_string()),
                ("role".to_string(), "baseline".to_string())
            ]
        );
    }
}
