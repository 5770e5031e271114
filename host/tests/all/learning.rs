//! The learned strategy choice against a simulated world, and the model's
//! life cycle: cadence, persistence, recovery from a damaged blob.
//!
//! The simulated world is a deploy command that succeeds when the strategy
//! the engine chose is in this round's list of winners. The test draws the
//! round (seeded) from success probabilities per strategy × environment ×
//! size that exist only here: the engine sees nothing but outcomes.

use std::collections::BTreeMap;

use adeploy::config::Environment;
use adeploy::engine::learn::MODEL_BLOB;
use adeploy::engine::{Decision, DeploymentRequest, DeploymentSize, Engine};
use adeploy::history::History;
use adeploy::monitor::Snapshot;
use adeploy::plugin::Phase;
use rand::{Rng, SeedableRng};

use crate::common::World;

const STRATEGIES: [&str; 3] = ["conservative", "balanced", "aggressive"];

/// P(success) of each strategy (in STRATEGIES order) per context. No single
/// strategy is best everywhere: aggressive wins small development
/// deployments, balanced large development and small staging ones,
/// conservative the rest.
const WORLD: [(Environment, DeploymentSize, [f64; 3]); 6] = [
    (
        Environment::Development,
        DeploymentSize::Small,
        [0.75, 0.85, 0.97],
    ),
    (
        Environment::Development,
        DeploymentSize::Large,
        [0.80, 0.95, 0.55],
    ),
    (
        Environment::Staging,
        DeploymentSize::Small,
        [0.80, 0.95, 0.70],
    ),
    (
        Environment::Staging,
        DeploymentSize::Large,
        [0.95, 0.65, 0.30],
    ),
    (
        Environment::Production,
        DeploymentSize::Small,
        [0.95, 0.70, 0.35],
    ),
    (
        Environment::Production,
        DeploymentSize::Large,
        [0.97, 0.50, 0.15],
    ),
];

fn calm() -> Snapshot {
    Snapshot {
        timestamp: chrono::Utc::now(),
        cpu_percent: 20.0,
        memory_percent: 40.0,
        disk_percent: 30.0,
        load_per_core: 0.2,
        network_latency_ms: None,
    }
}

/// One service whose deploy succeeds when `$ADEPLOY_STRATEGY` is listed in
/// the winners file.
fn simulated(w: &World) -> (String, std::path::PathBuf) {
    let winners = w.dir.path().join("winners.txt");
    let services = format!(
        "  app:\n    deploy: 'grep -qx \"$ADEPLOY_STRATEGY\" {}'\n    timeout_s: 20\n",
        winners.display()
    );
    (services, winners)
}

/// An engine over `services` and `extra` YAML, the load pinned to [`calm`],
/// exploration draws seeded.
async fn engine(w: &World, services: &str, extra: &str) -> Engine {
    let mut options = w.options();
    options.fixed_metrics = Some(calm());
    options.exploration_seed = Some(7);
    w.engine_with_options(services, extra, options).await
}

/// Production needs an approval (the default `approvals.required_for`).
fn request(env: Environment, size: DeploymentSize, strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: vec!["app".into()],
        strategy: Some(strategy.into()),
        environment: Some(env),
        size,
        approval: Some(adeploy::engine::Approval::Flag {
            user: "test".into(),
        }),
        ..DeploymentRequest::default()
    }
}

/// The first decision `pick` recognises, as it picks it.
fn find<'a, T>(
    report: &'a adeploy::report::Report,
    pick: impl Fn(&'a Decision) -> Option<T>,
) -> Option<T> {
    report
        .decision_process
        .iter()
        .find_map(|d| pick(&d.decision))
}

/// How the adaptive choice was made (`rules`, `model`, `exploration`).
fn method(report: &adeploy::report::Report) -> &str {
    find(report, |d| match d {
        Decision::StrategyPredicted { method, .. } => Some(method.as_str()),
        _ => None,
    })
    .expect("a strategy_predicted decision")
}

fn retraining(report: &adeploy::report::Report) -> bool {
    find(report, |d| {
        matches!(d, Decision::ModelRetraining { .. }).then_some(())
    })
    .is_some()
}

fn alert_threshold(report: &adeploy::report::Report) -> Option<usize> {
    find(report, |d| match d {
        Decision::Alert { threshold, .. } => Some(*threshold),
        _ => None,
    })
}

/// What the rollback prediction did: its `action`, or `not predicted`.
fn prediction_action(report: &adeploy::report::Report) -> &str {
    find(report, |d| match d {
        Decision::RollbackPrediction {
            predicted: Some(false),
            ..
        } => Some("not predicted"),
        Decision::RollbackPrediction { action, .. } => action.as_deref(),
        _ => None,
    })
    .expect("a rollback_prediction decision")
}

/// What one simulated world's 40 adaptive deployments achieved: the mean
/// (over the 40 contexts) success probability of the strategy chosen, of the
/// best strategy per context, and of each fixed strategy; and the realised
/// successes.
struct Score {
    adaptive: f64,
    oracle: f64,
    fixed: [f64; 3],
    realised: usize,
    /// Deployments that explored on purpose.
    explorations: usize,
    /// Production deployments decided by the drift fallback.
    fallbacks: usize,
    choices: BTreeMap<String, BTreeMap<&'static str, usize>>,
}

