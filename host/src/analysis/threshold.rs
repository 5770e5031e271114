//! Threshold mode: every sample against fixed bounds, with a failure limit
//! and a consecutive-success rule.

use serde::{Deserialize, Serialize};

use super::{Point, Verdict, number};

/// Bounds and how strictly they apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRule {
    /// A sample below this is out of bounds.
    pub min: Option<f64>,
    /// A sample above this is out of bounds.
    pub max: Option<f64>,
    /// Out-of-bounds samples tolerated (0: the first one fails the metric).
    pub failure_limit: u32,
    /// When set, the latest this many samples must all be within bounds: the
    /// metric must end healthy, whatever was tolerated before.
    pub consecutive_successes: Option<u32>,
}

/// What threshold mode found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOutcome {
    pub verdict: Verdict,
    /// One line: why.
    pub reason: String,
    #[serde(flatten)]
    pub rule: ThresholdRule,
    /// Samples judged.
    pub samples: usize,
    /// Samples outside the bounds.
    pub out_of_bounds: usize,
    /// The sample furthest outside the bounds, if any.
    pub worst: Option<Point>,
}

impl ThresholdRule {
    /// Whether `value` is within the bounds.
    pub fn within(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }

    /// How far `value` is outside the bounds (0 inside).
    fn excess(&self, value: f64) -> f64 {
        let below = self.min.map_or(0.0, |min| (min - value).max(0.0));
        let above = self.max.map_or(0.0, |max| (value - max).max(0.0));
        below.max(above)
    }

    /// The bounds as people write them: `≤ 0.05`, `≥ 10`, `in [1, 5]`.
    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("in [{}, {}]", number(min), number(max)),
            (Some(min), None) => format!("≥ {}", number(min)),
            (None, Some(max)) => format!("≤ {}", number(max)),
            (None, None) => "any value".to_string(),
        }
    }

    /// Judges `samples` (in time order); fewer than `min_samples` is
    /// inconclusive.
    pub fn judge(&self, samples: &[Point], min_samples: usize) -> ThresholdOutcome {
        let outcome = |verdict, reason: String, out_of_bounds, worst| ThresholdOutcome {
            verdict,
            reason,
            rule: *self,
            samples: samples.len(),
            out_of_bounds,
            worst,
        };
        let n = samples.len();
        let needed = min_samples
            .max(1)
            .max(self.consecutive_successes.unwrap_or(0) as usize);
        if n < needed {
            let reason = if n == 0 {
                "no samples".to_string()
            } else {
                format!("{n} sample{} of the {needed} needed", plural(n))
            };
            return outcome(Verdict::Inconclusive, reason, 0, None);
        }
        let bad: Vec<&Point> = samples.iter().filter(|p| !self.within(p.value)).collect();
        let worst = bad
            .iter()
            .copied()
            .max_by(|a, b| self.excess(a.value).total_cmp(&self.excess(b.value)))
            .copied();
        let bounds = self.describe();
        if bad.len() > self.failure_limit as usize {
            let worst_text =
                worst.map_or_else(String::new, |w| format!(" (worst {})", number(w.value)));
            return outcome(
                Verdict::Fail,
                format!(
                    "{} of {n} samples not {bounds}{worst_text}; at most {} allowed",
                    bad.len(),
                    self.failure_limit
                ),
                bad.len(),
                worst,
            );
        }
        if let Some(m) = self.consecutive_successes {
            let m = m as usize;
            if let Some(last_bad) = samples[n - m..]
                .iter()
                .rev()
                .find(|p| !self.within(p.value))
            {
                return outcome(
                    Verdict::Fail,
                    format!(
                        "the latest {m} samples must all be {bounds}, but {} is not",
                        number(last_bad.value)
                    ),
                    bad.len(),
                    worst,
                );
            }
        }
        let reason = if bad.is_empty() {
            format!("all {n} samples {bounds}")
        } else {
            format!(
                "{} of {n} samples not {bounds}, within the failure limit of {}",
                bad.len(),
                self.failure_limit
            )
        };
        outcome(Verdict::Pass, reason, bad.len(), worst)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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

    fn max(max: f64, failure_limit: u32, consecutive: Option<u32>) -> ThresholdRule {
        ThresholdRule {
            min: None,
            max: Some(max),
            failure_limit,
            consecutive_successes: consecutive,
        }
    }

    #[test]
    fn all_within_passes_and_one_over_fails_by_default() {
        let r = max(0.05, 0, None);
        let o = r.judge(&points(&[0.01, 0.02, 0.0, 0.05, 0.03]), 1);
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.reason, "all 5 samples ≤ 0.05");
        let o = r.judge(&points(&[0.01, 0.02, 0.3, 0.05, 0.03]), 1);
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(
            o.reason,
            "1 of 5 samples not ≤ 0.05 (worst 0.3); at most 0 allowed"
        );
        assert_eq!(o.worst.map(|w| w.timestamp_ms), Some(2000));
    }

    #[test]
    fn the_failure_limit_tolerates_that_many() {
        let r = max(0.05, 1, None);
        let o = r.judge(&points(&[0.3, 0.02, 0.01, 0.0, 0.03]), 1);
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.out_of_bounds, 1);
        assert_eq!(
            o.reason,
            "1 of 5 samples not ≤ 0.05, within the failure limit of 1"
        );
        let o = r.judge(&points(&[0.3, 0.02, 0.4, 0.0, 0.03]), 1);
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(o.worst.map(|w| w.value), Some(0.4));
    }

    #[test]
    fn consecutive_successes_need_a_healthy_end() {
        let r = max(0.05, 1, Some(3));
        // A spike at the start is tolerated: the last three are fine.
        assert_eq!(
            r.judge(&points(&[0.3, 0.0, 0.0, 0.0, 0.0]), 1).verdict,
            Verdict::Pass
        );
        // The same single spike near the end is not.
        let o = r.judge(&points(&[0.0, 0.0, 0.0, 0.3, 0.0]), 1);
        assert_eq!(o.verdict, Verdict::Fail);
        assert_eq!(
            o.reason,
            "the latest 3 samples must all be ≤ 0.05, but 0.3 is not"
        );
        // Fewer samples than the rule needs: inconclusive.
        let o = r.judge(&points(&[0.0, 0.0]), 1);
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert_eq!(o.reason, "2 samples of the 3 needed");
    }

    #[test]
    fn no_data_is_inconclusive() {
        let o = max(0.05, 0, None).judge(&[], 1);
        assert_eq!(
            (o.verdict, o.reason.as_str()),
            (Verdict::Inconclusive, "no samples")
        );
        let o = max(0.05, 0, None).judge(&points(&[0.0]), 3);
        assert_eq!(o.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn min_and_both_bounds() {
        let r = ThresholdRule {
            min: Some(10.0),
            max: None,
            failure_limit: 0,
            consecutive_successes: None,
        };
        let o = r.judge(&points(&[12.0, 9.5]), 1);
        assert_eq!(
            o.reason,
            "1 of 2 samples not ≥ 10 (worst 9.5); at most 0 allowed"
        );
        let r = ThresholdRule {
            min: Some(1.0),
            max: Some(5.0),
            failure_limit: 0,
            consecutive_successes: None,
        };
        assert!(r.within(1.0) && r.within(5.0) && !r.within(0.99) && !r.within(5.01));
        assert_eq!(r.describe(), "in [1, 5]");
        // The worst is the furthest outside, on either side.
        let o = r.judge(&points(&[0.5, 7.0, 3.0]), 1);
        assert_eq!(o.worst.map(|w| w.value), Some(7.0));
    }
}
