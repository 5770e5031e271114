//! Change detection: has a strategy's success rate in an environment
//! changed?
//!
//! Deployment outcomes drift: an infrastructure change makes the careful
//! strategy start failing in production, a new cluster makes the fast one
//! safe in staging. Recency (older outcomes weigh less) follows a slow drift;
//! an abrupt change needs to be *noticed*, so that the old regime's outcomes
//! stop counting at once and the engine can act (retrain, explore, fall back
//! to the safest strategy in production).
//!
//! # The test
//!
//! Per context (strategy × environment), in time order, after each outcome:
//! the newest `w` outcomes (for every `w` from 2 to [`DriftParams::max_window`])
//! are compared with the earlier outcomes of the same regime (at least
//! [`DriftParams::min_reference`] of them). Under "nothing changed" the
//! number of successes among the newest `w` is binomial with the earlier
//! rate (smoothed: (successes + 1) / (deployments + 2), so 20 of 20 is not
//! taken for certainty); the one-sided tail probability in each direction is
//! the evidence. The smallest of them, multiplied by the number of tails
//! tried (Bonferroni, so trying many windows does not manufacture a change),
//! below [`DriftParams::p_value`] is a change: a [`DriftEvent`] whose change
//! point is the first outcome of the winning window. The reference then
//! restarts at the change point, so the new regime is compared only with
//! itself from there on.
//!
//! Why this test and not Page-Hinkley or CUSUM: both need a tuned drift
//! magnitude and threshold in units nobody can check by hand; a window of
//! the newest outcomes against the earlier ones gives evidence an operator
//! can read in the decision log ("0 of the last 3 succeeded, 18 of 19
//! before, p = 0.002") and the same answer from the same history every time
//! (a pure function of the outcomes: nothing is stored, `model status` and
//! every deployment recompute it).
//!
//! What adeploy does with an event is the engine's policy (see
//! `engine::select`); this module only finds events and says which outcomes
//! belong to an old regime ([`Regimes::is_stale`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use crate::config::Environment;

/// Parameters of the test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftParams {
    /// Corrected p-value below which a difference is a change; 0 turns
    /// detection off (`ml_config.drift_p_value`).
    pub p_value: f64,
    /// The largest window of newest outcomes tried.
    pub max_window: usize,
    /// Earlier outcomes of the same regime a comparison needs.
    pub min_reference: usize,
}

impl Default for DriftParams {
    fn default() -> Self {
        DriftParams {
            p_value: 0.01,
            max_window: 8,
            min_reference: 5,
        }
    }
}

/// Which way the success rate moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftDirection {
    /// The strategy started failing more.
    Dropped,
    /// The strategy started succeeding more.
    Rose,
}

impl DriftDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftDirection::Dropped => "dropped",
            DriftDirection::Rose => "rose",
        }
    }
}

/// A change in a strategy's success rate in one environment, with its
/// evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftEvent {
    pub strategy: String,
    pub environment: Environment,
    pub direction: DriftDirection,
    /// The first deployment of the new regime (the change point).
    pub since: String,
    pub since_at: DateTime<Utc>,
    /// The deployment whose outcome completed the evidence.
    pub detected_by: String,
    pub detected_at: DateTime<Utc>,
    /// The newest outcomes compared (from the change point on)...
    pub recent_deployments: usize,
    /// ...and how many of them succeeded.
    pub recent_successes: usize,
    /// The earlier outcomes of the same regime...
    pub before_deployments: usize,
    /// ...and how many of them succeeded.
    pub before_successes: usize,
    /// The corrected tail probability of the recent outcomes under the
    /// earlier rate.
    pub p_value: f64,
    /// `ml_config.drift_p_value` it was compared with.
    pub threshold: f64,
}

impl DriftEvent {
    /// One line of evidence: "success rate of conservative in production
    /// dropped: 0 of the last 3 succeeded, 18 of 19 before (p = 0.002 <
    /// 0.05)".
    pub fn summary(&self) -> String {
        format!(
            "success rate of {} in {} {}: {} of the last {} succeeded, {} of {} before (p = {:.4} < {})",
            self.strategy,
            self.environment,
            self.direction.as_str(),
            self.recent_successes,
            self.recent_deployments,
            self.before_successes,
            self.before_deployments,
            self.p_value,
            self.threshold
        )
    }

