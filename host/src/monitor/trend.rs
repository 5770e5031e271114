//! Trends: is a metric rising, steady or falling over a recent window, and how fast.
//!
//! The slope is the least-squares fit of value against time over the samples
//! whose timestamp lies within the window of the newest sample, so one noisy
//! sample moves it little, and unevenly spaced samples are weighted by when
//! they were taken, not by their position in the list.
//!
//! [`assess`] is what reports and decisions use: a trend over a stated
//! window ([`TrendWindow`], by default the last 15 minutes: the history's
//! stored samples, [`recent_samples`], plus live ones), which says how many
//! samples over how long it rests on, and says "not enough data" below a
//! minimum count *and* time span. Extrapolating from seconds of samples
//! (diagnostics once reported CPU slopes of −810 and +2,894 points/min from
//! two seconds) is noise presented as a forecast. [`trend`] is the bare fit,
//! with no minimum.

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

/// Over which window a trend is fitted, and how much data it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrendWindow {
    /// Samples older than this (before the newest) are not used.
    pub window: Duration,
    /// Fewer samples than this in the window: not enough data.
    pub min_samples: usize,
    /// Samples spanning less time than this: not enough data.
    pub min_span: Duration,
}

impl Default for TrendWindow {
    /// The last 15 minutes, at least 10 samples over at least 60 s.
    fn default() -> Self {
        TrendWindow {
            window: Duration::from_secs(15 * 60),
            min_samples: 10,
            min_span: Duration::from_secs(60),
        }
    }
}

impl TrendWindow {
    /// The window of `monitoring.trend_window_s`, `trend_min_samples` and
    /// `trend_min_span_s` (each at least 1; 2 samples at least, a line needs them).
    pub fn from_config(m: &crate::config::Monitoring) -> TrendWindow {
        TrendWindow {
            window: Duration::from_secs(m.trend_window_s.max(1)),
            min_samples: usize::try_from(m.trend_min_samples)
                .unwrap_or(usize::MAX)
                .max(2),
            min_span: Duration::from_secs(m.trend_min_span_s.max(1)),
        }
    }
}

/// A metric's trend as reports and decisions see it: the verdict and what
/// it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendReport {
    /// [`Metric::name`].
    pub metric: String,
    /// Samples within the window (finite values only).
    pub samples: usize,
    /// Seconds from the oldest to the newest of them.
    pub span_s: f64,
    /// The window asked for, in seconds.
    pub window_s: f64,
    #[serde(flatten)]
    pub verdict: TrendVerdict,
}

/// A trend, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TrendVerdict {
    /// Enough data: the least-squares slope.
    Trend {
        direction: Direction,
        /// In the metric's unit per minute.
        slope_per_min: f64,
    },
    /// Too few samples, or too short a span, for a slope that means anything.
    NotEnoughData {
        needed_samples: usize,
        needed_span_s: f64,
    },
}

impl TrendReport {
    /// The trend, if there was enough data.
    pub fn trend(&self) -> Option<(Direction, f64)> {
        match self.verdict {
            TrendVerdict::Trend {
                direction,
                slope_per_min,
            } => Some((direction, slope_per_min)),
            TrendVerdict::NotEnoughData { .. } => None,
        }
    }
}

/// `90 s`, `14.5 min`: spans as messages show them.
fn span(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

impl std::fmt::Display for TrendReport {
    /// `cpu rising +3.20/min over 14.5 min (870 samples)` or
    /// `cpu: not enough data (8 samples over 1.8 s; a trend needs at least 10 samples over 60.0 s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.verdict {
            TrendVerdict::Trend {
                direction,
                slope_per_min,
            } => {
                let direction = match direction {
                    Direction::Rising => "rising",
                    Direction::Steady => "steady",
                    Direction::Falling => "falling",
                };
                write!(
                    f,
                    "{} {direction} {slope_per_min:+.2}/min over {} ({} samples)",
                    self.metric,
                    span(self.span_s),
                    self.samples
                )
            }
            TrendVerdict::NotEnoughData {
                needed_samples,
                needed_span_s,
            } => write!(
                f,
                "{}: not enough data ({} samples over {}; a trend needs at least {needed_samples} samples over {})",
                self.metric,
                self.samples,
                span(self.span_s),
                span(*needed_span_s)
            ),
        }
    }
}

