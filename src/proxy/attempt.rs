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

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use super::body::Tap;
use super::relay::Relay;
use super::sse::{CommitScanner, Verdict};
use crate::config::Redactor;
use crate::error::{AttemptRecord, Class, Exhausted};
use crate::json::Scanned;
use crate::metrics::{MODEL_OTHER, Metrics, TARGET_PROVIDER};
use crate::providers::{Call, Operation, Provider, SendError, UpstreamBody};
use crate::ratelimit::{Limiter, unix_ms};
use crate::resilience::{
    Admission, Breaker, Clock, KeyState, RetryBudget, RetryPolicy, TargetState, parse_retry_after,
};
use crate::shared::{self, Shared};
use crate::snapshot::Live;

/// Largest upstream error body read to pass on, and largest stream prefix held before commit.
const MAX_HELD: usize = 1024 * 1024;

/// One target to try.
pub struct Candidate<'a> {
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
}

impl Candidate<'_> {
    /// Time until this target can be used, if it cannot be now (breaker, model cooldown, keys).
    pub fn unavailable(&self, now: u64) -> Option<Duration> {
        self.blocked(now).or_else(|| self.keys_cooling(now))
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

    /// When every key that serves the model is cooling: time until the first comes back.
    fn keys_cooling(&self, now: u64) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        for k in self.provider.keys.iter().filter(|k| k.serves(self.model)) {
            let left = k.state.cooldown.remaining(now)?;
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
pub struct Job<'a> {
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
    /// Nanoseconds spent waiting on upstreams, backoff and queues (for the overhead metric).
    pub waited: AtomicU64,
    /// Rate-limit counters (provider keys' own quotas).
    pub limiter: &'a Arc<Limiter>,
    /// Shared state: cooldowns and breaker openings go to the other replicas.
    pub shared: &'a Shared,
    /// The request's token estimate.
    pub tokens: u64,
}

impl Job<'_> {
    fn waited(&self, since: Instant) {
        self.waited.fetch_add(crate::resilience::clock::nanos(since.elapsed()), Ordering::Relaxed);
    }
}

/// The answer that won.
pub struct Won {
    /// Status to send.
    pub status: StatusCode,
    /// Upstream headers the client may see.
    pub headers: HeaderMap,
    /// The body.
    pub body: WonBody,
    /// `x-tier1-provider`.
    pub provider: HeaderValue,
    /// `x-tier1-model`.
    pub model: Option<HeaderValue>,
    /// Classification of the first failure before this answer, if any.
    pub fallback_reason: Option<Class>,
    /// Time to the first content chunk (streams).
    pub ttft: Option<Duration>,
    /// Tokens in and out, for an answer read and translated whole (a relayed body reports its
    /// own when it ends).
    pub tokens: Option<(u64, u64)>,
}

/// The winning body: relayed, or an upstream error body passed through.
pub enum WonBody {
    /// Streamed from the upstream.
    Relay(Box<Relay>),
    /// Read in full: a caller-fault error (redacted), or an answer translated whole.
    Full(Bytes),
}

enum Attempted {
    Won(Box<Won>),
    Failed(Failure),
    /// Not started: breaker, limit. Carries when it may be available.
    Skipped(Option<Duration>),
}

#[derive(Debug, Clone, Copy)]
struct Failure {
    class: Class,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
}

// === impl Planner ===

/// Walks the candidates: which target and key next, and how long to wait first.
struct Planner<'a, 'c> {
    job: &'c Job<'a>,
    cands: &'c [Candidate<'a>],
    idx: usize,
    tries: u32,
    /// Keys refused in this request, by (provider address, key index).
    burned: Vec<(usize, usize)>,
    wait: Duration,
    soonest: Option<Duration>,
}

enum Step {
    Start { cand: usize, key: Option<usize> },
    Wait(Duration),
    Done,
}

fn provider_id(p: &Provider) -> usize {
    std::ptr::from_ref(p) as usize
}

