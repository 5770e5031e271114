//! What past failures have in common, and the failure streaks alerts watch.
//!
//! The forest in [`model`](super::model) answers "which strategy now?" but
//! cannot say *why* deployments fail. This module answers that in terms an
//! operator can act on: a [`FailurePattern`] is one value of one
//! [`Dimension`] (a service, a strategy, an environment, a load band, a time
//! of day) under which deployments fail clearly more often than overall, with
//! a sentence saying so ([`FailurePattern::lesson`]) and one saying what to do
//! ([`FailurePattern::recommendation`]).
//!
//! Why it is shaped this way:
//!
//! - **Counting, not learning.** A pattern is a ratio of two counts people
//!   can check against the history by hand; nothing is fitted, so a pattern
//!   never appears or vanishes because of a random seed.
//! - **Thresholds against noise.** A group needs [`MIN_FAILURES`] failures
//!   (two bad deployments of a rarely used strategy are not a pattern), and
//!   its failure rate must be above the baseline and either at least
//!   [`HIGH_RATE`] or at least [`BASELINE_FACTOR`] times the baseline: the
//!   first catches what fails often in a history that fails often, the second
//!   what stands out in a history that rarely fails. A group failing exactly
//!   as often as everything else is never a pattern.
//! - **Services are counted per step.** A deployment of `api` and `web` in
//!   which only `web` failed is a success for `api`; the services' baseline is
//!   the share of all service steps that failed, not the deployments' failure
//!   rate, so a service is compared with the other services.
//! - **Continuous context is banded.** Load and hour become a few named bands
//!   ([`load_band`], [`hour_band`]) so that "under high load" or "in the
//!   evening" can collect enough deployments to count, and reads as advice.
//!   Load is only known for deployments with features; the hour falls back to
//!   the start time (UTC) for older ones.
//! - **Deterministic output.** Patterns are sorted by rate, then failures,
//!   then dimension and value, and every map is a `BTreeMap`, so the same
//!   history always gives the same report.
//!
//! Alongside: [`streaks`] (consecutive failures, newest first, for alert
//! thresholds) and [`success_rates`] (the table `adeploy model status`
//! prints). Everything here is a pure function of the [`Outcome`]s passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::Timelike;
use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use crate::config::Environment;

/// Failures a group needs before it can be a pattern.
pub const MIN_FAILURES: usize = 3;

/// A failure rate at or above this (and above the baseline) is a pattern.
pub const HIGH_RATE: f64 = 0.5;

/// A failure rate at least this many times the baseline is a pattern.
pub const BASELINE_FACTOR: f64 = 2.0;

/// What a group of deployments has in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// A service in the deployment (counted per service step).
    Service,
    /// The deployment strategy.
    Strategy,
    /// The target environment.
    Environment,
    /// The machine's CPU load when the strategy was chosen ([`load_band`]).
    LoadBand,
    /// The time of day the deployment started ([`hour_band`]).
    Hour,
}

impl Dimension {
    /// Every dimension, in the order patterns are looked for.
    pub const ALL: [Dimension; 5] = [
        Dimension::Service,
        Dimension::Strategy,
        Dimension::Environment,
        Dimension::LoadBand,
        Dimension::Hour,
    ];

    /// The short name used in reports: "service", "strategy", "environment",
    /// "load", "hour".
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Service => "service",
            Dimension::Strategy => "strategy",
            Dimension::Environment => "environment",
            Dimension::LoadBand => "load",
            Dimension::Hour => "hour",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The load band of a CPU reading: "low" below 50 %, "medium" below 80 %,
/// "high" from 80 % on.
///
/// A non-finite reading has no band; callers here skip it (see
/// [`failure_patterns`] and [`relevant`]), and this function, which must
/// name a band, calls it "high" so that it is never mistaken for a calm
/// machine.
pub fn load_band(cpu_percent: f64) -> &'static str {
    if cpu_percent < 50.0 {
        "low"
    } else if cpu_percent < 80.0 {
        "medium"
    } else {
        "high"
    }
}

