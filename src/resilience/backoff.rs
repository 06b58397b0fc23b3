//! Backoff between attempts: exponential with full jitter, and `Retry-After` parsing (seconds or
//! an HTTP date).

use std::time::{Duration, SystemTime};

pub(crate) use crate::config::RetryPolicy;

impl RetryPolicy {
    /// Full-jitter delay before retry number `retry` (1 for the first retry): uniform in
    /// `[0, min(max_backoff, backoff * 2^(retry-1))]`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, &mut fastrand::Rng::new())
    }

    /// [`Self::delay`] with the caller's random source (a seeded one in tests).
    pub fn delay_with(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling =
            self.backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(16)).min(self.max_backoff);
        ceiling.mul_f64(rng.f64())
    }
}

/// Parses a `Retry-After` value (delay-seconds, or an HTTP date through `httpdate`: IMF-fixdate,
/// RFC 850 and asctime), clamped to `max`: a provider's header is hostile input, so no value
/// panics (`1e20`, a 30-digit number, the year 9999) and none rests a target longer than the
/// longest cooldown. A date in the past is zero; what is neither is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim();
    let d = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "later than max".
        value.parse::<u64>().map_or(max, Duration::from_secs)
    } else if value.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        // Not RFC 9110, but some providers send fractions: checked, as a float may be huge.
        let secs = value.parse::<f64>().ok().filter(|s| *s >= 0.0 && !s.is_nan())?;
        Duration::try_from_secs_f64(secs).unwrap_or(max)
    } else {
        let at =
            httpdate::parse_http_date(value).ok().or_else(|| humantime::parse_rfc3339_weak(value).ok())?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_exponential_ceiling() {
        let p = RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            assert!(p.delay(1) <= Duration::from_millis(100));
            assert!(p.delay(2) <= Duration::from_millis(200));
            assert!(p.delay(5) <= Duration::from_millis(300));
        }
    }

    #[test]
    fn parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        let parse = |v: &str| parse_retry_after(v, now, MAX);
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:47 GMT"), Some(Duration::from_secs(10)));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:47 GMT"), Some(Duration::from_secs(10)), "RFC 850");
        assert_eq!(parse("Sun Nov  6 08:49:47 1994"), Some(Duration::from_secs(10)), "asctime");
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-3"), None);
    }

    const MAX: Duration = Duration::from_secs(300);

    /// Fails before the fix: `1e20` and `18446744073709551616.5` panicked in
    /// `Duration::from_secs_f64`; the hand-written date parser took hour 99999999999999 and the
    /// year 99999999999 and returned centuries.
    #[test]
    fn hostile_values_never_panic_and_are_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        for v in [
            "1e20",
            "1e308",
            "18446744073709551616.5",
            "99999999999999999999999999999",
            "18446744073709551615",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now, MAX), Some(MAX), "{v:?}");
        }
        for v in [
            "NaN",
            "inf",
            "-0.5",
            "-1e20",
            "Fri, 31 Dec 99999999999 23:59:59 GMT",
            "Sun, 06 Nov 1994 99999999999999:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 XYZ",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
            "\u{0}",
        ] {
            assert_eq!(parse_retry_after(v, now, MAX), None, "{v:?}");
        }
        // A `now` at either end of time does not overflow either.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", far, MAX), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", SystemTime::UNIX_EPOCH, MAX),
            Some(MAX)
        );
    }
}