impl<'a, 'c> Planner<'a, 'c> {
    fn new(job: &'c Job<'a>, cands: &'c [Candidate<'a>]) -> Self {
        Self { job, cands, idx: 0, tries: 0, burned: Vec::new(), wait: Duration::ZERO, soonest: None }
    }

    fn note(&mut self, available_in: Option<Duration>) {
        if let Some(d) = available_in {
            self.soonest = Some(self.soonest.map_or(d, |s| s.min(d)));
        }
    }

    fn advance(&mut self) {
        self.idx += 1;
        self.tries = 0;
        self.wait = Duration::ZERO;
    }

    fn next(&mut self, now: u64) -> Step {
        if !self.wait.is_zero() {
            return Step::Wait(std::mem::take(&mut self.wait));
        }
        while let Some(c) = self.cands.get(self.idx) {
            if self.tries >= c.policy.attempts {
                self.advance();
                continue;
            }
            if let Some(left) = c.blocked(now) {
                self.note(Some(left));
                self.advance();
                continue;
            }
            match self.pick_key(c, now) {
                Some(key) => {
                    self.tries += 1;
                    return Step::Start { cand: self.idx, key };
                }
                None => {
                    self.note(c.keys_cooling(now));
                    self.advance();
                }
            }
        }
        Step::Done
    }

    fn usable<'k>(
        &self,
        c: &'k Candidate<'a>,
        now: u64,
    ) -> impl Iterator<Item = (usize, &'k crate::providers::Key)> + use<'k, 'a, '_> {
        let pid = provider_id(c.provider);
        let (limiter, limits, tokens) = (self.job.limiter, &self.job.live.limits, self.job.tokens);
        c.provider.keys.iter().enumerate().filter(move |(i, k)| {
            k.serves(c.model)
                && !k.state.cooldown.is_cooling(now)
                && !self.burned.contains(&(pid, *i))
                && limiter.key_open(limits, &c.provider.name, &k.name, c.model, tokens)
        })
    }

    /// A weighted random usable key: `Some(None)` when the provider needs none, `None` when no
    /// key is usable.
    fn pick_key(&self, c: &Candidate<'a>, now: u64) -> Option<Option<usize>> {
        if c.provider.keys.is_empty() {
            return Some(None);
        }
        let total: u64 = self.usable(c, now).map(|(_, k)| u64::from(k.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = fastrand::u64(..total);
        for (i, k) in self.usable(c, now) {
            let w = u64::from(k.weight);
            if ticket < w {
                return Some(Some(i));
            }
            ticket -= w;
        }
        None
    }

    /// Learns from a failed attempt on `cand` with `key`.
    fn failed(&mut self, cand: usize, key: Option<usize>, f: &Failure, now: u64) {
        if cand != self.idx {
            // An attempt on a candidate already left behind (a hedge race): nothing to plan.
            return;
        }
        let c = &self.cands[cand];
        match f.class {
            Class::Auth | Class::RateLimited => {
                if let Some(k) = key {
                    self.burned.push((provider_id(c.provider), k));
                }
                let other_key = self.pick_key(c, now).is_some_and(|k| k.is_some());
                if other_key {
                    // Rotate keys without spending a try.
                    self.tries = self.tries.saturating_sub(1);
                } else if f.class == Class::RateLimited
                    && let Some(ra) = f.retry_after.filter(|ra| *ra <= c.policy.max_backoff)
                    && self.tries < c.policy.attempts
                {
                    // The only key comes back within the backoff ceiling: wait for it.
                    if let Some(k) = key {
                        self.burned.retain(|b| *b != (provider_id(c.provider), k));
                    }
                    self.wait = ra;
                } else {
                    self.advance();
                }
            }
            // The backoff (or Retry-After) is for trying this target again; moving on to the next
            // target starts at once.
            Class::Overloaded | Class::Server | Class::Timeout | Class::Connect
                if self.tries >= c.policy.attempts =>
            {
                self.advance();
            }
            Class::Overloaded | Class::Server | Class::Timeout | Class::Connect => match f.retry_after {
                Some(ra) if ra > c.policy.max_backoff => self.advance(),
                Some(ra) => self.wait = ra,
                None => self.wait = c.policy.delay(self.tries),
            },
            Class::InvalidRequest | Class::NotFound => self.advance(),
        }
    }

    fn skipped(&mut self, cand: usize, available_in: Option<Duration>) {
        self.note(available_in);
        if cand == self.idx {
            self.advance();
        }
    }
}

// === run ===

enum Event {
    Done(usize, Attempted),
    Hedge,
}

type AttemptFuture<'f> = Pin<Box<dyn Future<Output = Attempted> + Send + 'f>>;

/// Tries `cands` in order until one answers; `budget` caps the extra attempts; `hedge_after`
/// starts the next candidate in parallel when the current one is slow to its first byte.
pub async fn run<'a>(
    job: &'a Job<'a>,
    cands: &'a [Candidate<'a>],
    budget: &RetryBudget,
    hedge_after: Option<Duration>,
) -> Result<Won, Exhausted> {
    budget.on_request(job.clock.now());
    let mut planner = Planner::new(job, cands);
    let mut failures: Vec<AttemptRecord> = Vec::new();
    let mut running: Vec<(usize, Option<usize>, AttemptFuture<'a>)> = Vec::new();
    let mut hedge_timer: Option<Pin<Box<Sleep>>> = None;
    let mut launched = 0u32;
    let mut hedged = false;
    loop {
        if running.is_empty() {
            match planner.next(job.clock.now()) {
                Step::Done => break,
                Step::Wait(d) => {
                    let since = Instant::now();
                    tokio::time::sleep(d).await;
                    job.waited(since);
                    continue;
                }
                Step::Start { cand, key } => {
                    if launched > 0 && !budget.try_spend(job.clock.now()) {
                        tracing::debug!("retry budget exhausted");
                        break;
                    }
                    if let Some(last) = failures.last() {
                        job.metrics
                            .retries_total
                            .with_label_values(&[&last.provider, last.class.as_str()])
                            .inc();
                    }
                    launched += 1;
                    running.push((cand, key, Box::pin(attempt(job, &cands[cand], key))));
                    hedge_timer = hedge_after.map(|d| Box::pin(tokio::time::sleep(d)));
                }
            }
        }
        let event = poll_fn(|cx| {
            for (i, (_, _, fut)) in running.iter_mut().enumerate() {
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(i, out));
                }
            }
            if let Some(t) = hedge_timer.as_mut()
                && t.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Event::Hedge);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Hedge => {
                hedge_timer = None;
                // The hedge goes to the next candidate, never waits, and spends from the budget.
                planner.advance();
                if let Step::Start { cand, key } = planner.next(job.clock.now())
                    && budget.try_spend(job.clock.now())
                {
                    launched += 1;
                    hedged = true;
                    running.push((cand, key, Box::pin(attempt(job, &cands[cand], key))));
                }
            }
            Event::Done(i, out) => {
                let (cand, key, _) = running.swap_remove(i);
                match out {
                    Attempted::Won(mut won) => {
                        won.fallback_reason = failures.first().map(|f| f.class);
                        let winner = &cands[cand].provider.name;
                        if let Some(first) = failures.first() {
                            job.metrics
                                .fallbacks_total
                                .with_label_values(&[
                                    job.route,
                                    &first.provider,
                                    winner,
                                    first.class.as_str(),
                                ])
                                .inc();
                        }
                        if hedged {
                            // The hedge is always the later candidate.
                            let w = if cand == planner.idx { "hedge" } else { "primary" };
                            job.metrics.hedges_total.with_label_values(&[job.route, w]).inc();
                        }
                        // Dropping `running` cancels a hedge still in flight.
                        return Ok(*won);
                    }
                    Attempted::Skipped(available_in) => planner.skipped(cand, available_in),
                    Attempted::Failed(f) => {
                        let c = &cands[cand];
                        failures.push(AttemptRecord {
                            provider: c.provider.name.clone(),
                            model: c.model.to_owned(),
                            key: key.and_then(|k| c.provider.keys.get(k)).map(|k| k.name.clone()),
                            class: f.class,
                            status: f.status.map(|s| s.as_u16()),
                        });
                        if let Some(ra) = f.retry_after {
                            planner.note(Some(ra));
                        }
                        planner.failed(cand, key, &f, job.clock.now());
                    }
                }
                if running.is_empty() {
                    hedge_timer = None;
                }
            }
        }
    }
    Err(Exhausted {
        attempts: failures,
        started: job.started.load(Ordering::Acquire),
        retry_after: planner.soonest,
    })
}

