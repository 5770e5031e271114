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
use adeploy::engine::{DeploymentRequest, DeploymentSize, Engine};
use adeploy::history::History;
use adeploy::monitor::Snapshot;
use rand::{Rng, SeedableRng};

use crate::engine::World;

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

async fn engine(w: &World, services: &str, extra: &str) -> Engine {
    let path = w.write_config(services);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    let config = adeploy::config::Config::load(Some(&path)).unwrap();
    let mut options = w.options();
    options.fixed_metrics = Some(calm());
    Engine::new(config, options).await.unwrap()
}

fn request(env: Environment, size: DeploymentSize, strategy: &str) -> DeploymentRequest {
    DeploymentRequest {
        services: vec!["app".into()],
        strategy: Some(strategy.into()),
        environment: Some(env),
        size,
        ..DeploymentRequest::default()
    }
}

/// The decision log entry of one type.
fn decision<'a>(
    report: &'a adeploy::report::Report,
    kind: &str,
) -> Option<&'a adeploy::history::DecisionRecord> {
    report
        .decision_process
        .iter()
        .find(|d| d.decision_type == kind)
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
    choices: BTreeMap<String, BTreeMap<&'static str, usize>>,
}

/// 60 deployments with every strategy in every context, then 40 adaptive.
async fn simulate(seed: u64) -> Score {
    let w = World::new();
    let (services, winners) = simulated(&w);
    let engine = engine(&w, &services, "").await;
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
    let status = engine.model_status().unwrap();
    assert_eq!(status.state, "trained");
    assert_eq!(status.model.as_ref().unwrap().samples, 60);

    let mut score = Score {
        adaptive: 0.0,
        oracle: 0.0,
        fixed: [0.0; 3],
        realised: 0,
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
        let predicted = decision(&out.report, "strategy_predicted").unwrap();
        assert_eq!(
            predicted.details["method"], "model",
            "the model decides once trained: {}",
            predicted.details
        );
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
        let s = simulate(seed).await;
        lines.push(format!(
            "seed {seed}: adaptive {:.3} (realised {}/40), best per context {:.3}, fixed {:?}, choices {:?}",
            s.adaptive,
            s.realised,
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
    let mut trained_on = Vec::new();
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
        let scheduled = decision(&out.report, "model_retraining").is_some();
        let done = engine.wait_for_learning().await;
        assert_eq!(scheduled, !done.is_empty(), "deployment {}", i + 1);
        trained_on.push(
            engine
                .model_status()
                .unwrap()
                .model
                .map(|m| m.samples)
                .unwrap_or(0),
        );
    }
    // First at 4 deployments, then every 3.
    assert_eq!(trained_on, [0, 0, 0, 4, 4, 4, 7, 7, 7, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_model_is_discarded_and_retrained() {
    let w = World::new();
    let (services, winners) = simulated(&w);
    std::fs::write(&winners, "conservative\nbalanced\naggressive\n").unwrap();
    let extra = "ml_config:\n  min_training_samples: 3\n  retrain_frequency: 50\n";
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
    assert_eq!(engine.model_status().unwrap().state, "trained");

    let foreign = br#"{"format":"adeploy-strategy-model","version":999,"model":{}}"#;
    for bytes in [&b"\x00\x01garbage"[..], &foreign[..]] {
        History::open(&w.state())
            .unwrap()
            .put_blob(MODEL_BLOB, bytes)
            .unwrap();
        let status = engine.model_status().unwrap();
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
        let discarded = decision(&out.report, "model_discarded").unwrap();
        assert!(
            discarded.details["reason"]
                .as_str()
                .unwrap()
                .contains("discarded and retrained"),
            "{}",
            discarded.details
        );
        let predicted = decision(&out.report, "strategy_predicted").unwrap();
        assert_eq!(predicted.details["method"], "rules");
        assert!(decision(&out.report, "model_retraining").is_some());
        let retrained = engine.wait_for_learning().await;
        assert_eq!(retrained.len(), 1);
        assert!(retrained[0].result.is_ok(), "{:?}", retrained[0].result);
        assert_eq!(engine.model_status().unwrap().state, "trained");
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
    let predicted = decision(&prod.report, "strategy_predicted").unwrap();
    assert_eq!(
        predicted.details["method"], "rules",
        "{}",
        predicted.details
    );

    // Staging: the strategies with the fewest deployments go first
    // (aggressive and balanced have none; conservative has 2 now).
    let mut explored = Vec::new();
    for _ in 0..4 {
        let out = engine
            .deploy(run(Environment::Staging), None, None)
            .await
            .unwrap();
        let d = decision(&out.report, "strategy_predicted").unwrap();
        explored.push((
            d.details["method"].as_str().unwrap().to_string(),
            out.report.deployment_summary.strategy_used.clone(),
        ));
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
    // Everything has 2 deployments or more now: no more exploration.
    let out = engine
        .deploy(run(Environment::Staging), None, None)
        .await
        .unwrap();
    let d = decision(&out.report, "strategy_predicted").unwrap();
    assert_eq!(d.details["method"], "rules", "{}", d.details);
}