    /// Whether `o` (of this event's context) belongs to the regime before
    /// the change.
    fn precedes(&self, o: &Outcome) -> bool {
        (o.started_at, o.id.as_str()) < (self.since_at, self.since.as_str())
    }
}

/// P(X ≤ k) for X ~ Binomial(n, p).
fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    if p <= 0.0 || k >= n {
        return 1.0;
    }
    let mut pmf = (1.0 - p).powi(n as i32); // P(X = 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        sum += pmf;
        if i < n {
            // P(X = i + 1) from P(X = i).
            pmf *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p).max(f64::MIN_POSITIVE);
        }
    }
    sum.min(1.0)
}

/// P(X ≥ k).
fn binomial_upper(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        1.0
    } else {
        // By symmetry: successes ≥ k is failures ≤ n − k.
        binomial_cdf(n - k.min(n), n, 1.0 - p)
    }
}

/// Every change in `outcomes` (any order), oldest detection first.
pub fn detect(outcomes: &[Outcome], params: &DriftParams) -> Vec<DriftEvent> {
    if params.p_value <= 0.0 {
        return Vec::new();
    }
    let mut contexts: BTreeMap<(&str, Environment), Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        contexts
            .entry((o.strategy.as_str(), o.environment))
            .or_default()
            .push(o);
    }
    let mut events = Vec::new();
    for list in contexts.values_mut() {
        list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        events.extend(detect_in(list, params));
    }
    events.sort_by(|a, b| {
        (a.detected_at, &a.detected_by, &a.strategy).cmp(&(
            b.detected_at,
            &b.detected_by,
            &b.strategy,
        ))
    });
    events
}

/// The changes in one context's outcomes (oldest first).
fn detect_in(list: &[&Outcome], params: &DriftParams) -> Vec<DriftEvent> {
    let ok: Vec<usize> = list.iter().map(|o| usize::from(o.success)).collect();
    let mut events = Vec::new();
    let mut start = 0;
    let max_window = params.max_window.max(2);
    for t in 0..list.len() {
        // (corrected p, window start, direction)
        let mut best: Option<(f64, usize, DriftDirection)> = None;
        let mut tails = 0usize;
        let mut smallest = f64::INFINITY;
        for w in 2..=max_window {
            let Some(cp) = (t + 1).checked_sub(w) else {
                break;
            };
            if cp < start + params.min_reference.max(1) {
                break;
            }
            let n_ref = cp - start;
            let k_ref: usize = ok[start..cp].iter().sum();
            let p0 = (k_ref as f64 + 1.0) / (n_ref as f64 + 2.0);
            let k: usize = ok[cp..=t].iter().sum();
            tails += 2;
            for (p, dir) in [
                (binomial_cdf(k, w, p0), DriftDirection::Dropped),
                (binomial_upper(k, w, p0), DriftDirection::Rose),
            ] {
                if p < smallest {
                    smallest = p;
                    best = Some((p, cp, dir));
                }
            }
        }
        let Some((p, cp, direction)) = best else {
            continue;
        };
        let corrected = (p * tails as f64).min(1.0);
        if corrected >= params.p_value {
            continue;
        }
        let first = list[cp];
        let last = list[t];
        events.push(DriftEvent {
            strategy: last.strategy.clone(),
            environment: last.environment,
            direction,
            since: first.id.clone(),
            since_at: first.started_at,
            detected_by: last.id.clone(),
            detected_at: last.started_at,
            recent_deployments: t + 1 - cp,
            recent_successes: ok[cp..=t].iter().sum(),
            before_deployments: cp - start,
            before_successes: ok[start..cp].iter().sum(),
            p_value: corrected,
            threshold: params.p_value,
        });
        start = cp;
    }
    events
}

/// The regimes of a history: its drift events and, per context, where the
/// current regime starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Regimes {
    events: Vec<DriftEvent>,
    /// Context → index (in `events`) of its latest event.
    latest: BTreeMap<(String, Environment), usize>,
}

impl Regimes {
    /// The regimes of `outcomes` (any order).
    pub fn new(outcomes: &[Outcome], params: &DriftParams) -> Regimes {
        Regimes::from_events(detect(outcomes, params))
    }

