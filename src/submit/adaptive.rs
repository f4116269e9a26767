//! Adaptive concurrency: how many requests a run keeps in flight, found from the server's own
//! answers, in the style of Vector's ARC and Netflix's concurrency-limits (AIMD on RTT).
//!
//! Once per window (about one round trip), the limit moves:
//! - **down** ×0.9 when the window saw back-pressure (a 429, a 5xx, a lost answer or a
//!   timeout) or its mean latency rose well past the baseline (an EWMA of earlier windows):
//!   a server that queues or fails under load is given less;
//! - **up** by one when the window filled the limit with answers that held their latency: a
//!   server with room is given more. Up to just below the limit at which the server last
//!   pushed back, every such window; at and beyond it, only after [`PROBE_AFTER`] calm windows
//!   in a row, so a server at its capacity is probed now and then, not every other window
//!   (which measured 7.6 % of 5xx against a sandbox of capacity 8; probing sparsely, under 1 %);
//! - never above the ceiling (`--concurrency`) nor below one.
//!
//! Workers wait for a slot under the limit before each attempt; the rate limiter, the pause
//! gate and the breaker still gate every attempt in front of it ([`super::throttle`]).

use crate::report::progress::PaceNote;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The decrease on back-pressure or rising latency (Vector's 0.9).
const DECREASE: f64 = 0.9;
/// A window's latency counts as rising past `baseline × RISE + RISE_FLOOR`.
const RISE: f64 = 1.5;
const RISE_FLOOR: Duration = Duration::from_millis(5);
/// The baseline's EWMA weight of the newest window.
const BASELINE_WEIGHT: f64 = 0.2;
/// Calm windows in a row before the limit probes at or above where the server last pushed
/// back.
pub const PROBE_AFTER: u32 = 20;
/// Shortest window: on loopback a round trip is well under a millisecond.
const MIN_WINDOW: Duration = Duration::from_millis(20);

/// Why the limit last went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slowdown {
    /// 429s.
    Throttled,
    /// 5xx answers.
    ServerErrors,
    /// Lost answers or timeouts.
    NoAnswers,
    /// Latency rose past its baseline.
    Latency,
}

impl Slowdown {
    /// As the progress line and the summary say it.
    pub fn label(self) -> &'static str {
        match self {
            Slowdown::Throttled => "429s",
            Slowdown::ServerErrors => "server errors (5xx)",
            Slowdown::NoAnswers => "lost answers or timeouts",
            Slowdown::Latency => "latency rising past its baseline",
        }
    }
}

/// How one attempt ended, as the limit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An answer that is not back-pressure, after this long.
    Answered(Duration),
    /// Back-pressure of this kind.
    Pushback(Slowdown),
    /// Nothing to learn (not connected, stopped).
    Nothing,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    window_start: Instant,
    window_rtt_sum: Duration,
    window_answers: u32,
    window_pushback: Option<Slowdown>,
    window_full: bool,
    baseline: Option<Duration>,
    /// The limit at which the server last pushed back.
    trouble_at: Option<f64>,
    /// Calm windows since the last decrease or probe.
    calm: u32,
    lowest: usize,
    decreases: u32,
    last_slowdown: Option<Slowdown>,
}

/// What the limit did over the run, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReport {
    /// The ceiling (`--concurrency`).
    pub ceiling: usize,
    /// The limit at the end.
    pub last: usize,
    /// The lowest it went.
    pub lowest: usize,
    /// How many times it went down.
    pub decreases: u32,
    /// Why it last went down.
    pub last_slowdown: Option<Slowdown>,
}

/// The run's concurrency limit, shared by every worker of every lane.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
    /// Where the progress line reads why the run slowed down.
    note: Arc<PaceNote>,
}

impl ConcurrencyLimit {
    /// A limit starting at `initial`, never above `ceiling`.
    pub fn new(initial: usize, ceiling: usize) -> ConcurrencyLimit {
        let ceiling = ceiling.max(1);
        let initial = initial.clamp(1, ceiling);
        ConcurrencyLimit {
            ceiling,
            state: Mutex::new(State {
                limit: initial as f64,
                in_flight: 0,
                window_start: Instant::now(),
                window_rtt_sum: Duration::ZERO,
                window_answers: 0,
                window_pushback: None,
                window_full: false,
                baseline: None,
                trouble_at: None,
                calm: 0,
                lowest: initial,
                decreases: 0,
                last_slowdown: None,
            }),
            freed: Notify::new(),
            note: Arc::default(),
        }
    }

