//! The client's answer from the attempt that ends the loop: a success relayed chunk by chunk or
//! translated whole, a caller-fault error body, or the note that the request cannot be
//! translated. Only upstream headers a client may see cross, redacted like the bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use super::read::{is_sse, read_bounded};
use super::resume::Resumed;
use super::{Answer, Answered, Attempted, Candidate, Failure, Job, Success, WonBody};
use crate::config::Redactor;
use crate::error::Class;
use crate::metrics::TargetMetrics;
use crate::metrics::labels::WaitKind;
use crate::providers::{Operation, UpstreamBody};
use crate::proxy::body::{Origin, Tap};
use crate::proxy::ctx::Meter;
use crate::proxy::relay::Relay;
use crate::proxy::respond::Dialect;
use crate::ratelimit::Ticket;
use crate::translate::Translated;

/// The deadlines of one attempt, from its start.
#[derive(Clone, Copy)]
pub(super) struct Deadlines {
    /// When the attempt started (after its gates and permits).
    pub(super) start: Instant,
    /// The provider's `request_timeout`: the whole answer.
    pub(super) total: Instant,
    /// The provider's `first_byte_timeout`, within the total.
    pub(super) first_byte: Instant,
    /// The provider's `first_token_timeout` for this prompt: a stream's commit point by then.
    pub(super) first_token: Option<Instant>,
}

/// An upstream success read to its commit point: what follows it on the way to the client.
pub(super) struct Committed {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// Read before the commit point (sent first).
    pub(super) held: Bytes,
    pub(super) rest: UpstreamBody,
}

/// What an answer carries along to its end: the target's metrics, the translation, the
/// attempt's in-flight counts and permits, and the key's token ticket.
pub(super) struct Carried {
    pub(super) metrics: Arc<TargetMetrics>,
    pub(super) translated: Option<Translated>,
    pub(super) guard: Box<dyn Send>,
    pub(super) key_ticket: Option<Ticket>,
}

impl Answered {
    #[inline]
    fn from(c: &Candidate<'_>, answer: Answer) -> Attempted {
        Attempted::Answered(Self::boxed(c, answer))
    }

    #[inline]
    fn boxed(c: &Candidate<'_>, answer: Answer) -> Box<Self> {
        Box::new(Self {
            provider: c.provider.name_header.clone(),
            model: HeaderValue::from_str(c.model).ok(),
            fallback_reason: None,
            answer,
        })
    }
}

/// A success: translated whole (a translated answer that is not a stream), else relayed.
pub(super) async fn success(
    job: &Job<'_>,
    c: &Candidate<'_>,
    ok: Committed,
    carried: Carried,
    first: Duration,
    at: Deadlines,
) -> Attempted {
    let streaming = job.stream || is_sse(&ok.headers);
    if let Some(t) = &carried.translated
        && !streaming
    {
        return whole(job, c, ok, t, carried.metrics, carried.key_ticket, at).await;
    }
    let p = c.provider;
    let Committed { status, headers, held, rest } = ok;
    let meter = Meter { metrics: carried.metrics.clone(), costs: c.costs };
    let origin = Origin { provider: p.name.clone(), request_id: job.request_id.clone() };
    let tap = Tap::new(carried.metrics, at.start, streaming, origin);
    let mut relay = Relay::new(rest, at.total, streaming, job.live.redactor.stream())
        .prefix(held)
        .guard(carried.guard)
        .tap(tap);
    if carried.translated.is_none() && is_sse(&headers) {
        relay = relay.filter_events(p.max_event_bytes);
        if job.operation == Operation::Chat {
            relay = relay.openai_end();
        }
    }
    relay = relay.dialect(Dialect::of(job.operation));
    let keep_length = !streaming && carried.translated.is_none();
    let mut headers = client_headers(&headers, keep_length, &job.live.redactor);
    if let Some(t) = &carried.translated {
        let mut translator = t.stream(c.model);
        translator.limit_events(p.max_event_bytes);
        relay = relay.translate(translator);
        dropped_header(&mut headers, &t.dropped);
    }
    if streaming {
        relay = relay.idle_timeout(p.idle_timeout);
    }
    let body = match &job.resume {
        Some(r) if streaming => {
            WonBody::Resumed(Box::new(Resumed::new(relay, r.clone(), (c.provider.index, c.model))))
        }
        _ => WonBody::Relay(Box::new(relay)),
    };
    let ttft = streaming.then_some(first);
    let ticket = carried.key_ticket;
    Answered::from(c, Answer::Success(Success { status, headers, body, ttft, tokens: None, meter, ticket }))
}