/// 60 deployments with every strategy in every context, then 40 adaptive.
async fn simulate(seed: u64, extra: &str) -> Score {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let engine = engine(&w, &services, extra).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // Writes this round's winners: the strategies whose chance beats the draw.
    let mut draw = |probs: &[f64; 3]| {
        let u: f64 = rng.r#gen();
        let win: Vec<&str> = STRATEGIES
            .iter()
            .zip(probs)
            .filter(|(_, p)| u < **p)
            .map(|(s, _)| *s)
            .collect();
        std::fs::write(&winners, win.join("\n") + "\n").unwrap();
    };

    for i in 0..60 {
        let (env, size, probs) = WORLD[i % 6];
        draw(&probs);
        let strategy = STRATEGIES[(i / 6) % 3];
        engine
            .deploy(request(env, size, strategy), None, None)
            .await
            .unwrap();
        engine.wait_for_learning().await;
    }
    let status = engine.model_status().await.unwrap();
    assert_eq!(status.state, "trained");
    assert_eq!(status.model.as_ref().unwrap().samples, 60);

    let mut score = Score {
        adaptive: 0.0,
        oracle: 0.0,
        fixed: [0.0; 3],
        realised: 0,
        explorations: 0,
        fallbacks: 0,
        choices: BTreeMap::new(),
    };
    for i in 0..40 {
        let (env, size, probs) = WORLD[i % 6];
        draw(&probs);
        let out = engine
            .deploy(request(env, size, "adaptive"), None, None)
            .await
            .unwrap();
        engine.wait_for_learning().await;
        // The model decides once trained; outside production it sometimes
        // tries a candidate that could be better, on purpose; a false alarm
        // of change detection makes production fall back for a while.
        let how = method(&out.report);
        assert!(
            how == "model"
                || (how == "exploration" && env != Environment::Production)
                || (how == "drift_fallback" && env == Environment::Production),
            "{how} in {env}"
        );
        score.explorations += usize::from(how == "exploration");
        score.fallbacks += usize::from(how == "drift_fallback");
        let strategy = &out.report.deployment_summary.strategy_used;
        let k = STRATEGIES.iter().position(|s| s == strategy).unwrap();
        score.adaptive += probs[k] / 40.0;
        score.oracle += probs.iter().copied().fold(0.0, f64::max) / 40.0;
        for (f, p) in score.fixed.iter_mut().zip(probs) {
            *f += p / 40.0;
        }
        score.realised += usize::from(out.success);
        *score
            .choices
            .entry(format!("{env}/{}", size.as_str()))
            .or_default()
            .entry(STRATEGIES[k])
            .or_default() += 1;
    }
    score
}

/// Three independent worlds (seeded), 120 adaptive deployments in all. The
/// measure is the expected success rate of what was chosen, from the
/// simulator's own probabilities: a realised count over 40 deployments is
/// one noisy draw of it (±7 points), and a world whose first 60 draws
/// happen to flatter a poor strategy (3 successes of 3 at 50%) would decide
/// the test by luck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_choice_learns_the_best_strategy_per_context() {
    let (mut adaptive, mut oracle, mut fixed) = (0.0, 0.0, [0.0; 3]);
    let mut lines = Vec::new();
    for seed in [20261127, 1, 2] {
        let s = simulate(seed, "").await;
        lines.push(format!(
            "seed {seed}: adaptive {:.3} (realised {}/40, {} explorations, {} drift fallbacks), best per context {:.3}, fixed {:?}, choices {:?}",
            s.adaptive,
            s.realised,
            s.explorations,
            s.fallbacks,
            s.oracle,
            s.fixed.map(|f| (f * 1000.0).round() / 1000.0),
            s.choices
        ));
        adaptive += s.adaptive / 3.0;
        oracle += s.oracle / 3.0;
        for (f, x) in fixed.iter_mut().zip(s.fixed) {
            *f += x / 3.0;
        }
    }
    let report = format!(
        "{}\nmean: adaptive {adaptive:.3}, best per context {oracle:.3}, fixed {fixed:?}",
        lines.join("\n")
    );
    eprintln!("{report}");
    assert!(adaptive >= oracle - 0.10, "{report}");
    for f in fixed {
        assert!(adaptive > f, "{report}");
    }
}

/// The drifting world: one size, three environments, and no strategy best
/// everywhere. After [`DRIFT_ADAPTIVE`] adaptive deployments an
/// infrastructure change makes the careful strategy start failing in
/// production, where balanced now succeeds; development and staging do not
/// change. Probabilities in STRATEGIES order.
const DRIFT_WORLD: [(Environment, [f64; 3]); 3] = [
    (Environment::Development, [0.80, 0.60, 0.97]),
    (Environment::Staging, [0.85, 0.96, 0.70]),
    (Environment::Production, [0.97, 0.75, 0.20]),
];
const DRIFT_CHANGED: (Environment, [f64; 3]) = (Environment::Production, [0.05, 0.95, 0.20]);
/// Forced deployments (each strategy 8 times in each environment) before
/// the adaptive ones.
const DRIFT_FORCED: usize = 72;
/// Adaptive deployments before the change, and after it.
const DRIFT_ADAPTIVE: usize = 40;

/// The world's probabilities for deployment `i` of a phase.
fn drift_probs(i: usize, changed: bool) -> (Environment, [f64; 3]) {
    let (env, probs) = DRIFT_WORLD[i % 3];
    if changed && env == DRIFT_CHANGED.0 {
        DRIFT_CHANGED
    } else {
        (env, probs)
    }
}

/// Expected success (from the world's own probabilities) of the adaptive
/// choice, the best per context and each fixed strategy, over one phase.
#[derive(Debug, Default, Clone)]
struct Period {
    adaptive: f64,
    oracle: f64,
    fixed: [f64; 3],
    /// Strategy chosen per environment, in order.
    choices: BTreeMap<Environment, Vec<&'static str>>,
    /// How each choice was made (`model`, `drift_fallback`, ...), per
    /// environment, in order.
    methods: BTreeMap<Environment, Vec<String>>,
}

impl Period {
    fn add(&mut self, env: Environment, probs: &[f64; 3], k: usize, method: &str) {
        let n = DRIFT_ADAPTIVE as f64;
        self.adaptive += probs[k] / n;
        self.oracle += probs.iter().copied().fold(0.0, f64::max) / n;
        for (f, p) in self.fixed.iter_mut().zip(probs) {
            *f += p / n;
        }
        self.choices.entry(env).or_default().push(STRATEGIES[k]);
        self.methods
            .entry(env)
            .or_default()
            .push(method.to_string());
    }

    fn best_fixed(&self) -> f64 {
        self.fixed.iter().copied().fold(0.0, f64::max)
    }