    /// Regimes from events, oldest first.
    pub fn from_events(events: Vec<DriftEvent>) -> Regimes {
        let mut latest = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            let key = (e.strategy.clone(), e.environment);
            let newer = latest
                .get(&key)
                .is_none_or(|&j: &usize| events[j].since_at <= e.since_at);
            if newer {
                latest.insert(key, i);
            }
        }
        Regimes { events, latest }
    }

    /// Every event, oldest detection first.
    pub fn events(&self) -> &[DriftEvent] {
        &self.events
    }

    /// The latest change of `strategy` in `environment`.
    pub fn latest(&self, strategy: &str, environment: Environment) -> Option<&DriftEvent> {
        self.latest
            .get(&(strategy.to_string(), environment))
            .and_then(|&i| self.events.get(i))
    }

    /// The latest change of any strategy in `environment`.
    pub fn latest_in(&self, environment: Environment) -> Option<&DriftEvent> {
        self.events
            .iter()
            .filter(|e| e.environment == environment)
            .max_by(|a, b| (a.detected_at, &a.detected_by).cmp(&(b.detected_at, &b.detected_by)))
    }

    /// Whether `o` belongs to a regime its context has since left.
    pub fn is_stale(&self, o: &Outcome) -> bool {
        self.latest(&o.strategy, o.environment)
            .is_some_and(|e| e.precedes(o))
    }

    /// The events detected by deployment `id`.
    pub fn detected_by<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a DriftEvent> + 'a {
        self.events.iter().filter(move |e| e.detected_by == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Outcomes of one strategy in one environment, one minute apart,
    /// oldest first, ids `d000`, `d001`, ...
    pub(crate) fn series(strategy: &str, env: Environment, oks: &[bool]) -> Vec<Outcome> {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        oks.iter()
            .enumerate()
            .map(|(i, &success)| Outcome {
                id: format!("{strategy}-{env}-{i:03}"),
                started_at: t0 + chrono::Duration::minutes(i as i64),
                strategy: strategy.into(),
                environment: env,
                size: "medium".into(),
                services: vec!["app".into()],
                failed_services: if success { vec![] } else { vec!["app".into()] },
                success,
                duration_min: 1.0,
                features: None,
                images: Vec::new(),
            })
            .collect()
    }

    fn bools(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn binomial_tails() {
        assert!((binomial_cdf(0, 3, 0.9) - 0.001).abs() < 1e-12);
        assert!((binomial_cdf(1, 3, 0.9) - 0.028).abs() < 1e-12);
        assert!((binomial_cdf(3, 3, 0.9) - 1.0).abs() < 1e-12);
        assert!((binomial_upper(3, 3, 0.1) - 0.001).abs() < 1e-12);
        assert_eq!(binomial_upper(0, 3, 0.5), 1.0);
        assert!((binomial_cdf(2, 4, 1.0) - 0.0).abs() < 1e-12);
    }

    #[test]
    fn a_drop_is_found_with_its_change_point_and_evidence() {
        // 18 successes, then failures.
        let o = series(
            "conservative",
            Environment::Production,
            &bools("111111111111111111000"),
        );
        let events = detect(&o, &DriftParams::default());
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.direction, DriftDirection::Dropped);
        assert_eq!(e.since, o[18].id, "the first failure is the change point");
        assert_eq!(e.detected_by, o[20].id, "three failures in a row suffice");
        assert_eq!((e.recent_successes, e.recent_deployments), (0, 3));
        assert_eq!((e.before_successes, e.before_deployments), (18, 18));
        assert!(e.p_value < 0.05);
        assert!(
            e.summary().starts_with(
                "success rate of conservative in production dropped: 0 of the last 3 succeeded, 18 of 18 before (p = 0.0"
            ),
            "{}",
            e.summary()
        );
        // Everything before the change point is the old regime.
        let regimes = Regimes::new(&o, &DriftParams::default());
        assert!(regimes.is_stale(&o[0]) && regimes.is_stale(&o[17]));
        assert!(!regimes.is_stale(&o[18]) && !regimes.is_stale(&o[20]));
        assert_eq!(regimes.detected_by(&o[20].id).count(), 1);
        assert_eq!(
            regimes.latest_in(Environment::Production).map(|e| &e.since),
            Some(&o[18].id)
        );
    }

    /// False alarms and detection delays of the test at several p-values,
    /// on seeded Bernoulli sequences (the table in BENCHMARKS.md):
    /// `cargo test -p adeploy --lib drift_operating_characteristics -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; prints a table"]
    fn drift_operating_characteristics() {
        use rand::{Rng, SeedableRng};
        let runs = 2000;
        for p_value in [0.05, 0.01, 0.005, 0.001] {
            let params = DriftParams {
                p_value,
                ..DriftParams::default()
            };
            let mut line = format!("p_value {p_value}:");
            for rate in [0.97, 0.9, 0.8, 0.7, 0.5] {
                let mut rng = rand::rngs::StdRng::seed_from_u64(7);
                let alarms = (0..runs)
                    .filter(|_| {
                        let oks: Vec<bool> = (0..100).map(|_| rng.gen_bool(rate)).collect();
                        !detect(&series("s", Environment::Staging, &oks), &params).is_empty()
                    })
                    .count();
                line += &format!(
                    " | false alarm in 100 at {rate}: {:.1}%",
                    100.0 * alarms as f64 / runs as f64
                );
            }
            for (before, after) in [(0.97, 0.2), (0.95, 0.3), (0.9, 0.5), (0.3, 0.9)] {
                let mut rng = rand::rngs::StdRng::seed_from_u64(11);
                let mut delays = Vec::new();
                let mut missed = 0;
                for _ in 0..runs {
                    let oks: Vec<bool> = (0..40)
                        .map(|i| rng.gen_bool(if i < 20 { before } else { after }))
                        .collect();
                    let o = series("s", Environment::Staging, &oks);
                    match detect(&o, &params)
                        .iter()
                        .map(|e| o.iter().position(|x| x.id == e.detected_by).unwrap())
                        .find(|&i| i >= 20)
                    {
                        Some(i) => delays.push(i - 19),
                        None => missed += 1,
                    }
                }
                delays.sort_unstable();
                line += &format!(
                    " | {before}->{after}: median delay {} (90% within {}), missed in 20: {:.1}%",
                    delays.get(delays.len() / 2).copied().unwrap_or(0),
                    delays.get(delays.len() * 9 / 10).copied().unwrap_or(0),
                    100.0 * missed as f64 / runs as f64
                );
            }
            eprintln!("{line}");
        }
    }

    #[test]
    fn a_rise_is_found() {
        let o = series(
            "aggressive",
            Environment::Staging,
            &bools("0000000000111111"),
        );
        let events = detect(&o, &DriftParams::default());
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].direction, DriftDirection::Rose);
        assert_eq!(events[0].since, o[10].id);
    }

    #[test]
    fn noise_is_not_a_change() {
        // 90% success with the usual scattered failures; 70% with runs of two.
        for pattern in [
            "1111111110111111111011111111101111111110111111111011",
            "1101110110011101101101100111011011101101101110110110",
        ] {
            let o = series("balanced", Environment::Staging, &bools(pattern));
            let events = detect(&o, &DriftParams::default());
            assert!(events.is_empty(), "{pattern}: {events:#?}");
        }
    }

    #[test]
    fn contexts_are_separate_and_off_means_off() {
        let mut o = series("a", Environment::Production, &bools("11111111111000"));
        // The same pattern in another environment, where it is the norm.
        o.extend(series(
            "a",
            Environment::Development,
            &bools("00000000000000"),
        ));
        let events = detect(&o, &DriftParams::default());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].environment, Environment::Production);
        let dev = o.iter().find(|x| x.environment == Environment::Development);
        assert!(!Regimes::new(&o, &DriftParams::default()).is_stale(dev.unwrap()));
        let off = DriftParams {
            p_value: 0.0,
            ..DriftParams::default()
        };
        assert!(detect(&o, &off).is_empty());
    }

    #[test]
    fn the_reference_restarts_at_the_change() {
        // Old regime fails, new one succeeds, then fails again.
        let o = series(
            "a",
            Environment::Staging,
            &bools("0000000011111111111110000"),
        );
        let events = detect(&o, &DriftParams::default());
        let dirs: Vec<_> = events.iter().map(|e| e.direction).collect();
        assert_eq!(
            dirs,
            [DriftDirection::Rose, DriftDirection::Dropped],
            "{events:#?}"
        );
        // The second is judged against the new regime only.
        assert_eq!(events[1].before_successes, events[1].before_deployments);
        let regimes = Regimes::new(&o, &DriftParams::default());
        assert_eq!(regimes.latest("a", Environment::Staging), events.last());
    }
}
