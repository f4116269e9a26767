//! One shared switch that tells every stage to stop taking new work, and why.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why the run is stopping early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The target made going on pointless (credentials refused, quota exhausted).
    Aborted(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The run's stop switch; the first reason given wins.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    reason: Mutex<Option<StopReason>>,
}

impl Stop {
    /// Asks every stage to stop, for `reason` (kept only if no reason was given before).
    pub fn stop(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopped.store(true, Ordering::Release);
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
}