    /// The strategy the model chose most often in `env` (explorations
    /// aside).
    fn modal(&self, env: Environment) -> &'static str {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let chosen = self.choices.get(&env).into_iter().flatten();
        let how = self.methods.get(&env).into_iter().flatten();
        for (c, m) in chosen.zip(how) {
            if m == "model" {
                *counts.entry(c).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or("none", |(s, _)| s)
    }
}

/// One drifting world's run.
struct DriftRun {
    before: Period,
    after: Period,
    /// Position (1-based, among the deployments after the change) of the
    /// first production deployment from which every production choice is
    /// the new best; `None` if it never settles.
    recovered_within: Option<usize>,
    /// `drift_detected` decisions before and after the change:
    /// (deployment index in the phase, strategy, environment, summary).
    drift: Vec<(bool, usize, String, Environment, String)>,
    /// Whether a deployment that detected the change retrained at once.
    retrained_on_drift: bool,
    status: adeploy::engine::learn::ModelStatus,
    /// The changed environment after the change: "#i strategy ok|FAILED method".
    trace: Vec<String>,
}

/// [`DRIFT_FORCED`] forced deployments, [`DRIFT_ADAPTIVE`] adaptive ones,
/// the change, [`DRIFT_ADAPTIVE`] adaptive ones more.
async fn simulate_drift(seed: u64, extra: &str) -> DriftRun {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let engine = engine(&w, &services, extra).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draw = |probs: &[f64; 3]| {
        let u: f64 = rng.r#gen();
        let win: Vec<&str> = STRATEGIES
            .iter()
            .zip(probs)
            .filter(|(_, p)| u < **p)
            .map(|(s, _)| *s)
            .collect();
        std::fs::write(&winners, win.join("\n") + "\n").unwrap();
    };
    for i in 0..DRIFT_FORCED {
        let (env, probs) = drift_probs(i, false);
        draw(&probs);
        let strategy = STRATEGIES[(i / 3) % 3];
        engine
            .deploy(request(env, DeploymentSize::Medium, strategy), None, None)
            .await
            .unwrap();
        engine.wait_for_learning().await;
    }
    let mut phases = [Period::default(), Period::default()];
    let mut drift = Vec::new();
    let mut retrained_on_drift = false;
    let mut production_after: Vec<(usize, &str)> = Vec::new();
    let mut trace = Vec::new();
    for (changed, phase) in [false, true].into_iter().zip(phases.iter_mut()) {
        for i in 0..DRIFT_ADAPTIVE {
            let (env, probs) = drift_probs(i, changed);
            draw(&probs);
            let out = engine
                .deploy(request(env, DeploymentSize::Medium, "adaptive"), None, None)
                .await
                .unwrap();
            engine.wait_for_learning().await;
            let strategy = out.report.deployment_summary.strategy_used.clone();
            let k = STRATEGIES.iter().position(|s| *s == strategy).unwrap();
            phase.add(env, &probs, k, method(&out.report));
            if changed && env == DRIFT_CHANGED.0 {
                production_after.push((i + 1, STRATEGIES[k]));
                trace.push(format!(
                    "#{} {} {} {}",
                    i + 1,
                    STRATEGIES[k],
                    if out.success { "ok" } else { "FAILED" },
                    method(&out.report)
                ));
            }
            for d in &out.report.decision_process {
                if let Decision::DriftDetected(e) = &d.decision {
                    drift.push((
                        changed,
                        i + 1,
                        e.event.strategy.clone(),
                        e.event.environment,
                        e.summary.clone(),
                    ));
                    retrained_on_drift |= retraining(&out.report);
                }
            }
        }
    }
    let new_best = {
        let p = DRIFT_CHANGED.1;
        let k = (0..3).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
        STRATEGIES[k]
    };
    let last_wrong = production_after.iter().rposition(|(_, s)| *s != new_best);
    let recovered_within = match last_wrong {
        None => production_after.first().map(|(i, _)| *i),
        Some(j) => production_after.get(j + 1).map(|(i, _)| *i),
    };
    let [before, after] = phases;
    DriftRun {
        before,
        after,
        recovered_within,
        drift,
        retrained_on_drift,
        status: engine.model_status().await.unwrap(),
        trace,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The figures of one phase, for the test's output and BENCHMARKS.md.
fn phase_line(name: &str, p: &Period) -> String {
    format!(
        "{name}: adaptive {:.3}, best fixed {:.3}, best per context {:.3}; fixed {:?}; choices {:?}",
        p.adaptive,
        p.best_fixed(),
        p.oracle,
        p.fixed.map(round3),
        p.choices
            .iter()
            .map(|(e, c)| (e.to_string(), c.concat_counts()))
            .collect::<Vec<_>>()
    )
}

trait CountChoices {
    fn concat_counts(&self) -> String;
}

impl CountChoices for Vec<&'static str> {
    /// "conservative×12 balanced×1", in order of first choice.
    fn concat_counts(&self) -> String {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for c in self {
            match seen.iter_mut().find(|(s, _)| s == c) {
                Some((_, n)) => *n += 1,
                None => seen.push((c, 1)),
            }
        }
        seen.iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The drifting world, three seeds. After the change in production: the
/// choice there recovers within 20 deployments of the world (about 7 in
/// production), development and staging keep their choice, and over the 40
/// deployments after the change the adaptive choice beats every fixed
/// strategy. The figures go to BENCHMARKS.md ("Learning under change").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_choice_follows_a_change_in_one_environment_and_keeps_the_others() {
    let seeds = [20261127, 1, 2];
    let runs = futures_join3(
        simulate_drift(seeds[0], ""),
        simulate_drift(seeds[1], ""),
        simulate_drift(seeds[2], ""),
    )
    .await;
    let mut lines = Vec::new();
    let (mut before, mut after) = (Period::default(), Period::default());
    for (seed, r) in seeds.iter().zip(&runs) {
        lines.push(format!(
            "seed {seed}: recovered within {:?} deployments after the change; drift events {:?}",
            r.recovered_within,
            r.drift
                .iter()
                .map(|(changed, i, s, e, _)| format!(
                    "{} #{i} {s}/{e}",
                    if *changed { "after" } else { "before" }
                ))
                .collect::<Vec<_>>()
        ));
        lines.push(format!("  {}", phase_line("before", &r.before)));
        lines.push(format!(
            "  production after the change: {}",
            r.trace.join(", ")
        ));
        lines.push(format!("  {}", phase_line("after", &r.after)));
        for (total, p) in [(&mut before, &r.before), (&mut after, &r.after)] {
            total.adaptive += p.adaptive / 3.0;
            total.oracle += p.oracle / 3.0;
            for (t, f) in total.fixed.iter_mut().zip(p.fixed) {
                *t += f / 3.0;
            }
        }
    }
    let report = format!(
        "{}\nmean before the change: adaptive {:.3}, best fixed {:.3}, best per context {:.3}, fixed {:?}\nmean after the change:  adaptive {:.3}, best fixed {:.3}, best per context {:.3}, fixed {:?}",
        lines.join("\n"),
        before.adaptive,
        before.best_fixed(),
        before.oracle,
        before.fixed.map(round3),
        after.adaptive,
        after.best_fixed(),
        after.oracle,
        after.fixed.map(round3),
    );
    eprintln!("{report}");

    for r in &runs {
        // The change was seen where it happened, and retrained the model.
        assert!(
            r.drift.iter().any(|(changed, _, s, e, _)| *changed
                && s == "conservative"
                && *e == Environment::Production),
            "{report}"
        );
        assert!(r.retrained_on_drift, "{report}");
        assert!(
            r.status
                .drift_events
                .iter()
                .any(|d| d.event.strategy == "conservative"
                    && d.event.environment == Environment::Production),
            "model status lists the change: {:?}",
            r.status.drift_events
        );
        // The changed environment recovers within 20 deployments.
        assert!(r.recovered_within.is_some_and(|i| i <= 20), "{report}");
        // The unchanged environments keep their choice (the one made most
        // often; near-ties may flip on a retraining), and the change is
        // never acted on there.
        for env in [Environment::Development, Environment::Staging] {
            let kept = r.before.modal(env);
            assert_eq!(
                r.after.modal(env),
                kept,
                "{env} changed its choice: {:?}\n{report}",
                r.after.choices[&env]
            );
            assert!(
                r.after.methods[&env]
                    .iter()
                    .all(|m| m == "model" || m == "exploration"),
                "{env}: {:?}",
                r.after.methods[&env]
            );
        }
    }
    // Over the 40 deployments after the change, better than any fixed
    // strategy.
    for f in after.fixed {
        assert!(after.adaptive > f, "{report}");
    }
}

/// Three futures at once (the seeds' worlds are independent).
async fn futures_join3<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
    c: impl std::future::Future<Output = T>,
) -> [T; 3] {
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}

/// The strategy_predicted decision's candidates.
fn candidates(report: &adeploy::report::Report) -> Vec<adeploy::engine::CandidateScore> {
    find(report, |d| match d {
        Decision::StrategyPredicted { candidates, .. } => Some(candidates.clone()),
        _ => None,
    })
    .expect("a strategy_predicted decision")
}

/// The exploration decision, if this deployment explored.
fn exploration(report: &adeploy::report::Report) -> Option<adeploy::engine::Exploration> {
    find(report, |d| match d {
        Decision::Exploration(e) => Some(e.clone()),
        _ => None,
    })
}

fn dry(env: Environment, services: &[&str]) -> DeploymentRequest {
    DeploymentRequest {
        services: services.iter().map(|s| s.to_string()).collect(),
        dry_run: true,
        ..request(env, DeploymentSize::Medium, "adaptive")
    }
}

/// Isolation: the history features are computed per environment, so a burst
/// of failures in production moves nothing the model predicts for
/// development (earlier, `recent_failures` and the success rates summed
/// over every environment, and development's estimates fell with
/// production's failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failures_in_production_leaves_the_development_choice_unchanged() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let extra = "ml_config:\n  min_training_samples: 12\n  retrain_frequency: 1000\n  exploration_rate: 0.0\n";
    let engine = engine(&w, &services, extra).await;
    // Development: aggressive and balanced succeed, conservative fails;
    // production: conservative succeeds, the others fail.
    for round in 0..3 {
        for (i, s) in STRATEGIES.iter().enumerate() {
            let env = if (round + i) % 2 == 0 {
                Environment::Development
            } else {
                Environment::Production
            };
            for env in [env, other(env)] {
                let ok = match env {
                    Environment::Development => *s != "conservative",
                    _ => *s == "conservative",
                };
                std::fs::write(&winners, if ok { format!("{s}\n") } else { String::new() })
                    .unwrap();
                engine
                    .deploy(request(env, DeploymentSize::Medium, s), None, None)
                    .await
                    .unwrap();
            }
        }
    }
    engine.retrain_model().await.unwrap();
    let before = engine
        .deploy(dry(Environment::Development, &["app"]), None, None)
        .await
        .unwrap();
    assert_eq!(method(&before.report), "model");
    let features_before = development_features(&w);

    // A burst of failures in production, and a retraining on them.
    std::fs::write(&winners, "").unwrap();
    for s in [
        "conservative",
        "conservative",
        "balanced",
        "conservative",
        "aggressive",
        "conservative",
    ] {
        let out = engine
            .deploy(
                request(Environment::Production, DeploymentSize::Medium, s),
                None,
                None,
            )
            .await
            .unwrap();
        assert!(!out.success);
    }
    engine.retrain_model().await.unwrap();
    // What the model is asked about development did not move...
    let features_after = development_features(&w);
    assert_eq!(features_after, features_before);
    let after = engine
        .deploy(dry(Environment::Development, &["app"]), None, None)
        .await
        .unwrap();
    assert_eq!(method(&after.report), "model");
    assert_eq!(
        after.report.deployment_summary.strategy_used,
        before.report.deployment_summary.strategy_used,
        "the development choice moved"
    );
    let (b, a) = (candidates(&before.report), candidates(&after.report));
    for s in STRATEGIES {
        let p = |c: &[adeploy::engine::CandidateScore]| {
            c.iter().find(|x| x.strategy == s).unwrap().p_success
        };
        assert!(
            (p(&b) - p(&a)).abs() < 0.1,
            "{s} in development moved from {:.2} to {:.2} with production's failures",
            p(&b),
            p(&a)
        );
    }
}

/// The history features of a development deployment of `app` now
/// (recent failures, success rates, mean duration, the service's record).
fn development_features(w: &World) -> [f64; 6] {
    use adeploy::engine::learn;
    let records = History::open(&w.state())
        .unwrap()
        .list_deployments(usize::MAX)
        .unwrap();
    let past = learn::Past::from(learn::outcomes(&records));
    let f = learn::feature_context(
        &calm(),
        Environment::Development,
        DeploymentSize::Medium,
        &["app".to_string()],
        &past,
        &adeploy::ml::Recency::default(),
        "aggressive",
    );
    [
        f.recent_failures,
        f.success_rate_overall,
        f.success_rate_strategy,
        f.mean_duration_min,
        f.service_success_min.unwrap(),
        f.service_success_product.unwrap(),
    ]
}

fn other(env: Environment) -> Environment {
    match env {
        Environment::Development => Environment::Production,
        _ => Environment::Development,
    }
}

/// A strategy the model never saw gets the uninformed prior (50%), not the
/// forest's guess: with a history where everything succeeded, the forest
/// says 100% for anything, and a never-deployed `canary` used to be scored
/// "100% expected success". It is tried only by an exploration decision,
/// with its rate, and never in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseen_strategy_gets_an_uninformed_prior_and_is_tried_only_on_purpose() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "conservative\nbalanced\naggressive\ncanary\n").unwrap();
    let ml = "ml_config:\n  min_training_samples: 9\n  min_strategy_samples: 3\n";
    let with_canary = |rate: f64| {
        format!(
            "experimental:\n  enable_canary_deployments: true\n{ml}  exploration_rate: {rate}\n"
        )
    };
    let engine = engine(&w, &services, ml).await;
    for s in STRATEGIES.iter().cycle().take(9) {
        engine
            .deploy(
                request(Environment::Staging, DeploymentSize::Medium, s),
                None,
                None,
            )
            .await
            .unwrap();
    }
    engine.wait_for_learning().await;
    drop(engine);