// === attempt ===

/// Returns a half-open trial to its breaker unless an outcome was recorded.
struct Probe<'a> {
    breaker: &'a Breaker,
    trial: bool,
}

impl Probe<'_> {
    fn record(mut self, now: u64, ok: bool) -> Option<crate::resilience::BreakerState> {
        let change = self.breaker.record(now, ok, self.trial);
        self.trial = false;
        change
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.release_probe();
        }
    }
}

/// In-flight counts and concurrency permits of one attempt; moves into the relayed body so they
/// last as long as the stream.
struct AttemptGuard {
    target: Arc<TargetState>,
    key: Option<Arc<KeyState>>,
    _permits: [Option<OwnedSemaphorePermit>; 2],
}

impl AttemptGuard {
    fn new(
        target: Arc<TargetState>,
        key: Option<Arc<KeyState>>,
        permits: [Option<OwnedSemaphorePermit>; 2],
    ) -> Self {
        target.inflight.fetch_add(1, Ordering::AcqRel);
        if let Some(k) = &key {
            k.inflight.fetch_add(1, Ordering::AcqRel);
        }
        Self { target, key, _permits: permits }
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Ordering::AcqRel);
        if let Some(k) = &self.key {
            k.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

async fn attempt<'a>(job: &'a Job<'a>, c: &'a Candidate<'a>, key_index: Option<usize>) -> Attempted {
    let p = c.provider;
    let key = key_index.and_then(|i| p.keys.get(i));
    let now = job.clock.now();
    let provider_gate = match p.state.breaker.admit(now) {
        Admission::Denied => return Attempted::Skipped(p.state.breaker.remaining(now)),
        a => Probe { breaker: &p.state.breaker, trial: a == Admission::Probe },
    };
    let target_gate = match c.target.breaker.admit(now) {
        Admission::Denied => return Attempted::Skipped(c.target.breaker.remaining(now)),
        a => Probe { breaker: &c.target.breaker, trial: a == Admission::Probe },
    };
    let mut permits = [None, None];
    let limits = [p.limit.as_ref(), key.and_then(|k| k.limit.as_ref())];
    for (slot, limit) in limits.into_iter().enumerate() {
        if let Some(limit) = limit {
            let since = Instant::now();
            let permit = limit.acquire(p.queue_timeout).await;
            job.metrics.queue_wait.observe(since.elapsed().as_secs_f64());
            job.waited(since);
            match permit {
                Some(permit) => permits[slot] = Some(permit),
                None => return Attempted::Skipped(Some(Duration::from_secs(1))),
            }
        }
    }
    job.started.fetch_add(1, Ordering::AcqRel);
    let guard = AttemptGuard::new(Arc::clone(&c.target), key.map(|k| k.state.clone()), permits);
    let key_ticket =
        key.map(|k| job.limiter.charge_key(&job.live.limits, &p.name, &k.name, c.model, job.tokens));
    let start = Instant::now();
    let total = start + p.request_timeout;
    let first_byte = (start + p.first_byte_timeout).min(total);
    // A provider of another format gets the request translated (to Anthropic or Gemini).
    let translated = match p.dialect(job.operation) {
        Some(d) => match d.request(job.operation, job.body, c.deployment, p.default_max_tokens, job.stream) {
            Ok(t) => Some(t),
            Err(e) => return Attempted::Won(Box::new(untranslatable(p, c, &e.0, job.operation))),
        },
        None => None,
    };
    let call = Call {
        operation: translated.as_ref().map_or(job.operation, |t| t.dialect.operation(job.operation)),
        body: match &translated {
            Some(t) => t.body.clone(),
            None => job.scanned.splice(job.body, c.model, job.force_stream),
        },
        stream: job.stream,
        request_id: job.request_id,
        correlation_id: job.correlation_id,
        deadline: first_byte,
        key,
        deployment: c.deployment,
    };
    let failure = |class: Class, status: Option<StatusCode>, retry_after: Option<Duration>| Failure {
        class,
        status,
        retry_after,
    };
    let sent = Instant::now();
    let response = p.send(call).await;
    job.waited(sent);
    let outcome = match response {
        Err(SendError::Connect) => Err(failure(Class::Connect, None, None)),
        Err(SendError::Timeout) => Err(failure(Class::Timeout, None, None)),
        Err(SendError::Failed) => Err(failure(Class::Server, None, None)),
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let status = parts.status;
            if status.is_success() {
                let sse = is_sse(&parts.headers);
                let since = Instant::now();
                let committed = if encoded(&parts.headers) && (job.stream || sse || translated.is_some()) {
                    // tier1 must read this body (see `encoded`).
                    Err(Class::Server)
                } else if job.stream && sse {
                    precommit(body, first_byte, p.idle_timeout, total).await
                } else if translated.is_none() {
                    // The first bytes before the answer goes out: a body that fails before any
                    // is a failed attempt (retried, or a 502), not a 200 cut to nothing.
                    first_frame(body, (Instant::now() + p.idle_timeout).min(total)).await
                } else {
                    Ok((Bytes::new(), body))
                };
                job.waited(since);
                match committed {
                    Ok((held, rest)) => Ok((status, parts.headers, held, rest)),
                    Err(class) => Err(failure(class, Some(status), None)),
                }
            } else {
                let class = match Class::of_status(status) {
                    // An error body passed on is redacted first, which needs it readable.
                    Class::InvalidRequest | Class::NotFound if encoded(&parts.headers) => Class::Server,
                    class => class,
                };
                let retry_after =
                    parts.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| {
                        parse_retry_after(v, std::time::SystemTime::now(), job.live.resilience.cooldown.max)
                    });
                if matches!(class, Class::InvalidRequest | Class::NotFound) {
                    // The caller's fault: the provider is healthy; its answer goes to the client.
                    let now = job.clock.now();
                    gate(job, p, provider_gate, TARGET_PROVIDER, now, true);
                    gate(job, p, target_gate, c.model_label, now, true);
                    job.metrics
                        .upstream_requests_total
                        .with_label_values(&[&p.name, c.model_label, class.as_str()])
                        .inc();
                    let since = Instant::now();
                    let mut bytes = read_bounded(body, total).await;
                    job.waited(since);
                    if let Some(t) = &translated {
                        bytes = t.error(&bytes, status.as_u16());
                    }
                    let redacted = Bytes::from(job.live.redactor.redact(&bytes).into_owned());
                    return Attempted::Won(Box::new(Won {
                        status,
                        headers: client_headers(&parts.headers, false, &job.live.redactor),
                        body: WonBody::Full(redacted),
                        provider: p.name_header.clone(),
                        model: HeaderValue::from_str(c.model).ok(),
                        fallback_reason: None,
                        ttft: None,
                        tokens: None,
                    }));
                }
                Err(failure(class, Some(status), retry_after))
            }
        }
    };
    let now = job.clock.now();
    match outcome {
        Ok((status, headers, held, rest)) => {
            let first = start.elapsed();
            c.target.ewma.observe(first);
            gate(job, p, provider_gate, TARGET_PROVIDER, now, true);
            gate(job, p, target_gate, c.model_label, now, true);
            if let Some(k) = key {
                k.state.cooldown.reset();
            }
            let metrics = c.target.metrics(job.metrics, &p.name, c.model_label);
            metrics.success.inc();
            let streaming = job.stream || is_sse(&headers);
            if streaming {
                metrics.ttft.observe(first.as_secs_f64());
            }
            if let Some(t) = &translated
                && !streaming
            {
                // A full answer is translated whole.
                let since = Instant::now();
                let raw = read_bounded(rest, total).await;
                job.waited(since);
                let Ok((body, usage)) = t.response(&raw, c.model) else {
                    return Attempted::Failed(failure(Class::Server, Some(status), None));
                };
                // A provider may echo the key inside its answer, which the translation keeps.
                let body = match job.live.redactor.redact(&body) {
                    std::borrow::Cow::Borrowed(_) => body,
                    std::borrow::Cow::Owned(v) => Bytes::from(v),
                };
                metrics.duration.observe(start.elapsed().as_secs_f64());
                if let Some((input, output)) = usage {
                    metrics.tokens_in.inc_by(input);
                    metrics.tokens_out.inc_by(output);
                    let cost = (input as f64 * c.costs.0 + output as f64 * c.costs.1) / 1_000_000.0;
                    if cost > 0.0 {
                        metrics.cost.inc_by(cost);
                    }
                }
                // The key's token estimate is corrected as a relayed body's would be.
                if let Some(mut t) = key_ticket {
                    t.settle(usage.map(|(i, o)| i + o));
                }
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                dropped_header(&mut headers, &t.dropped);
                return Attempted::Won(Box::new(Won {
                    status,
                    headers,
                    body: WonBody::Full(body),
                    provider: p.name_header.clone(),
                    model: HeaderValue::from_str(c.model).ok(),
                    fallback_reason: None,
                    ttft: None,
                    tokens: usage,
                }));
            }
            let tap = Tap::new(metrics.clone(), start, streaming, c.costs, &held);
            let mut relay = Relay::new(rest, total, streaming, job.live.redactor.stream())
                .prefix(held)
                .guard(Box::new(guard))
                .tap(tap);
            if job.operation == Operation::Messages {
                relay = relay.anthropic();
            }
            let mut headers =
                client_headers(&headers, !streaming && translated.is_none(), &job.live.redactor);
            if let Some(t) = &translated {
                let mut translator = t.stream(c.model);
                translator.limit_events(p.max_event_bytes);
                relay = relay.translate(translator);
                dropped_header(&mut headers, &t.dropped);
            }
            if let Some(t) = key_ticket {
                relay = relay.ticket(t);
            }
            if streaming {
                relay = relay.idle_timeout(p.idle_timeout);
            }
            Attempted::Won(Box::new(Won {
                status,
                headers,
                body: WonBody::Relay(Box::new(relay)),
                provider: p.name_header.clone(),
                model: HeaderValue::from_str(c.model).ok(),
                fallback_reason: None,
                ttft: streaming.then_some(first),
                tokens: None,
            }))
        }
        Err(f) => {
            let cfg = &job.live.resilience.cooldown;
            job.metrics
                .upstream_requests_total
                .with_label_values(&[&p.name, c.model_label, f.class.as_str()])
                .inc();
            job.metrics
                .upstream_duration
                .with_label_values(&[&p.name, c.model_label])
                .observe(start.elapsed().as_secs_f64());
            let rested = |k: &crate::providers::Key| {
                job.metrics
                    .key_cooldowns_total
                    .with_label_values(&[&p.name, &k.name, f.class.as_str()])
                    .inc();
            };
            match f.class {
                // Key-scoped: the key rests; the breaker is not concerned (trials are returned).
                Class::RateLimited => match key {
                    Some(k) => {
                        let d = k.state.cooldown.strike(now, cfg, f.retry_after);
                        rested(k);
                        share_key(job, p, k, d);
                    }
                    None => {
                        let d = c.target.cooldown.strike(now, cfg, f.retry_after);
                        share_target(job, c, d);
                    }
                },
                Class::Auth => {
                    if let Some(k) = key {
                        k.state.cooldown.cool_for(now, cfg.on_auth_error);
                        rested(k);
                        share_key(job, p, k, cfg.on_auth_error);
                        tracing::warn!(provider = %p.name, key = %k.name, "provider refused the key; cooling it");
                    }
                }
                Class::Overloaded | Class::Server | Class::Timeout | Class::Connect => {
                    if f.class == Class::Overloaded
                        && let Some(ra) = f.retry_after
                    {
                        c.target.cooldown.cool_for(now, ra.min(cfg.max));
                        share_target(job, c, ra.min(cfg.max));
                    }
                    gate(job, p, provider_gate, TARGET_PROVIDER, now, false);
                    gate(job, p, target_gate, c.model_label, now, false);
                }
                Class::InvalidRequest | Class::NotFound => {}
            }
            drop(guard);
            Attempted::Failed(f)
        }
    }
}

