//! The relay: the upstream answer on its way to the client, chunk by chunk (no buffering, no
//! re-encoding), translated when the client speaks another format, and redacted of every
//! configured secret.
//!
//! - **Deadlines on their own timer.** The request deadline and a stream's idle timeout are kept
//!   by a watchdog task, not by the body's own polls: hyper stops polling a body while the
//!   client's socket is full, so a client that does not read would otherwise hold the upstream
//!   connection, the in-flight count and every permit until it closes. When the watchdog fires,
//!   all of them are released at once and the upstream connection closes; the client, if it reads
//!   again, gets the in-band error (streams) or a cut body (others). The watchdog starts only
//!   when more than the first bytes are to come: an answer that arrived whole never spawns one.
//! - **Framing.** An exact length is declared only when exactly that many bytes will be sent: an
//!   untranslated, non-stream answer of known length (redaction keeps lengths: see
//!   [`crate::config::mask`]). Everything else goes chunked (HTTP/1.1) or as DATA frames with no
//!   length (HTTP/2): a stream may end with an error event tier1 adds, and a translation changes
//!   the length.
//! - **Ends.** A relayed stream that breaks ends with an error event in the client's format and
//!   without `data: [DONE]`, so `[DONE]` always means a finished answer.
//! - **Malformed events.** An event of a committed stream whose `data:` is not JSON is left out
//!   (the `openai` SDK, among others, would give up on the whole stream at it) and counted: by
//!   the [`Filter`] on a stream relayed as is, by the translator on one translated. The
//!   [`Tap`] counts and logs them.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Instant;

use super::body::{BodyError, Tap};
use super::ctx::{End, RequestRecord};
use super::respond::{self, Dialect};
use crate::config::StreamRedactor;
pub(crate) use crate::error::RelayError;
use crate::providers::UpstreamBody;
use crate::sse::Filter;
use crate::translate::StreamTranslator;

/// What a poll of the relay gives hyper.
type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

/// Where a resumable relay leaves its request's record when it breaks, with the usage its
/// provider reported up to the break.
pub(crate) type Handoff = Arc<Mutex<Option<(RequestRecord, Option<(u64, u64)>)>>>;

/// Everything a relay holds that must be released when it ends, or when its watchdog fires.
struct Core {
    inner: UpstreamBody,
    tap: Option<Box<Tap>>,
    // Rewrites the upstream's stream into the client's format.
    translator: Option<Box<dyn StreamTranslator>>,
    // Leaves malformed events out of an SSE stream relayed as is.
    filter: Option<Filter>,
    /// An OpenAI chat stream relayed as is: it ends well only after a finish reason (tier1 adds
    /// a `[DONE]` the provider left out; a stream that ends without either is a broken one), and
    /// an in-stream error event breaks it.
    openai_end: bool,
    /// The stream broke inside a chunk (an error event): the chunk's bytes before it go out,
    /// then the break.
    broken: Option<RelayError>,
    // In-flight counts and concurrency permits of the attempt.
    guard: Option<Box<dyn Send>>,
    record: Option<RequestRecord>,
    /// A resumable stream's record goes here when the body breaks, for the continuation to
    /// finish (see [`Relay::resumable`]).
    handoff: Option<Handoff>,
    redact: StreamRedactor,
    /// When the last upstream chunk came (the idle timeout counts from it).
    last: Instant,
}

/// What one poll of the upstream gave.
enum Step {
    /// Bytes for the client (possibly none: a translator or the redactor held them).
    Data(Bytes, bool),
    /// The body failed; what was held back goes out before the error.
    Failed(RelayError, Bytes),
}

