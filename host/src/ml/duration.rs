//! How long a deployment will take: the median of similar past ones.
//!
//! Why a median over context levels rather than a regression:
//!
//! - **Durations are skewed.** One deployment that waited out a deadline or a
//!   slow registry would drag a mean (or a fitted line) far from what people
//!   usually see; the median of the similar deployments does not move. The
//!   slowest of them is reported next to it, so the tail is visible rather
//!   than averaged away.
//! - **Similar means the same strategy first.** The strategy decides the
//!   shape of a deployment (one service at a time, canary waits, everything
//!   at once), so durations are never borrowed across strategies. Within a
//!   strategy the estimate falls back from the narrowest context — same
//!   environment and same number of services — to the same environment, then
//!   to any environment, and takes the first level with [`MIN_SAMPLES`]
//!   deployments. When no level has that many, the narrowest level with any
//!   deployment wins: one deployment like this one says more than three
//!   unlike it. The level used is named in [`DurationEstimate::basis`], so a
//!   report can say what the number stands on.
//! - **Only what finished counts.** A failed deployment stops early (or hangs
//!   until a deadline), so its wall-clock time says nothing about how long a
//!   successful one takes; failures, and durations that are not finite or are
//!   negative (clock trouble), are left out.
//!
//! Everything here is a pure function of the [`Outcome`]s passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use crate::config::Environment;

/// Deployments a context level needs before the estimate stops falling back
/// to a wider one.
pub const MIN_SAMPLES: usize = 3;

/// The expected duration of a deployment, from similar past ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationEstimate {
    /// Median wall-clock minutes of the similar deployments.
    pub minutes: f64,
    /// The slowest of them (minutes) — an upper bound people can read.
    pub max_minutes: f64,
    /// How many past deployments the estimate is the median of.
    pub samples: usize,
    /// Which context matched, e.g. "balanced in staging with 3 services",
    /// "balanced in staging", "balanced (any environment)".
    pub basis: String,
}

/// The duration estimate for a deployment with `strategy` in `environment`
/// with `service_count` services.
///
/// Reads the successful deployments of `strategy` with a finite, non-negative
/// duration, and takes the median of the first context level with
/// [`MIN_SAMPLES`] of them: (environment, same number of services), then
/// (environment), then (any environment); when none has that many, the
/// narrowest level with at least one. `None` when `strategy` has no usable
/// successful deployment at all.
pub fn estimate_duration(
    past: &[Outcome],
    strategy: &str,
    environment: Environment,
    service_count: usize,
) -> Option<DurationEstimate> {
    let usable: Vec<&Outcome> = past
        .iter()
        .filter(|o| o.strategy == strategy && o.success && usable_duration(o.duration_min))
        .collect();
    if usable.is_empty() {
        return None;
    }

    let plural = if service_count == 1 { "" } else { "s" };
    let durations = |keep: &dyn Fn(&Outcome) -> bool| -> Vec<f64> {
        usable
            .iter()
            .filter(|o| keep(o))
            .map(|o| o.duration_min)
            .collect()
    };
    let levels: [(String, Vec<f64>); 3] = [
        (
            format!("{strategy} in {environment} with {service_count} service{plural}"),
            durations(&|o| o.environment == environment && o.services.len() == service_count),
        ),
        (
            format!("{strategy} in {environment}"),
            durations(&|o| o.environment == environment),
        ),
        (
            format!("{strategy} (any environment)"),
            durations(&|_| true),
        ),
    ];

    let chosen = match levels.iter().position(|(_, d)| d.len() >= MIN_SAMPLES) {
        Some(i) => levels.into_iter().nth(i),
        None => levels.into_iter().find(|(_, d)| !d.is_empty()),
    };
    let (basis, mut minutes) = chosen?;
    minutes.sort_by(f64::total_cmp);
    Some(DurationEstimate {
        minutes: median_of_sorted(&minutes)?,
        max_minutes: minutes.last().copied()?,
        samples: minutes.len(),
        basis,
    })
}

