//! What one deployment allows its plugins altogether: a time budget for all
//! calls together, the deployment's hard deadline (`--max-time`), and how
//! many lines of plugin output reach the operator.
//!
//! Why a scope rather than a per-call setting: a plugin's own deadline bounds
//! one call, but a deployment makes many (every detector, the plan, every
//! `on-progress`, every hook, every metric query). Without a shared budget,
//! 35 detectors looping to their 2 s deadline take 70 s, and a strategy that
//! spends its whole deadline on each progress event stretches a run without
//! bound. The engine opens one [`DeploymentScope`] per deployment
//! ([`DeploymentScope::within`]); every [`Plugin`](super::Plugin) call made
//! inside it (tasks spawned with [`DeploymentScope::propagate`] included)
//! runs for at most `min(its own deadline, the budget left, the time to the
//! deployment's deadline)` and is charged what it took. Outside a scope
//! (`plugins list`, diagnostics, an embedding tool calling a plugin
//! directly) only the plugin's own deadline applies, and output goes to the
//! host's own [`OutputGate`].
//!
//! Output: a plugin can call `log`, or a denied import, millions of times a
//! second. Every line it makes the host print passes an [`OutputGate`]: at
//! most [`LINES_PER_CALL`] per call and [`LINES_PER_DEPLOYMENT`] per
//! deployment are printed; the rest are counted, and one summary line says
//! how many were suppressed.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Lines of plugin output (logs, denials) one call may make the host print.
pub const LINES_PER_CALL: usize = 20;
/// Lines of plugin output one deployment may make the host print.
pub const LINES_PER_DEPLOYMENT: usize = 200;

tokio::task_local! {
    static SCOPE: Arc<DeploymentScope>;
}

/// Counts what plugins make the host print, and lets through a bounded
/// number of lines.
#[derive(Debug)]
pub struct OutputGate {
    limit: usize,
    printed: AtomicUsize,
    suppressed: AtomicUsize,
}

impl OutputGate {
    /// A gate letting `limit` lines through.
    pub fn new(limit: usize) -> OutputGate {
        OutputGate {
            limit,
            printed: AtomicUsize::new(0),
            suppressed: AtomicUsize::new(0),
        }
    }

    /// Whether one more line may be printed; a refused line is counted.
    pub(crate) fn admit(&self, printed_in_call: usize) -> bool {
        if printed_in_call < LINES_PER_CALL
            && self
                .printed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.limit).then_some(n + 1)
                })
                .is_ok()
        {
            return true;
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Lines let through so far.
    pub fn printed(&self) -> usize {
        self.printed.load(Ordering::Relaxed)
    }

    /// Lines held back so far.
    pub fn suppressed(&self) -> usize {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Prints the one summary line when lines were held back (once: the
    /// count is reset).
    pub fn summarize(&self, whose: &str) {
        let n = self.suppressed.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                "{n} lines of plugin output suppressed in {whose} (at most {LINES_PER_CALL} per call and {} in all are printed)",
                self.limit
            );
        }
    }
}

/// Why a call gets less time than its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The plugin's own deadline.
    Own,
    /// The deployment's plugin time budget.
    Budget,
    /// The deployment's deadline (`--max-time`).
    Deadline,
}

/// The time a call may take, and which limit set it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    pub time: Duration,
    pub binding: Binding,
}

/// One deployment's limits on its plugins; see the module docs.
#[derive(Debug)]
pub struct DeploymentScope {
    budget: Duration,
    used: Mutex<Duration>,
    deadline: Option<Instant>,
    gate: Arc<OutputGate>,
}

impl DeploymentScope {
    /// A scope with `budget` of plugin time for all calls together and an
    /// optional hard `deadline`.
    pub fn new(budget: Duration, deadline: Option<Instant>) -> DeploymentScope {
        DeploymentScope {
            budget,
            used: Mutex::new(Duration::ZERO),
            deadline,
            gate: Arc::new(OutputGate::new(LINES_PER_DEPLOYMENT)),
        }
    }

    /// Runs `fut` with this scope current: every plugin call inside it is
    /// bounded and charged by it.
    pub async fn within<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        SCOPE.scope(self, fut).await
    }

    /// `fut` carrying the current scope (if any) into a spawned task.
    pub fn propagate<F: Future>(fut: F) -> impl Future<Output = F::Output> {
        let scope = SCOPE.try_with(Arc::clone).ok();
        async move {
            match scope {
                Some(s) => SCOPE.scope(s, fut).await,
                None => fut.await,
            }
        }
    }

    /// The scope of the calling task, if any.
    pub(crate) fn current() -> Option<Arc<DeploymentScope>> {
        SCOPE.try_with(Arc::clone).ok()
    }

    /// The plugin time budget of the deployment.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Plugin time used so far.
    pub fn used(&self) -> Duration {
        self.used.lock().map(|u| *u).unwrap_or(self.budget)
    }

    /// The deployment's hard deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deployment's deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The output gate of this deployment.
    pub fn gate(&self) -> &Arc<OutputGate> {
        &self.gate
    }

    /// How long a call whose own deadline is `own` may run now.
    pub(crate) fn allowance(&self, own: Duration) -> Allowance {
        let mut a = Allowance {
            time: own,
            binding: Binding::Own,
        };
        let left = self.budget.saturating_sub(self.used());
        if left < a.time {
            a = Allowance {
                time: left,
                binding: Binding::Budget,
            };
        }
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left < a.time {
                a = Allowance {
                    time: left,
                    binding: Binding::Deadline,
                };
            }
        }
        a
    }

    /// Charges a call's time.
    pub(crate) fn charge(&self, elapsed: Duration) {
        if let Ok(mut u) = self.used.lock() {
            *u = u.saturating_add(elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_through_per_call_and_in_all() {
        let g = OutputGate::new(30);
        let through = (0..100).filter(|i| g.admit(*i)).count();
        assert_eq!(through, LINES_PER_CALL);
        let more = (0..100).filter(|i| g.admit(*i)).count();
        assert_eq!(more, 10, "the total caps the second call");
        assert_eq!((g.printed(), g.suppressed()), (30, 170));
    }

    #[test]
    fn the_tightest_limit_binds() {
        let s = DeploymentScope::new(Duration::from_secs(3), None);
        assert_eq!(s.allowance(Duration::from_secs(2)).binding, Binding::Own);
        s.charge(Duration::from_secs(2));
        let a = s.allowance(Duration::from_secs(2));
        assert_eq!(
            (a.binding, a.time),
            (Binding::Budget, Duration::from_secs(1))
        );
        let s = DeploymentScope::new(
            Duration::from_secs(60),
            Some(Instant::now() + Duration::from_millis(100)),
        );
        assert_eq!(
            s.allowance(Duration::from_secs(2)).binding,
            Binding::Deadline
        );
    }
}
