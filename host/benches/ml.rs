//! Strategy-model costs: training the default forest (50 trees, depth 8) on
//! 10,000 seeded synthetic deployments (target < 2 s; the engine retrains
//! every `retrain_frequency` deployments, off the async workers) and one
//! prediction over 3 candidates (target < 1 ms; paid on every deployment).
//! Run: `cargo bench -p adeploy --bench ml`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use adeploy::config::Environment;
use adeploy::ml::{FeatureContext, ForestParams, StrategyModel, TrainingRow};
use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STRATEGIES: [&str; 3] = ["conservative", "balanced", "aggressive"];

fn context(rng: &mut StdRng) -> FeatureContext {
    let env = [
        Environment::Local,
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ][rng.gen_range(0..4)];
    FeatureContext {
        cpu_percent: rng.gen_range(0.0..100.0),
        memory_percent: rng.gen_range(0.0..100.0),
        disk_percent: rng.gen_range(0.0..100.0),
        load_per_core: rng.gen_range(0.0..2.0),
        network_latency_ms: rng.gen_bool(0.8).then(|| rng.gen_range(1.0..200.0)),
        environment: env,
        size_ordinal: f64::from(rng.gen_range(0..3u8)),
        service_count: f64::from(rng.gen_range(1..30u8)),
        hour: f64::from(rng.gen_range(0..24u8)),
        weekday: f64::from(rng.gen_range(0..7u8)),
        success_rate_overall: rng.gen_range(0.5..1.0),
        success_rate_strategy: rng.gen_range(0.3..1.0),
        recent_failures: f64::from(rng.gen_range(0..5u8)),
        mean_duration_min: rng.gen_range(1.0..30.0),
        service_success_min: Some(rng.gen_range(0.3..1.0)),
        service_success_product: Some(rng.gen_range(0.6..1.0)),
        image_bucket: None,
        image_success_min: None,
    }
}

/// Aggressive fails under load and in production; conservative rarely fails.
fn rows(n: usize) -> Vec<TrainingRow> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..n)
        .map(|_| {
            let context = context(&mut rng);
            let s = rng.gen_range(0..3);
            let risk = match s {
                0 => 0.05,
                1 => 0.1 + context.cpu_percent / 400.0,
                _ => {
                    0.1 + context.cpu_percent / 200.0
                        + if context.environment == Environment::Production {
                            0.3
                        } else {
                            0.0
                        }
                }
            };
            TrainingRow {
                success: !rng.gen_bool(f64::min(risk, 0.95)),
                strategy: STRATEGIES[s].to_string(),
                duration_min: [12.0, 6.0, 2.0][s] * rng.gen_range(0.8..1.2),
                weight: 1.0,
                context,
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let data = rows(10_000);
    let weights = BTreeMap::new();
    let params = ForestParams::default();
    let mut g = c.benchmark_group("ml");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("train 10k rows", |b| {
        b.iter(|| StrategyModel::train(black_box(&data), &weights, &params).unwrap())
    });
    g.finish();

    let model = StrategyModel::train(&data, &weights, &params).unwrap();
    let meta = model.meta();
    eprintln!(
        "model: {} samples, oob accuracy {:?}, {} bytes",
        meta.samples,
        meta.oob_accuracy,
        model.to_bytes().unwrap().len()
    );
    let ctx = context(&mut StdRng::seed_from_u64(7));
    let cands: Vec<String> = STRATEGIES.iter().map(|s| s.to_string()).collect();
    let mut g = c.benchmark_group("ml");
    g.bench_function("predict 3 candidates", |b| {
        b.iter(|| model.predict(black_box(&ctx), black_box(&cands)))
    });
    let bytes = model.to_bytes().unwrap();
    g.bench_function("from_bytes", |b| {
        b.iter(|| StrategyModel::from_bytes(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
