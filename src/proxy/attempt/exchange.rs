//! One attempt, in order: the breakers' gates, the concurrency permits, the encoding (the
//! request translated for the provider's format, or the model spliced into the client's bytes),
//! the send, and the answer's classification; then what the outcome teaches ([`super::outcome`])
//! and the client's answer ([`super::answer`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use tokio::time::Instant;

use super::answer::{self, Carried, Committed, Deadlines};
use super::outcome::{self, Gates};
use super::read::{encoded, first_frame, is_sse, precommit, read_bounded};
use super::refusal;
use super::{Attempted, Candidate, Failure, Job};
use crate::error::Class;
use crate::metrics::labels::WaitKind;
use crate::providers::{Call, Key, SendError, UpstreamBody};
use crate::resilience::{KeyState, Permit, TargetState, headroom, parse_retry_after};

/// In-flight counts and concurrency permits of one attempt; moves into the relayed body so they
/// last as long as the stream.
struct AttemptGuard {
    target: Arc<TargetState>,
    key: Option<Arc<KeyState>>,
    permits: [Option<Permit>; 2],
}

impl AttemptGuard {
    fn new(target: Arc<TargetState>, key: Option<Arc<KeyState>>, permits: [Option<Permit>; 2]) -> Self {
        target.inflight.fetch_add(1, Ordering::AcqRel);
        if let Some(k) = &key {
            k.inflight.fetch_add(1, Ordering::AcqRel);
        }
        Self { target, key, permits }
    }
}

impl AttemptGuard {
    /// The concurrency limits learn what the attempt met: its time to the first byte, or an
    /// overload (the provider's 429, 503 or 529).
    fn learn(&self, answered: Option<Duration>) {
        for p in self.permits.iter().flatten() {
            match answered {
                Some(latency) => p.answered(latency),
                None => p.overloaded(),
            }
        }
    }
}