/// The trend of `metric` over `samples` (history and live, in any order)
/// within `w.window` of the newest one, or "not enough data" with fewer than
/// `w.min_samples` samples or a span shorter than `w.min_span`.
///
/// ```
/// use adeploy::monitor::{assess, Metric, Snapshot, TrendVerdict, TrendWindow};
///
/// let t0 = chrono::Utc::now();
/// let at = |s: i64, cpu: f64| Snapshot {
///     timestamp: t0 + chrono::Duration::seconds(s),
///     cpu_percent: cpu,
///     memory_percent: 50.0,
///     disk_percent: 40.0,
///     load_per_core: 0.2,
///     network_latency_ms: None,
/// };
/// // Two seconds of samples say nothing about a trend...
/// let burst: Vec<Snapshot> = (0..8).map(|i| at(0, 10.0 + 30.0 * (i % 2) as f64)).collect();
/// let r = assess(&burst, Metric::Cpu, &TrendWindow::default());
/// assert!(matches!(r.verdict, TrendVerdict::NotEnoughData { .. }));
/// // ...ten minutes of them do: +1 point per minute.
/// let steady: Vec<Snapshot> = (0..=20).map(|i| at(30 * i, 20.0 + 0.5 * i as f64)).collect();
/// let r = assess(&steady, Metric::Cpu, &TrendWindow::default());
/// assert_eq!(r.to_string(), "cpu rising +1.00/min over 10.0 min (21 samples)");
/// ```
pub fn assess(samples: &[Snapshot], metric: Metric, w: &TrendWindow) -> TrendReport {
    let newest = samples.iter().map(|s| s.timestamp).max();
    let cutoff = newest.and_then(|n| {
        chrono::Duration::from_std(w.window)
            .ok()
            .and_then(|d| n.checked_sub_signed(d))
    });
    let inside: Vec<&Snapshot> = samples
        .iter()
        .filter(|s| cutoff.is_none_or(|c| s.timestamp >= c))
        .filter(|s| metric.value(s).is_finite())
        .collect();
    let span_s = match (
        inside.iter().map(|s| s.timestamp).min(),
        inside.iter().map(|s| s.timestamp).max(),
    ) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1e3,
        _ => 0.0,
    };
    let needed_samples = w.min_samples.max(2);
    let needed_span_s = w.min_span.as_secs_f64();
    let enough = inside.len() >= needed_samples && span_s >= needed_span_s;
    let fitted = if enough {
        trend(samples, metric, w.window)
    } else {
        None
    };
    TrendReport {
        metric: metric.name().to_string(),
        samples: inside.len(),
        span_s,
        window_s: w.window.as_secs_f64(),
        verdict: match fitted {
            Some(t) => TrendVerdict::Trend {
                direction: t.direction,
                slope_per_min: t.slope_per_min,
            },
            None => TrendVerdict::NotEnoughData {
                needed_samples,
                needed_span_s,
            },
        },
    }
}

/// [`assess`] for every [`Metric`], in [`Metric::ALL`] order.
pub fn assess_all(samples: &[Snapshot], w: &TrendWindow) -> Vec<TrendReport> {
    Metric::ALL.iter().map(|&m| assess(samples, m, w)).collect()
}