/// Records an outcome on a breaker, counts the transition it caused, and shares an opening.
fn gate(job: &Job<'_>, p: &Provider, probe: Probe<'_>, target: &str, now: u64, ok: bool) {
    let breaker = probe.breaker;
    if let Some(to) = probe.record(now, ok) {
        job.metrics.breaker_transitions_total.with_label_values(&[&p.name, to.as_str()]).inc();
        tracing::warn!(provider = %p.name, target, to = to.as_str(), "circuit breaker changed state");
        // A made-up direct model's state is its own and this replica's (see `DirectTargets`).
        if to == crate::resilience::BreakerState::Open
            && target != MODEL_OTHER
            && let Some(left) = breaker.remaining(now)
        {
            job.shared.publish(shared::Event::BreakerOpen {
                provider: p.name.to_string(),
                target: target.to_owned(),
                until_ms: unix_ms() + u64::try_from(left.as_millis()).unwrap_or(0),
            });
        }
    }
}

fn share_key(job: &Job<'_>, p: &Provider, k: &crate::providers::Key, rest: Duration) {
    job.shared.publish(shared::Event::KeyCooldown {
        provider: p.name.to_string(),
        key: k.name.to_string(),
        until_ms: unix_ms() + u64::try_from(rest.as_millis()).unwrap_or(0),
    });
}

