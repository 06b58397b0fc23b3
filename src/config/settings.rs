//! The plain settings types other modules run on: retry, breaker, budget and cooldown settings,
//! a route's strategy, the mock provider's behaviour, and the glob rule for model names. They
//! live here so that config is a leaf: the modules that act on them ([`crate::resilience`],
//! [`crate::routing`], [`crate::mock`]) add their behaviour in their own `impl` blocks and
//! re-export the types.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::Problems;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// Failure ratio over the window that opens it (with enough requests).
    pub failure_rate: f64,
    /// Outcomes needed in the window before the ratio counts.
    pub min_requests: u32,
    /// The ratio's sliding window.
    pub window: Duration,
    /// How long it stays open the first time.
    pub open_for: Duration,
    /// The longest a re-opening after a failed trial lasts: each one doubles the last, up to
    /// this. Equal to `open_for` (the default) means no growth, so a provider that recovers is
    /// used again at most `open_for` later.
    pub open_for_max: Duration,
    /// Trial requests while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(30),
            open_for_max: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// A stream's deadline to its first content (its commit point), scaled to the prompt: a
/// reasoning model's long prompt may take a minute to a first token, a short chat prompt should
/// not. Never measured to headers or role preambles (that is `first_byte_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstTokenTimeout {
    /// The deadline of an empty prompt.
    pub base: Duration,
    /// Added per 1,000 estimated input tokens.
    pub per_1k_input_tokens: Duration,
    /// The longest deadline.
    pub max: Duration,
}

impl FirstTokenTimeout {
    /// The deadline of a prompt of `input_tokens` (estimated).
    pub fn for_tokens(&self, input_tokens: u64) -> Duration {
        let per = self.per_1k_input_tokens.as_secs_f64() * input_tokens as f64 / 1000.0;
        self.base.saturating_add(Duration::try_from_secs_f64(per).unwrap_or(self.max)).min(self.max)
    }
}

/// Budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Extra attempts allowed per request, on average over the window.
    pub ratio: f64,
    /// Extra attempts always allowed per second of window.
    pub min_per_second: f64,
    /// The sliding window.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { ratio: 0.2, min_per_second: 1.0, window: Duration::from_secs(10) }
    }
}

/// Cooldown durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownConfig {
    /// First cooldown without a `Retry-After`; doubles on each consecutive strike.
    pub default: Duration,
    /// Ceiling of the doubling (and of any `Retry-After`).
    pub max: Duration,
    /// Cooldown of a key the provider refused (401/403).
    pub on_auth_error: Duration,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(5),
            max: Duration::from_secs(300),
            on_auth_error: Duration::from_secs(600),
        }
    }
}

/// Retry settings of a route (or the default for direct requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per target, the first included.
    pub attempts: u32,
    /// Base of the exponential backoff.
    pub backoff: Duration,
    /// Ceiling of the backoff; a `Retry-After` longer than this moves on instead of waiting.
    pub max_backoff: Duration,
    /// After a timeout (connect, first byte, idle before the commit, a 408): by default the next
    /// target at once, since nothing says this one will answer soon.
    pub on_timeout: Then,
    /// After a connect error (refused, reset, TLS, DNS): by default the next target at once.
    pub on_connect: Then,
    /// After a 5xx or an overloaded answer: by default this target's retries first.
    pub on_server: Then,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            on_timeout: Then::Next,
            on_connect: Then::Next,
            on_server: Then::Retry,
        }
    }
}

/// What follows a failed attempt of one class (`retry.on_timeout`, `on_connect`, `on_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Try the same target again, after the backoff, while it has tries left.
    Retry,
    /// Move on to the next target at once.
    Next,
}

impl Then {
    /// The spellings in config.
    pub const NAMES: &'static str = "retry or next";

    /// Parses `retry` or `next`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retry" => Some(Self::Retry),
            "next" => Some(Self::Next),
            _ => None,
        }
    }
}

