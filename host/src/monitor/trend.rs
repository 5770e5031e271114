//! Trends: is a metric rising, steady or falling over a recent window, and how fast.
//!
//! The slope is the least-squares fit of value against time over the samples
//! whose timestamp lies within the window of the newest sample, so one noisy
//! sample moves it little, and unevenly spaced samples are weighted by when
//! they were taken, not by their position in the list.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Snapshot;

/// Below this slope, in percentage points per minute, a percent metric (CPU,
/// memory, disk) is steady.
pub const STEADY_PERCENT_PER_MIN: f64 = 1.0;

/// Below this slope, in load per core per minute, the load is steady: the same
/// threshold as [`STEADY_PERCENT_PER_MIN`] with a load of 1.0 per core read as
/// 100% of the machine.
pub const STEADY_LOAD_PER_MIN: f64 = STEADY_PERCENT_PER_MIN / 100.0;

/// Which way a metric is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rising,
    Steady,
    Falling,
}

/// A metric of [`Snapshot`] that has a trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `cpu_percent`, percent.
    Cpu,
    /// `memory_percent`, percent.
    Memory,
    /// `disk_percent`, percent.
    Disk,
    /// `load_per_core`, load per core.
    Load,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 4] = [Metric::Cpu, Metric::Memory, Metric::Disk, Metric::Load];

    /// The name used in reports and [`Trend::metric`]: `cpu`, `memory`, `disk`, `load`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Disk => "disk",
            Metric::Load => "load",
        }
    }

    /// The metric's value in a snapshot.
    pub fn value(self, s: &Snapshot) -> f64 {
        match self {
            Metric::Cpu => s.cpu_percent,
            Metric::Memory => s.memory_percent,
            Metric::Disk => s.disk_percent,
            Metric::Load => s.load_per_core,
        }
    }

    /// The slope per minute under which the metric is steady
    /// ([`STEADY_PERCENT_PER_MIN`] or [`STEADY_LOAD_PER_MIN`]).
    pub fn steady_below_per_min(self) -> f64 {
        match self {
            Metric::Load => STEADY_LOAD_PER_MIN,
            _ => STEADY_PERCENT_PER_MIN,
        }
    }
}

/// A metric's trend over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// [`Metric::name`].
    pub metric: String,
    pub direction: Direction,
    /// Least-squares slope in the metric's unit per minute (percentage points
    /// for CPU, memory and disk; load per core for load).
    pub slope_per_min: f64,
    /// Samples the slope was fitted to.
    pub samples: usize,
    /// Seconds between the oldest and the newest of those samples (at most
    /// the window asked for).
    pub window_s: f64,
}

/// The trend of `metric` over the samples taken within `window` of the newest
/// one (inclusive). `None` with fewer than 2 such samples (non-finite values
/// are skipped) or when they were all taken at the same instant. The samples
/// need not be sorted.
///
/// ```
/// use adeploy::monitor::{trend, Direction, Metric, Snapshot};
/// use std::time::Duration;
///
/// let t0 = chrono::Utc::now();
/// let samples: Vec<Snapshot> = (0..5)
///     .map(|i| Snapshot {
///         timestamp: t0 + chrono::Duration::seconds(15 * i),
///         cpu_percent: 20.0 + 5.0 * i as f64, // +5 points every 15 s
///         memory_percent: 50.0,
///         disk_percent: 40.0,
///         load_per_core: 0.2,
///         network_latency_ms: None,
///     })
///     .collect();
/// let t = trend(&samples, Metric::Cpu, Duration::from_secs(60)).unwrap();
/// assert_eq!(t.direction, Direction::Rising);
/// assert!((t.slope_per_min - 20.0).abs() < 1e-9);
/// ```
pub fn trend(samples: &[Snapshot], metric: Metric, window: Duration) -> Option<Trend> {
    let newest = samples.iter().map(|s| s.timestamp).max()?;
    // A window too long for chrono covers everything.
    let cutoff = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| newest.checked_sub_signed(w));
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| cutoff.is_none_or(|c| s.timestamp >= c))
        .map(|s| {
            let dt = s.timestamp - newest;
            let seconds = dt
                .num_microseconds()
                .map_or(dt.num_milliseconds() as f64 / 1e3, |us| us as f64 / 1e6);
            (seconds, metric.value(s))
        })
        .filter(|(_, v)| v.is_finite())
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(sxx, sxy), (x, y)| {
        let dx = x - mean_x;
        (sxx + dx * dx, sxy + dx * (y - mean_y))
    });
    if sxx <= 0.0 {
        return None;
    }
    let slope_per_min = sxy / sxx * 60.0;
    let direction = if slope_per_min.abs() < metric.steady_below_per_min() {
        Direction::Steady
    } else if slope_per_min > 0.0 {
        Direction::Rising
    } else {
        Direction::Falling
    };
    let oldest = points.iter().map(|p| p.0).fold(0.0, f64::min);
    Some(Trend {
        metric: metric.name().to_string(),
        direction,
        slope_per_min,
        samples: points.len(),
        window_s: -oldest,
    })
}