fn share_target(job: &Job<'_>, c: &Candidate<'_>, rest: Duration) {
    // A made-up direct model's rest is its own and this replica's (see `DirectTargets`): sent
    // as "(direct)", it would rest every made-up model of the provider on the other replicas.
    if c.model_label == MODEL_OTHER {
        return;
    }
    job.shared.publish(shared::Event::TargetCooldown {
        provider: c.provider.name.to_string(),
        model: c.model.to_owned(),
        until_ms: unix_ms() + u64::try_from(rest.as_millis()).unwrap_or(0),
    });
}

/// `x-tier1-dropped-params`: what the translation could not carry over.
fn dropped_header(headers: &mut HeaderMap, dropped: &[&str]) {
    if !dropped.is_empty()
        && let Ok(v) = HeaderValue::from_str(&dropped.join(", "))
    {
        headers.insert("x-tier1-dropped-params", v);
    }
}

/// The 400 for a request that cannot be translated for this provider (the caller's fault).
fn untranslatable(p: &Provider, c: &Candidate<'_>, why: &str, op: Operation) -> Won {
    let message = format!("cannot translate the request for {}: {why}", p.name);
    let body = if op == Operation::Messages {
        serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    } else {
        serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null,
            "code": "untranslatable_request"}})
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Won {
        status: StatusCode::BAD_REQUEST,
        headers,
        body: WonBody::Full(Bytes::from(body.to_string())),
        provider: p.name_header.clone(),
        model: HeaderValue::from_str(c.model).ok(),
        fallback_reason: None,
        ttft: None,
        tokens: None,
    }
}

