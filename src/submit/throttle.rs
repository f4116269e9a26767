//! Flow control shared by every worker of a run, behind [`Throttle`]'s `acquire` (wait for
//! a turn) and `observe` (count an answer): the pause gate a 429 closes for every worker, the
//! configured rate limit (governor), the AIMD pacer that slows sending after a run of 429s and
//! speeds back up when they stop, the run's retry budget, and the circuit breaker that stops a
//! run against a target that keeps failing. Last in line, the adaptive concurrency limit
//! ([`super::adaptive`]) gives the attempt a slot, which its end gives back with what it taught.

use super::adaptive::{ConcurrencyLimit, Signal, Slowdown};
use super::decide::AttemptEnd;
use crate::model::Stop;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Every flow control of one run.
#[derive(Debug)]
pub struct Throttle {
    gate: PauseGate,
    limiter: Option<DefaultDirectRateLimiter>,
    pacer: AimdPacer,
    /// The run's retry budget.
    pub budget: RetryBudget,
    breaker: CircuitBreaker,
    /// The budget's exhaustion was logged.
    budget_logged: AtomicBool,
    /// How many attempts may be in flight, found from the server's answers.
    limit: Arc<ConcurrencyLimit>,
}

/// An attempt's place under the concurrency limit: [`done`](Slot::done) gives it back with
/// what the attempt taught; dropped unused, it is given back as it was.
#[must_use]
pub struct Slot<'a> {
    throttle: &'a Throttle,
    used: bool,
}

impl Slot<'_> {
    /// Counts how the attempt ended, after `latency`; true when the breaker trips on it.
    pub fn done(mut self, end: AttemptEnd, latency: Duration) -> bool {
        self.used = true;
        let signal = match end {
            AttemptEnd::Answered => Signal::Answered(latency),
            AttemptEnd::Throttled => Signal::Pushback(Slowdown::Throttled),
            AttemptEnd::ServerError => Signal::Pushback(Slowdown::ServerErrors),
            AttemptEnd::NoAnswer => Signal::Pushback(Slowdown::NoAnswers),
            AttemptEnd::NotConnected => Signal::Nothing,
        };
        self.throttle.limit.release(signal);
        self.throttle.observe(end)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.throttle.limit.release(Signal::Nothing);
        }
    }
}

impl Throttle {
    /// Flow control for `rate` attempts per second (0 = no limit) with `burst` at once, and
    /// at most `limit` in flight (the breaker's threshold grows with its ceiling).
    pub fn new(rate: f64, burst: u32, limit: Arc<ConcurrencyLimit>) -> Result<Throttle, String> {
        let concurrency = limit.ceiling();
        let limiter = if rate > 0.0 {
            let period = Duration::from_secs_f64(1.0 / rate);
            let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
            let quota = Quota::with_period(period)
                .ok_or_else(|| format!("--rate {rate} is too high"))?
                .allow_burst(burst);
            Some(RateLimiter::direct(quota))
        } else {
            None
        };
        Ok(Throttle {
            gate: PauseGate::default(),
            limiter,
            pacer: AimdPacer::new(rate),
            budget: RetryBudget::default(),
            breaker: CircuitBreaker::new(concurrency),
            budget_logged: AtomicBool::new(false),
            limit,
        })
    }

