use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{MAX_RESET, go_duration};
use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
}

/// 2025-08-21T12:40:00Z.
fn noon() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_755_780_000)
}

const fn lvl(remaining: u64, limit: Option<u64>, reset_ms: Option<u64>) -> Level {
    Level {
        remaining,
        limit,
        reset: match reset_ms {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        },
    }
}

#[test]
fn openai_headers_with_go_durations() {
    let h = headers(&[
        ("x-ratelimit-limit-requests", "5000"),
        ("x-ratelimit-limit-tokens", "160000"),
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-remaining-tokens", "159976"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]);
    let r = parse(&h, noon()).unwrap();
    assert_eq!(r.requests, Some(lvl(4999, Some(5000), Some(12))));
    assert_eq!(r.tokens, Some(lvl(159_976, Some(160_000), Some(360_000))));
}

#[test]
fn go_durations() {
    let ms = |v: &str| go_duration(v).map(|d| d.as_millis());
    assert_eq!(ms("1s"), Some(1000));
    assert_eq!(ms("6m0s"), Some(360_000));
    assert_eq!(ms("20ms"), Some(20));
    assert_eq!(ms("1h2m3.5s"), Some(3_723_500));
    assert_eq!(ms("0s"), Some(0));
    assert_eq!(ms("1.5"), Some(1500), "plain seconds");
    assert_eq!(ms("7"), Some(7000));
    assert_eq!(ms("250us"), Some(0));
    assert_eq!(ms("99999999h"), Some(MAX_RESET.as_millis()), "clamped");
    assert_eq!(ms("1e300"), Some(MAX_RESET.as_millis()));
    for bad in ["", "s", "5x", "1.2.3s", "-1s", "-3", "NaN", "1h-2m", "ms"] {
        assert_eq!(go_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn azure_sends_the_openai_pair_and_minus_one_for_untracked() {
    // Azure OpenAI: remaining requests and tokens, a reset in seconds at times, -1 untracked.
    let h = headers(&[
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-remaining-tokens", "-1"),
        ("x-ratelimit-limit-tokens", "-1"),
        ("x-ratelimit-reset-requests", "10"),
    ]);
    let r = parse(&h, noon()).unwrap();
    assert_eq!(r.requests, Some(lvl(59, None, Some(10_000))));
    assert_eq!(r.tokens, None);
    // Nothing tracked at all: no reading.
    let h = headers(&[("x-ratelimit-remaining-tokens", "-1")]);
    assert_eq!(parse(&h, noon()), None);
}

#[test]
fn anthropic_headers_with_rfc3339_resets_and_the_tightest_tokens() {
    let h = headers(&[
        ("anthropic-ratelimit-requests-limit", "1000"),
        ("anthropic-ratelimit-requests-remaining", "999"),
        ("anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z"),
        ("anthropic-ratelimit-tokens-limit", "96000"),
        ("anthropic-ratelimit-tokens-remaining", "96000"),
        ("anthropic-ratelimit-tokens-reset", "2025-08-21T12:40:59Z"),
        ("anthropic-ratelimit-input-tokens-limit", "80000"),
        ("anthropic-ratelimit-input-tokens-remaining", "80000"),
        ("anthropic-ratelimit-input-tokens-reset", "2025-08-21T12:40:30Z"),
        ("anthropic-ratelimit-output-tokens-limit", "16000"),
        ("anthropic-ratelimit-output-tokens-remaining", "1200"),
        ("anthropic-ratelimit-output-tokens-reset", "2025-08-21T12:41:00Z"),
    ]);
    let r = parse(&h, noon()).unwrap();
    assert_eq!(r.requests, Some(lvl(999, Some(1000), Some(59_000))));
    assert_eq!(r.tokens, Some(lvl(1200, Some(16_000), Some(60_000))), "output tokens are the tightest");
    // A reset in the past is now; a bad timestamp is no reset.
    let h = headers(&[
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2025-08-21T12:00:00Z"),
        ("anthropic-ratelimit-tokens-remaining", "5"),
        ("anthropic-ratelimit-tokens-reset", "tomorrow"),
    ]);
    let r = parse(&h, noon()).unwrap();
    assert_eq!(r.requests, Some(lvl(0, None, Some(0))));
    assert_eq!(r.tokens, Some(lvl(5, None, None)));
}

#[test]
fn no_headers_no_reading_and_hostile_values_are_left_out() {
    assert_eq!(parse(&HeaderMap::new(), noon()), None);
    // Gemini: no rate-limit headers.
    assert_eq!(parse(&headers(&[("content-type", "application/json")]), noon()), None);
    let h = headers(&[
        ("x-ratelimit-remaining-requests", "99999999999999999999999"),
        ("x-ratelimit-reset-requests", "1e400s"),
        ("x-ratelimit-remaining-tokens", "12abc"),
    ]);
    let r = parse(&h, noon()).unwrap();
    assert_eq!(r.requests, Some(Level { remaining: u64::MAX, limit: None, reset: None }));
    assert_eq!(r.tokens, None);
}

#[test]
fn retry_after_ms_is_read_and_clamped() {
    let max = Duration::from_secs(60);
    assert_eq!(
        retry_after_ms(&headers(&[("retry-after-ms", "1500")]), max),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        retry_after_ms(&headers(&[("retry-after-ms", "2.5")]), max),
        Some(Duration::from_micros(2500))
    );
    assert_eq!(retry_after_ms(&headers(&[("retry-after-ms", "1e30")]), max), Some(max));
    assert_eq!(retry_after_ms(&headers(&[("retry-after-ms", "-5")]), max), None);
    assert_eq!(retry_after_ms(&headers(&[("retry-after-ms", "soon")]), max), None);
    assert_eq!(retry_after_ms(&HeaderMap::new(), max), None);
}

const S: u64 = 1_000_000_000;

fn window(remaining: u64, limit: u64, reset: u64) -> Option<Window> {
    Some(Window { remaining, limit: Some(limit), reset })
}

#[test]
fn zero_left_rests_until_the_reset_and_is_stale_after() {
    let h = Headroom::default();
    assert_eq!(h.rest(S, 0), None, "nothing known");
    assert_eq!(h.fraction(S), 1.0);
    h.observe(S, 1, &Reading { requests: Some(lvl(0, Some(10), Some(2000))), tokens: None });
    assert_eq!(h.rest(S, 0), Some((Duration::from_secs(2), Skip::Requests)));
    assert_eq!(h.rest(2 * S, 0), Some((Duration::from_secs(1), Skip::Requests)));
    assert_eq!(h.rest(3 * S, 0), None, "past the reset");
    assert_eq!(h.known(3 * S), None);
}

#[test]
fn tokens_rest_at_zero_or_below_the_estimate() {
    let h = Headroom::default();
    assert!(h.merge(1, window(5, 10, 9 * S), window(100, 1000, 5 * S)));
    assert_eq!(h.rest(S, 100), None);
    assert_eq!(h.rest(S, 101), Some((Duration::from_secs(4), Skip::Estimate)));
    assert!((h.fraction(S) - 0.1).abs() < 1e-9, "the tighter level");
    assert!(h.merge(2, None, window(0, 1000, 5 * S)));
    assert_eq!(h.rest(S, 0), Some((Duration::from_secs(4), Skip::Tokens)));
    // The tokens level goes stale; the requests level still counts.
    assert_eq!(h.rest(6 * S, 1_000_000), None);
    assert!((h.fraction(6 * S) - 0.5).abs() < 1e-9);
}

#[test]
fn the_newest_answer_wins() {
    let h = Headroom::default();
    assert!(h.merge(200, window(3, 10, 9 * S), None));
    assert!(!h.merge(100, window(9, 10, 9 * S), None), "an older answer arrived late");
    assert_eq!(h.known(S).unwrap().requests.unwrap().remaining, 3);
    assert!(h.merge(300, window(2, 10, 9 * S), None));
    assert_eq!(h.known(S).unwrap(), Known { at_ms: 300, requests: window(2, 10, 9 * S), tokens: None });
    h.clear();
    assert_eq!(h.known(S), None);
}

#[test]
fn one_share_waits_per_key() {
    let h = Headroom::default();
    assert!(h.mark_dirty());
    assert!(!h.mark_dirty());
    h.take_dirty();
    assert!(h.mark_dirty());
}
