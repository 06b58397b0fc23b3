//! Mid-stream continuation (`stream_resume = true` on a route). A committed stream that breaks
//! (cut, idle past its timeout, an in-stream error) is not lost: tier1 sends the original request
//! plus the partial answer as a trailing assistant message (a prefill) to the next candidate
//! that continues one (Anthropic and Gemini, and OpenAI-format providers marked `prefill = true`),
//! and writes its answer into the same client stream ([`join`]). A candidate that refuses, fails
//! or breaks before its first content is skipped, and what it said never reaches the client;
//! when none continues, the stream ends with the usual in-band error and no `[DONE]`.
//!
//! The continuation is one attempt per candidate, outside the route's loop: no retries of its
//! own, no concurrency permits (the broken attempt's are released with it), breakers and resting
//! keys respected. Only OpenAI chat streams are resumed: the transcript reads their chunks.

mod join;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::Frame;
use serde_json::Value;
use tokio::time::Instant;

use self::join::{Joiner, Transcript};
use super::read::{is_sse, precommit};
use crate::metrics::{Metrics, labels};
use crate::providers::{Call, Operation, Provider};
use crate::proxy::body::{BodyError, Origin, Tap};
use crate::proxy::ctx::{End, Meter, RequestRecord};
use crate::proxy::relay::{Handoff, Relay, RelayError};
use crate::proxy::respond::{self, Dialect};
use crate::resilience::Clock;
use crate::snapshot::Live;

/// A candidate to continue on.
struct Cand {
    provider: usize,
    model: Box<str>,
    deployment: Box<str>,
    /// USD per million input and output tokens.
    costs: (f64, f64),
}

/// What a continuation needs, taken when a `stream_resume` route's stream starts.
pub(crate) struct Resume {
    live: Arc<Live>,
    /// The client's request, as it came.
    body: Bytes,
    /// The request's candidates that take a prefill, in order.
    cands: Vec<Cand>,
    request_id: HeaderValue,
    metrics: Arc<Metrics>,
    route: Box<str>,
    clock: Clock,
}

impl Resume {
    /// The continuation context of a request on `live` with `body`, over `cands` as (provider
    /// index, model, deployment, costs).
    pub(crate) fn new<'c>(
        live: Arc<Live>,
        body: Bytes,
        cands: impl Iterator<Item = (usize, &'c str, &'c str, (f64, f64))>,
        request_id: HeaderValue,
        (metrics, clock): (Arc<Metrics>, Clock),
        route: &str,
    ) -> Self {
        let cands = cands
            .filter(|(p, ..)| live.providers.get(*p).is_some_and(|p| p.prefill))
            .map(|(provider, m, d, costs)| Cand { provider, model: m.into(), deployment: d.into(), costs })
            .collect();
        Self { live, body, cands, request_id, metrics, route: route.into(), clock }
    }

    fn count(&self, outcome: &str) {
        let l = labels::Resume { route: &self.route, outcome };
        self.metrics.stream_resumes_total.get(l).inc();
    }
}

type Continuation = Pin<Box<dyn Future<Output = Option<(Relay, Meter)>> + Send>>;

enum Leg {
    /// The stream as it was committed.
    First(Box<Relay>),
    /// Broken at `RelayError`: looking for a candidate to continue it.
    Starting(Continuation, RelayError),
    /// The continuation.
    Second(Box<Relay>, Box<Joiner>),
    Done,
}

/// A stream that continues on another candidate when it breaks.
pub(crate) struct Resumed {
    leg: Leg,
    transcript: Transcript,
    resume: Arc<Resume>,
    /// The candidate that answered first (provider index, model): not asked to continue itself.
    first: (usize, Box<str>),
    handoff: Handoff,
}

impl Resumed {
    /// Relays `relay` (the answer of `first`, as provider index and model), continued elsewhere
    /// if it breaks.
    pub(crate) fn new(relay: Relay, resume: Arc<Resume>, first: (usize, &str)) -> Self {
        let handoff: Handoff = Arc::new(Mutex::new(None));
        Self {
            leg: Leg::First(Box::new(relay.resumable(handoff.clone()))),
            transcript: Transcript::default(),
            resume,
            first: (first.0, first.1.into()),
            handoff,
        }
    }

    /// The request's record, finished when the stream ends (by the continuation, if one runs).
    pub(crate) fn record(mut self, record: Option<RequestRecord>) -> Self {
        if let Leg::First(relay) = self.leg {
            self.leg = Leg::First(Box::new(relay.record(record)));
        }
        self
    }

    /// The record the broken leg handed over, with its usage: as its provider reported it, or
    /// (a cut stream rarely got to its usage chunk) estimated as tier1 estimates a request:
    /// the prompt's bytes / 4 in, the partial answer's bytes / 4 out. The provider billed them.
    fn take_record(&self) -> Option<(RequestRecord, Option<(u64, u64)>)> {
        let (record, usage) = self.handoff.lock().ok()?.take()?;
        let estimate = || {
            let out = self.transcript.partial().map_or(0, str::len);
            (self.resume.body.len() as u64 / 4, out as u64 / 4)
        };
        Some((record, Some(usage.unwrap_or_else(estimate))))
    }

