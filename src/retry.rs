//! When to try again and how long to wait: exponential backoff with full jitter, and a gate
//! that pauses every worker at once (the server's own hints are read in [`crate::http::wait`]).

use backon::{BackoffBuilder, ExponentialBuilder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long the run waits for a server by default before it stops (`--max-wait`).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// How many times and how fast a submission is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The first backoff ceiling.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// A fresh schedule of backoff delays for one submission: exponential ceilings (backon)
    /// with full jitter, i.e. each delay uniform in `[0, ceiling]` so retries spread out.
    pub fn schedule(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_retries as usize)
            .build()
            .map(|ceiling| ceiling.mul_f64(fastrand::f64()))
    }
}

/// A gate every attempt passes through; a 429's wait closes it for all workers at once.
#[derive(Debug)]
pub struct PauseGate {
    origin: Instant,
    /// Milliseconds after `origin` until which the gate is closed.
    closed_until_ms: AtomicU64,
}

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate {
            origin: Instant::now(),
            closed_until_ms: AtomicU64::new(0),
        }
    }
}

impl PauseGate {
    /// Closes the gate for `wait` from now (never shortens an existing pause).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now()
            .duration_since(self.origin)
            .saturating_add(wait)
            .as_millis();
        let until = u64::try_from(until).unwrap_or(u64::MAX / 2);
        self.closed_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether the gate is open now.
    pub fn is_open(&self) -> bool {
        let until = self.closed_until_ms.load(Ordering::Acquire);
        until == 0
            || self
                .origin
                .checked_add(Duration::from_millis(until))
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Waits until the gate is open.
    pub async fn wait_open(&self) {
        loop {
            let until = self.closed_until_ms.load(Ordering::Acquire);
            let Some(deadline) = self.origin.checked_add(Duration::from_millis(until)) else {
                // Unreachable in practice: waits are checked against --max-wait first.
                std::future::pending::<()>().await;
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::wait::LONGEST_SERVER_WAIT;

    #[tokio::test(start_paused = true)]
    async fn the_gate_takes_the_longest_pause_without_overflow() {
        let gate = PauseGate::default();
        gate.pause_for(Duration::MAX);
        gate.pause_for(LONGEST_SERVER_WAIT);
        let waited = tokio::time::timeout(Duration::from_secs(3600), gate.wait_open()).await;
        assert!(waited.is_err(), "still closed an hour later");
    }

    #[test]
    fn schedule_is_bounded_and_jittered_below_the_ceiling() {
        let policy = RetryPolicy {
            max_retries: 4,
            ..RetryPolicy::default()
        };
        let delays: Vec<Duration> = policy.schedule().collect();
        assert_eq!(delays.len(), 4);
        for (i, d) in delays.iter().enumerate() {
            assert!(*d <= policy.base_delay * 2u32.pow(i as u32), "{i}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_waiter_until_it_ends() {
        let gate = PauseGate::default();
        gate.pause_for(Duration::from_secs(5));
        gate.pause_for(Duration::from_secs(1)); // never shortens
        let start = Instant::now();
        gate.wait_open().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
    }
}