/// The time-of-day band of an hour: "night (00-06)", "morning (06-12)",
/// "afternoon (12-18)", "evening (18-24)". Hours are taken modulo 24.
pub fn hour_band(hour: u32) -> &'static str {
    match hour % 24 {
        0..6 => "night (00-06)",
        6..12 => "morning (06-12)",
        12..18 => "afternoon (12-18)",
        _ => "evening (18-24)",
    }
}

/// The hour (UTC, 0–23) a past deployment started: the feature context's
/// when it holds a valid hour, else the start time's.
fn outcome_hour(o: &Outcome) -> u32 {
    o.features
        .as_ref()
        .map(|f| f.hour)
        .filter(|h| h.is_finite() && (0.0..24.0).contains(h))
        // In range 0..24 and finite, so the cast is exact after floor.
        .map(|h| h.floor() as u32)
        .unwrap_or_else(|| o.started_at.hour())
}

/// The load band of a past deployment; `None` without features or with a
/// non-finite CPU reading.
fn outcome_load_band(o: &Outcome) -> Option<&'static str> {
    o.features
        .as_ref()
        .map(|f| f.cpu_percent)
        .filter(|c| c.is_finite())
        .map(load_band)
}

/// One value of one dimension under which deployments fail clearly more
/// often than overall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailurePattern {
    /// What the deployments in the group share.
    pub dimension: Dimension,
    /// The shared value: a service or strategy name, an environment
    /// ("production"), a [`load_band`] or an [`hour_band`].
    pub value: String,
    /// Failures in the group (service steps for [`Dimension::Service`]).
    pub failures: usize,
    /// Deployments in the group (service steps for [`Dimension::Service`]).
    pub total: usize,
    /// `failures / total`.
    pub rate: f64,
    /// The failure rate the group is compared with: of all deployments, or
    /// of all service steps for [`Dimension::Service`].
    pub baseline_rate: f64,
}

impl FailurePattern {
    /// What the history shows, as one sentence, e.g. "aggressive failed 7 of
    /// 10 deployments (70%, against 20% overall)", "service api failed in 4
    /// of 6 deployments (…)", "4 of 5 deployments under high load failed
    /// (…)", "3 of 4 deployments in the evening (18-24) failed (…)".
    pub fn lesson(&self) -> String {
        let n = format!("{} of {} deployments", self.failures, self.total);
        let vs = format!(
            "({}, against {} overall)",
            percent(self.rate),
            percent(self.baseline_rate)
        );
        let v = &self.value;
        match self.dimension {
            Dimension::Service => format!("service {v} failed in {n} {vs}"),
            Dimension::Strategy => format!("{v} failed {n} {vs}"),
            Dimension::Environment => format!("{n} in {v} failed {vs}"),
            Dimension::LoadBand => format!("{n} under {v} load failed {vs}"),
            Dimension::Hour => format!("{n} {} failed {vs}", hour_phrase(v)),
        }
    }

    /// What to do about it, as one sentence.
    pub fn recommendation(&self) -> String {
        let v = &self.value;
        match self.dimension {
            Dimension::Service => format!(
                "check {v}'s deploy and health check: it fails more often than the other services"
            ),
            Dimension::Strategy => {
                format!("prefer another strategy than {v} until the cause of its failures is found")
            }
            Dimension::Environment => format!(
                "be more careful in {v}: use conservative or fix what makes deployments there fail"
            ),
            Dimension::LoadBand if v == "low" => {
                "failures under low load are not explained by load: look at what else those \
                 deployments share"
                    .to_string()
            }
            Dimension::LoadBand => format!(
                "deploy when the machine is less loaded, or use conservative under {v} load"
            ),
            Dimension::Hour => format!(
                "avoid deploying {}, or watch those deployments closely",
                hour_phrase(v)
            ),
        }
    }
}