    /// Nothing continues the stream: its record ends broken, the client gets the error event.
    fn give_up(&mut self, err: RelayError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.leg = Leg::Done;
        self.resume.count("failed");
        if let Some((r, usage)) = self.take_record() {
            r.finish(End::Broken(usage));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(respond::stream_error(err, Dialect::OpenAi))))))
    }

    /// Starts looking for a continuation of the partial answer; `false` when it cannot be
    /// continued.
    fn start(&mut self, err: RelayError) -> bool {
        let Some(partial) = self.transcript.partial() else { return false };
        let prefill = join::prefill(partial).to_owned();
        let (resume, first) = (self.resume.clone(), (self.first.0, self.first.1.clone()));
        self.leg = Leg::Starting(Box::pin(async move { continuation(&resume, &first, &prefill).await }), err);
        true
    }
}

impl http_body::Body for Resumed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.leg {
                Leg::First(relay) => match Pin::new(relay.as_mut()).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            this.transcript.feed(data);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        let err = match e.downcast::<RelayError>() {
                            Ok(err) => *err,
                            // Not a break a continuation can mend: the body's own error.
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        if !this.start(err) {
                            return this.give_up(err);
                        }
                    }
                    other => return other,
                },
                Leg::Starting(next, err) => match next.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        let err = *err;
                        return this.give_up(err);
                    }
                    Poll::Ready(Some((relay, meter))) => {
                        let Some(joiner) = this.transcript.joiner() else {
                            let err = *err;
                            return this.give_up(err);
                        };
                        this.resume.count("resumed");
                        let record = this.take_record().map(|(mut r, usage)| {
                            r.next_leg(usage, meter);
                            r
                        });
                        let relay = relay.record(record);
                        this.leg = Leg::Second(Box::new(relay), Box::new(joiner));
                    }
                },
                Leg::Second(relay, joiner) => match Pin::new(relay.as_mut()).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Some(data) = frame.data_ref() else { continue };
                        let out = joiner.feed(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Poll::Ready(None) => {
                        let out = joiner.finish();
                        this.leg = Leg::Done;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    other => return other,
                },
                Leg::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.leg, Leg::Done)
    }
}

/// The first candidate after `first` that continues `prefill`, as a relay of its stream read to
/// its first content; `None` when none does.
async fn continuation(resume: &Resume, first: &(usize, Box<str>), prefill: &str) -> Option<(Relay, Meter)> {
    let live = &resume.live;
    for c in &resume.cands {
        if (c.provider, &c.model) == (first.0, &first.1) {
            continue;
        }
        let Some(p) = live.providers.get(c.provider) else { continue };
        let body = with_prefill(&resume.body, &c.model, prefill)?;
        match attempt(resume, p, c, &body).await {
            Some(next) => return Some(next),
            None => {
                tracing::debug!(provider = %p.name, model = %c.model, "candidate did not continue the stream")
            }
        }
    }
    None
}

/// One continuation attempt on `p`'s `model`.
async fn attempt(resume: &Resume, p: &Provider, c: &Cand, body: &Bytes) -> Option<(Relay, Meter)> {
    let (live, request_id, now) = (&resume.live, &resume.request_id, resume.clock.now());
    let (model, deployment) = (&*c.model, &*c.deployment);
    if p.state.breaker.blocks(now) || p.target_state(model, now).breaker.blocks(now) {
        return None;
    }
    let key = match p.keys.iter().find(|k| k.serves(model) && k.state.resting_for(model, now).is_none()) {
        Some(k) => Some(k),
        None if p.keys.is_empty() => None,
        None => return None,
    };
    let translated = match p.dialect(Operation::Chat, deployment) {
        Some(d) => Some(d.request(Operation::Chat, body, deployment, p.default_max_tokens, true).ok()?),
        None => None,
    };
    let start = Instant::now();
    let total = start + p.request_timeout;
    let call = Call {
        operation: translated.as_ref().map_or(Operation::Chat, |t| t.dialect.operation(Operation::Chat)),
        body: translated.as_ref().map_or_else(|| body.clone(), |t| t.body.clone()),
        stream: true,
        request_id,
        correlation_id: None,
        deadline: (start + p.first_byte_timeout).min(total),
        key,
        deployment,
        trace: None,
    };
    let resp = p.send(call).await.ok()?;
    if !resp.status().is_success() || !is_sse(resp.headers()) {
        return None;
    }
    let first_byte = (start + p.first_byte_timeout).min(total);
    let (held, rest) = precommit(resp.into_body(), first_byte, p.idle_timeout, (total, None)).await.ok()?;
    let metrics = p.target_state(model, now).metrics(&resume.metrics, &p.name, p.model_label(model)).clone();
    let origin = Origin { provider: p.name.clone(), request_id: request_id.clone() };
    let tap = Tap::new(metrics.clone(), start, true, origin);
    let mut relay = Relay::new(rest, total, true, live.redactor.stream())
        .prefix(held)
        .idle_timeout(p.idle_timeout)
        .tap(tap);
    match &translated {
        Some(t) => {
            let mut translator = t.stream(model);
            translator.limit_events(p.max_event_bytes);
            relay = relay.translate(translator);
        }
        None => relay = relay.filter_events(p.max_event_bytes).openai_end(),
    }
    Some((relay, Meter { metrics, costs: c.costs }))
}

/// The client's request for `model`, streamed, with `prefill` as a trailing assistant message.
fn with_prefill(body: &[u8], model: &str, prefill: &str) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("model".into(), Value::from(model));
    obj.insert("stream".into(), Value::Bool(true));
    obj.get_mut("messages")?
        .as_array_mut()?
        .push(serde_json::json!({"role": "assistant", "content": prefill}));
    // tier1's own request-level fallbacks are not a provider's parameter.
    obj.remove("fallbacks");
    serde_json::to_vec(&v).ok().map(Bytes::from)
}
