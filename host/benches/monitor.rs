//! System monitor costs: one `sample()` after warm-up (what the background
//! sampler pays per tick, target < 5 ms) and one `detailed()`, plus the parts
//! that are not paid on every call: the mount list the monitor reads again at
//! most every 10 s, and the full disk enumeration the monitor used to do on
//! every sample. After the criterion groups, a plain loop times samples spaced
//! past the CPU figure's window (50 ms with the cgroup v2 counter, 200 ms with
//! `/proc/stat`), the ones that also refresh CPU figures.
//! Run: `cargo bench -p adeploy --bench monitor`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use adeploy::monitor::SystemMonitor;
use criterion::Criterion;
use sysinfo::{DiskRefreshKind, Disks};

fn monitor() -> SystemMonitor {
    let m = SystemMonitor::new(&std::env::temp_dir()).unwrap();
    // Warm-up: the first call waits out the CPU counter's window (and
    // sysinfo's per-core interval) and lists the mounts; `detailed` also
    // takes its first I/O reading.
    m.detailed();
    m
}

fn benches(c: &mut Criterion) {
    let m = monitor();
    let mut g = c.benchmark_group("monitor");
    g.bench_function("sample", |b| b.iter(|| black_box(m.sample())));
    g.bench_function("detailed", |b| b.iter(|| black_box(m.detailed())));
    g.bench_function("mount list (every 10 s)", |b| {
        b.iter(|| {
            black_box(Disks::new_with_refreshed_list_specifics(
                DiskRefreshKind::nothing(),
            ))
        })
    });
    g.bench_function("all disks refreshed (old per-sample cost)", |b| {
        b.iter(|| black_box(Disks::new_with_refreshed_list()))
    });
    g.finish();
}

/// Samples that refresh the CPU figures cannot be timed back to back (the
/// monitor reuses the CPU figure within its window, at most 200 ms), so: 20
/// samples 210 ms apart.
fn samples_with_cpu_refresh(m: &SystemMonitor, what: &str, f: impl Fn(&SystemMonitor)) {
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(210));
            let start = Instant::now();
            f(m);
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "monitor/{what} with CPU refresh (20 calls 210 ms apart): min {:?}, median {:?}, max {:?}",
        times[0], times[10], times[19]
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    // Skipped when listing or when cargo runs the bench as a test.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") || !Path::new("/proc").exists() {
        return;
    }
    let m = monitor();
    samples_with_cpu_refresh(&m, "sample", |m| {
        black_box(m.sample());
    });
    samples_with_cpu_refresh(&m, "detailed", |m| {
        black_box(m.detailed());
    });
}