/// "in the evening (18-24)", "at night (00-06)".
fn hour_phrase(band: &str) -> String {
    if band.starts_with("night") {
        format!("at {band}")
    } else {
        format!("in the {band}")
    }
}

/// A rate as a whole percentage, "67%".
fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// Failures and total of one group.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    failures: usize,
    total: usize,
}

impl Count {
    fn add(&mut self, failed: bool) {
        self.total += 1;
        if failed {
            self.failures += 1;
        }
    }

    fn rate(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.failures as f64 / self.total as f64
        }
    }

    /// Whether this group is a pattern against `baseline`, computed on the
    /// counts so that a group at exactly the baseline rate is never one.
    fn stands_out(self, baseline: Count) -> bool {
        let (f, t) = (self.failures as u128, self.total as u128);
        let (bf, bt) = (baseline.failures as u128, baseline.total as u128);
        // rate > baseline  <=>  f / t > bf / bt  <=>  f * bt > bf * t
        let above = f * bt > bf * t;
        let high = f as f64 >= HIGH_RATE * t as f64;
        let multiple = f as f64 * bt as f64 >= BASELINE_FACTOR * bf as f64 * t as f64;
        self.failures >= MIN_FAILURES && above && (high || multiple)
    }
}

/// The patterns in `past`, strongest first.
///
/// Every deployment counts once per dimension it has a value for (load only
/// with features); for [`Dimension::Service`] each distinct service of a
/// deployment counts once, as a failure when it is in `failed_services`. A
/// group is a pattern when it has at least [`MIN_FAILURES`] failures, its
/// rate is above the baseline, and the rate is at least [`HIGH_RATE`] or at
/// least [`BASELINE_FACTOR`] × the baseline. Sorted by rate (descending),
/// then failures (descending), then dimension and value.
pub fn failure_patterns(past: &[Outcome]) -> Vec<FailurePattern> {
    let mut deployments = Count::default();
    let mut steps = Count::default();
    let mut groups: BTreeMap<(Dimension, String), Count> = BTreeMap::new();
    let mut add = |dim: Dimension, value: &str, failed: bool| {
        groups
            .entry((dim, value.to_string()))
            .or_default()
            .add(failed);
    };

    for o in past {
        let failed = !o.success;
        deployments.add(failed);
        add(Dimension::Strategy, &o.strategy, failed);
        add(Dimension::Environment, o.environment.as_str(), failed);
        if let Some(band) = outcome_load_band(o) {
            add(Dimension::LoadBand, band, failed);
        }
        add(Dimension::Hour, hour_band(outcome_hour(o)), failed);
        let distinct: BTreeSet<&str> = o.services.iter().map(String::as_str).collect();
        for s in distinct {
            let step_failed = o.failed_services.iter().any(|f| f == s);
            steps.add(step_failed);
            add(Dimension::Service, s, step_failed);
        }
    }

    let mut patterns: Vec<FailurePattern> = groups
        .into_iter()
        .filter_map(|((dimension, value), count)| {
            let baseline = match dimension {
                Dimension::Service => steps,
                _ => deployments,
            };
            count.stands_out(baseline).then(|| FailurePattern {
                dimension,
                value,
                failures: count.failures,
                total: count.total,
                rate: count.rate(),
                baseline_rate: baseline.rate(),
            })
        })
        .collect();
    patterns.sort_by(|a, b| {
        b.rate
            .total_cmp(&a.rate)
            .then(b.failures.cmp(&a.failures))
            .then(a.dimension.cmp(&b.dimension))
            .then_with(|| a.value.cmp(&b.value))
    });
    patterns
}