    /// Waits for a slot under the concurrency limit, then until the server's pause is over,
    /// the rate limit lets one more request go and the pacer gives it a turn; `None` if the
    /// run stopped first. The slot comes first: a rate token taken while waiting for a slot
    /// would be spent late, and several such would leave at once, past the rate's burst.
    pub async fn acquire(&self, stop: &Stop) -> Option<Slot<'_>> {
        if stop.is_stopped() {
            return None;
        }
        // Nothing to wait for (the usual case): no race with the stop to set up.
        if self.limit.try_acquire() {
            let slot = Slot {
                throttle: self,
                used: false,
            };
            if self.ready_now() {
                self.pacer.acquire().await;
                return (!stop.is_stopped()).then_some(slot);
            }
            tokio::select! {
                _ = self.wait_turn() => (!stop.is_stopped()).then_some(slot),
                _ = stop.stopped() => None,
            }
        } else {
            let turn = async {
                self.limit.acquire().await;
                let slot = Slot {
                    throttle: self,
                    used: false,
                };
                if self.ready_now() {
                    self.pacer.acquire().await;
                } else {
                    self.wait_turn().await;
                }
                slot
            };
            tokio::select! {
                slot = turn => (!stop.is_stopped()).then_some(slot),
                _ = stop.stopped() => None,
            }
        }
    }

    /// The pause gate is open and the rate limit has a token now (taking it).
    fn ready_now(&self) -> bool {
        self.gate.is_open() && self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }

    /// Waits for the pause to end, a rate token and the pacer's turn.
    async fn wait_turn(&self) {
        self.gate.wait_open().await;
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        self.pacer.acquire().await;
    }

    /// Counts how an attempt ended; true when the circuit breaker trips on it.
    fn observe(&self, end: AttemptEnd) -> bool {
        match end {
            AttemptEnd::Throttled => {
                self.pacer.throttled();
                self.breaker.answered();
                false
            }
            AttemptEnd::Answered => {
                self.pacer.answered();
                self.breaker.answered();
                false
            }
            AttemptEnd::ServerError | AttemptEnd::NoAnswer | AttemptEnd::NotConnected => {
                let tripped = self.breaker.failed();
                if tripped {
                    tracing::warn!(
                        failures_in_a_row = self.breaker.failures_in_a_row(),
                        "circuit breaker tripped: the target keeps failing"
                    );
                }
                tripped
            }
        }
    }

    /// Failures in a row so far.
    pub fn failures_in_a_row(&self) -> u32 {
        self.breaker.failures_in_a_row()
    }

    /// Pauses every worker for `wait` (a 429's Retry-After).
    pub fn pause_all(&self, wait: Duration) {
        if self.gate.pause_for(wait) {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "pausing every worker: the target asked to slow down"
            );
        }
    }

    /// Logs, once, that the retry budget ran dry.
    pub fn budget_spent(&self) {
        if !self.budget_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                left = self.budget.left(),
                "retry budget spent: failing rows are left for the next run"
            );
        }
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
    /// Closes the gate for `wait` from now (never shortens an existing pause); true when the
    /// gate was open (a new pause begins).
    pub fn pause_for(&self, wait: Duration) -> bool {
        let now = Instant::now().duration_since(self.origin);
        let until = now.saturating_add(wait).as_millis();
        let until = u64::try_from(until).unwrap_or(u64::MAX / 2);
        let before = self.closed_until_ms.fetch_max(until, Ordering::AcqRel);
        u128::from(before) <= now.as_millis()
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

/// The slowest the pacer goes: one request every two seconds.
const MIN_RATE: f64 = 0.5;
/// How often the rate may change, in either direction.
const ADJUST_EVERY: Duration = Duration::from_secs(1);

/// Additive increase, multiplicative decrease of the send rate, as TCP does with its window.
///
/// Answers are counted per one-second window. A window in which 429s are a run (at least three,
/// and more than a tenth of the answers) halves the rate: from the configured rate, or from
/// the rate actually achieved when there is no limit. A stray 429 among many good answers is a
/// retry, not a reason to slow everyone. Each window without a 429 adds back a twentieth of the
/// ceiling, and the pacer stands aside once the ceiling is reached.
#[derive(Debug)]
pub struct AimdPacer {
    /// The configured rate (infinite when unlimited).
    ceiling: f64,
    engaged: AtomicBool,
    /// Requests sent, for the achieved rate when there is no configured one.
    sent: AtomicU64,
    started: Instant,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    rate: f64,
    /// The ceiling while engaged: the configured rate, or the achieved one at the first run.
    target: f64,
    next_slot: Instant,
    window_start: Instant,
    answers: u32,
    throttled: u32,
}

impl AimdPacer {
    /// A pacer under `ceiling` requests per second (0 = no configured limit).
    pub fn new(ceiling: f64) -> AimdPacer {
        let now = Instant::now();
        let ceiling = if ceiling > 0.0 {
            ceiling
        } else {
            f64::INFINITY
        };
        AimdPacer {
            ceiling,
            engaged: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            started: now,
            state: Mutex::new(PacerState {
                rate: ceiling,
                target: ceiling,
                next_slot: now,
                window_start: now,
                answers: 0,
                throttled: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current rate while slowed down, `None` when not.
    pub fn current_rate(&self) -> Option<f64> {
        self.engaged
            .load(Ordering::Acquire)
            .then(|| self.state().rate)
    }

    /// Waits for this request's slot (at once unless slowed down).
    pub async fn acquire(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !self.engaged.load(Ordering::Acquire) {
            return;
        }
        let slot = {
            let mut state = self.state();
            let now = Instant::now();
            let slot = state.next_slot.max(now);
            state.next_slot = slot + Duration::from_secs_f64(1.0 / state.rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// A 429 arrived.
    pub fn throttled(&self) {
        self.count(true);
    }

    /// A request was answered without a 429.
    pub fn answered(&self) {
        self.count(false);
    }

    fn count(&self, throttled: bool) {
        let now = Instant::now();
        let mut state = self.state();
        state.answers += 1;
        state.throttled += u32::from(throttled);
        if now.duration_since(state.window_start) < ADJUST_EVERY {
            return;
        }
        let (answers, throttled) = (state.answers, state.throttled);
        state.window_start = now;
        state.answers = 0;
        state.throttled = 0;
        let engaged = self.engaged.load(Ordering::Acquire);
        if throttled >= 3 && throttled * 10 > answers {
            if !engaged {
                // Halve what is really being sent: below a configured rate when the server is
                // the bottleneck, and the only measure there is without one.
                let sent = self.sent.load(Ordering::Relaxed);
                let achieved =
                    sent as f64 / now.duration_since(self.started).as_secs_f64().max(0.001);
                state.target = match sent {
                    0..10 => self.ceiling,
                    _ => self.ceiling.min(achieved),
                }
                .clamp(MIN_RATE, f64::MAX);
                state.rate = state.target;
            }
            state.rate = (state.rate / 2.0).max(MIN_RATE);
            state.next_slot = state.next_slot.max(now);
            self.engaged.store(true, Ordering::Release);
            tracing::info!(
                rate = state.rate,
                throttled,
                answers,
                "slowing down after a run of 429s"
            );
        } else if engaged && throttled == 0 {
            state.rate += (state.target / 20.0).max(1.0);
            if state.rate >= state.target {
                state.rate = state.target;
                self.engaged.store(false, Ordering::Release);
                tracing::info!(rate = state.rate, "back at the full pace");
            } else {
                tracing::debug!(rate = state.rate, "speeding up");
            }
        }
    }
}

/// The run's retry budget, as in the AWS SDKs' standard retry mode: a bucket of tokens that
/// each retry draws on and each success refills, so that when most requests fail the run stops
/// retrying (rows stay `failed`, for the next run) instead of multiplying the load.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicI64,
}

impl RetryBudget {
    /// The bucket's size.
    pub const CAPACITY: i64 = 500;
    /// What a retry after an error costs.
    pub const RETRY_COST: i64 = 5;
    /// What a retry after a timeout or a lost connection costs.
    pub const TIMEOUT_COST: i64 = 10;

    /// Takes `cost` tokens; false (and nothing taken) when the bucket is too low.
    pub fn try_spend(&self, cost: i64) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t >= cost).then_some(t - cost)
            })
            .is_ok()
    }

    /// A success: refund a retry's cost, or one token for a first-time success.
    pub fn succeeded(&self, refund: i64) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + refund).min(Self::CAPACITY))
            });
    }

    /// Tokens left.
    pub fn left(&self) -> i64 {
        self.tokens.load(Ordering::Acquire)
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tokens: AtomicI64::new(Self::CAPACITY),
        }
    }
}