impl Core {
    /// One upstream chunk into client bytes: watched, translated, redacted.
    fn chunk(&mut self, data: &Bytes, now: Instant) -> Result<Bytes, RelayError> {
        self.last = now;
        if let Some(tap) = self.tap.as_mut() {
            tap.chunk(data, self.translator.is_none(), now);
        }
        let (out, dropped) = match (self.translator.as_mut(), self.filter.as_mut()) {
            (Some(t), _) => {
                let out = t.feed(data);
                if t.overflowed() {
                    return Err(RelayError::EventTooLarge);
                }
                (Bytes::from(out), t.dropped())
            }
            (None, Some(f)) => {
                let out = f.feed(data);
                if f.errored() {
                    // An in-stream error: a break (what came before it goes out first).
                    self.broken = Some(RelayError::Upstream);
                }
                (out, f.dropped())
            }
            (None, None) => (data.clone(), 0),
        };
        if dropped > 0
            && let Some(tap) = self.tap.as_mut()
        {
            tap.dropped(dropped);
        }
        Ok(if out.is_empty() { out } else { self.redact.feed(out) })
    }

    /// What the filter and the redactor still hold once the upstream body ended: `well`, its
    /// unfinished last event is judged like the others; broken, it is left out (an SSE reader
    /// discards an event the stream ends inside, and tier1's error event follows).
    fn flush(&mut self, well: bool) -> Bytes {
        let last = match self.filter.as_mut() {
            Some(f) if well && self.openai_end && !f.done() => {
                // Finished, but the provider left out `[DONE]`: the client's stream gets it.
                let mut last = f.finish().to_vec();
                if !f.done() {
                    last.extend_from_slice(b"data: [DONE]\n\n");
                }
                Bytes::from(last)
            }
            Some(f) if well => f.finish(),
            Some(f) => {
                f.abandon();
                Bytes::new()
            }
            None => Bytes::new(),
        };
        if let (Some(f), Some(tap)) = (&self.filter, self.tap.as_mut()) {
            tap.dropped(f.dropped());
        }
        let last = if last.is_empty() { last } else { self.redact.feed(last) };
        let held = self.redact.finish();
        match (last.is_empty(), held.is_empty()) {
            (_, true) => last,
            (true, false) => held,
            (false, false) => Bytes::from([&last[..], &held[..]].concat()),
        }
    }

    /// What goes out before a break found inside a chunk: the chunk's bytes before it, and what
    /// the redactor held.
    fn before_break(&mut self, out: Bytes) -> Bytes {
        let rest = self.flush(false);
        if rest.is_empty() { out } else { Bytes::from([&out[..], &rest[..]].concat()) }
    }