/// The patterns that apply to a deployment about to run, in their order.
///
/// A pattern applies when its value is this deployment's strategy,
/// environment, one of its services, the [`load_band`] of `cpu_percent`
/// (never when the load is unknown or not finite), or the [`hour_band`] of
/// `hour`.
pub fn relevant<'a>(
    patterns: &'a [FailurePattern],
    strategy: &str,
    environment: Environment,
    services: &[String],
    cpu_percent: Option<f64>,
    hour: u32,
) -> Vec<&'a FailurePattern> {
    let load = cpu_percent.filter(|c| c.is_finite()).map(load_band);
    let hour = hour_band(hour);
    patterns
        .iter()
        .filter(|p| match p.dimension {
            Dimension::Service => services.contains(&p.value),
            Dimension::Strategy => p.value == strategy,
            Dimension::Environment => p.value == environment.as_str(),
            Dimension::LoadBand => load == Some(p.value.as_str()),
            Dimension::Hour => p.value == hour,
        })
        .collect()
}

/// Consecutive failures among the newest deployments, for alert thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Streaks {
    /// How many of the newest deployments in the environment failed in a row.
    pub environment: usize,
    /// Per service asked about: how many of the newest deployments that
    /// included it had it fail in a row (0 when the last one went well or
    /// there is none).
    pub services: BTreeMap<String, usize>,
}

impl Streaks {
    /// The longest streak, environment or service.
    pub fn worst(&self) -> usize {
        self.services
            .values()
            .copied()
            .fold(self.environment, usize::max)
    }
}

/// The failure streaks of `environment` and of each of `services`.
///
/// `past_newest_first` must be ordered newest first. The environment's
/// streak counts the newest deployments in `environment` that failed, up to
/// the first success. A service's streak counts the newest deployments (in
/// any environment: a broken service is broken everywhere) that included
/// it and in which it failed, up to the first one in which it did not; its
/// steps are what count, so a deployment that failed because of another
/// service ends the streak.
pub fn streaks(
    past_newest_first: &[Outcome],
    environment: Environment,
    services: &[String],
) -> Streaks {
    let environment_streak = past_newest_first
        .iter()
        .filter(|o| o.environment == environment)
        .take_while(|o| !o.success)
        .count();
    let services = services
        .iter()
        .map(|s| {
            let n = past_newest_first
                .iter()
                .filter(|o| o.services.contains(s))
                .take_while(|o| o.failed_services.contains(s))
                .count();
            (s.clone(), n)
        })
        .collect();
    Streaks {
        environment: environment_streak,
        services,
    }
}

/// How often one strategy succeeded in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessRate {
    pub strategy: String,
    pub environment: Environment,
    /// Deployments with this strategy in this environment.
    pub deployments: usize,
    /// Of which succeeded.
    pub successes: usize,
    /// `successes / deployments`, 0–1.
    pub rate: f64,
}