/// Whether the answer carries a content coding. tier1 asks for `accept-encoding: identity`
/// (src/providers), as it reads bodies: usage and commit points, translation, redaction of the
/// error bodies it passes on. A provider that encodes anyway is passed through only where tier1
/// relays the body untouched (a native, non-streamed success: the coding goes on with the body,
/// usage is then not read and the token estimate stands); anywhere tier1 must read the body (a
/// stream, a translated answer, a caller-fault error body) the answer is a broken one
/// (`Class::Server`), tried elsewhere like any, never relayed as bytes the client cannot decode.
fn encoded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',').any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

fn is_sse(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// Reads a stream up to its commit point (see [`CommitScanner`]): the held bytes and the rest.
async fn precommit(
    mut body: UpstreamBody,
    first_byte: Instant,
    idle: Duration,
    total: Instant,
) -> Result<(Bytes, UpstreamBody), Class> {
    let mut scanner = CommitScanner::default();
    let mut held = BytesMut::new();
    let mut deadline = first_byte;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Class::Timeout),
            Ok(None | Some(Err(_))) => return Err(Class::Server),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        held.extend_from_slice(&data);
        match scanner.feed(&data) {
            Verdict::Commit => return Ok((held.freeze(), body)),
            Verdict::Error(class) => return Err(class),
            // A provider that talks at length without committing is relayed as it is.
            Verdict::Pending if held.len() >= MAX_HELD => return Ok((held.freeze(), body)),
            Verdict::Pending if scanner.events() > 0 => deadline = (Instant::now() + idle).min(total),
            Verdict::Pending => {}
        }
    }
}