/// How a route orders its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Config order: the first healthy target, then the next.
    #[default]
    Priority,
    /// Smooth weighted round robin by `weight` for the first pick; then config order.
    Weighted,
    /// Rotating start position.
    RoundRobin,
    /// Lowest EWMA time to first byte first (targets with no sample yet go first, to learn).
    LeastLatency,
    /// Power of two choices on EWMA latency × (in-flight + 1).
    P2c,
    /// Fewest attempts in flight first.
    LeastUsed,
    /// Cheapest `input_cost + output_cost` first.
    Cost,
}

/// A route's prompt-cache affinity: where its session key comes from, and how loaded a
/// session's choice may be before the session spills over to its next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    /// The session key's source.
    pub session: SessionFrom,
    /// The bounded-load factor (at least 1): a choice takes a session while its in-flight count
    /// is under `ceil(load_bound × (in flight on the route + 1) / available choices)`.
    pub load_bound: f64,
}

/// Where a request's session key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionFrom {
    /// One header's value.
    Header(http::HeaderName),
    /// The session headers agent clients send (Claude Code's, Codex CLI's).
    Session,
    /// A hash of the system prompt and the first `messages` messages after it.
    Prompt {
        /// How many messages after the system prompt.
        messages: usize,
    },
}

/// Whether a model pattern contains glob characters.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Mock behaviour as written in config (durations as strings).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBehavior {
    /// Delay before response headers.
    pub latency: Option<String>,
    /// Streams: delay between the headers and the first content chunk.
    pub ttft: Option<String>,
    /// Streams: content chunks per second (one word each); 0 sends them at once.
    pub tokens_per_second: Option<f64>,
    /// The assistant's answer.
    pub reply: Option<String>,
    /// Fail with this status (every request, or the first `fail_first` ones).
    pub status: Option<u16>,
    /// Fail only the first N requests (with `status`, default 500).
    pub fail_first: Option<u64>,
    /// Fail this fraction of requests at random (with `status`, default 500).
    pub fail_rate: Option<f64>,
    /// `Retry-After` value sent with failures.
    pub retry_after: Option<String>,
    /// Streams: abort the connection after this many content chunks.
    pub abort_after: Option<usize>,
    /// A quota of its own: this many requests per `quota_window`, counted down in rate-limit
    /// headers on every answer, then 429 with `Retry-After` until the window ends.
    pub quota: Option<u64>,
    /// The quota's window (default 60s), fixed, from the first request.
    pub quota_window: Option<String>,
    /// Simulate a provider's prompt cache per API key: the usage reports the tokens of the
    /// longest prompt prefix the same key was sent before as cached.
    pub prompt_cache: Option<bool>,
}

/// A mock's own request quota: `requests` per fixed `window` starting at the first request.
/// Clones share the count (one quota per configured behaviour).
#[derive(Debug, Clone)]
pub struct Quota {
    /// Requests per window.
    pub requests: u64,
    /// The window.
    pub window: Duration,
    /// The current window's start and its requests served.
    used: Arc<std::sync::Mutex<Option<(tokio::time::Instant, u64)>>>,
}

/// One request against a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether it fits (else: 429).
    pub allowed: bool,
    /// Requests left in the window after it.
    pub remaining: u64,
    /// The quota's size.
    pub limit: u64,
    /// Time until the window ends.
    pub reset: Duration,
}

impl Quota {
    /// A quota of `requests` per `window`.
    pub fn new(requests: u64, window: Duration) -> Self {
        Self { requests, window, used: Arc::default() }
    }

    /// Counts one request at `now`.
    pub fn take(&self, now: tokio::time::Instant) -> Taken {
        let Ok(mut used) = self.used.lock() else {
            return Taken { allowed: true, remaining: 0, limit: self.requests, reset: Duration::ZERO };
        };
        let (start, n) = match *used {
            Some((start, n)) if now < start + self.window => (start, n),
            _ => (now, 0),
        };
        let allowed = n < self.requests;
        let n = if allowed { n + 1 } else { n };
        *used = Some((start, n));
        Taken {
            allowed,
            remaining: self.requests - n,
            limit: self.requests,
            reset: (start + self.window).saturating_duration_since(now),
        }
    }
}