/// The success rate of every (strategy, environment) pair in `past`, sorted
/// by strategy name, then environment from least to most careful.
pub fn success_rates(past: &[Outcome]) -> Vec<SuccessRate> {
    let mut groups: BTreeMap<(&str, Environment), (usize, usize)> = BTreeMap::new();
    for o in past {
        let e = groups
            .entry((o.strategy.as_str(), o.environment))
            .or_default();
        e.0 += 1;
        if o.success {
            e.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(
            |((strategy, environment), (deployments, successes))| SuccessRate {
                strategy: strategy.to_string(),
                environment,
                deployments,
                successes,
                rate: successes as f64 / deployments as f64,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::features::tests::ctx;
    use Environment::{Development, Production, Staging};
    use chrono::{TimeZone, Utc};

    /// A deployment at 12:00 UTC without features.
    fn dep(strategy: &str, env: Environment, success: bool) -> Outcome {
        Outcome {
            id: String::new(),
            started_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            strategy: strategy.to_string(),
            environment: env,
            size: "small".to_string(),
            services: Vec::new(),
            failed_services: Vec::new(),
            success,
            duration_min: 1.0,
            features: None,
            images: Vec::new(),
        }
    }

    fn with_services(mut o: Outcome, services: &[&str], failed: &[&str]) -> Outcome {
        o.services = services.iter().map(|s| s.to_string()).collect();
        o.failed_services = failed.iter().map(|s| s.to_string()).collect();
        o
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn find<'a>(
        ps: &'a [FailurePattern],
        dim: Dimension,
        value: &str,
    ) -> Option<&'a FailurePattern> {
        ps.iter().find(|p| p.dimension == dim && p.value == value)
    }

    /// `n` deployments of `strategy`, the first `failures` of them failed.
    fn batch(strategy: &str, env: Environment, n: usize, failures: usize) -> Vec<Outcome> {
        (0..n).map(|i| dep(strategy, env, i >= failures)).collect()
    }

    #[test]
    fn bands_at_their_boundaries() {
        assert_eq!(load_band(0.0), "low");
        assert_eq!(load_band(49.999), "low");
        assert_eq!(load_band(50.0), "medium");
        assert_eq!(load_band(79.999), "medium");
        assert_eq!(load_band(80.0), "high");
        assert_eq!(load_band(100.0), "high");
        assert_eq!(load_band(f64::NAN), "high");

        assert_eq!(hour_band(0), "night (00-06)");
        assert_eq!(hour_band(5), "night (00-06)");
        assert_eq!(hour_band(6), "morning (06-12)");
        assert_eq!(hour_band(11), "morning (06-12)");
        assert_eq!(hour_band(12), "afternoon (12-18)");
        assert_eq!(hour_band(17), "afternoon (12-18)");
        assert_eq!(hour_band(18), "evening (18-24)");
        assert_eq!(hour_band(23), "evening (18-24)");
        assert_eq!(hour_band(24), "night (00-06)");
    }

    #[test]
    fn dimension_names() {
        let shown: Vec<String> = Dimension::ALL.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            ["service", "strategy", "environment", "load", "hour"]
        );
        assert_eq!(
            serde_json::to_string(&Dimension::LoadBand).unwrap(),
            "\"load_band\""
        );
        let back: Dimension = serde_json::from_str("\"hour\"").unwrap();
        assert_eq!(back, Dimension::Hour);
    }

    #[test]
    fn three_failures_qualify_two_do_not() {
        // 3 of 4 aggressive failed; 20 balanced all succeeded.
        let mut past = batch("aggressive", Staging, 4, 3);
        past.extend(batch("balanced", Staging, 20, 0));
        let ps = failure_patterns(&past);
        let p = find(&ps, Dimension::Strategy, "aggressive").unwrap();
        assert_eq!((p.failures, p.total), (3, 4));
        assert_eq!(p.rate, 0.75);
        assert_eq!(p.baseline_rate, 3.0 / 24.0);

        // 2 of 2 failed: 100 %, but too few to be a pattern.
        let mut past = batch("aggressive", Staging, 2, 2);
        past.extend(batch("balanced", Staging, 20, 0));
        let ps = failure_patterns(&past);
        assert!(
            find(&ps, Dimension::Strategy, "aggressive").is_none(),
            "{ps:?}"
        );
    }

    #[test]
    fn a_group_at_the_baseline_is_not_a_pattern() {
        // Both strategies fail 60 %, as does everything: high, but not
        // above the baseline.
        let mut past = batch("aggressive", Staging, 5, 3);
        past.extend(batch("balanced", Production, 10, 6));
        let ps = failure_patterns(&past);
        assert!(
            find(&ps, Dimension::Strategy, "aggressive").is_none(),
            "{ps:?}"
        );
        assert!(
            find(&ps, Dimension::Strategy, "balanced").is_none(),
            "{ps:?}"
        );
        assert!(
            find(&ps, Dimension::Environment, "staging").is_none(),
            "{ps:?}"
        );
        // All at noon: the one hour band is the baseline itself.
        assert!(
            find(&ps, Dimension::Hour, "afternoon (12-18)").is_none(),
            "{ps:?}"
        );
        assert!(ps.is_empty(), "{ps:?}");
    }

    #[test]
    fn rate_thresholds_high_or_multiple_of_baseline() {
        // Baseline 5/40 = 12.5 %; "b" fails 3 of 10 = 30 %: below 50 % but
        // more than twice the baseline ("a" has too few failures).
        let mut past = batch("a", Staging, 30, 2);
        past.extend(batch("b", Staging, 10, 3));
        let ps = failure_patterns(&past);
        assert!(find(&ps, Dimension::Strategy, "b").is_some(), "{ps:?}");
        assert!(find(&ps, Dimension::Strategy, "a").is_none(), "{ps:?}");

        // Baseline 13/40 = 32.5 %; "b" fails 4 of 10 = 40 %: above the
        // baseline, but neither 50 % nor twice the baseline.
        let mut past = batch("a", Staging, 30, 9);
        past.extend(batch("b", Staging, 10, 4));
        let ps = failure_patterns(&past);
        assert!(find(&ps, Dimension::Strategy, "b").is_none(), "{ps:?}");

        // Baseline 15/40 = 37.5 %; "b" fails 5 of 10 = 50 %: exactly 50 % counts.
        let mut past = batch("a", Staging, 30, 10);
        past.extend(batch("b", Staging, 10, 5));
        let ps = failure_patterns(&past);
        let p = find(&ps, Dimension::Strategy, "b").unwrap();
        assert_eq!(p.rate, 0.5);
    }

    #[test]
    fn services_are_counted_per_step_against_the_step_baseline() {
        let mut past = Vec::new();
        // api fails in 4 of 6 deployments; web never fails; db is listed twice
        // in one deployment and must count once there.
        for i in 0..6 {
            let failed: &[&str] = if i < 4 { &["api"] } else { &[] };
            past.push(with_services(
                dep("balanced", Staging, failed.is_empty()),
                &["api", "web", "db"],
                failed,
            ));
        }
        for _ in 0..6 {
            past.push(with_services(
                dep("balanced", Staging, true),
                &["web", "db", "db"],
                &[],
            ));
        }
        // A failed service not listed in services is not a step.
        past.push(with_services(
            dep("balanced", Staging, false),
            &["web"],
            &["ghost"],
        ));
        let ps = failure_patterns(&past);
        let api = find(&ps, Dimension::Service, "api").unwrap();
        assert_eq!((api.failures, api.total), (4, 6));
        // Steps: api 6 + web 13 + db 12 = 31, of which 4 failed.
        assert_eq!(api.baseline_rate, 4.0 / 31.0);
        assert!(find(&ps, Dimension::Service, "web").is_none());
        assert!(find(&ps, Dimension::Service, "db").is_none());
        assert!(find(&ps, Dimension::Service, "ghost").is_none());
        assert_eq!(
            api.lesson(),
            "service api failed in 4 of 6 deployments (67%, against 13% overall)"
        );
        assert!(
            api.recommendation()
                .starts_with("check api's deploy and health check")
        );
    }

    #[test]
    fn load_and_hour_groups() {
        let mut past = Vec::new();
        for i in 0..10 {
            let mut o = dep("balanced", Staging, i >= 4);
            let mut f = ctx(Staging, if i < 5 { 90.0 } else { 20.0 });
            // Features' hour wins over the start time (12:00).
            f.hour = if i < 4 { 19.0 } else { 9.0 };
            o.features = Some(f);
            past.push(o);
        }
        // Without features: no load band; the hour comes from started_at.
        for _ in 0..10 {
            let mut o = dep("balanced", Staging, true);
            o.started_at = Utc.with_ymd_and_hms(2024, 5, 1, 3, 30, 0).unwrap();
            past.push(o);
        }
        let ps = failure_patterns(&past);
        let high = find(&ps, Dimension::LoadBand, "high").unwrap();
        assert_eq!((high.failures, high.total), (4, 5));
        assert_eq!(high.baseline_rate, 0.2);
        assert!(
            find(&ps, Dimension::LoadBand, "low").is_none(),
            "never failed"
        );
        let evening = find(&ps, Dimension::Hour, "evening (18-24)").unwrap();
        assert_eq!((evening.failures, evening.total), (4, 4));
        assert_eq!(
            evening.lesson(),
            "4 of 4 deployments in the evening (18-24) failed (100%, against 20% overall)"
        );
        assert!(
            evening
                .recommendation()
                .starts_with("avoid deploying in the evening (18-24)")
        );
        assert!(
            high.lesson()
                .starts_with("4 of 5 deployments under high load failed (80%")
        );
        assert!(
            high.recommendation()
                .starts_with("deploy when the machine is less loaded")
        );
        // Sorted: evening (100 %) before high load (80 %).
        let pos = |d, v| ps.iter().position(|p| p.dimension == d && p.value == v);
        assert!(pos(Dimension::Hour, "evening (18-24)") < pos(Dimension::LoadBand, "high"));
    }

    #[test]
    fn night_hours_from_start_time() {
        let mut past = batch("balanced", Staging, 20, 0);
        for _ in 0..3 {
            let mut o = dep("balanced", Staging, false);
            o.started_at = Utc.with_ymd_and_hms(2024, 5, 1, 2, 0, 0).unwrap();
            past.push(o);
        }
        let ps = failure_patterns(&past);
        let night = find(&ps, Dimension::Hour, "night (00-06)").unwrap();
        assert_eq!((night.failures, night.total), (3, 3));
        assert!(
            night
                .lesson()
                .starts_with("3 of 3 deployments at night (00-06) failed")
        );
    }

    #[test]
    fn sorting_is_by_rate_then_failures_then_dimension_and_value() {
        let mut past = batch("ok", Development, 40, 0);
        past.extend(batch("zeta", Development, 4, 4)); // 100 %, 4
        past.extend(batch("alpha", Development, 3, 3)); // 100 %, 3
        past.extend(batch("beta", Development, 3, 3)); // 100 %, 3
        past.extend(batch("gamma", Development, 6, 4)); // 67 %, 4
        let ps = failure_patterns(&past);
        let order: Vec<&str> = ps
            .iter()
            .filter(|p| p.dimension == Dimension::Strategy)
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(order, ["zeta", "alpha", "beta", "gamma"]);
        assert_eq!(failure_patterns(&past), ps, "deterministic");
        assert_eq!(failure_patterns(&[]), Vec::<FailurePattern>::new());
    }

    #[test]
    fn lessons_and_recommendations_read_per_dimension() {
        let p = FailurePattern {
            dimension: Dimension::Strategy,
            value: "aggressive".to_string(),
            failures: 7,
            total: 10,
            rate: 0.7,
            baseline_rate: 0.2,
        };
        assert_eq!(
            p.lesson(),
            "aggressive failed 7 of 10 deployments (70%, against 20% overall)"
        );
        assert!(
            p.recommendation()
                .starts_with("prefer another strategy than aggressive")
        );

        let env = FailurePattern {
            dimension: Dimension::Environment,
            value: "production".to_string(),
            ..p.clone()
        };
        assert!(
            env.lesson()
                .starts_with("7 of 10 deployments in production failed (70%")
        );
        assert!(
            env.recommendation()
                .starts_with("be more careful in production: use conservative")
        );

        let low = FailurePattern {
            dimension: Dimension::LoadBand,
            value: "low".to_string(),
            ..p
        };
        assert!(!low.recommendation().contains("less loaded"));
    }

    #[test]
    fn relevant_filters_by_context() {
        let pattern = |dimension, value: &str| FailurePattern {
            dimension,
            value: value.to_string(),
            failures: 3,
            total: 3,
            rate: 1.0,
            baseline_rate: 0.1,
        };
        let ps = vec![
            pattern(Dimension::Strategy, "aggressive"),
            pattern(Dimension::Strategy, "balanced"),
            pattern(Dimension::Environment, "production"),
            pattern(Dimension::Service, "api"),
            pattern(Dimension::Service, "worker"),
            pattern(Dimension::LoadBand, "high"),
            pattern(Dimension::Hour, "evening (18-24)"),
        ];
        let pick = |strategy, env, cpu, hour| -> Vec<String> {
            relevant(&ps, strategy, env, &names(&["api", "web"]), cpu, hour)
                .iter()
                .map(|p| format!("{}:{}", p.dimension, p.value))
                .collect()
        };
        assert_eq!(
            pick("aggressive", Production, Some(85.0), 20),
            [
                "strategy:aggressive",
                "environment:production",
                "service:api",
                "load:high",
                "hour:evening (18-24)"
            ]
        );
        assert_eq!(
            pick("balanced", Staging, Some(79.0), 17),
            ["strategy:balanced", "service:api"]
        );
        assert_eq!(
            pick("canary", Staging, None, 18),
            ["service:api", "hour:evening (18-24)"]
        );
        assert_eq!(pick("canary", Staging, Some(f64::NAN), 9), ["service:api"]);
    }

    #[test]
    fn streaks_stop_at_the_first_success() {
        let s = |services: &[&str], failed: &[&str], env, ok| {
            with_services(dep("balanced", env, ok), services, failed)
        };
        // Newest first.
        let past = vec![
            s(&["api", "web"], &["api"], Production, false),
            s(&["web"], &[], Staging, true),
            s(&["api"], &["api"], Production, false),
            s(&["api", "web"], &["web"], Production, false),
            s(&["api"], &["api"], Production, false),
            s(&["web"], &["web"], Production, false),
            s(&["api"], &[], Production, true),
            s(&["api"], &["api"], Production, false),
        ];
        let st = streaks(&past, Production, &names(&["api", "web", "db"]));
        // Production: five failures in a row before a success (the staging
        // deployment in between does not interrupt).
        assert_eq!(st.environment, 5);
        // api: failed, failed, then a deployment with api in which web failed.
        assert_eq!(st.services["api"], 2);
        // web: the newest deployment with web had only api fail.
        assert_eq!(st.services["web"], 0);
        assert_eq!(st.services["db"], 0);
        assert_eq!(st.worst(), 5);

        // Staging's newest deployment succeeded.
        let st = streaks(&past, Staging, &names(&["api"]));
        assert_eq!(st.environment, 0);
        assert_eq!(st.worst(), 2);

        // An environment without deployments, no services asked.
        let st = streaks(&past, Development, &[]);
        assert_eq!(st, Streaks::default());
        assert_eq!(st.worst(), 0);
    }

    #[test]
    fn streak_worst_can_come_from_a_service() {
        let st = Streaks {
            environment: 1,
            services: [("api".to_string(), 4), ("web".to_string(), 2)]
                .into_iter()
                .collect(),
        };
        assert_eq!(st.worst(), 4);
    }

    #[test]
    fn success_rates_per_strategy_and_environment() {
        let mut past = batch("balanced", Production, 4, 1);
        past.extend(batch("aggressive", Staging, 2, 2));
        past.extend(batch("balanced", Development, 3, 0));
        past.extend(batch("aggressive", Development, 5, 1));
        let rates = success_rates(&past);
        let rows: Vec<(&str, Environment, usize, usize, f64)> = rates
            .iter()
            .map(|r| {
                (
                    r.strategy.as_str(),
                    r.environment,
                    r.deployments,
                    r.successes,
                    r.rate,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("aggressive", Development, 5, 4, 0.8),
                ("aggressive", Staging, 2, 0, 0.0),
                ("balanced", Development, 3, 3, 1.0),
                ("balanced", Production, 4, 3, 0.75),
            ]
        );
        assert!(success_rates(&[]).is_empty());
    }
}
