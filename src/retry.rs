//! When to try again and how long to wait: exponential backoff with full jitter, the server's
//! own `Retry-After` / rate-limit reset hints, and a gate that pauses every worker at once.

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The longest wait a server hint is read as (about 31 years): anything longer, or not a
/// number roster can represent, reads as this. The run compares it with `--max-wait`.
pub const LONGEST_SERVER_WAIT: Duration = Duration::from_secs(1_000_000_000);

/// How long the run waits for a server by default before it stops (`--max-wait`).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// Seconds from a server (a header, a token lifetime) as a [`Duration`], with total
/// arithmetic: negative or not a number is `None`; larger than `cap`, `cap`.
pub fn seconds_from_server(secs: f64, cap: Duration) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs >= cap.as_secs_f64() {
        return Some(cap);
    }
    Duration::try_from_secs_f64(secs).ok()
}

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

/// The wait a response asks for: `Retry-After` (seconds or an HTTP date), else a rate-limit
/// reset header (`X-RateLimit-Reset`, `X-Rate-Limit-Reset`, IETF `RateLimit: …, t=N` /
/// `RateLimit-Reset`), as seconds from now or an epoch timestamp. Every value is read with
/// total arithmetic: garbage is ignored, a huge value reads as [`LONGEST_SERVER_WAIT`].
pub fn server_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = text("retry-after") {
        if let Ok(secs) = value.parse::<f64>()
            && let Some(wait) = seconds_from_server(secs, LONGEST_SERVER_WAIT)
        {
            return Some(wait);
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            let wait = date.duration_since(now).unwrap_or_default();
            return Some(wait.min(LONGEST_SERVER_WAIT));
        }
    }
    for name in ["x-ratelimit-reset", "x-rate-limit-reset", "ratelimit-reset"] {
        if let Some(secs) = text(name).and_then(|v| v.parse::<f64>().ok()) {
            return reset_to_wait(secs, now);
        }
    }
    // IETF draft structured field: `RateLimit: limit=10, remaining=0, reset=5` or `"p";r=0;t=5`.
    if let Some(value) = text("ratelimit") {
        for part in value.split([',', ';']) {
            let (key, val) = part.trim().split_once('=').unwrap_or_default();
            if matches!(key.trim(), "reset" | "t")
                && let Ok(secs) = val.trim().parse::<f64>()
            {
                return reset_to_wait(secs, now);
            }
        }
    }
    None
}

/// A reset value is a delay in seconds, unless it is large enough to be an epoch timestamp.
fn reset_to_wait(value: f64, now: SystemTime) -> Option<Duration> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let wait = if value > 1_000_000_000.0 {
        let epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        (value - epoch).max(0.0)
    } else {
        value
    };
    seconds_from_server(wait, LONGEST_SERVER_WAIT)
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
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            server_wait(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            server_wait(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(server_wait(&headers(&[]), now), None);
    }

    #[test]
    fn rate_limit_reset_headers_as_delay_or_epoch() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[("x-rate-limit-reset", "1700000005")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(5)));
        let h = headers(&[("x-ratelimit-reset", "2")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(2)));
        let h = headers(&[("ratelimit", "limit=10, remaining=0, reset=4")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(4)));
    }

    #[test]
    fn hostile_values_are_read_with_total_arithmetic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[("retry-after", "999999")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(999_999)));
        for (name, value) in [
            ("retry-after", "100000000000000000000"),
            ("retry-after", "1e300"),
            ("x-ratelimit-reset", "100000000000000000000"),
            ("x-rate-limit-reset", "1e308"),
            ("ratelimit", "limit=1, remaining=0, reset=1e300"),
        ] {
            assert_eq!(
                server_wait(&headers(&[(name, value)]), now),
                Some(LONGEST_SERVER_WAIT),
                "{name}: {value}"
            );
        }
        let far = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert_eq!(server_wait(&far, now), Some(LONGEST_SERVER_WAIT));
        for garbage in ["soon", "-5", "NaN", "inf"] {
            assert_eq!(
                server_wait(&headers(&[("retry-after", garbage)]), now),
                None
            );
        }
        assert_eq!(
            seconds_from_server(1e300, Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(seconds_from_server(f64::NAN, Duration::from_secs(60)), None);
    }

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
