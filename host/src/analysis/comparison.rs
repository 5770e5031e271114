//! Comparison mode: the new version's samples against the baseline's, with a
//! Mann-Whitney U test for "is the difference real" and an effect-size
//! tolerance for "is it big enough to matter".

use serde::{Deserialize, Serialize};

use super::mann_whitney::{self, Alternative, MannWhitney, Method};
use super::{Direction, Point, Verdict, number};

/// How a comparison is judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRule {
    /// Which change is bad.
    pub direction: Direction,
    /// The confidence needed to call a change real (0.98: p < 0.02).
    pub confidence: f64,
    /// The relative change of the median tolerated (0.10: 10 %).
    pub tolerance: f64,
    /// An absolute change of the median tolerated (for baselines near 0).
    pub absolute_tolerance: f64,
}

/// What comparison mode found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonOutcome {
    pub verdict: Verdict,
    /// One line: why.
    pub reason: String,
    #[serde(flatten)]
    pub rule: ComparisonRule,
    /// Samples of the version judged and of the baseline.
    pub samples: usize,
    pub baseline_samples: usize,
    /// The Mann-Whitney U of the version judged (none without data).
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// The standardised statistic, for the normal approximation.
    pub z: Option<f64>,
    pub method: Option<Method>,
    pub alternative: Alternative,
    /// Medians of the version judged and of the baseline.
    pub median: Option<f64>,
    pub baseline_median: Option<f64>,
    /// `median − baseline_median`.
    pub difference: Option<f64>,
    /// The effect size: `difference / |baseline_median|` (none when the
    /// baseline median is 0).
    pub effect_size: Option<f64>,
}

impl ComparisonRule {
    /// The test's alternative hypothesis for this direction.
    pub fn alternative(&self) -> Alternative {
        match self.direction {
            Direction::Increase => Alternative::Greater,
            Direction::Decrease => Alternative::Less,
            Direction::Either => Alternative::TwoSided,
        }
    }

    /// Judges `samples` against `baseline`; fewer than `min_samples` on
    /// either side, or too few for the test to ever reach the confidence,
    /// is inconclusive.
    pub fn judge(
        &self,
        samples: &[Point],
        baseline: &[Point],
        min_samples: usize,
    ) -> ComparisonOutcome {
        let alternative = self.alternative();
        let mut out = ComparisonOutcome {
            verdict: Verdict::Inconclusive,
            reason: String::new(),
            rule: *self,
            samples: samples.len(),
            baseline_samples: baseline.len(),
            statistic: None,
            p_value: None,
            z: None,
            method: None,
            alternative,
            median: None,
            baseline_median: None,
            difference: None,
            effect_size: None,
        };
        let (n, m) = (samples.len(), baseline.len());
        let needed = min_samples.max(1);
        if n < needed || m < needed {
            out.reason = if n == 0 && m == 0 {
                "no samples of either version".to_string()
            } else if n == 0 {
                "no samples of this version".to_string()
            } else if m == 0 {
                "no baseline samples".to_string()
            } else {
                format!("{n} samples and {m} baseline samples; at least {needed} of each needed")
            };
            return out;
        }
        let alpha = 1.0 - self.confidence;
        let smallest = mann_whitney::smallest_p_value(n, m, alternative);
        if smallest >= alpha {
            out.reason = format!(
                "{n} and {m} samples can never show a difference at confidence {} (smallest p-value {smallest:.3})",
                self.confidence
            );
            return out;
        }
        let x: Vec<f64> = samples.iter().map(|p| p.value).collect();
        let y: Vec<f64> = baseline.iter().map(|p| p.value).collect();
        let Some(test) = mann_whitney::mann_whitney_u(&x, &y, alternative, None) else {
            out.reason = "no samples".to_string();
            return out;
        };
        let MannWhitney {
            u,
            p_value,
            z,
            method,
            ..
        } = test;
        let (median, baseline_median) = (median(x), median(y));
        let difference = median - baseline_median;
        let effect_size = (baseline_median != 0.0).then(|| difference / baseline_median.abs());
        out.statistic = Some(u);
        out.p_value = Some(p_value);
        out.z = z;
        out.method = Some(method);
        out.median = Some(median);
        out.baseline_median = Some(baseline_median);
        out.difference = Some(difference);
        out.effect_size = effect_size;

        let significant = p_value < alpha;
        let bad_direction = match self.direction {
            Direction::Increase => difference > 0.0,
            Direction::Decrease => difference < 0.0,
            Direction::Either => difference != 0.0,
        };
        let beyond_tolerance = difference.abs() > self.absolute_tolerance
            && effect_size.is_none_or(|e| e.abs() > self.tolerance);
        let change = describe_change(difference, effect_size);
        let medians = format!(
            "median {} vs baseline {}",
            number(median),
            number(baseline_median)
        );
        let p = format!("p = {}", number(p_value));
        let threshold = number(alpha);
        (out.verdict, out.reason) = if !significant {
            (
                Verdict::Pass,
                format!(
                    "no significant {} ({p} ≥ {threshold}); {medians}",
                    self.direction_word()
                ),
            )
        } else if !bad_direction {
            (
                Verdict::Pass,
                format!(
                    "a significant difference ({p}) but the median changed {change}; {medians}"
                ),
            )
        } else if !beyond_tolerance {
            (
                Verdict::Pass,
                format!(
                    "a significant change of {change} ({p}) within the tolerance ({}); {medians}",
                    self.tolerance_text()
                ),
            )
        } else {
            (
                Verdict::Fail,
                format!(
                    "the median changed {change}, beyond the tolerance ({}), with {p} < {threshold}; {medians}",
                    self.tolerance_text()
                ),
            )
        };
        out
    }