/// The trends of every [`Metric`] that has one (see [`trend`]), in [`Metric::ALL`] order.
pub fn trends(samples: &[Snapshot], window: Duration) -> Vec<Trend> {
    Metric::ALL
        .iter()
        .filter_map(|&m| trend(samples, m, window))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(t0: DateTime<Utc>, seconds: i64, cpu: f64) -> Snapshot {
        Snapshot {
            timestamp: t0 + chrono::Duration::seconds(seconds),
            cpu_percent: cpu,
            memory_percent: 50.0,
            disk_percent: 40.0 + seconds as f64 / 60.0 * 0.5, // +0.5 pp/min: steady
            load_per_core: 1.0 - seconds as f64 / 60.0 * 0.1, // −0.1/min: falling
            network_latency_ms: None,
        }
    }

    #[test]
    fn rising_falling_and_steady() {
        let t0 = Utc::now();
        // CPU +2 points every 10 s = +12 pp/min, with noise around the line.
        let noise = [0.5, -0.5, 0.3, -0.3, 0.0, 0.2, -0.2];
        let s: Vec<Snapshot> = (0..7)
            .map(|i| at(t0, 10 * i, 30.0 + 2.0 * i as f64 + noise[i as usize]))
            .collect();
        let up = trend(&s, Metric::Cpu, Duration::from_secs(300)).unwrap();
        assert_eq!(up.direction, Direction::Rising);
        assert!((up.slope_per_min - 12.0).abs() < 1.0, "{up:?}");
        assert_eq!((up.samples, up.window_s), (7, 60.0));
        assert_eq!(up.metric, "cpu");

        let all = trends(&s, Duration::from_secs(300));
        let dirs: Vec<(&str, Direction)> = all
            .iter()
            .map(|t| (t.metric.as_str(), t.direction))
            .collect();
        assert_eq!(
            dirs,
            [
                ("cpu", Direction::Rising),
                ("memory", Direction::Steady),
                ("disk", Direction::Steady),
                ("load", Direction::Falling),
            ]
        );
        assert_eq!(all[1].slope_per_min, 0.0);
        assert!((all[2].slope_per_min - 0.5).abs() < 1e-9, "{:?}", all[2]);
        assert!((all[3].slope_per_min + 0.1).abs() < 1e-9, "{:?}", all[3]);

        // Falling CPU, samples out of order.
        let mut down: Vec<Snapshot> = (0..5)
            .map(|i| at(t0, 6 * i, 90.0 - 3.0 * i as f64))
            .collect();
        down.reverse();
        let t = trend(&down, Metric::Cpu, Duration::from_secs(60)).unwrap();
        assert_eq!(t.direction, Direction::Falling);
        assert!((t.slope_per_min + 30.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn the_window_cuts_off_old_samples() {
        let t0 = Utc::now();
        // A climb long ago, then flat for the last minute.
        let mut s: Vec<Snapshot> = (0..10).map(|i| at(t0, 10 * i, 10.0 * i as f64)).collect();
        s.extend((0..7).map(|i| at(t0, 100 + 10 * i, 90.0)));
        let all = trend(&s, Metric::Cpu, Duration::from_secs(3600)).unwrap();
        assert_eq!(all.direction, Direction::Rising);
        let recent = trend(&s, Metric::Cpu, Duration::from_secs(60)).unwrap();
        assert_eq!(recent.direction, Direction::Steady, "{recent:?}");
        assert_eq!(recent.samples, 7);
        assert_eq!(recent.window_s, 60.0);
    }

    #[test]
    fn too_few_samples_have_no_trend() {
        let t0 = Utc::now();
        assert_eq!(trend(&[], Metric::Cpu, Duration::from_secs(60)), None);
        assert_eq!(
            trend(&[at(t0, 0, 5.0)], Metric::Cpu, Duration::from_secs(60)),
            None
        );
        // Two samples, but the older one is outside the window.
        let s = [at(t0, 0, 5.0), at(t0, 120, 50.0)];
        assert_eq!(trend(&s, Metric::Cpu, Duration::from_secs(60)), None);
        assert!(trends(&s, Duration::from_secs(60)).is_empty());
        // Two samples at the same instant: no time to divide by.
        let same = [at(t0, 0, 5.0), at(t0, 0, 50.0)];
        assert_eq!(trend(&same, Metric::Cpu, Duration::from_secs(60)), None);
        // Non-finite values are skipped.
        let nan = [at(t0, 0, 5.0), at(t0, 10, f64::NAN)];
        assert_eq!(trend(&nan, Metric::Cpu, Duration::from_secs(60)), None);
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&Direction::Rising).unwrap(),
            "\"rising\""
        );
        assert_eq!(serde_json::to_string(&Metric::Load).unwrap(), "\"load\"");
        let t = Trend {
            metric: "cpu".into(),
            direction: Direction::Steady,
            slope_per_min: 0.25,
            samples: 3,
            window_s: 20.0,
        };
        let back: Trend = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