/// Validated mock behaviour.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Delay before response headers.
    pub latency: Duration,
    /// Delay before the first streamed content chunk.
    pub ttft: Duration,
    /// Gap between streamed content chunks.
    pub chunk_interval: Duration,
    /// The answer text.
    pub reply: Arc<str>,
    /// Failure status, if failures are configured.
    pub status: Option<StatusCode>,
    /// Fail only the first N requests.
    pub fail_first: Option<u64>,
    /// Random failure fraction.
    pub fail_rate: f64,
    /// `Retry-After` for failures.
    pub retry_after: Option<HeaderValue>,
    /// Abort streams after this many content chunks.
    pub abort_after: Option<usize>,
    /// Its own request quota, counted down in rate-limit headers.
    pub quota: Option<Quota>,
    /// Report cached prompt tokens per API key (the mock's own prompt cache).
    pub prompt_cache: bool,
}

/// The default mock answer.
pub const DEFAULT_REPLY: &str = "Hello from tier1's mock provider. Your request went through the router.";

impl Default for Behavior {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            reply: Arc::from(DEFAULT_REPLY),
            status: None,
            fail_first: None,
            fail_rate: 0.0,
            retry_after: None,
            abort_after: None,
            quota: None,
            prompt_cache: false,
        }
    }
}

impl RawBehavior {
    /// Validates into a [`Behavior`], recording problems under `path`.
    pub(crate) fn validate(&self, path: &str, p: &mut Problems) -> Behavior {
        let d = Behavior::default();
        let status = self.status.and_then(|s| match StatusCode::from_u16(s) {
            Ok(code) if s >= 400 => Some(code),
            _ => {
                p.push(format!("{path}.status"), format!("{s} is not an error status (400-599)"));
                None
            }
        });
        let chunk_interval = match self.tokens_per_second {
            None => Duration::ZERO,
            Some(t) if t > 0.0 && t.is_finite() => Duration::from_secs_f64(1.0 / t),
            Some(0.0) => Duration::ZERO,
            Some(t) => {
                p.push(format!("{path}.tokens_per_second"), format!("{t} is not a rate >= 0"));
                Duration::ZERO
            }
        };
        let fail_rate = self.fail_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&fail_rate) {
            p.push(format!("{path}.fail_rate"), "must be between 0 and 1");
        }
        let retry_after = self.retry_after.as_deref().and_then(|v| {
            HeaderValue::from_str(v)
                .map_err(|_| p.push(format!("{path}.retry_after"), "invalid header value"))
                .ok()
        });
        Behavior {
            latency: p.duration(&format!("{path}.latency"), self.latency.as_deref(), d.latency),
            ttft: p.duration(&format!("{path}.ttft"), self.ttft.as_deref(), d.ttft),
            chunk_interval,
            reply: self.reply.as_deref().map_or(d.reply, Arc::from),
            status,
            fail_first: self.fail_first,
            fail_rate: fail_rate.clamp(0.0, 1.0),
            retry_after,
            abort_after: self.abort_after,
            quota: self.quota.map(|n| {
                let window = p.duration(
                    &format!("{path}.quota_window"),
                    self.quota_window.as_deref(),
                    Duration::from_secs(60),
                );
                Quota::new(n, window.max(Duration::from_millis(1)))
            }),
            prompt_cache: self.prompt_cache.unwrap_or(false),
        }
    }
}

/// `concurrency = "adaptive"`: the bounds of an adaptive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    /// The lowest limit.
    pub min: u32,
    /// The highest limit, and the first.
    pub max: u32,
}

/// A provider's or key's concurrency limit: a fixed `max_inflight`, or adaptive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// `max_inflight`.
    Fixed(u32),
    /// `concurrency = "adaptive"`.
    Adaptive(Adaptive),
}