/// [`estimate_duration`] for each of `strategies`, keyed by strategy.
///
/// Strategies without any usable successful deployment are absent from the
/// map rather than mapped to a made-up number.
pub fn estimate_all(
    past: &[Outcome],
    strategies: &[String],
    environment: Environment,
    service_count: usize,
) -> BTreeMap<String, DurationEstimate> {
    strategies
        .iter()
        .filter_map(|s| {
            estimate_duration(past, s, environment, service_count).map(|e| (s.clone(), e))
        })
        .collect()
}

/// Whether a recorded duration can take part in an estimate.
fn usable_duration(minutes: f64) -> bool {
    minutes.is_finite() && minutes >= 0.0
}

/// The median of an ascending slice: the middle value, or the mean of the
/// two middle values for an even length; `None` when empty.
fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted.get(mid).copied()
    } else {
        Some((sorted.get(mid.checked_sub(1)?)? + sorted.get(mid)?) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn outcome(
        strategy: &str,
        env: Environment,
        services: usize,
        success: bool,
        minutes: f64,
    ) -> Outcome {
        Outcome {
            id: format!("{strategy}-{env}-{services}-{minutes}"),
            started_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            strategy: strategy.to_string(),
            environment: env,
            size: "medium".to_string(),
            services: (0..services).map(|i| format!("svc{i}")).collect(),
            failed_services: Vec::new(),
            success,
            duration_min: minutes,
            features: None,
            images: Vec::new(),
        }
    }

    fn ok(strategy: &str, env: Environment, services: usize, minutes: f64) -> Outcome {
        outcome(strategy, env, services, true, minutes)
    }

    use Environment::{Development, Production, Staging};

    #[test]
    fn narrowest_level_with_enough_samples_wins() {
        let past = vec![
            ok("balanced", Staging, 3, 4.0),
            ok("balanced", Staging, 3, 6.0),
            ok("balanced", Staging, 3, 5.0),
            // Same environment, other sizes: must not dilute the estimate.
            ok("balanced", Staging, 1, 100.0),
            ok("balanced", Staging, 8, 100.0),
            ok("balanced", Production, 3, 100.0),
        ];
        let e = estimate_duration(&past, "balanced", Staging, 3).unwrap();
        assert_eq!(e.minutes, 5.0);
        assert_eq!(e.max_minutes, 6.0);
        assert_eq!(e.samples, 3);
        assert_eq!(e.basis, "balanced in staging with 3 services");
    }

    #[test]
    fn falls_back_to_environment_then_any_environment() {
        let mut past = vec![
            ok("balanced", Staging, 3, 2.0),
            ok("balanced", Staging, 1, 4.0),
            ok("balanced", Staging, 5, 9.0),
            ok("balanced", Production, 3, 50.0),
            ok("balanced", Development, 3, 60.0),
        ];
        let e = estimate_duration(&past, "balanced", Staging, 3).unwrap();
        assert_eq!(e.basis, "balanced in staging");
        assert_eq!((e.minutes, e.max_minutes, e.samples), (4.0, 9.0, 3));

        // Only two in staging: the environment level is not enough either.
        past.remove(2);
        let e = estimate_duration(&past, "balanced", Staging, 3).unwrap();
        assert_eq!(e.basis, "balanced (any environment)");
        assert_eq!(e.samples, 4);
        // 2, 4, 50, 60: even count, mean of the middle two.
        assert_eq!(e.minutes, 27.0);
        assert_eq!(e.max_minutes, 60.0);
    }

    #[test]
    fn without_enough_anywhere_the_narrowest_nonempty_level_wins() {
        let past = vec![
            ok("balanced", Staging, 2, 3.0),
            ok("balanced", Production, 2, 30.0),
        ];
        let e = estimate_duration(&past, "balanced", Staging, 2).unwrap();
        assert_eq!(e.basis, "balanced in staging with 2 services");
        assert_eq!((e.minutes, e.max_minutes, e.samples), (3.0, 3.0, 1));

        // No deployment with 4 services in staging: the environment level.
        let e = estimate_duration(&past, "balanced", Staging, 4).unwrap();
        assert_eq!(e.basis, "balanced in staging");
        assert_eq!(e.samples, 1);

        // Nothing in development at all: any environment.
        let e = estimate_duration(&past, "balanced", Development, 2).unwrap();
        assert_eq!(e.basis, "balanced (any environment)");
        assert_eq!((e.minutes, e.samples), (16.5, 2));
    }

    #[test]
    fn failed_and_unusable_outcomes_are_ignored() {
        let past = vec![
            ok("balanced", Staging, 1, 2.0),
            outcome("balanced", Staging, 1, false, 1.0),
            outcome("balanced", Staging, 1, false, 1.0),
            outcome("balanced", Staging, 1, false, 500.0),
            ok("balanced", Staging, 1, f64::NAN),
            ok("balanced", Staging, 1, f64::INFINITY),
            ok("balanced", Staging, 1, -3.0),
            ok("balanced", Staging, 1, 4.0),
        ];
        let e = estimate_duration(&past, "balanced", Staging, 1).unwrap();
        assert_eq!(e.samples, 2);
        assert_eq!(e.minutes, 3.0);
        assert_eq!(e.max_minutes, 4.0);
        assert_eq!(e.basis, "balanced in staging with 1 service");
    }

    #[test]
    fn zero_minutes_is_a_valid_duration() {
        let past = vec![ok("fast", Staging, 1, 0.0)];
        let e = estimate_duration(&past, "fast", Staging, 1).unwrap();
        assert_eq!((e.minutes, e.samples), (0.0, 1));
    }

    #[test]
    fn none_without_a_successful_outcome_of_the_strategy() {
        assert_eq!(estimate_duration(&[], "balanced", Staging, 1), None);
        let past = vec![
            outcome("balanced", Staging, 1, false, 3.0),
            ok("aggressive", Staging, 1, 1.0),
            ok("balanced", Staging, 1, f64::NAN),
        ];
        assert_eq!(estimate_duration(&past, "balanced", Staging, 1), None);
    }

    #[test]
    fn other_strategies_never_contribute() {
        let past = vec![
            ok("balanced", Staging, 2, 10.0),
            ok("aggressive", Staging, 2, 1.0),
            ok("aggressive", Staging, 2, 1.0),
            ok("aggressive", Staging, 2, 1.0),
        ];
        let e = estimate_duration(&past, "balanced", Staging, 2).unwrap();
        assert_eq!((e.minutes, e.samples), (10.0, 1));
    }

    #[test]
    fn median_odd_even_and_unsorted_input() {
        assert_eq!(median_of_sorted(&[]), None);
        assert_eq!(median_of_sorted(&[7.0]), Some(7.0));
        assert_eq!(median_of_sorted(&[1.0, 2.0]), Some(1.5));
        assert_eq!(median_of_sorted(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median_of_sorted(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));

        // Input order must not matter: the estimate sorts.
        let past: Vec<Outcome> = [9.0, 1.0, 5.0, 3.0, 7.0]
            .into_iter()
            .map(|m| ok("balanced", Staging, 1, m))
            .collect();
        let e = estimate_duration(&past, "balanced", Staging, 1).unwrap();
        assert_eq!((e.minutes, e.max_minutes), (5.0, 9.0));
    }

    #[test]
    fn estimate_all_keys_only_known_strategies() {
        let past = vec![
            ok("balanced", Staging, 1, 4.0),
            ok("aggressive", Staging, 1, 2.0),
            outcome("conservative", Staging, 1, false, 8.0),
        ];
        let strategies: Vec<String> = ["aggressive", "balanced", "conservative", "canary"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let all = estimate_all(&past, &strategies, Staging, 1);
        assert_eq!(
            all.keys().map(String::as_str).collect::<Vec<_>>(),
            ["aggressive", "balanced"]
        );
        assert_eq!(all["balanced"].minutes, 4.0);
        assert_eq!(
            all["aggressive"],
            estimate_duration(&past, "aggressive", Staging, 1).unwrap()
        );
    }

    #[test]
    fn estimate_round_trips_through_json() {
        let e =
            estimate_duration(&[ok("balanced", Staging, 1, 4.0)], "balanced", Staging, 1).unwrap();
        let back: DurationEstimate =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
