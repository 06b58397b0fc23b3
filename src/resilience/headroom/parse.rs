//! Providers' rate-limit headers, read into one [`Reading`]. Pure: the wall clock's `now` comes
//! with the call (Anthropic's resets are timestamps).
//!
//! - OpenAI and Azure OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, the
//!   resets as Go durations (`1s`, `6m0s`, `20ms`, `1h2m3.5s`; Azure may send plain seconds, and
//!   `-1` for a limit it does not track: such a value is no value).
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
//!   remaining,reset}`, the resets as RFC 3339 timestamps. The tokens level is the tightest of the
//!   three token families (the one with the fewest left).
//! - `retry-after-ms` (OpenAI and Azure, on a 429): [`retry_after_ms`].
//! - Gemini sends no rate-limit headers (its 429 says when to retry in the body's `RetryInfo`):
//!   nothing to read, so no state.
//!
//! A provider's header is hostile input: no value panics, a reset is clamped to [`MAX_RESET`],
//! and what does not parse is left out. With none of these headers the parser allocates nothing
//! and costs five header lookups.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The longest reset believed: past it, the level is read as resetting at this bound.
pub(super) const MAX_RESET: Duration = Duration::from_secs(24 * 3600);

/// One limit as an answer reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// What is left in the window.
    pub remaining: u64,
    /// The window's size, when sent.
    pub limit: Option<u64>,
    /// Time from the answer until the window refills, when sent.
    pub reset: Option<Duration>,
}

/// What one answer said about its key's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// Requests.
    pub requests: Option<Level>,
    /// Tokens (Anthropic: the tightest of tokens, input and output tokens).
    pub tokens: Option<Level>,
}

/// One family's limit, remaining and reset headers (lower-case names: a lookup by `&str` lowers
/// into a stack buffer, it does not allocate).
struct Family {
    limit: &'static str,
    remaining: &'static str,
    reset: &'static str,
}

const OPENAI_REQUESTS: Family = Family {
    limit: "x-ratelimit-limit-requests",
    remaining: "x-ratelimit-remaining-requests",
    reset: "x-ratelimit-reset-requests",
};
const OPENAI_TOKENS: Family = Family {
    limit: "x-ratelimit-limit-tokens",
    remaining: "x-ratelimit-remaining-tokens",
    reset: "x-ratelimit-reset-tokens",
};
const ANTHROPIC_REQUESTS: Family = Family {
    limit: "anthropic-ratelimit-requests-limit",
    remaining: "anthropic-ratelimit-requests-remaining",
    reset: "anthropic-ratelimit-requests-reset",
};
const ANTHROPIC_TOKENS: [Family; 3] = [
    Family {
        limit: "anthropic-ratelimit-tokens-limit",
        remaining: "anthropic-ratelimit-tokens-remaining",
        reset: "anthropic-ratelimit-tokens-reset",
    },
    Family {
        limit: "anthropic-ratelimit-input-tokens-limit",
        remaining: "anthropic-ratelimit-input-tokens-remaining",
        reset: "anthropic-ratelimit-input-tokens-reset",
    },
    Family {
        limit: "anthropic-ratelimit-output-tokens-limit",
        remaining: "anthropic-ratelimit-output-tokens-remaining",
        reset: "anthropic-ratelimit-output-tokens-reset",
    },
];
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The answer's quota, if it sent any of the headers above.
pub(crate) fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Reading> {
    let openai =
        headers.contains_key(OPENAI_REQUESTS.remaining) || headers.contains_key(OPENAI_TOKENS.remaining);
    let anthropic = headers.contains_key(ANTHROPIC_REQUESTS.remaining)
        || ANTHROPIC_TOKENS[..2].iter().any(|f| headers.contains_key(f.remaining));
    if !openai && !anthropic {
        // Output tokens alone are not worth a third lookup per answer: Anthropic sends them with
        // the others.
        return None;
    }
    let reading = if openai {
        Reading {
            requests: level(headers, &OPENAI_REQUESTS, go_duration),
            tokens: level(headers, &OPENAI_TOKENS, go_duration),
        }
    } else {
        let at = |v: &str| timestamp(v, now);
        let tokens =
            ANTHROPIC_TOKENS.iter().filter_map(|f| level(headers, f, at)).min_by_key(|l| l.remaining);
        Reading { requests: level(headers, &ANTHROPIC_REQUESTS, at), tokens }
    };
    (reading.requests.is_some() || reading.tokens.is_some()).then_some(reading)
}

fn level(headers: &HeaderMap, f: &Family, reset: impl Fn(&str) -> Option<Duration>) -> Option<Level> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let remaining = text(f.remaining).and_then(count)?;
    Some(Level {
        remaining,
        limit: text(f.limit).and_then(count).filter(|l| *l > 0),
        reset: text(f.reset).and_then(reset).map(|d| d.min(MAX_RESET)),
    })
}

/// A count: digits only (`-1`, Azure's "not tracked", and anything else are no count).
fn count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than a u64 holds: as good as unlimited.
    Some(v.parse().unwrap_or(u64::MAX))
}

/// A Go duration (`1h2m3.5s`, `20ms`, `6m0s`, `0s`), or plain seconds (`7`, `0.5`).
pub(super) fn go_duration(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return seconds(secs);
    }
    let mut rest = v;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let n: f64 = number.parse().ok()?;
        let unit = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = tail;
    }
    (!v.is_empty()).then_some(())?;
    seconds(total)
}

fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(MAX_RESET).min(MAX_RESET))
}

/// An RFC 3339 timestamp, as the time left until it (zero when past).
fn timestamp(v: &str, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `retry-after-ms` (milliseconds, OpenAI's and Azure's finer `Retry-After`), clamped to `max`.
pub(crate) fn retry_after_ms(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER_MS)?.to_str().ok()?.trim();
    let ms = v.parse::<f64>().ok().filter(|ms| *ms >= 0.0)?;
    Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(max).min(max))
}
