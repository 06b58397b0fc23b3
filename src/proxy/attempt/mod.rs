//! The attempt loop: try a request's candidates (the route's targets in strategy order, then any
//! request-level fallbacks) until one answers.
//!
//! - **Per target**, up to `retry.attempts` tries with full-jitter backoff; a `Retry-After` is
//!   honoured up to `max_backoff`, beyond which tier1 moves on instead of waiting.
//! - **Keys first**: a key-scoped failure (429, 401, 403) tries another key of the same provider
//!   before another target, without spending a try.
//! - **Skips, not waits**: an open breaker, a cooling key or model, or a full concurrency limit
//!   skips the target at once.
//! - **Budget**: every attempt after the first (retries, fallbacks, hedges) spends from the
//!   route's retry budget; an empty budget ends the loop.
//! - **Hedging**: with `hedge_after`, if no first byte arrived by then, the next candidate starts
//!   in parallel; the first to commit wins and the other is dropped (its connection closes).
//! - **Commit**: a stream counts as answered at its first content, tool call or finish reason;
//!   until then any failure (status, error event, close, idle timeout) is retried invisibly.
//! - **Cancellation**: every attempt is a future owned by the request; a client that leaves drops
//!   them all, and with them their upstream connections. Nothing is spawned.

//!
//! The files, in the order one attempt meets them: `plan` (which candidate and key next, and
//! how long to wait: pure), [`run`] (the loop and hedging), `exchange` (gates, permits,
//! encoding, the send and the answer's classification), `read` (reading an answer up to its
//! commit point), `outcome` (what an attempt teaches: breakers, cooldowns, the other replicas,
//! metrics), `answer` (the client's answer: a relay, a whole translation, a caller-fault body).

mod answer;
mod exchange;
mod outcome;
mod plan;
mod read;
mod refusal;
mod resume;
mod run;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

pub(crate) use resume::{Resume, Resumed};
pub(crate) use run::{Extras, run};

use super::ctx::Meter;
use super::relay::Relay;
use super::timing::{During, Timing};
use crate::error::Class;
use crate::json::Scanned;
use crate::metrics::Metrics;
use crate::metrics::labels::WaitKind;
use crate::providers::{Operation, Provider};
use crate::ratelimit::{Limiter, Ticket};
use crate::resilience::{Clock, RetryPolicy, TargetState};
use crate::routing::affinity::Affine;
use crate::shared::Shared;
use crate::snapshot::Live;

/// Largest upstream error body read to pass on, and largest stream prefix held before commit.
const MAX_HELD: usize = 1024 * 1024;

/// What started a hedge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The route's `hedge_after` passed with no answer.
    HedgeAfter,
    /// The primary stream's first-token deadline passed first.
    FirstToken,
}

impl Trigger {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::HedgeAfter => "hedge_after",
            Self::FirstToken => "first_token",
        }
    }
}

/// One target to try.
pub(crate) struct Candidate<'a> {
    /// The provider.
    pub provider: &'a Provider,
    /// The upstream model name.
    pub model: &'a str,
    /// The target's breaker, cooldown, latency and in-flight count (owned for a made-up direct
    /// model, whose state lives in a bounded map).
    pub target: std::borrow::Cow<'a, Arc<TargetState>>,
    /// Tries and backoff for this target.
    pub policy: RetryPolicy,
    /// The model as a metric label: configured model names only, else `other`.
    pub model_label: &'a str,
    /// USD per million input and output tokens.
    pub costs: (f64, f64),
    /// Azure deployment (the model elsewhere).
    pub deployment: &'a str,
    /// Context window in tokens, if configured: a longer request skips this target.
    pub context_window: Option<u64>,
    /// Its stream's deadline to the first content: the route's, else the provider's.
    pub first_token: Option<&'a crate::config::FirstTokenTimeout>,
    /// The session's ranking of this target's keys, on a route with affinity (`None`: the
    /// keys are picked at random by weight).
    pub affinity: Option<Affine>,
}

impl Candidate<'_> {
    /// How long its stream may take to a first content for `job`'s prompt, estimated as the rate
    /// limits do (bytes / 4, without the output ceiling).
    fn first_token_in(&self, job: &Job<'_>) -> Option<Duration> {
        self.first_token.map(|f| f.for_tokens(job.body.len() as u64 / 4))
    }

    /// Time until this target can be used, if it cannot be now (breaker, model cooldown, keys).
    pub(crate) fn unavailable(&self, now: u64) -> Option<Duration> {
        self.blocked(now).or_else(|| self.keys_cooling(now, 0))
    }

    /// Whether a breaker (the provider's or the target's) refuses it now: it has been failing.
    fn broken(&self, now: u64) -> bool {
        self.provider.state.breaker.blocks(now) || self.target.breaker.blocks(now)
    }

    /// Time until the breakers or the model cooldown let it through, if they block it now.
    fn blocked(&self, now: u64) -> Option<Duration> {
        let p = self.provider;
        if p.state.breaker.blocks(now) {
            return Some(p.state.breaker.remaining(now).unwrap_or_default());
        }
        if self.target.breaker.blocks(now) {
            return Some(self.target.breaker.remaining(now).unwrap_or_default());
        }
        self.target.cooldown.remaining(now)
    }

    /// When every key that serves the model is cooling, or out of quota for a request of
    /// `tokens` (see [`crate::resilience::KeyState::unavailable_for`]): time until the first
    /// comes back.
    fn keys_cooling(&self, now: u64, tokens: u64) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        for k in self.provider.keys.iter().filter(|k| k.serves(self.model)) {
            let left = k.state.unavailable_for(self.model, now, tokens)?;
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
        }
        // No key serves this model at all: unusable, with no time to wait for.
        if soonest.is_none() && !self.provider.keys.is_empty() {
            return Some(Duration::ZERO);
        }
        soonest
    }
}