    fn direction_word(&self) -> &'static str {
        match self.direction {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "change",
        }
    }

    fn tolerance_text(&self) -> String {
        let relative = format!("{}%", number(self.tolerance * 100.0));
        if self.absolute_tolerance > 0.0 {
            format!("{relative} or {}", number(self.absolute_tolerance))
        } else {
            relative
        }
    }
}

/// `+0.3 (+35%)`, or `+0.3 (from 0)` when there is no relative change.
fn describe_change(difference: f64, effect_size: Option<f64>) -> String {
    let sign = if difference >= 0.0 { "+" } else { "" };
    match effect_size {
        Some(e) => format!(
            "{sign}{} ({sign}{}%)",
            number(difference),
            number(e * 100.0)
        ),
        None => format!("{sign}{} (from 0)", number(difference)),
    }
}

/// The median of finite values (the mean of the middle two for an even count).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                timestamp_ms: 1000 * i as u64,
                value: *v,
            })
            .collect()
    }

    fn rule(direction: Direction, tolerance: f64) -> ComparisonRule {
        ComparisonRule {
            direction,
            confidence: 0.98,
            tolerance,
            absolute_tolerance: 0.0,
        }
    }

    const BASE: [f64; 5] = [100.0, 102.0, 98.0, 101.0, 99.0];

    #[test]
    fn a_clear_increase_fails_with_statistic_p_value_and_effect() {
        let slow = points(&[300.0, 305.0, 298.0, 310.0, 301.0]);
        let o = rule(Direction::Increase, 0.10).judge(&slow, &points(&BASE), 1);
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(o.statistic, Some(25.0));
        assert_eq!(o.p_value, Some(1.0 / 252.0));
        assert_eq!(o.method, Some(Method::Exact));
        assert_eq!((o.median, o.baseline_median), (Some(301.0), Some(100.0)));
        assert_eq!(o.effect_size, Some(2.01));
        assert_eq!(
            o.reason,
            "the median changed +201 (+201%), beyond the tolerance (10%), with p = 0.003968 < 0.02; median 301 vs baseline 100"
        );
    }

    #[test]
    fn a_significant_but_small_change_passes() {
        // Every sample 3 % above the baseline's: significant, not material.
        let a_bit: Vec<f64> = BASE.iter().map(|v| v * 1.03 + 5.0).collect();
        let o = rule(Direction::Increase, 0.10).judge(&points(&a_bit), &points(&BASE), 1);
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(o.p_value.unwrap() < 0.02);
        assert!(
            o.reason.starts_with("a significant change of +8 (+8%)"),
            "{}",
            o.reason
        );
        // With no tolerance the same change fails.
        let o = rule(Direction::Increase, 0.0).judge(&points(&a_bit), &points(&BASE), 1);
        assert_eq!(o.verdict, Verdict::Fail);
    }

    #[test]
    fn overlapping_samples_pass_as_not_significant() {
        let same = points(&[99.5, 101.5, 100.5, 97.0, 103.0]);
        let o = rule(Direction::Increase, 0.10).judge(&same, &points(&BASE), 1);
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(
            o.reason.starts_with("no significant increase (p = "),
            "{}",
            o.reason
        );
    }

    #[test]
    fn direction_decides_which_change_is_bad() {
        let lower = points(&[50.0, 51.0, 49.0, 52.0, 48.0]);
        let base = points(&BASE);
        assert_eq!(
            rule(Direction::Increase, 0.1)
                .judge(&lower, &base, 1)
                .verdict,
            Verdict::Pass
        );
        assert_eq!(
            rule(Direction::Decrease, 0.1)
                .judge(&lower, &base, 1)
                .verdict,
            Verdict::Fail
        );
        let o = rule(Direction::Either, 0.1).judge(&lower, &base, 1);
        assert_eq!(
            (o.verdict, o.alternative),
            (Verdict::Fail, Alternative::TwoSided)
        );
    }

    #[test]
    fn a_zero_baseline_needs_the_absolute_tolerance() {
        let errors = points(&[0.02, 0.03, 0.02, 0.04, 0.03]);
        let clean = points(&[0.0, 0.0, 0.0, 0.0, 0.0]);
        let o = rule(Direction::Increase, 0.10).judge(&errors, &clean, 1);
        assert_eq!((o.verdict, o.effect_size), (Verdict::Fail, None));
        assert!(o.reason.contains("+0.03 (from 0)"), "{}", o.reason);
        let lenient = ComparisonRule {
            absolute_tolerance: 0.05,
            ..rule(Direction::Increase, 0.10)
        };
        assert_eq!(lenient.judge(&errors, &clean, 1).verdict, Verdict::Pass);
    }

    #[test]
    fn missing_or_too_few_samples_are_inconclusive() {
        let r = rule(Direction::Increase, 0.1);
        let o = r.judge(&[], &points(&BASE), 1);
        assert_eq!(
            (o.verdict, o.reason.as_str()),
            (Verdict::Inconclusive, "no samples of this version")
        );
        let o = r.judge(&points(&BASE), &[], 1);
        assert_eq!(o.reason, "no baseline samples");
        let o = r.judge(&points(&[1.0, 2.0, 3.0]), &points(&[1.0, 2.0, 3.0]), 1);
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert_eq!(
            o.reason,
            "3 and 3 samples can never show a difference at confidence 0.98 (smallest p-value 0.050)"
        );
        let o = r.judge(&points(&BASE), &points(&BASE), 6);
        assert_eq!(
            o.reason,
            "5 samples and 5 baseline samples; at least 6 of each needed"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