impl AttemptGuard {
    /// An answer that says the provider is over its capacity is an overload to the limits.
    fn learn_failure(&self, f: &Failure) {
        if f.status.is_some() && matches!(f.class, Class::Overloaded | Class::RateLimited) {
            self.learn(None);
        }
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

/// What the provider's answer was, once read as far as tier1 must before deciding.
enum Exchanged {
    /// A success, read to its commit point.
    Success(Committed),
    /// The caller's fault (400, 404, 409, 422...), or a context-window refusal: its first bytes.
    CallerFault { status: StatusCode, headers: http::HeaderMap, body: Bytes, class: Class },
    /// A failure to learn from and maybe retry.
    Failed(Failure),
}

/// One attempt on `c` with the key at `key_index`. `hedges`: a hedge may still follow it, and
/// its first-token deadline starts that hedge (see [`super::run`]) instead of failing it.
pub(super) async fn attempt<'a>(
    job: &'a Job<'a>,
    c: &'a Candidate<'a>,
    key_index: Option<usize>,
    hedges: bool,
    hedge: Option<super::Trigger>,
) -> Attempted {
    let p = c.provider;
    let key = key_index.and_then(|i| p.keys.get(i));
    let gates = match Gates::admit(c, job.clock.now()) {
        Ok(gates) => gates,
        Err(available_in) => return Attempted::Skipped(available_in, false),
    };
    let permits = match permits(job, c, key).await {
        Ok(permits) => permits,
        // Full: back when a slot is likely free, as measured (not a constant).
        Err(retry_after) => return Attempted::Skipped(Some(retry_after), true),
    };
    let number = job.started.fetch_add(1, Ordering::AcqRel) + 1;
    let guard = AttemptGuard::new(Arc::clone(&c.target), key.map(|k| k.state.clone()), permits);
    let spend = crate::ratelimit::Spend::estimate(job.body.len(), job.scanned.max_tokens, [c.costs]);
    let key_ticket = key.map(|k| job.limiter.charge_key(&job.live.limits, &p.name, &k.name, c.model, spend));
    let at = deadlines(job, c, hedges);
    let start = at.start;
    // A provider of another format gets the request translated (to Anthropic or Gemini).
    let translated = match p.dialect(job.operation, c.deployment) {
        Some(d) => match d.request(job.operation, job.body, c.deployment, p.default_max_tokens, job.stream) {
            Ok(t) => Some(t),
            Err(e) => return answer::untranslatable(c, e),
        },
        None => None,
    };
    let span = job.trace.as_ref().map(|t| traced(t, c, number, hedge));
    let call = Call {
        operation: translated.as_ref().map_or(job.operation, |t| t.dialect.operation(job.operation)),
        body: body(job, c, translated.as_ref()),
        stream: job.stream,
        request_id: job.request_id,
        correlation_id: job.correlation_id,
        deadline: at.first_byte,
        key,
        deployment: c.deployment,
        trace: span.as_ref().map(crate::otel::AttemptSpan::propagated),
    };
    let response = job.during(WaitKind::Upstream, p.send(call)).await;
    if let Ok(resp) = &response {
        outcome::headroom(job, c, key, resp.headers(), job.clock.now());
    }
    let exchanged = classify(job, c, response, translated.is_some(), at).await;
    end_span(span, &exchanged);
    let now = job.clock.now();
    match exchanged {
        Exchanged::Success(ok) => {
            let first = start.elapsed();
            let streaming = job.stream || is_sse(&ok.headers);
            guard.learn(Some(first));
            let metrics = outcome::succeeded(job, c, key, gates, first, streaming, now);
            let carried = Carried { metrics, translated, guard: Box::new(guard), key_ticket };
            answer::success(job, c, ok, carried, first, at).await
        }
        Exchanged::CallerFault { status, headers, body, class } => {
            outcome::caller_fault(job, c, gates, class, now);
            let refused = answer::caller_fault(job, c, status, &headers, &body, translated.as_ref());
            if matches!(class, Class::ContextLength | Class::ContentFilter) {
                let f = Failure { class, status: Some(status), retry_after: None, key_wide: false };
                return Attempted::Refused(f, refused);
            }
            Attempted::Answered(refused)
        }
        Exchanged::Failed(f) => {
            guard.learn_failure(&f);
            outcome::failed(job, c, key, gates, &f, start, now);
            drop(guard);
            Attempted::Failed(f)
        }
    }
}

/// The bytes sent to `c`: the request translated for its format, or the client's bytes with
/// the upstream model spliced in.
fn body(job: &Job<'_>, c: &Candidate<'_>, translated: Option<&crate::translate::Translated>) -> Bytes {
    match translated {
        Some(t) => t.body.clone(),
        None => {
            let model = c.provider.kind.spec().body_model(job.operation, c.model, c.deployment);
            job.scanned.splice(job.body, model, job.force_stream)
        }
    }
}

/// Ends an attempt's span (when traced) with what the provider answered.
fn end_span(span: Option<crate::otel::AttemptSpan>, exchanged: &Exchanged) {
    if let Some(span) = span {
        let (status, class) = match exchanged {
            Exchanged::Success(ok) => (Some(ok.status), "ok"),
            Exchanged::CallerFault { status, class, .. } => (Some(*status), class.as_str()),
            Exchanged::Failed(f) => (f.status, f.class.as_str()),
        };
        span.end(status.map(|s| s.as_u16()), class);
    }
}

/// The span of attempt `number` on `c` (`hedge`: what started it, when it is a hedge).
fn traced(
    parent: &crate::otel::Parent,
    c: &Candidate<'_>,
    number: u32,
    hedge: Option<super::Trigger>,
) -> crate::otel::AttemptSpan {
    parent.attempt(&crate::otel::Target {
        kind: c.provider.kind.spec().name(),
        provider: &c.provider.name,
        model: c.model,
        attempt: number,
        hedge: hedge.map(super::Trigger::as_str),
    })
}

/// The attempt's deadlines from now: its provider's, and its stream's first token unless that
/// starts a hedge instead (`hedges`).
fn deadlines(job: &Job<'_>, c: &Candidate<'_>, hedges: bool) -> Deadlines {
    let start = Instant::now();
    let total = start + c.provider.request_timeout;
    let first_token = if hedges { None } else { c.first_token_in(job).map(|d| (start + d).min(total)) };
    Deadlines { start, total, first_byte: (start + c.provider.first_byte_timeout).min(total), first_token }
}

/// The provider's and the key's concurrency permits, each waited for up to the provider's
/// `queue_timeout`; when one did not come in time, when its limit likely has a free slot.
async fn permits(
    job: &Job<'_>,
    c: &Candidate<'_>,
    key: Option<&Key>,
) -> Result<[Option<Permit>; 2], Duration> {
    let p = c.provider;
    let mut permits = [None, None];
    let limits = [p.limit.as_ref(), key.and_then(|k| k.limit.as_ref())];
    for (slot, limit) in limits.into_iter().enumerate() {
        if let Some(limit) = limit {
            let since = Instant::now();
            let permit = job.during(WaitKind::Queue, limit.acquire(p.queue_timeout)).await;
            job.metrics.queue_wait.observe(since.elapsed().as_secs_f64());
            let ceiling = job.live.resilience.cooldown.max;
            permits[slot] = Some(permit.ok_or_else(|| limit.retry_after(ceiling))?);
        }
    }
    Ok(permits)
}

/// Reads the answer as far as the decision needs: a stream to its commit point, a body to its
/// first bytes, an error's status and `Retry-After`.
async fn classify(
    job: &Job<'_>,
    c: &Candidate<'_>,
    response: Result<http::Response<UpstreamBody>, SendError>,
    translated: bool,
    at: Deadlines,
) -> Exchanged {
    let failure = |class, status, retry_after| {
        Exchanged::Failed(Failure { class, status, retry_after, key_wide: false })
    };
    let resp = match response {
        Err(SendError::Connect) => return failure(Class::Connect, None, None),
        Err(SendError::Timeout) => return failure(Class::Timeout, None, None),
        Err(SendError::Failed) => return failure(Class::Server, None, None),
        Ok(resp) => resp,
    };
    let p = c.provider;
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    if status.is_success() {
        let sse = is_sse(&parts.headers);
        let committed = if encoded(&parts.headers) && (job.stream || sse || translated) {
            // tier1 must read this body (see `encoded`).
            Err(Class::Server)
        } else if job.stream && sse {
            let read = precommit(body, at.first_byte, p.idle_timeout, (at.total, at.first_token));
            job.during(WaitKind::Upstream, read).await
        } else if !translated {
            // The first bytes before the answer goes out: a body that fails before any is a
            // failed attempt (retried, or a 502), not a 200 cut to nothing.
            let read = first_frame(body, (Instant::now() + p.idle_timeout).min(at.total));
            job.during(WaitKind::Upstream, read).await
        } else {
            Ok((Bytes::new(), body))
        };
        return match committed {
            Ok((held, rest)) => Exchanged::Success(Committed { status, headers: parts.headers, held, rest }),
            Err(class) => failure(class, Some(status), None),
        };
    }
    let class = match Class::of_status(status) {
        // An error body passed on is redacted first, which needs it readable.
        Class::InvalidRequest | Class::NotFound if encoded(&parts.headers) => Class::Server,
        class => class,
    };
    let max = job.live.resilience.cooldown.max;
    // `retry-after-ms` (OpenAI, Azure) is the finer of the two.
    let retry_after = headroom::retry_after_ms(&parts.headers, max).or_else(|| {
        let v = parts.headers.get(header::RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(v, std::time::SystemTime::now(), max)
    });
    if !matches!(class, Class::InvalidRequest | Class::NotFound | Class::RateLimited) {
        return failure(class, Some(status), retry_after);
    }
    // A refusal is read (its first bytes, within the idle timeout): to pass it on, and for what
    // it says beyond its status.
    let first = if encoded(&parts.headers) {
        Bytes::new()
    } else {
        let read = read_bounded(body, (Instant::now() + p.idle_timeout).min(at.total));
        job.during(WaitKind::Upstream, read).await
    };
    if class == Class::RateLimited {
        let key_wide = refusal::key_exhausted(&first);
        return Exchanged::Failed(Failure { class, status: Some(status), retry_after, key_wide });
    }
    let class = match class {
        Class::InvalidRequest if refusal::outgrown(&first) => Class::ContextLength,
        Class::InvalidRequest if refusal::filtered(&first) => Class::ContentFilter,
        class => class,
    };
    Exchanged::CallerFault { status, headers: parts.headers, body: first, class }
}