/// A full answer read and translated whole; a translation that fails is a broken answer.
async fn whole(
    job: &Job<'_>,
    c: &Candidate<'_>,
    ok: Committed,
    t: &Translated,
    metrics: Arc<TargetMetrics>,
    key_ticket: Option<Ticket>,
    at: Deadlines,
) -> Attempted {
    let raw = job.during(WaitKind::Upstream, read_bounded(ok.rest, at.total)).await;
    let Ok((body, usage)) = t.response(&raw, c.model) else {
        let f = Failure { class: Class::Server, status: Some(ok.status), retry_after: None, key_wide: false };
        return Attempted::Failed(f);
    };
    // A provider may echo the key inside its answer, which the translation keeps.
    let body = match job.live.redactor.redact(&body) {
        std::borrow::Cow::Borrowed(_) => body,
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    };
    metrics.duration.observe(at.start.elapsed().as_secs_f64());
    // The translation writes the cached input tokens in the client's format, where the usage
    // reader finds them.
    let cached = crate::proxy::body::cached_tokens(&body);
    if cached > 0 {
        metrics.tokens_cached.inc_by(cached);
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    dropped_header(&mut headers, &t.dropped);
    let success = Success {
        status: ok.status,
        headers,
        body: WonBody::Full(body),
        ttft: None,
        tokens: usage,
        meter: Meter { metrics, costs: c.costs },
        ticket: key_ticket,
    };
    Answered::from(c, Answer::Success(success))
}

/// The provider's refusal of the caller's request (its first bytes, as read), in the client's
/// format and redacted.
pub(super) fn caller_fault(
    job: &Job<'_>,
    c: &Candidate<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    bytes: &Bytes,
    translated: Option<&Translated>,
) -> Box<Answered> {
    let translated = translated.map(|t| t.error(bytes, status.as_u16()));
    let bytes = translated.as_deref().unwrap_or(bytes);
    let body = Bytes::from(job.live.redactor.redact(bytes).into_owned());
    let headers = client_headers(headers, false, &job.live.redactor);
    Answered::boxed(c, Answer::CallerFault { status, headers, body })
}

/// The request cannot be written in the provider's format.
pub(super) fn untranslatable(c: &Candidate<'_>, e: crate::translate::TranslateError) -> Attempted {
    let (why, param) = (e.message, e.param);
    Answered::from(c, Answer::Untranslatable { provider: c.provider.name.clone(), why, param })
}

/// `x-tier1-dropped-params`: what the translation could not carry over.
fn dropped_header(headers: &mut HeaderMap, dropped: &[&str]) {
    if !dropped.is_empty()
        && let Ok(v) = HeaderValue::from_str(&dropped.join(", "))
    {
        headers.insert("x-tier1-dropped-params", v);
    }
}

/// The upstream headers a client may see: content type (and length and coding, for bodies passed
/// through unchanged), caching and rate-limit hints. Nothing else crosses, so no upstream cookie,
/// server detail or organisation header leaks to the caller.
fn client_headers(from: &HeaderMap, keep_length: bool, redactor: &Redactor) -> HeaderMap {
    // Room for what is kept and tier1's own headers (request id, attempts, provider, model,
    // Server-Timing, fallbacks): no growth and rehash on the way to the client.
    let mut to = HeaderMap::with_capacity(16);
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
