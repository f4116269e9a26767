//! How long a server asks us to wait: `Retry-After` (seconds or an HTTP date), rate-limit
//! reset headers in their three spellings, and any other time value a server sends (a
//! token's lifetime), all read with total arithmetic so no number a server sends can panic.

use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// The longest wait a server hint is read as (about 31 years): anything longer, or not a
/// number roster can represent, reads as this. The run compares it with `--max-wait`.
pub const LONGEST_SERVER_WAIT: Duration = Duration::from_secs(1_000_000_000);

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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
}