/// The metric samples the history stored within `window` before `now` (the
/// deployments that ran then sampled the machine every
/// `monitoring.sample_interval_ms`), oldest first, as snapshots; add live
/// samples and pass them to [`assess`]. Reads at most the 50 most recent
/// deployments.
pub async fn recent_samples(
    history: &impl crate::history::HistoryBackend,
    window: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Snapshot>, crate::history::HistoryError> {
    let Some(since) = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for d in history.list_deployments(50).await? {
        let ended = d.finished_at.unwrap_or(now);
        if ended < since || d.started_at > now {
            continue;
        }
        out.extend(
            history
                .samples(&d.id)
                .await?
                .iter()
                .filter(|s| s.timestamp >= since && s.timestamp <= now)
                .map(Snapshot::from),
        );
    }
    out.sort_by_key(|s| s.timestamp);
    Ok(out)
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

    /// Regression: `adeploy diagnostics` reported CPU slopes of −810 and
    /// +2,894 points/min from two seconds of samples.
    #[test]
    fn seconds_of_samples_are_not_enough_for_a_trend() {
        let t0 = Utc::now();
        let burst: Vec<Snapshot> = (0..8)
            .map(|i| Snapshot {
                timestamp: t0 + chrono::Duration::milliseconds(250 * i),
                ..at(t0, 0, if i % 2 == 0 { 20.0 } else { 70.0 })
            })
            .collect();
        let raw = trend(&burst, Metric::Cpu, Duration::from_secs(60)).unwrap();
        assert!(
            raw.slope_per_min.abs() > 100.0,
            "the bare fit is noise: {raw:?}"
        );

        let r = assess(&burst, Metric::Cpu, &TrendWindow::default());
        assert_eq!(r.trend(), None);
        assert_eq!((r.samples, r.span_s, r.window_s), (8, 1.75, 900.0));
        assert_eq!(
            r.to_string(),
            "cpu: not enough data (8 samples over 1.8 s; a trend needs at least 10 samples over 60.0 s)"
        );
        // Many samples over a short span are not enough either.
        let dense: Vec<Snapshot> = (0..300)
            .map(|i| Snapshot {
                timestamp: t0 + chrono::Duration::milliseconds(100 * i),
                ..at(t0, 0, 50.0)
            })
            .collect();
        assert_eq!(
            assess(&dense, Metric::Cpu, &TrendWindow::default()).trend(),
            None
        );
        let json =
            serde_json::to_value(assess(&burst, Metric::Cpu, &TrendWindow::default())).unwrap();
        assert_eq!(json["status"], "not_enough_data");
        assert_eq!(json["needed_samples"], 10);
    }

    #[test]
    fn history_plus_live_samples_give_a_trend_over_the_window() {
        let t0 = Utc::now();
        let w = TrendWindow::default();
        // 20 minutes of history at one sample a minute, the CPU climbing
        // 2 points a minute; the first 5 minutes fall outside the window.
        let mut s: Vec<Snapshot> = (0..20)
            .map(|i| at(t0, 60 * i, 10.0 + 2.0 * i as f64))
            .collect();
        // Then live samples a second apart on the same line.
        s.extend((0..5).map(|i| at(t0, 1200 + i, 50.0 + 2.0 * i as f64 / 60.0)));
        let r = assess(&s, Metric::Cpu, &w);
        let (direction, slope) = r.trend().unwrap();
        assert_eq!(direction, Direction::Rising);
        assert!((slope - 2.0).abs() < 1e-6, "{r:?}");
        // The newest is live (20 min 4 s): history from minute 6 on (14) + 5 live.
        assert_eq!(r.samples, 19);
        assert_eq!(r.span_s, 844.0);
        assert_eq!(
            r.to_string(),
            "cpu rising +2.00/min over 14.1 min (19 samples)"
        );

        let all = assess_all(&s, &w);
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].trend().map(|t| t.0), Some(Direction::Steady));

        let m = crate::config::Monitoring {
            trend_window_s: 120,
            trend_min_samples: 1,
            trend_min_span_s: 0,
            ..crate::config::Monitoring::default()
        };
        assert_eq!(
            TrendWindow::from_config(&m),
            TrendWindow {
                window: Duration::from_secs(120),
                min_samples: 2,
                min_span: Duration::from_secs(1),
            }
        );
    }

    #[tokio::test]
    async fn recent_samples_come_from_the_deployments_that_ran_in_the_window() {
        use crate::history::{
            DeploymentRecord, DeploymentStatus, History, HistoryStore, MetricSample,
        };
        let tmp = tempfile::tempdir().unwrap();
        let history = History::open(tmp.path()).unwrap();
        let now = Utc::now();
        let minutes = |m: i64| now - chrono::Duration::minutes(m);
        for (id, start, end) in [("old", 60, 40), ("recent", 20, 5), ("running", 3, 0)] {
            let mut r = DeploymentRecord::running(id, minutes(start));
            if end > 0 {
                r.finish(DeploymentStatus::Succeeded, minutes(end));
            }
            history.put_deployment(&r).unwrap();
            let samples: Vec<MetricSample> = (0..=(start - end))
                .map(|k| MetricSample::from(&at(minutes(start), 60 * k, 30.0)))
                .collect();
            history.append_samples(id, &samples).unwrap();
        }
        let history = HistoryStore::local(history, tmp.path());
        let got = recent_samples(&history, Duration::from_secs(15 * 60), now)
            .await
            .unwrap();
        // "recent": minutes 15..5 ago (11 samples); "running": 3..0 ago (4).
        assert_eq!(got.len(), 11 + 4, "{got:?}");
        assert!(got.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(got.iter().all(|s| s.timestamp >= minutes(15)));
        let r = assess(&got, Metric::Cpu, &TrendWindow::default());
        assert_eq!(r.trend().map(|t| t.0), Some(Direction::Steady), "{r}");
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
