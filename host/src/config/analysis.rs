//! Validation of `services.<name>.analysis` and `environments.<env>.analysis`.
//!
//! Why so strict: an analysis rule that can never fail (a failure limit as
//! large as the sample count, a comparison whose sample count can never
//! reach the confidence asked for) looks like protection and is none, and a
//! comparison key under a threshold-only metric is most likely a
//! misunderstanding. Each is refused with the file, line and column of the
//! metric's key.

use std::path::Path;

use super::{Config, ConfigError, Direction, Environment, InconclusivePolicy, MetricSpec};

/// Most samples per metric and step (a provider returns at most 11,000).
const MAX_SAMPLES: u32 = 11_000;

impl Config {
    /// What an inconclusive analysis means in `environment`
    /// (`environments.<env>.analysis.inconclusive`, `fail` when unset).
    pub fn inconclusive_policy(&self, environment: Environment) -> InconclusivePolicy {
        self.environments
            .get(&environment)
            .map(|e| e.analysis.inconclusive)
            .unwrap_or_default()
    }

    /// Every service's `analysis` section makes sense on its own. Whether each
    /// `provider` is a loaded metric-provider plugin is checked when the
    /// plugins are loaded (`PluginSet::metric_provider`).
    pub(super) fn validate_analysis(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        for (service, s) in &self.services {
            let Some(a) = &s.analysis else { continue };
            let section = ["services", service.as_str(), "analysis"];
            let err_at =
                |line_col: Option<(usize, usize)>, key: String, message: String| match line_col {
                    Some((line, column)) => ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        column,
                        message: format!("{key}: {message}"),
                    },
                    None => ConfigError::Semantic {
                        path: path.to_path_buf(),
                        key,
                        message,
                    },
                };
            let section_err = |field: Option<&str>, message: String| {
                let mut keys = section.to_vec();
                keys.extend(field);
                err_at(super::locate(text, &keys), keys.join("."), message)
            };
            if a.interval_s == 0 {
                return Err(section_err(
                    Some("interval_s"),
                    "must be at least 1 second".to_string(),
                ));
            }
            if a.samples == 0 || a.samples > MAX_SAMPLES {
                return Err(section_err(
                    Some("samples"),
                    format!("must be from 1 to {MAX_SAMPLES}, got {}", a.samples),
                ));
            }
            if a.metrics.is_empty() {
                return Err(section_err(
                    None,
                    "has no metrics: add `metrics` (name, provider, query and max/min or baseline) or remove `analysis`".to_string(),
                ));
            }
            for (i, m) in a.metrics.iter().enumerate() {
                let metric_err = |field: &str, message: String| {
                    err_at(
                        locate_item(text, &section, "metrics", i, field),
                        format!("services.{service}.analysis.metrics[{i}].{field}"),
                        message,
                    )
                };
                check_metric(m, a.samples, &metric_err)?;
                if let Some(j) = a.metrics[..i].iter().position(|o| o.name == m.name) {
                    return Err(metric_err(
                        "name",
                        format!("'{}' is also the name of metrics[{j}]", m.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One metric's own rules.
fn check_metric(
    m: &MetricSpec,
    samples: u32,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if m.name.is_empty()
        || !m
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(err(
            "name",
            format!(
                "{:?} is not a metric name: use letters, digits, `-`, `_`, `.` and `:` (e.g. error-rate)",
                m.name
            ),
        ));
    }
    if m.provider.trim().is_empty() {
        return Err(err(
            "provider",
            "names no metric-provider plugin (e.g. prometheus)".to_string(),
        ));
    }
    if m.query.trim().is_empty() {
        return Err(err("query", "is empty".to_string()));
    }
    for (field, text) in [("query", Some(&m.query)), ("baseline", m.baseline.as_ref())] {
        if let Some(text) = text
            && let Err(e) = super::placeholders::used(text)
        {
            return Err(err(field, e.to_string()));
        }
    }
    let threshold = m.min.is_some() || m.max.is_some();
    let comparison = m.baseline.is_some();
    if !threshold && !comparison {
        return Err(err(
            "name",
            format!(
                "metric '{}' judges nothing: give it `max`/`min` (threshold mode) or `baseline` (comparison mode)",
                m.name
            ),
        ));
    }
    for (field, v) in [("min", m.min), ("max", m.max)] {
        if let Some(v) = v
            && !v.is_finite()
        {
            return Err(err(field, format!("must be a finite number, got {v}")));
        }
    }
    if let (Some(min), Some(max)) = (m.min, m.max)
        && min > max
    {
        return Err(err(
            "min",
            format!("{min} is above max {max}: no sample could pass"),
        ));
    }
    if !threshold {
        for (field, set) in [
            ("failure_limit", m.failure_limit.is_some()),
            ("consecutive_successes", m.consecutive_successes.is_some()),
        ] {
            if set {
                return Err(err(
                    field,
                    "applies to threshold mode only: add `max` or `min`, or remove it".to_string(),
                ));
            }
        }
    }
    if let Some(limit) = m.failure_limit
        && limit >= samples
    {
        return Err(err(
            "failure_limit",
            format!(
                "{limit} of {samples} samples tolerated means the metric can never fail; use at most {}",
                samples - 1
            ),
        ));
    }
    if let Some(n) = m.consecutive_successes
        && (n == 0 || n > samples)
    {
        return Err(err(
            "consecutive_successes",
            format!("must be from 1 to the {samples} samples, got {n}"),
        ));
    }
    if let Some(n) = m.min_samples
        && (n == 0 || n > samples)
    {
        return Err(err(
            "min_samples",
            format!("must be from 1 to the {samples} samples, got {n}"),
        ));
    }
    if !comparison {
        for (field, set) in [
            ("tolerance", m.tolerance.is_some()),
            ("absolute_tolerance", m.absolute_tolerance.is_some()),
            ("direction", m.direction.is_some()),
            ("confidence", m.confidence.is_some()),
        ] {
            if set {
                return Err(err(
                    field,
                    "applies to comparison mode only: add a `baseline` query, or remove it"
                        .to_string(),
                ));
            }
        }
        return Ok(());
    }
    if m.baseline.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err(err("baseline", "is empty".to_string()));
    }
    for (field, v) in [
        ("tolerance", m.tolerance),
        ("absolute_tolerance", m.absolute_tolerance),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(err(
                field,
                format!("must be a number of at least 0, got {v}"),
            ));
        }
    }
    let confidence = m.confidence.unwrap_or(DEFAULT_CONFIDENCE);
    if !(confidence > 0.5 && confidence < 1.0) {
        return Err(err(
            "confidence",
            format!("must be between 0.5 and 1 (e.g. 0.98), got {confidence}"),
        ));
    }
    let two_sided = m.direction == Some(Direction::Either);
    let smallest = smallest_p_value(samples as usize, two_sided);
    if smallest >= 1.0 - confidence {
        let needed = (1..=MAX_SAMPLES as usize)
            .find(|n| smallest_p_value(*n, two_sided) < 1.0 - confidence)
            .unwrap_or(MAX_SAMPLES as usize);
        return Err(err(
            "confidence",
            format!(
                "{samples} samples per side can never show a difference at confidence {confidence} (the smallest possible p-value is {smallest:.3}); take at least {needed} samples (`analysis.samples`) or lower the confidence"
            ),
        ));
    }
    Ok(())
}

/// The confidence of a comparison when the metric does not set one.
pub const DEFAULT_CONFIDENCE: f64 = 0.98;

/// The smallest p-value of the exact Mann-Whitney test with `n` samples on
/// each side: one arrangement of `C(2n, n)`, two when two-sided. (The same
/// bound as `analysis::smallest_p_value`, here so config stays below
/// analysis.)
fn smallest_p_value(n: usize, two_sided: bool) -> f64 {
    let mut arrangements = 1.0f64;
    for i in 0..n {
        arrangements = arrangements * (2 * n - i) as f64 / (i + 1) as f64;
    }
    let factor = if two_sided { 2.0 } else { 1.0 };
    (factor / arrangements).min(1.0)
}

/// The line and column of `field` in item `index` of the list `list` under
/// `section` (block-style YAML, `- name: x` items); else of the item, else
/// of the list key; `None` when the user's text does not have the list.
fn locate_item(
    text: &str,
    section: &[&str],
    list: &str,
    index: usize,
    field: &str,
) -> Option<(usize, usize)> {
    let mut keys = section.to_vec();
    keys.push(list);
    let (list_line, list_col) = super::locate(text, &keys)?;
    let list_indent = list_col - 1;
    let is_field = |s: &str| {
        s.strip_prefix(field)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let mut dash_indent = None;
    let mut count = 0;
    let mut item: Option<(usize, usize)> = None;
    // `list_line` is 1-based: skipping that many lines starts after the key.
    for (i, line) in text.lines().enumerate().skip(list_line) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let is_dash = trimmed == "-" || trimmed.starts_with("- ");
        if indent < list_indent || (indent == list_indent && !is_dash) {
            break;
        }
        let dash = *dash_indent.get_or_insert(indent);
        if is_dash && indent == dash {
            if item.is_some() {
                break;
            }
            if count == index {
                let rest = trimmed[1..].trim_start();
                let column = indent + (trimmed.len() - rest.len()) + 1;
                if is_field(rest) {
                    return Some((i + 1, column));
                }
                item = Some((i + 1, indent + 1));
            }
            count += 1;
        } else if item.is_some() && indent > dash && is_field(trimmed) {
            return Some((i + 1, indent + 1));
        }
    }
    item.or(Some((list_line, list_col)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_layers(yaml, Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    /// A service `api` with `analysis` given as YAML lines (indented by 4).
    fn service_with(analysis: &str) -> String {
        format!("services:\n  api:\n    deploy: 'true'\n    analysis:\n{analysis}")
    }

    const GOOD: &str = "      interval_s: 2
      samples: 5
      metrics:
        - name: error-rate
          provider: prometheus
          query: 'sum(rate(errors{job=\"api\"}[10s]))'
          max: 0.05
          failure_limit: 1
        - name: latency-p95
          provider: prometheus
          query: 'p95{version=\"${ADEPLOY_VERSION}\"}'
          baseline: 'p95{version=\"${ADEPLOY_PREVIOUS_VERSION}\"}'
          tolerance: 0.10
          direction: increase
";

    #[test]
    fn the_issue_surface_loads() {
        let cfg = load(&service_with(GOOD)).unwrap();
        let a = cfg.services["api"].analysis.as_ref().unwrap();
        assert_eq!((a.interval_s, a.samples, a.metrics.len()), (2, 5, 2));
        assert_eq!(a.metrics[0].max, Some(0.05));
        assert_eq!(a.metrics[1].direction, Some(Direction::Increase));
        assert_eq!(a.metrics[1].tolerance, Some(0.10));
    }

    #[test]
    fn errors_point_at_the_metric_key() {
        let bad = GOOD.replace("failure_limit: 1", "failure_limit: 5");
        assert_eq!(
            load(&service_with(&bad)).unwrap_err(),
            "c.yaml:12:11: services.api.analysis.metrics[0].failure_limit: 5 of 5 samples tolerated means the metric can never fail; use at most 4"
        );
        let bad = GOOD.replace("tolerance: 0.10", "tolerance: -1");
        assert_eq!(
            load(&service_with(&bad)).unwrap_err(),
            "c.yaml:17:11: services.api.analysis.metrics[1].tolerance: must be a number of at least 0, got -1"
        );
        let bad = GOOD.replace("${ADEPLOY_VERSION}", "${ADEPLOY_VERSIN}");
        let e = load(&service_with(&bad)).unwrap_err();
        assert!(
            e.starts_with("c.yaml:15:11: services.api.analysis.metrics[1].query: unknown placeholder ${ADEPLOY_VERSIN}"),
            "{e}"
        );
        let bad = GOOD.replace("name: latency-p95", "name: error-rate");
        assert_eq!(
            load(&service_with(&bad)).unwrap_err(),
            "c.yaml:13:11: services.api.analysis.metrics[1].name: 'error-rate' is also the name of metrics[0]"
        );
    }

    #[test]
    fn a_metric_that_judges_nothing_or_mixes_modes_is_refused() {
        let bad = GOOD.replace("max: 0.05", "baseline: 'errors_before'");
        let e = load(&service_with(&bad)).unwrap_err();
        assert_eq!(
            e,
            "c.yaml:12:11: services.api.analysis.metrics[0].failure_limit: applies to threshold mode only: add `max` or `min`, or remove it"
        );
        let bad = GOOD.replace("          max: 0.05\n          failure_limit: 1\n", "");
        let e = load(&service_with(&bad)).unwrap_err();
        assert!(
            e.contains("metrics[0].name: metric 'error-rate' judges nothing"),
            "{e}"
        );
        let bad = GOOD.replace("failure_limit: 1", "direction: decrease");
        let e = load(&service_with(&bad)).unwrap_err();
        assert!(
            e.contains("metrics[0].direction: applies to comparison mode only"),
            "{e}"
        );
        let bad = GOOD.replace("max: 0.05", "max: 0.05\n          min: 0.1");
        let e = load(&service_with(&bad)).unwrap_err();
        assert!(e.contains("metrics[0].min: 0.1 is above max 0.05"), "{e}");
    }

    #[test]
    fn a_comparison_that_can_never_fail_is_refused() {
        let few = GOOD
            .replace("samples: 5", "samples: 3")
            .replace("failure_limit: 1", "failure_limit: 2");
        let e = load(&service_with(&few)).unwrap_err();
        assert!(
            e.contains("metrics[1].confidence: 3 samples per side can never show a difference at confidence 0.98 (the smallest possible p-value is 0.050); take at least 4 samples"),
            "{e}"
        );
        // With a lower confidence it can.
        let ok = few.replace(
            "direction: increase",
            "direction: increase\n          confidence: 0.9",
        );
        assert!(load(&service_with(&ok)).is_ok());
    }

    #[test]
    fn section_errors() {
        let e = load(&service_with("      samples: 0\n      metrics: []\n")).unwrap_err();
        assert_eq!(
            e,
            "c.yaml:5:7: services.api.analysis.samples: must be from 1 to 11000, got 0"
        );
        let e = load(&service_with("      samples: 5\n")).unwrap_err();
        assert!(
            e.starts_with("c.yaml:4:5: services.api.analysis: has no metrics"),
            "{e}"
        );
        let e = load(&service_with("      sample: 5\n")).unwrap_err();
        assert!(e.contains("unknown field `sample`"), "{e}");
        let e = load(&service_with(
            &GOOD.replace("direction: increase", "direction: up"),
        ))
        .unwrap_err();
        assert!(e.contains("unknown variant `up`"), "{e}");
    }

    #[test]
    fn inconclusive_policy_per_environment() {
        let cfg = Config::embedded().unwrap();
        assert_eq!(
            cfg.inconclusive_policy(Environment::Production),
            InconclusivePolicy::Ask
        );
        assert_eq!(
            cfg.inconclusive_policy(Environment::Local),
            InconclusivePolicy::Pass
        );
        let cfg = load("environments:\n  production:\n    analysis:\n      inconclusive: fail\n  staging:\n    analysis: {inconclusive: pause}\n").unwrap();
        assert_eq!(
            cfg.inconclusive_policy(Environment::Production),
            InconclusivePolicy::Fail
        );
        assert_eq!(
            cfg.inconclusive_policy(Environment::Staging),
            InconclusivePolicy::Ask
        );
        assert_eq!(
            cfg.inconclusive_policy(Environment::Development),
            InconclusivePolicy::Pass
        );
        let e = load("environments:\n  prod:\n    analysis: {inconclusive: fail}\n").unwrap_err();
        assert!(
            e.starts_with("c.yaml:2:3: environments: unknown variant `prod`"),
            "{e}"
        );
        let e = load("environments:\n  production:\n    analysis: {inconclusive: maybe}\n")
            .unwrap_err();
        assert!(e.contains("unknown variant `maybe`"), "{e}");
    }
}