    let engine = self::engine(&w, &services, &with_canary(0.0)).await;
    let out = engine
        .deploy(dry(Environment::Staging, &["app"]), None, None)
        .await
        .unwrap();
    assert_eq!(method(&out.report), "model");
    let scores = candidates(&out.report);
    let canary = scores.iter().find(|c| c.strategy == "canary").unwrap();
    assert!(!canary.known, "{canary:?}");
    assert_eq!(canary.p_model, 0.5);
    assert_eq!(canary.p_success, 0.5, "{canary:?}");
    assert!(
        scores.iter().filter(|c| c.known).all(|c| c.p_success > 0.8),
        "{scores:?}"
    );
    assert_ne!(out.report.deployment_summary.strategy_used, "canary");
    assert!(exploration(&out.report).is_none());

    // With an exploration rate it is tried on purpose, and says so.
    let engine = self::engine(&w, &services, &with_canary(1.0)).await;
    let out = engine
        .deploy(dry(Environment::Staging, &["app"]), None, None)
        .await
        .unwrap();
    assert_eq!(method(&out.report), "exploration");
    let e = exploration(&out.report).expect("an exploration decision");
    assert_eq!(e.strategy, "canary");
    assert_eq!(
        (e.rate, e.rate_source.as_str()),
        (1.0, "ml_config.exploration_rate")
    );
    assert!(e.draw < e.rate && e.deployments == 0, "{e:?}");
    assert!(e.reason.contains("0 deployment(s) so far"), "{e:?}");
    // Never in production.
    let prod = engine
        .deploy(dry(Environment::Production, &["app"]), None, None)
        .await
        .unwrap();
    assert!(exploration(&prod.report).is_none());
    assert_ne!(prod.report.deployment_summary.strategy_used, "canary");
}