/// What every attempt of one request shares.
pub(crate) struct Job<'a> {
    /// The snapshot.
    pub live: &'a Live,
    /// Chat or embeddings.
    pub operation: Operation,
    /// Whether the client gets SSE.
    pub stream: bool,
    /// Whether `"stream":true` must be added (the client asked through `Accept` only).
    pub force_stream: bool,
    /// The scanned request body.
    pub scanned: &'a Scanned,
    /// The request body as received.
    pub body: &'a Bytes,
    /// Forwarded ids.
    pub request_id: &'a HeaderValue,
    /// Forwarded correlation id.
    pub correlation_id: Option<&'a HeaderValue>,
    /// The gates' clock.
    pub clock: Clock,
    /// Attempts that reached the upstream (hedges included): `x-tier1-attempts`.
    pub started: AtomicU32,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// The route label of the request.
    pub route: &'a str,
    /// The request's clock: the await points below mark what they wait on.
    pub timing: &'a Timing,
    /// Rate-limit counters (provider keys' own quotas).
    pub limiter: &'a Arc<Limiter>,
    /// Shared state: cooldowns and breaker openings go to the other replicas.
    pub shared: &'a Shared,
    /// The request's token estimate.
    pub tokens: u64,
    /// What continues a broken stream (`stream_resume` routes' streams).
    pub resume: Option<Arc<Resume>>,
    /// Requests of this replica held for a cooldown now (`wait_for_cooldown`).
    pub waiters: &'a std::sync::atomic::AtomicUsize,
    /// The request's span context, when traced: each attempt gets a child span.
    pub trace: Option<crate::otel::Parent>,
}

impl Job<'_> {
    /// `fut`, its pending time a wait of `kind`.
    fn during<F: std::future::Future>(&self, kind: WaitKind, fut: F) -> During<'_, F> {
        self.timing.during(kind, fut)
    }
}

/// How the attempt loop ended, short of exhausting every candidate: with what the client gets,
/// and who gave it.
pub(crate) struct Answered {
    /// `x-tier1-provider`.
    pub provider: HeaderValue,
    /// `x-tier1-model`.
    pub model: Option<HeaderValue>,
    /// Classification of the first failure before this answer, if any.
    pub fallback_reason: Option<Class>,
    /// What the client gets.
    pub answer: Answer,
}

/// What the client gets from the attempt that ended the loop.
pub(crate) enum Answer {
    /// A provider's success.
    Success(Success),
    /// The provider refused the request as the caller's fault (400, 404, 409, 422...): its error
    /// body goes to the client, redacted and in the client's format; the provider stays healthy.
    CallerFault {
        /// The provider's status.
        status: StatusCode,
        /// Upstream headers the client may see.
        headers: HeaderMap,
        /// The provider's error body.
        body: Bytes,
    },
    /// The request cannot be written in the provider's format (the caller's fault too).
    Untranslatable {
        /// The provider's config name.
        provider: Arc<str>,
        /// What could not be translated.
        why: String,
        /// The request parameter at fault, if one is.
        param: Option<&'static str>,
    },
}

/// A provider's success, on its way to the client.
pub(crate) struct Success {
    /// Status to send.
    pub status: StatusCode,
    /// Upstream headers the client may see.
    pub headers: HeaderMap,
    /// The body.
    pub body: WonBody,
    /// Time to the first content chunk (streams).
    pub ttft: Option<Duration>,
    /// Tokens in and out, for an answer read and translated whole (a relayed body reports its
    /// own when it ends).
    pub tokens: Option<(u64, u64)>,
    /// Where the usage is counted.
    pub meter: Meter,
    /// The key's token ticket, to settle with the usage at the end.
    pub ticket: Option<Ticket>,
}

/// A success's body: relayed, or read and translated whole.
pub(crate) enum WonBody {
    /// Streamed from the upstream.
    Relay(Box<Relay>),
    /// Streamed, and continued on another candidate if it breaks (`stream_resume`).
    Resumed(Box<Resumed>),
    /// An answer translated whole.
    Full(Bytes),
}

/// What one attempt gave the loop.
enum Attempted {
    /// It ends the loop (see [`Answer`]).
    Answered(Box<Answered>),
    /// It failed; the planner decides what comes next.
    Failed(Failure),
    /// Not started: a breaker, or (`true`) a full limit. Carries when it may be available.
    Skipped(Option<Duration>, bool),
    /// Refused for what this target will not take (the request is longer than its context
    /// window, or its content filter): the planner moves on, and the provider's refusal is kept
    /// for the client in case no later target answers.
    Refused(Failure, Box<Answered>),
}

/// A failed attempt, as the planner and the client's error body see it.
#[derive(Debug, Clone, Copy)]
struct Failure {
    class: Class,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    /// A 429 whose body says the key as a whole is exhausted (quota, billing), not one model's
    /// rate: the whole key rests instead of (key, model).
    key_wide: bool,
}