    /// Whether the client's answer is complete once the upstream body is.
    fn complete(&self) -> bool {
        match (&self.translator, &self.filter) {
            (Some(t), _) => t.complete(),
            (None, Some(f)) if self.openai_end => f.done() || f.finished(),
            _ => true,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not relayed: no provider sends any an LLM client reads.
                    let Ok(data) = frame.into_data() else { continue };
                    let out = match self.chunk(&data, Instant::now()) {
                        Ok(out) => out,
                        Err(e) => return Poll::Ready(Step::Failed(e, self.flush(false))),
                    };
                    if let Some(e) = self.broken.take() {
                        return Poll::Ready(Step::Failed(e, self.before_break(out)));
                    }
                    // A body of known length is complete after its last byte: hyper may never
                    // poll again, so finish now rather than on a final `None`.
                    let end = self.inner.is_end_stream() && self.complete();
                    if out.is_empty() && !end {
                        continue;
                    }
                    return Poll::Ready(Step::Data(out, end));
                }
                // A translated stream is complete only if the upstream's own end marker came.
                Poll::Ready(None) if !self.complete() => {
                    return Poll::Ready(Step::Failed(RelayError::Upstream, self.flush(false)));
                }
                Poll::Ready(None) => return Poll::Ready(Step::Data(Bytes::new(), true)),
                Poll::Ready(Some(Err(_))) => {
                    return Poll::Ready(Step::Failed(RelayError::Upstream, self.flush(false)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The body ended well: the record finished with the usage. A translated stream's usage
    /// comes from its translator, which reads the provider's format.
    fn finish(mut self) {
        let usage = self.usage();
        if let Some(r) = self.record.take() {
            r.finish(End::Done(usage));
        }
    }

    /// The body broke: counted as broken (or, resumable, the record handed over), and every
    /// resource released with it.
    fn fail(mut self, err: RelayError, stream: bool) {
        let usage = self.usage();
        tracing::warn!(error = %err, stream, "upstream response ended early");
        let Some(r) = self.record.take() else { return };
        match self.handoff.take() {
            Some(h) => *h.lock().unwrap_or_else(PoisonError::into_inner) = Some((r, usage)),
            None => r.finish(End::Broken(usage)),
        }
    }

    /// The attempt's duration observed; the usage the provider reported, if any.
    fn usage(&mut self) -> Option<(u64, u64)> {
        let known = self.translator.as_deref().map(|t| (t.usage(), t.cached()));
        let mut tap = self.tap.take()?;
        let usage = tap.finish(known);
        if let Some(r) = self.record.as_mut()
            && r.traced_span()
        {
            tap.finish_reasons(|reasons| r.answered(tap.cached, reasons));
        }
        usage
    }
}

/// A core shared with its watchdog.
struct Watched {
    state: Mutex<Watch>,
}

struct Watch {
    /// `None` once the body ended or the watchdog took it.
    core: Option<Box<Core>>,
    /// The body's task, to wake when the watchdog ends the body.
    waker: Option<Waker>,
    expired: bool,
}

impl Watched {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends the relay at `deadline`, or after `idle` with no upstream chunk, whether or not the
/// body is being polled.
async fn watchdog(watched: Weak<Watched>, deadline: Instant, idle: Option<Duration>, stream: bool) {
    let mut at = idle.map_or(deadline, |i| (Instant::now() + i).min(deadline));
    loop {
        tokio::time::sleep_until(at).await;
        let Some(watched) = watched.upgrade() else { return };
        let (core, waker) = {
            let mut state = watched.lock();
            let Some(core) = state.core.as_ref() else { return };
            let due = idle.map_or(deadline, |i| (core.last + i).min(deadline));
            if Instant::now() < due {
                at = due;
                continue;
            }
            state.expired = true;
            (state.core.take(), state.waker.take())
        };
        if let Some(core) = core {
            core.fail(RelayError::Timeout, stream);
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        return;
    }
}

enum Slot {
    /// Not yet waited on the upstream: owned here alone.
    Local(Box<Core>),
    /// Waiting on the upstream, under the watchdog.
    Watched(Arc<Watched>, tokio::task::JoinHandle<()>),
    /// Ended.
    Gone,
}

/// The upstream body on its way to the client.
pub(crate) struct Relay {
    slot: Slot,
    deadline: Instant,
    idle_timeout: Option<Duration>,
    // Bytes read before the stream committed (or a non-stream answer's first), sent first.
    prefix: Option<Bytes>,
    stream: bool,
    // The client's format, for the error event that ends a broken stream.
    dialect: Dialect,
    done: bool,
    /// Breaks end the body with an error for the continuation (see [`Relay::resumable`]).
    resumable: bool,
    /// A resumable stream's break, told after the bytes held before it went out.
    broke: Option<RelayError>,
}

impl Relay {
    /// Relays `prefix` then `inner` until it ends, `deadline` passes, or (streams) no chunk came
    /// for `idle_timeout`. `redact` masks the configured secrets in every byte sent.
    pub(crate) fn new(inner: UpstreamBody, deadline: Instant, stream: bool, redact: StreamRedactor) -> Self {
        let core = Core {
            inner,
            tap: None,
            translator: None,
            filter: None,
            openai_end: false,
            broken: None,
            guard: None,
            record: None,
            handoff: None,
            redact,
            last: Instant::now(),
        };
        Self {
            slot: Slot::Local(Box::new(core)),
            deadline,
            idle_timeout: None,
            prefix: None,
            stream,
            dialect: Dialect::OpenAi,
            done: false,
            resumable: false,
            broke: None,
        }
    }

    /// A stream that may be continued elsewhere when it breaks: the break ends the body with a
    /// [`RelayError`] instead of the client's error event, and the record goes to `handoff`.
    pub(crate) fn resumable(mut self, handoff: Handoff) -> Self {
        if let Some(c) = self.local() {
            c.handoff = Some(handoff);
            self.resumable = self.stream;
        }
        self
    }

    fn local(&mut self) -> Option<&mut Core> {
        match &mut self.slot {
            Slot::Local(core) => Some(core),
            Slot::Watched(..) | Slot::Gone => None,
        }
    }

    /// Translates the stream (the held prefix too) into the client's format.
    pub(crate) fn translate(mut self, translator: Box<dyn StreamTranslator>) -> Self {
        if let Some(c) = self.local() {
            c.translator = Some(translator);
        }
        self
    }

    /// Leaves out of the SSE stream, relayed as is, every event whose `data:` is not JSON,
    /// holding at most `max` bytes of an unfinished event (see [`Filter`]).
    pub(crate) fn filter_events(mut self, max: usize) -> Self {
        if let Some(c) = self.local() {
            c.filter = Some(Filter::new(max));
        }
        self
    }

    /// The stream is an OpenAI chat stream (relayed as is, with [`Relay::filter_events`]): it
    /// is complete after its finish reason, and ends with `[DONE]`.
    pub(crate) fn openai_end(mut self) -> Self {
        if let Some(c) = self.local() {
            c.openai_end = true;
            if let Some(f) = c.filter.as_mut() {
                f.errors_break();
            }
        }
        self
    }

    /// Watches the body for metrics and usage.
    pub(crate) fn tap(mut self, tap: Tap) -> Self {
        if let Some(c) = self.local() {
            c.tap = Some(Box::new(tap));
        }
        self
    }

    /// Ends a broken stream with the error event of the client's `dialect` (OpenAI's error
    /// chunk unless told otherwise).
    pub(crate) fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Sends `prefix` before the rest.
    pub(crate) fn prefix(mut self, prefix: Bytes) -> Self {
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// Fails the body when no chunk arrives for `idle`.
    pub(crate) fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Keeps `guard` alive until the body ends or is dropped.
    pub(crate) fn guard(mut self, guard: Box<dyn Send>) -> Self {
        if let Some(c) = self.local() {
            c.guard = Some(guard);
        }
        self
    }

    /// Ends the request's record with the body: finished well or broken, or, when the client
    /// leaves first, dropped unfinished (see [`RequestRecord`]).
    pub(crate) fn record(mut self, record: Option<RequestRecord>) -> Self {
        if let Some(c) = self.local() {
            c.record = record;
        }
        self
    }

    /// The core while it is owned here alone (the slot is left `Gone`); `None` otherwise, and
    /// the slot is left as it was.
    fn take_local(&mut self) -> Option<Box<Core>> {
        if !matches!(self.slot, Slot::Local(_)) {
            return None;
        }
        match std::mem::replace(&mut self.slot, Slot::Gone) {
            Slot::Local(core) => Some(core),
            Slot::Watched(..) | Slot::Gone => None,
        }
    }

    /// Puts the core under the watchdog before the first wait on the upstream.
    fn watch(&mut self) {
        let Some(core) = self.take_local() else { return };
        let watched =
            Arc::new(Watched { state: Mutex::new(Watch { core: Some(core), waker: None, expired: false }) });
        let task =
            tokio::spawn(watchdog(Arc::downgrade(&watched), self.deadline, self.idle_timeout, self.stream));
        self.slot = Slot::Watched(watched, task);
    }

    /// Ends the body: the core is released (finished well, or failed), the watchdog stopped.
    fn end(&mut self, core: Option<Box<Core>>, failed: Option<RelayError>) {
        self.done = true;
        if let Some(core) = core {
            match failed {
                None => core.finish(),
                Some(e) => core.fail(e, self.stream),
            }
        }
        if let Slot::Watched(_, task) = std::mem::replace(&mut self.slot, Slot::Gone) {
            task.abort();
        }
    }

    /// What the client gets for a failure: the held bytes and an error event (streams), or a
    /// cut body (others).
    fn failure(&mut self, err: RelayError, held: Bytes) -> Polled {
        if !self.stream {
            return Poll::Ready(Some(Err(Box::new(err))));
        }
        if self.resumable {
            if held.is_empty() {
                return Poll::Ready(Some(Err(Box::new(err))));
            }
            self.broke = Some(err);
            return Poll::Ready(Some(Ok(Frame::data(held))));
        }
        let mut out = held.to_vec();
        out.extend_from_slice(&respond::stream_error(err, self.dialect));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }

    /// Sends the prefix, translated and redacted; ends the body when nothing follows it.
    fn poll_prefix(&mut self, prefix: Bytes) -> Option<Polled> {
        let Slot::Local(core) = &mut self.slot else { return None };
        let out = match core.chunk(&prefix, Instant::now()) {
            Ok(out) => out,
            Err(e) => {
                let held = core.flush(false);
                let core = self.take_local();
                self.end(core, Some(e));
                return Some(self.failure(e, held));
            }
        };
        if let Some(e) = core.broken.take() {
            let held = core.before_break(out);
            let core = self.take_local();
            self.end(core, Some(e));
            return Some(self.failure(e, held));
        }
        let end = core.inner.is_end_stream() && core.complete();
        if !end {
            // More is to come: the watchdog starts now, before hyper writes the prefix, so a
            // client that stops reading here is cut on time too.
            self.watch();
            return (!out.is_empty()).then(|| Poll::Ready(Some(Ok(Frame::data(out)))));
        }
        let mut out = out.to_vec();
        out.extend_from_slice(&core.flush(true));
        let core = self.take_local();
        self.end(core, None);
        Some(if out.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Slot::Watched(_, task) = &self.slot {
            task.abort();
        }
    }
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let Some(err) = this.broke.take() {
            return Poll::Ready(Some(Err(Box::new(err))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take()
            && let Some(ready) = this.poll_prefix(prefix)
        {
            return ready;
        }
        if this.done {
            return Poll::Ready(None);
        }
        this.watch();
        let Slot::Watched(watched, _) = &this.slot else { return Poll::Ready(None) };
        let watched = watched.clone();
        let mut state = watched.lock();
        let Some(core) = state.core.as_mut() else {
            // The watchdog ended the body (and released what it held).
            let expired = state.expired;
            drop(state);
            this.end(None, None);
            return if expired { this.failure(RelayError::Timeout, Bytes::new()) } else { Poll::Ready(None) };
        };
        match core.poll(cx) {
            Poll::Pending => {
                if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(Step::Data(out, false)) => Poll::Ready(Some(Ok(Frame::data(out)))),
            Poll::Ready(Step::Data(out, true)) => {
                let core = state.core.take();
                drop(state);
                let mut out = out.to_vec();
                let core = core.map(|mut c| {
                    out.extend_from_slice(&c.flush(true));
                    c
                });
                this.end(core, None);
                if out.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
                }
            }
            Poll::Ready(Step::Failed(e, held)) => {
                let core = state.core.take();
                drop(state);
                this.end(core, Some(e));
                this.failure(e, held)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Exact only when exactly that many bytes will go out: see the module doc.
        let Slot::Local(core) = &self.slot else { return SizeHint::default() };
        if self.stream || core.translator.is_some() {
            return SizeHint::default();
        }
        match core.inner.size_hint().exact() {
            Some(n) => SizeHint::with_exact(n + self.prefix.as_ref().map_or(0, |p| p.len() as u64)),
            None => SizeHint::default(),
        }
    }
}