    /// Says why the run slowed down in `note` (the progress line's).
    pub fn noting_in(mut self, note: Arc<PaceNote>) -> ConcurrencyLimit {
        self.note = note;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot if one is free under the limit.
    pub fn try_acquire(&self) -> bool {
        let mut s = self.state();
        if s.in_flight >= s.limit as usize {
            return false;
        }
        s.in_flight += 1;
        if s.in_flight >= s.limit as usize {
            s.window_full = true;
        }
        true
    }

    /// Waits for a slot under the limit; the slot is the caller's until [`release`](Self::release).
    pub async fn acquire(&self) {
        loop {
            let freed = self.freed.notified();
            if self.try_acquire() {
                return;
            }
            // A wake-up can be missed between the check and the wait: look again soon anyway.
            let _ = tokio::time::timeout(Duration::from_millis(50), freed).await;
        }
    }

    /// Gives a slot back with what its attempt taught, and moves the limit at a window's end.
    pub fn release(&self, signal: Signal) {
        let now = Instant::now();
        let raised = {
            let mut s = self.state();
            s.in_flight = s.in_flight.saturating_sub(1);
            match signal {
                Signal::Answered(rtt) => {
                    s.window_rtt_sum += rtt;
                    s.window_answers += 1;
                }
                // The worst kind seen in the window is the one reported.
                Signal::Pushback(kind) => s.window_pushback = Some(kind),
                Signal::Nothing => {}
            }
            let window = s.baseline.unwrap_or(MIN_WINDOW).max(MIN_WINDOW);
            let before = s.limit;
            if now.duration_since(s.window_start) >= window
                && (s.window_answers > 0 || s.window_pushback.is_some())
            {
                self.end_window(&mut s, now);
            }
            s.limit > before
        };
        self.freed.notify_one();
        if raised {
            self.freed.notify_waiters();
        }
    }

    fn end_window(&self, s: &mut State, now: Instant) {
        let mean = (s.window_answers > 0).then(|| s.window_rtt_sum / s.window_answers);
        let rising = match (mean, s.baseline) {
            (Some(mean), Some(base)) => mean > base.mul_f64(RISE) + RISE_FLOOR,
            _ => false,
        };
        let slowdown = s.window_pushback.or(rising.then_some(Slowdown::Latency));
        match slowdown {
            Some(kind) => {
                let before = s.limit;
                s.trouble_at = Some(before.floor());
                s.calm = 0;
                s.limit = (before * DECREASE).max(1.0);
                // The whole part is what admits: a cut is at least one slot.
                if s.limit.floor() == before.floor() && before >= 2.0 {
                    s.limit = before.floor() - 1.0;
                }
                s.decreases += 1;
                s.last_slowdown = Some(kind);
                s.lowest = s.lowest.min(s.limit as usize);
                tracing::info!(
                    limit = s.limit as usize,
                    why = kind.label(),
                    "fewer requests in flight"
                );
            }
            None => {
                s.calm = s.calm.saturating_add(1);
                let free = s.trouble_at.is_none_or(|at| s.limit + 1.0 < at);
                if s.window_full && (free || s.calm >= PROBE_AFTER) {
                    s.limit = (s.limit + 1.0).min(self.ceiling as f64);
                    if !free {
                        s.calm = 0;
                    }
                }
            }
        }
        // The baseline learns from calm windows only: a queue building up must not become
        // the new normal.
        if let Some(mean) = mean
            && slowdown.is_none()
        {
            s.baseline = Some(match s.baseline {
                None => mean,
                Some(base) => base.mul_f64(1.0 - BASELINE_WEIGHT) + mean.mul_f64(BASELINE_WEIGHT),
            });
        }
        s.window_start = now;
        s.window_rtt_sum = Duration::ZERO;
        s.window_answers = 0;
        s.window_pushback = None;
        s.window_full = s.in_flight >= s.limit as usize;
        let limit = s.limit as usize;
        self.note.set(match s.last_slowdown {
            Some(why) if limit < self.ceiling => {
                format!(
                    "{limit} in flight of {}, lowered on {}",
                    self.ceiling,
                    why.label()
                )
            }
            _ => String::new(),
        });
    }

    /// The limit now.
    pub fn current(&self) -> usize {
        self.state().limit as usize
    }

    /// The ceiling.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Why the limit last went down, while it is below the ceiling.
    pub fn slowed_by(&self) -> Option<Slowdown> {
        let s = self.state();
        match (s.limit as usize) < self.ceiling {
            true => s.last_slowdown,
            false => None,
        }
    }

    /// What the limit did over the run.
    pub fn report(&self) -> LimitReport {
        let s = self.state();
        LimitReport {
            ceiling: self.ceiling,
            last: s.limit as usize,
            lowest: s.lowest,
            decreases: s.decreases,
            last_slowdown: s.last_slowdown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One window of `n` attempts in flight at once, each ending with `signal`: the last
    /// answer, after the window's length (paused time), closes it.
    async fn window(limit: &ConcurrencyLimit, n: usize, signal: Signal) {
        for _ in 0..n {
            limit.acquire().await;
        }
        for _ in 1..n {
            limit.release(signal);
        }
        tokio::time::advance(Duration::from_millis(25)).await;
        limit.release(signal);
    }

    #[tokio::test(start_paused = true)]
    async fn grows_by_one_per_full_calm_window_up_to_the_ceiling() {
        let limit = ConcurrencyLimit::new(4, 6);
        for _ in 0..5 {
            let n = limit.current();
            window(&limit, n, Signal::Answered(Duration::from_millis(10))).await;
        }
        assert_eq!(limit.current(), 6, "4 → 5 → 6, then held at the ceiling");
        assert_eq!(limit.slowed_by(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_does_not_fill_the_limit_does_not_grow_it() {
        let limit = ConcurrencyLimit::new(8, 64);
        for _ in 0..5 {
            window(&limit, 2, Signal::Answered(Duration::from_millis(10))).await;
        }
        assert_eq!(
            limit.current(),
            8,
            "a server given 2 at a time says nothing about 9"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_and_timeouts_cut_the_limit_and_say_why() {
        let limit = ConcurrencyLimit::new(16, 16);
        window(&limit, 16, Signal::Pushback(Slowdown::ServerErrors)).await;
        assert_eq!(limit.current(), 14);
        assert_eq!(limit.slowed_by(), Some(Slowdown::ServerErrors));
        window(&limit, 14, Signal::Pushback(Slowdown::NoAnswers)).await;
        assert_eq!(limit.current(), 12);
        let report = limit.report();
        assert_eq!((report.decreases, report.lowest), (2, 12));
        assert_eq!(report.last_slowdown, Some(Slowdown::NoAnswers));
        for _ in 0..40 {
            window(&limit, 1, Signal::Pushback(Slowdown::ServerErrors)).await;
        }
        assert_eq!(limit.current(), 1, "never below one");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_rising_past_its_baseline_cuts_the_limit() {
        let limit = ConcurrencyLimit::new(10, 10);
        for _ in 0..3 {
            window(&limit, 10, Signal::Answered(Duration::from_millis(20))).await;
        }
        assert_eq!(limit.current(), 10);
        // A queue building up: the same server, three times slower.
        window(&limit, 10, Signal::Answered(Duration::from_millis(60))).await;
        assert_eq!(limit.current(), 9);
        assert_eq!(limit.slowed_by(), Some(Slowdown::Latency));
        // Slightly slower is noise, not a queue: the limit holds, and probes where the trouble
        // was only after PROBE_AFTER calm windows.
        for _ in 1..PROBE_AFTER {
            window(&limit, 9, Signal::Answered(Duration::from_millis(24))).await;
        }
        assert_eq!(limit.current(), 9, "held just below where latency rose");
        window(&limit, 9, Signal::Answered(Duration::from_millis(24))).await;
        assert_eq!(
            limit.current(),
            10,
            "one probe after {PROBE_AFTER} calm windows"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_pushback_it_regrows_freely_to_just_below_the_trouble_then_probes_sparsely() {
        let limit = ConcurrencyLimit::new(20, 64);
        window(&limit, 20, Signal::Pushback(Slowdown::ServerErrors)).await;
        assert_eq!(limit.current(), 18);
        window(&limit, 18, Signal::Answered(Duration::from_millis(10))).await;
        assert_eq!(
            limit.current(),
            19,
            "below the trouble: one more each full window"
        );
        for _ in 0..5 {
            window(&limit, 19, Signal::Answered(Duration::from_millis(10))).await;
        }
        assert_eq!(
            limit.current(),
            19,
            "at the trouble's edge: waiting to probe"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_waits_for_a_slot_under_the_limit() {
        let limit = std::sync::Arc::new(ConcurrencyLimit::new(1, 4));
        limit.acquire().await;
        let waiting = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.acquire().await })
        };
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the one slot is taken");
        limit.release(Signal::Nothing);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the freed slot is taken")
            .unwrap();
    }
}
