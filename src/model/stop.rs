//! One shared switch that tells every stage to stop taking new work, and why.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a caught panic said (its `&str` or `String` payload), for the message that replaces it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Why the run is stopping early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The target made going on pointless (credentials refused, quota exhausted, every row
    /// refused the same way): a human must look.
    Aborted(String),
    /// Going on now is pointless but a later run will do better (the target keeps failing,
    /// it asked for a longer wait than the run allows, an output could not be written).
    RetryLater(String),
    /// Something roster must never do happened (a panic while sending).
    Internal(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl StopReason {
    /// A short word for `--json`'s `outcome` and the report's banner.
    pub fn label(&self) -> &'static str {
        match self {
            StopReason::Aborted(_) => "aborted",
            StopReason::RetryLater(_) => "stopped",
            StopReason::Internal(_) => "internal error",
            StopReason::Interrupted => "interrupted",
        }
    }

    /// The message, where there is one.
    pub fn message(&self) -> &str {
        match self {
            StopReason::Aborted(m) | StopReason::RetryLater(m) | StopReason::Internal(m) => m,
            StopReason::Interrupted => "interrupted by a signal",
        }
    }
}

/// The run's stop switch; the first reason given wins. Waits (backoff, pauses, the rate
/// limiter) race [`Stop::stopped`], so a stop ends every wait at once.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    wake: tokio::sync::Notify,
}

impl Stop {
    /// Asks every stage to stop, for `reason` (kept only if no reason was given before).
    pub fn stop(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Resolves once a stop is asked for (at once if it was already).
    pub async fn stopped(&self) {
        let notified = self.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The reason, if stopped.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let stop = Stop::default();
        assert!(!stop.is_stopped());
        stop.stop(StopReason::Aborted("401".into()));
        stop.stop(StopReason::Interrupted);
        assert!(stop.is_stopped());
        assert_eq!(stop.reason(), Some(StopReason::Aborted("401".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_wait_at_once() {
        let stop = std::sync::Arc::new(Stop::default());
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => false,
                    _ = stop.stopped() => true,
                }
            })
        };
        tokio::task::yield_now().await;
        stop.stop(StopReason::Interrupted);
        assert!(waiter.await.unwrap(), "the stop won the race");
        stop.stopped().await; // already stopped: returns at once
    }
}
