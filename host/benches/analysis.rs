//! The judge's cost: one step's analysis of 20 metrics × 1,000 samples
//! (target < 5 ms), all in comparison mode against 1,000 baseline samples
//! each (the expensive mode: a rank test and two medians per metric), all in
//! threshold mode, and one comparison alone. Seeded synthetic samples; no
//! I/O. Run: `cargo bench -p adeploy --bench analysis`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use adeploy::analysis::{ComparisonRule, Direction, Point, Rule, ThresholdRule, judge};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const METRICS: usize = 20;
const SAMPLES: usize = 1_000;

/// `n` samples one second apart around `center`, with some exact repeats
/// (real metrics have ties).
fn series(rng: &mut StdRng, n: usize, center: f64) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            timestamp_ms: 1_700_000_000_000 + 1_000 * i as u64,
            value: if rng.gen_bool(0.1) {
                center
            } else {
                center * rng.gen_range(0.8..1.2)
            },
        })
        .collect()
}

fn comparison() -> Rule {
    Rule {
        threshold: None,
        comparison: Some(ComparisonRule {
            direction: Direction::Increase,
            confidence: 0.98,
            tolerance: 0.10,
            absolute_tolerance: 0.0,
        }),
        min_samples: 1,
    }
}

fn threshold() -> Rule {
    Rule {
        threshold: Some(ThresholdRule {
            min: None,
            max: Some(1.1),
            failure_limit: 50,
            consecutive_successes: Some(5),
        }),
        comparison: None,
        min_samples: 1,
    }
}

fn benches(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(15);
    let metrics: Vec<(Vec<Point>, Vec<Point>)> = (0..METRICS)
        .map(|i| {
            // Half the metrics regressed by 5 %, half unchanged.
            let shift = if i % 2 == 0 { 1.05 } else { 1.0 };
            (
                series(&mut rng, SAMPLES, shift),
                series(&mut rng, SAMPLES, 1.0),
            )
        })
        .collect();
    let (comparison, threshold) = (comparison(), threshold());

    let mut g = c.benchmark_group("analysis");
    g.bench_function("20_metrics_x_1000_samples_comparison", |b| {
        b.iter(|| {
            for (samples, baseline) in &metrics {
                black_box(judge(&comparison, black_box(samples), black_box(baseline)));
            }
        })
    });
    g.bench_function("20_metrics_x_1000_samples_threshold", |b| {
        b.iter(|| {
            for (samples, _) in &metrics {
                black_box(judge(&threshold, black_box(samples), &[]));
            }
        })
    });
    g.bench_function("1_comparison_5_vs_5_samples", |b| {
        let (x, y) = (&metrics[0].0[..5], &metrics[0].1[..5]);
        b.iter(|| black_box(judge(&comparison, black_box(x), black_box(y))))
    });
    g.finish();
}

criterion_group!(analysis, benches);
criterion_main!(analysis);