/// The services deployed are features: a service's own record (its success
/// rate in this environment, the lowest and the mean over the request)
/// moves the prediction for deployments that include it. Earlier a
/// request with an always-failing service was predicted like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_always_fails_raises_the_predicted_failure() {
    let w = World::new();
    let services = "  good:\n    deploy: 'true'\n  bad:\n    deploy: 'false'\n";
    let ml = "ml_config:\n  min_training_samples: 12\n  retrain_frequency: 1000\n  exploration_rate: 0.0\n";
    let engine = engine(&w, services, ml).await;
    // In a seeded random order, so that nothing but the services tells the
    // failures apart.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for s in STRATEGIES.iter().cycle().take(24) {
        let service = if rng.gen_bool(0.5) { "good" } else { "bad" };
        let req = DeploymentRequest {
            services: vec![service.into()],
            ..request(Environment::Staging, DeploymentSize::Medium, s)
        };
        assert_eq!(
            engine.deploy(req, None, None).await.unwrap().success,
            service == "good"
        );
    }
    engine.retrain_model().await.unwrap();
    drop(engine);

    let predicting = format!("{ml}experimental:\n  enable_rollback_prediction: true\n");
    let engine = self::engine(&w, services, &predicting).await;
    let p_failure = |report: &adeploy::report::Report| {
        find(report, |d| match d {
            Decision::RollbackPrediction { p_failure, .. } => *p_failure,
            _ => None,
        })
        .expect("a predicted failure probability")
    };
    let good = engine
        .deploy(dry(Environment::Staging, &["good"]), None, None)
        .await
        .unwrap();
    let both = engine
        .deploy(dry(Environment::Staging, &["good", "bad"]), None, None)
        .await
        .unwrap();
    let (good, both) = (p_failure(&good.report), p_failure(&both.report));
    eprintln!("predicted failure: good alone {good:.2}, good with bad {both:.2}");
    assert!(good < 0.3, "good alone: predicted failure {good:.2}");
    assert!(
        both > 0.7,
        "with the failing service: predicted failure {both:.2}"
    );
}