/// Reads the first data frame of an answer before `deadline`: the frame (empty for an empty
/// body) and the rest.
async fn first_frame(mut body: UpstreamBody, deadline: Instant) -> Result<(Bytes, UpstreamBody), Class> {
    if http_body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), body));
    }
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Class::Timeout),
            Ok(Some(Err(_))) => return Err(Class::Server),
            Ok(None) => return Ok((Bytes::new(), body)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok((data, body));
                }
            }
        }
    }
}

/// Reads at most [`MAX_HELD`] bytes of a body before `deadline`.
async fn read_bounded(mut body: UpstreamBody, deadline: Instant) -> Bytes {
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let room = MAX_HELD.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if buf.len() >= MAX_HELD {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
    Bytes::from(buf)
}

/// The upstream headers a client may see: content type (and length and coding, for bodies passed
/// through unchanged), caching and rate-limit hints. Nothing else crosses, so no upstream cookie,
/// server detail or organisation header leaks to the caller.
fn client_headers(from: &HeaderMap, keep_length: bool, redactor: &Redactor) -> HeaderMap {
    let mut to = HeaderMap::new();
    for (name, value) in from {
        let keep = name == header::CONTENT_TYPE
            || name == header::CACHE_CONTROL
            || (keep_length && (name == header::CONTENT_LENGTH || name == header::CONTENT_ENCODING))
            || name.as_str().starts_with("x-ratelimit-");
        if keep {
            // A provider may echo the key in its headers as in its bodies.
            let value = match redactor.redact(value.as_bytes()) {
                std::borrow::Cow::Borrowed(_) => value.clone(),
                std::borrow::Cow::Owned(v) => {
                    HeaderValue::from_bytes(&v).unwrap_or(HeaderValue::from_static("[redacted]"))
                }
            };
            to.append(name.clone(), value);
        }
    }
    to
}