/// Trips after a long run of server failures (5xx, lost connections, timeouts) with no other
/// answer in between.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    span: Duration,
    origin: Instant,
    in_a_row: AtomicU32,
    /// When the current run of failures began, in ms after `origin`.
    streak_start_ms: AtomicU64,
}

impl CircuitBreaker {
    /// A breaker for `concurrency` workers: at least 30 failures in a row (twice the workers
    /// when more) spread over at least 5 seconds.
    pub fn new(concurrency: usize) -> CircuitBreaker {
        CircuitBreaker {
            threshold: (concurrency as u32 * 2).max(30),
            span: Duration::from_secs(5),
            origin: Instant::now(),
            in_a_row: AtomicU32::new(0),
            streak_start_ms: AtomicU64::new(0),
        }
    }

    /// A request got an answer that is not a server failure.
    pub fn answered(&self) {
        if self.in_a_row.load(Ordering::Relaxed) != 0 {
            self.in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed on the server's side; true when the breaker trips: the threshold
    /// reached over the span, or eight times the threshold however fast (a target failing
    /// everything at once must not cost the whole file).
    pub fn failed(&self) -> bool {
        let now_ms = self.origin.elapsed().as_millis() as u64;
        let n = self.in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
        if n == 1 {
            self.streak_start_ms.store(now_ms, Ordering::Release);
        }
        let began = self.streak_start_ms.load(Ordering::Acquire);
        let long = now_ms.saturating_sub(began) >= self.span.as_millis() as u64;
        n >= self.threshold && (long || n >= self.threshold * 8)
    }

    /// Failures in a row so far.
    pub fn failures_in_a_row(&self) -> u32 {
        self.in_a_row.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::wait::LONGEST_SERVER_WAIT;

    #[tokio::test(start_paused = true)]
    async fn the_gate_takes_the_longest_pause_without_overflow() {
        let gate = PauseGate::default();
        assert!(gate.pause_for(Duration::MAX), "a new pause");
        assert!(!gate.pause_for(LONGEST_SERVER_WAIT), "already closed");
        let waited = tokio::time::timeout(Duration::from_secs(3600), gate.wait_open()).await;
        assert!(waited.is_err(), "still closed an hour later");
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

    #[tokio::test(start_paused = true)]
    async fn a_stopped_run_gets_no_turn_even_while_paused() {
        let throttle = Throttle::new(0.0, 1, Arc::new(ConcurrencyLimit::new(4, 4))).unwrap();
        throttle.pause_all(Duration::from_secs(60));
        let stop = Stop::default();
        let waiting = throttle.acquire(&stop);
        stop.stop(crate::model::StopReason::Interrupted);
        assert!(waiting.await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_429s_halves_the_rate_and_quiet_seconds_restore_it() {
        let pacer = AimdPacer::new(100.0);
        let second = |throttled: u32, answered: u32| {
            for _ in 0..throttled {
                pacer.throttled();
            }
            for _ in 0..answered {
                pacer.answered();
            }
        };
        second(2, 50);
        tokio::time::advance(Duration::from_millis(1001)).await;
        second(0, 1);
        assert_eq!(
            pacer.current_rate(),
            None,
            "a stray 429 or two is not a run"
        );
        second(20, 20);
        tokio::time::advance(Duration::from_millis(1001)).await;
        second(1, 0);
        assert_eq!(pacer.current_rate(), Some(50.0), "half of the ceiling");
        second(20, 0);
        tokio::time::advance(Duration::from_millis(1001)).await;
        second(1, 0);
        assert_eq!(pacer.current_rate(), Some(25.0));
        for _ in 0..30 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            second(0, 10);
        }
        assert_eq!(
            pacer.current_rate(),
            None,
            "back at the ceiling, the pacer stands aside"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slowed_requests_are_spaced_by_the_rate() {
        let pacer = AimdPacer::new(20.0);
        for _ in 0..5 {
            pacer.throttled();
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        pacer.throttled();
        let start = Instant::now();
        for _ in 0..11 {
            pacer.acquire().await;
        }
        // Ten gaps at 10/s.
        assert!(
            start.elapsed() >= Duration::from_millis(999),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_budget_runs_dry_under_failures_and_refills_on_success() {
        let budget = RetryBudget::default();
        let mut retries = 0;
        while budget.try_spend(RetryBudget::RETRY_COST) {
            retries += 1;
        }
        assert_eq!(retries, 100);
        budget.succeeded(RetryBudget::RETRY_COST);
        assert!(budget.try_spend(RetryBudget::RETRY_COST));
        assert!(!budget.try_spend(RetryBudget::RETRY_COST));
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_trips_on_a_long_run_of_failures_only() {
        let breaker = CircuitBreaker::new(4);
        for _ in 0..100 {
            assert!(!breaker.failed(), "not before 5 s have passed");
        }
        breaker.answered();
        let tripped = (0..240).position(|_| breaker.failed());
        assert_eq!(
            tripped,
            Some(239),
            "eight times the threshold trips at once"
        );
        breaker.answered();
        assert_eq!(breaker.failures_in_a_row(), 0);
        for _ in 0..29 {
            breaker.failed();
            tokio::time::advance(Duration::from_millis(200)).await;
        }
        assert!(breaker.failed(), "30 failures over 5.8 s");
    }
}