/// A change outside production: the deployment that reveals it records a
/// `drift_detected` decision with the evidence and retrains at once; the
/// next adaptive deployments there re-check the candidates at
/// `ml_config.drift_exploration_rate`; `model status` lists the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_outside_production_is_detected_and_the_candidates_rechecked() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let extra = "ml_config:\n  min_training_samples: 6\n  retrain_frequency: 1000\n  exploration_rate: 0.0\n  drift_exploration_rate: 1.0\n";
    let engine = engine(&w, &services, extra).await;
    std::fs::write(&winners, "conservative\nbalanced\naggressive\n").unwrap();
    for s in STRATEGIES.iter().cycle().take(6) {
        engine
            .deploy(
                request(Environment::Staging, DeploymentSize::Medium, s),
                None,
                None,
            )
            .await
            .unwrap();
    }
    engine.wait_for_learning().await;
    // Balanced keeps succeeding, then starts failing.
    let run = || request(Environment::Staging, DeploymentSize::Medium, "balanced");
    for _ in 0..8 {
        assert!(engine.deploy(run(), None, None).await.unwrap().success);
    }
    std::fs::write(&winners, "conservative\naggressive\n").unwrap();
    let mut detected = None;
    for i in 0..4 {
        let out = engine.deploy(run(), None, None).await.unwrap();
        assert!(!out.success);
        if let Some(d) = find(&out.report, |d| match d {
            Decision::DriftDetected(e) => Some(e.clone()),
            _ => None,
        }) {
            assert!(retraining(&out.report), "a change retrains at once");
            detected = Some((i, d));
            break;
        }
    }
    let (i, d) = detected.expect("the change is detected");
    assert_eq!(i, 2, "three failures after ten successes are a change");
    assert_eq!(d.event.strategy, "balanced");
    assert_eq!(d.event.environment, Environment::Staging);
    assert_eq!(d.event.direction, adeploy::ml::DriftDirection::Dropped);
    assert_eq!(
        (d.event.recent_successes, d.event.recent_deployments),
        (0, 3)
    );
    assert!(
        d.summary.starts_with(
            "success rate of balanced in staging dropped: 0 of the last 3 succeeded, 10 of 10 before"
        ),
        "{}",
        d.summary
    );
    assert!(
        d.response.contains("re-check the candidates"),
        "{}",
        d.response
    );
    let retrained = engine.wait_for_learning().await;
    assert_eq!(retrained.len(), 1);
    assert!(
        retrained[0].reason.contains("a change was detected"),
        "{}",
        retrained[0].reason
    );

    let out = engine
        .deploy(
            request(Environment::Staging, DeploymentSize::Medium, "adaptive"),
            None,
            None,
        )
        .await
        .unwrap();
    let e = exploration(&out.report).expect("re-checking after the change");
    assert_eq!(e.rate_source, "ml_config.drift_exploration_rate");
    assert_eq!(e.rate, 1.0);
    assert_ne!(
        e.strategy, "balanced",
        "the strategies least tried since the change go first"
    );
    assert!(e.reason.contains("after a change in staging"), "{e:?}");

    let status = engine.model_status().await.unwrap();
    let listed = &status.drift_events[0];
    assert_eq!(listed.event, d.event);
    assert!(listed.active && listed.deployments_since == 1, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_retrains_at_the_configured_cadence() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "conservative\nbalanced\n").unwrap();
    let engine = engine(
        &w,
        &services,
        "ml_config:\n  min_training_samples: 4\n  retrain_frequency: 3\n",
    )
    .await;
    let (mut trained_on, mut next) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let strategy = STRATEGIES[i % 3];
        let out = engine
            .deploy(
                request(Environment::Staging, DeploymentSize::Medium, strategy),
                None,
                None,
            )
            .await
            .unwrap();
        let scheduled = retraining(&out.report);
        let done = engine.wait_for_learning().await;
        assert_eq!(scheduled, !done.is_empty(), "deployment {}", i + 1);
        let status = engine.model_status().await.unwrap();
        trained_on.push(status.model.map(|m| m.samples).unwrap_or(0));
        next.push(status.next_retrain_in);
    }
    // First at 4 deployments, then every 3; `model status` counts down to
    // the deployment that retrains (1: the next one).
    assert_eq!(trained_on, [0, 0, 0, 4, 4, 4, 7, 7, 7, 10]);
    assert_eq!(next, [3, 2, 1, 3, 2, 1, 3, 2, 1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_model_is_discarded_and_retrained() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "conservative\nbalanced\naggressive\n").unwrap();
    // No exploration: the rules' fallback is what this test checks.
    let extra =
        "ml_config:\n  min_training_samples: 3\n  retrain_frequency: 50\n  exploration_rate: 0.0\n";
    let engine = engine(&w, &services, extra).await;
    for s in STRATEGIES {
        engine
            .deploy(
                request(Environment::Staging, DeploymentSize::Small, s),
                None,
                None,
            )
            .await
            .unwrap();
    }
    engine.wait_for_learning().await;
    assert_eq!(engine.model_status().await.unwrap().state, "trained");

    let foreign = br#"{"format":"adeploy-strategy-model","version":999,"model":{}}"#;
    for bytes in [&b"\x00\x01garbage"[..], &foreign[..]] {
        History::open(&w.state())
            .unwrap()
            .put_blob(MODEL_BLOB, bytes)
            .unwrap();
        let status = engine.model_status().await.unwrap();
        assert_eq!(status.state, "discarded");
        assert_eq!(status.decides, "rules");

        let out = engine
            .deploy(
                request(Environment::Staging, DeploymentSize::Small, "adaptive"),
                None,
                None,
            )
            .await
            .unwrap();
        assert!(out.success);
        let discarded = find(&out.report, |d| match d {
            Decision::ModelDiscarded { reason } => Some(reason.as_str()),
            _ => None,
        })
        .unwrap();
        assert!(discarded.contains("discarded and retrained"), "{discarded}");
        assert_eq!(method(&out.report), "rules");
        assert!(retraining(&out.report));
        let retrained = engine.wait_for_learning().await;
        assert_eq!(retrained.len(), 1);
        assert!(retrained[0].result.is_ok(), "{:?}", retrained[0].result);
        assert_eq!(engine.model_status().await.unwrap().state, "trained");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exploration_tries_little_known_strategies_but_never_in_production() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "conservative\nbalanced\naggressive\n").unwrap();
    // Every adaptive run outside production explores while a strategy has
    // fewer than 2 deployments.
    let extra = "ml_config:\n  exploration_rate: 1.0\n  min_strategy_samples: 2\n";
    let engine = engine(&w, &services, extra).await;
    engine
        .deploy(
            request(Environment::Staging, DeploymentSize::Small, "conservative"),
            None,
            None,
        )
        .await
        .unwrap();

    let run = |env| request(env, DeploymentSize::Small, "adaptive");
    let prod = engine
        .deploy(run(Environment::Production), None, None)
        .await
        .unwrap();
    assert_eq!(method(&prod.report), "rules");

    // Staging: the strategies with the fewest deployments go first
    // (aggressive and balanced have none; conservative has 2 now).
    let mut explored = Vec::new();
    for _ in 0..4 {
        let out = engine
            .deploy(run(Environment::Staging), None, None)
            .await
            .unwrap();
        explored.push((
            method(&out.report).to_string(),
            out.report.deployment_summary.strategy_used.clone(),
        ));
        // An explicit decision, with its rate and draw.
        let e = exploration(&out.report).expect("an exploration decision");
        assert_eq!(e.strategy, out.report.deployment_summary.strategy_used);
        assert_eq!((e.rate, e.environment), (1.0, Environment::Staging));
        assert!(e.draw < 1.0);
    }
    let explored: Vec<(&str, &str)> = explored
        .iter()
        .map(|(m, s)| (m.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        explored,
        [
            ("exploration", "aggressive"),
            ("exploration", "balanced"),
            ("exploration", "aggressive"),
            ("exploration", "balanced"),
        ]
    );
    assert!(exploration(&prod.report).is_none(), "never in production");
    // Everything has 2 deployments or more now: no more exploration.
    let out = engine
        .deploy(run(Environment::Staging), None, None)
        .await
        .unwrap();
    assert_eq!(method(&out.report), "rules");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_is_checked_against_similar_past_deployments() {
    let w = World::new();
    let services = "  app:\n    deploy: 'if [ \"$ADEPLOY_STRATEGY\" = conservative ]; then sleep 1; fi'\n    timeout_s: 20\n";
    let engine = engine(&w, services, "").await;
    let prod = |strategy: &str| request(Environment::Production, DeploymentSize::Small, strategy);
    for _ in 0..3 {
        for s in ["conservative", "aggressive"] {
            assert!(engine.deploy(prod(s), None, None).await.unwrap().success);
        }
    }
    let half_a_second = Some(std::time::Duration::from_millis(500));

    // The operator's choice cannot make it: refused with the numbers.
    let err = engine
        .deploy(
            DeploymentRequest {
                max_time: half_a_second,
                ..prod("conservative")
            },
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(
        msg.contains("too short for conservative")
            && msg.contains("median of 3")
            && msg.contains("aggressive is expected to take"),
        "{msg}"
    );
    assert_eq!(
        engine.list(100).await.unwrap().len(),
        6,
        "a refusal records nothing"
    );

    // --force goes ahead (and the deadline then cuts it off).
    let forced = engine
        .deploy(
            DeploymentRequest {
                max_time: half_a_second,
                force: true,
                ..prod("conservative")
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!forced.success);

    // Adaptive: the rules pick conservative in production, the check moves
    // to the candidate expected to fit.
    let out = engine
        .deploy(
            DeploymentRequest {
                max_time: half_a_second,
                ..prod("adaptive")
            },
            None,
            None,
        )
        .await
        .unwrap();
    let check = find(&out.report, |d| match d {
        Decision::MaxTimeCheck(c) => Some(c),
        _ => None,
    })
    .unwrap();
    assert_eq!(check.feasible, Some(false), "{check:?}");
    assert_eq!(check.switched_to.as_deref(), Some("aggressive"));
    assert_eq!(out.report.deployment_summary.strategy_used, "aggressive");
    assert!(out.success);
    let p = &out.report.performance_analysis;
    assert!(p.predicted_duration.unwrap() < 0.1, "{p:?}");
    assert!(
        p.prediction_basis
            .as_deref()
            .unwrap()
            .contains("median of 3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_raise_an_alert_and_hooks_get_the_count() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let plugins = w.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(adeploy_fixtures::ECHO, plugins.join("echo.wasm")).unwrap();
    let mut options = w.options();
    options.fixed_metrics = Some(calm());
    options.plugin_dirs = vec![plugins];
    let engine = w
        .engine_with_options(&services, "alerts:\n  consecutive_failures: 2\n", options)
        .await;

    let on_failure_count = |r: &adeploy::report::Report| {
        find(r, |d| match d {
            Decision::Hook {
                phase: Phase::OnFailure,
                details: Some(details),
                ..
            } => details.get("failure_count").cloned(),
            _ => None,
        })
    };
    let run = || request(Environment::Staging, DeploymentSize::Small, "balanced");
    std::fs::write(&winners, "").unwrap();
    let first = engine.deploy(run(), None, None).await.unwrap();
    assert!(!first.success);
    assert_eq!(on_failure_count(&first.report).unwrap(), "1");
    assert_eq!(alert_threshold(&first.report), None);

    let second = engine.deploy(run(), None, None).await.unwrap();
    assert_eq!(on_failure_count(&second.report).unwrap(), "2");
    assert_eq!(alert_threshold(&second.report), Some(2));
    assert!(
        second
            .report
            .recommendations
            .iter()
            .any(|r| r.starts_with("alert: 2 consecutive failed deployments in staging")),
        "{:?}",
        second.report.recommendations
    );
    assert!(
        second
            .report
            .recommendations
            .iter()
            .any(|r| r.starts_with("alert: app failed in 2 consecutive deployments")),
        "{:?}",
        second.report.recommendations
    );

    // A success ends the streak.
    std::fs::write(&winners, "balanced\n").unwrap();
    let third = engine.deploy(run(), None, None).await.unwrap();
    assert!(third.success);
    assert_eq!(alert_threshold(&third.report), None);
    assert!(on_failure_count(&third.report).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_prediction_asks_or_refuses_above_the_threshold() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "").unwrap();
    let extra = "experimental:\n  enable_rollback_prediction: true\nml_config:\n  rollback_prediction_threshold: 0.5\n  min_training_samples: 100\n";
    let engine = engine(&w, &services, extra).await;
    let run = || request(Environment::Staging, DeploymentSize::Small, "balanced");
    for i in 0..5 {
        let out = engine.deploy(run(), None, None).await.unwrap();
        assert_eq!(prediction_action(&out.report), "not predicted", "run {i}");
    }

    // Non-interactive: refused with the numbers, nothing recorded.
    let err = engine.deploy(run(), None, None).await.unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(
        msg.contains("predicted failure probability 100% of balanced in staging")
            && msg.contains("5 of 5 past balanced deployments in staging failed"),
        "{msg}"
    );
    assert_eq!(engine.list(100).await.unwrap().len(), 5);

    // Interactive: the prompt shows the warning; a yes goes ahead.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let confirm: adeploy::engine::Confirm = Box::new(move |q| {
        if let adeploy::engine::Question::Plan(plan) = q {
            sink.lock().unwrap().extend(plan.warnings.clone());
        }
        true
    });
    let out = engine.deploy(run(), None, Some(confirm)).await.unwrap();
    assert_eq!(prediction_action(&out.report), "confirmation asked");
    assert!(seen.lock().unwrap()[0].contains("over ml_config.rollback_prediction_threshold 50%"));

    // --force goes ahead without asking.
    let forced = engine
        .deploy(
            DeploymentRequest {
                force: true,
                ..run()
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(prediction_action(&forced.report), "forced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_scaling_follows_the_load_trend() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let w = World::new();
    let services: String = (0..24)
        .map(|i| format!("  s{i}:\n    deploy: 'sleep 0.1'\n    timeout_s: 20\n"))
        .collect();
    // Scripted load, one reading every 10 s of simulated time (every budget
    // check and every rescale reads it): rising towards aggressive's budget
    // (cpu_limit 1.0 here), then falling.
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let t0 = chrono::Utc::now();
    let mut options = w.options();
    options.metrics_source = Some(std::sync::Arc::new(move || {
        let k = calls.fetch_add(1, Ordering::SeqCst);
        let cpu = if k < 24 {
            30.0 + 2.5 * f64::from(k)
        } else {
            (90.0 - 10.0 * f64::from(k - 24)).max(5.0)
        };
        Snapshot {
            timestamp: t0 + chrono::Duration::seconds(10 * i64::from(k)),
            cpu_percent: cpu,
            ..calm()
        }
    }));
    let engine = w
        .engine_with_options(
            &services,
            "experimental:\n  enable_predictive_scaling: true\nmonitoring:\n  trend_window_s: 60\n  trend_min_samples: 2\n  trend_min_span_s: 10\n",
            options,
        )
        .await;
    let names: Vec<String> = (0..24).map(|i| format!("s{i}")).collect();
    let out = engine
        .deploy(
            DeploymentRequest {
                services: names,
                strategy: Some("aggressive".into()),
                environment: Some(Environment::Development),
                ..DeploymentRequest::default()
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(out.success);
    let changes: Vec<(u32, u32)> = out
        .report
        .decision_process
        .iter()
        .filter_map(|d| match d.decision {
            Decision::PredictiveScaling { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    let kinds: Vec<String> = out
        .report
        .decision_process
        .iter()
        .map(|d| d.decision.decision_type())
        .collect();
    assert!(changes.iter().any(|(f, t)| t < f), "{changes:?} {kinds:?}");
    assert!(changes.iter().any(|(f, t)| t > f), "{changes:?}");
    let first_up = changes.iter().position(|(f, t)| t > f).unwrap();
    let first_down = changes.iter().position(|(f, t)| t < f).unwrap();
    assert!(
        first_down < first_up,
        "down while rising, up once falling: {changes:?}"
    );
}

/// Regression (issue 13, item 5): predictive scaling fitted a trend to a
/// few seconds of samples. Below `monitoring.trend_min_samples` /
/// `trend_min_span_s` it now leaves the concurrency alone and says why,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_scaling_waits_for_enough_data() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let w = World::new();
    let services: String = (0..12)
        .map(|i| format!("  s{i}:\n    deploy: 'true'\n    timeout_s: 20\n"))
        .collect();
    // A steep climb, one reading per simulated second: 12 s of data.
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let t0 = chrono::Utc::now();
    let mut options = w.options();
    options.metrics_source = Some(std::sync::Arc::new(move || {
        let k = calls.fetch_add(1, Ordering::SeqCst);
        Snapshot {
            timestamp: t0 + chrono::Duration::seconds(i64::from(k)),
            cpu_percent: (30.0 + 5.0 * f64::from(k)).min(99.0),
            ..calm()
        }
    }));
    let engine = w
        .engine_with_options(
            &services,
            "experimental:\n  enable_predictive_scaling: true\n",
            options,
        )
        .await;
    let out = engine
        .deploy(
            DeploymentRequest {
                services: (0..12).map(|i| format!("s{i}")).collect(),
                strategy: Some("aggressive".into()),
                environment: Some(Environment::Development),
                ..DeploymentRequest::default()
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(out.success);
    let decisions = &out.report.decision_process;
    assert!(
        !decisions
            .iter()
            .any(|d| matches!(d.decision, Decision::PredictiveScaling { .. })),
        "no scaling on seconds of data"
    );
    let skipped: Vec<String> = decisions
        .iter()
        .filter_map(|d| match &d.decision {
            Decision::PredictiveScalingSkipped { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].starts_with("cpu: not enough data (")
            && skipped[0].contains("a trend needs at least 10 samples over 60.0 s"),
        "{skipped:?}"
    );
}

/// The measurement behind the defaults of `ml_config.half_life_deployments`
/// and `ml_config.drift_p_value` (BENCHMARKS.md, "Learning under change"):
/// the stationary and the drifting world, three seeds each, per setting.
/// `cargo test -p adeploy --test all learning::recency_and_drift_settings -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about 15 minutes); prints the table"]
async fn recency_and_drift_settings() {
    let settings: &[(&str, &str)] = &[
        (
            "no decay, no detection",
            "ml_config:\n  half_life_deployments: 0\n  drift_p_value: 0\n",
        ),
        (
            "no decay, detection 0.01",
            "ml_config:\n  half_life_deployments: 0\n",
        ),
        ("half-life 40", "ml_config:\n  half_life_deployments: 40\n"),
        ("half-life 20", "ml_config:\n  half_life_deployments: 20\n"),
        ("half-life 10", "ml_config:\n  half_life_deployments: 10\n"),
        ("half-life 5", "ml_config:\n  half_life_deployments: 5\n"),
        (
            "half-life 20, no detection",
            "ml_config:\n  half_life_deployments: 20\n  drift_p_value: 0\n",
        ),
        (
            "half-life 10, no detection",
            "ml_config:\n  half_life_deployments: 10\n  drift_p_value: 0\n",
        ),
        (
            "half-life 5, no detection",
            "ml_config:\n  half_life_deployments: 5\n  drift_p_value: 0\n",
        ),
        (
            "half-life 20, detection 0.05",
            "ml_config:\n  half_life_deployments: 20\n  drift_p_value: 0.05\n",
        ),
        (
            "half-life 20, detection 0.001",
            "ml_config:\n  half_life_deployments: 20\n  drift_p_value: 0.001\n",
        ),
    ];
    let seeds = [20261127, 1, 2];
    let mut rows = vec![
        "| setting | stationary: adaptive | drifting, before: adaptive | drifting, after: adaptive | recovered within (per seed) |".to_string(),
        "| --- | --- | --- | --- | --- |".to_string(),
    ];
    // ADEPLOY_SETTINGS=TEXT measures only the settings whose label contains it.
    let only = std::env::var("ADEPLOY_SETTINGS").unwrap_or_default();
    for (label, extra) in settings.iter().filter(|(l, _)| l.contains(only.as_str())) {
        let (stationary, drifting) = tokio::join!(
            futures_join3(
                simulate(seeds[0], extra),
                simulate(seeds[1], extra),
                simulate(seeds[2], extra),
            ),
            futures_join3(
                simulate_drift(seeds[0], extra),
                simulate_drift(seeds[1], extra),
                simulate_drift(seeds[2], extra),
            ),
        );
        let mean = |f: &dyn Fn(usize) -> f64| (0..3).map(f).sum::<f64>() / 3.0;
        let row = format!(
            "| {label} | {:.3} ({} fallbacks) | {:.3} | {:.3} | {:?} |",
            mean(&|i| stationary[i].adaptive),
            stationary.iter().map(|s| s.fallbacks).sum::<usize>(),
            mean(&|i| drifting[i].before.adaptive),
            mean(&|i| drifting[i].after.adaptive),
            drifting
                .iter()
                .map(|r| r.recovered_within)
                .collect::<Vec<_>>()
        );
        eprintln!("{row}");
        rows.push(row);
    }
    eprintln!(
        "stationary: best per context 0.957, best fixed 0.866; drifting: best per context 0.967 / 0.960, best fixed 0.872 / 0.831\n{}",
        rows.join("\n")
    );
}
