//! Bodies: reading the client's request body under a size cap and a deadline, and relaying the
//! upstream response body chunk by chunk (no buffering, no re-encoding) under the request
//! deadline. A relayed stream that breaks ends with an OpenAI-style error event and without
//! `data: [DONE]`, so `[DONE]` always means a finished answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::providers::UpstreamBody;

/// Error type of response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body tier1 sends.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A complete body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// Reads the request body: refuses at once a declared length over `max` (without reading it),
/// stops reading as soon as the received bytes pass `max`, and gives up after `timeout`.
pub async fn read_limited(
    body: Incoming,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ProxyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ProxyError::PayloadTooLarge(max));
    }
    tokio::time::timeout(timeout, collect(body, max, declared)).await.map_err(|_| ProxyError::BodyTimeout)?
}

async fn collect(mut body: Incoming, max: usize, declared: Option<u64>) -> Result<Bytes, ProxyError> {
    // The common case is one data frame: keep it as is; copy only when a second one arrives.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ProxyError::BodyRead)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > max {
            return Err(ProxyError::PayloadTooLarge(max));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let cap = declared.map_or(len, |d| d as usize).max(len);
                let mut buf = BytesMut::with_capacity(cap);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Labels of the route a request took, for metrics (bounded: configured names or two constants).
#[derive(Debug, Clone)]
pub enum RouteLabel {
    /// A configured route.
    Named(std::sync::Arc<str>),
    /// `provider/model`.
    Direct,
    /// Not routed.
    Unmatched,
}

impl RouteLabel {
    /// The label value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Named(n) => n,
            Self::Direct => crate::metrics::ROUTE_DIRECT,
            Self::Unmatched => crate::metrics::ROUTE_UNMATCHED,
        }
    }
}

/// Counts a request in flight from creation to drop, and observes its duration at drop: for a
/// relayed body that is when the last byte went out (or the client left).
pub struct RequestRecord {
    metrics: std::sync::Arc<Metrics>,
    start: Instant,
    /// Route label, set once routing decided.
    pub route: RouteLabel,
    endpoint: &'static str,
    /// Whether the response is a stream.
    pub stream: bool,
}

impl RequestRecord {
    /// Starts counting.
    pub fn start(metrics: std::sync::Arc<Metrics>, endpoint: &'static str) -> Self {
        metrics.inflight.inc();
        Self { metrics, start: Instant::now(), route: RouteLabel::Unmatched, endpoint, stream: false }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.metrics.inflight.dec();
        let stream = if self.stream { "true" } else { "false" };
        self.metrics
            .request_duration
            .with_label_values(&[self.route.as_str(), self.endpoint, stream])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

pin_project_lite::pin_project! {
    /// The upstream body on its way to the client.
    pub struct Relay {
        #[pin]
        inner: UpstreamBody,
        #[pin]
        deadline: Sleep,
        #[pin]
        idle: Sleep,
        idle_timeout: Option<Duration>,
        // Bytes read before the stream committed, sent first.
        prefix: Option<Bytes>,
        stream: bool,
        done: bool,
        record: Option<RequestRecord>,
        // Held until the body ends: in-flight counts and concurrency permits of the attempt.
        guard: Option<Box<dyn Send>>,
    }
}

impl Relay {
    /// Relays `prefix` then `inner` until it ends, `deadline` passes, or (streams) no chunk came
    /// for `idle_timeout`.
    pub fn new(inner: UpstreamBody, deadline: Instant, stream: bool) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep_until(deadline),
            idle: tokio::time::sleep_until(deadline),
            idle_timeout: None,
            prefix: None,
            stream,
            done: false,
            record: None,
            guard: None,
        }
    }

    /// Sends `prefix` before the rest.
    pub fn prefix(mut self, prefix: Bytes) -> Self {
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// Fails the body when no chunk arrives for `idle`.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = tokio::time::sleep(idle);
        self.idle_timeout = Some(idle);
        self
    }

    /// Keeps `guard` alive until the body ends or is dropped.
    pub fn guard(mut self, guard: Box<dyn Send>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Records the request's duration when the body ends.
    pub fn record(mut self, record: Option<RequestRecord>) -> Self {
        self.record = record;
        self
    }
}

/// Why a relayed body ended early (non-stream responses: the client sees a truncated body).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The upstream connection broke.
    #[error("upstream body failed")]
    Upstream,
    /// The request deadline passed.
    #[error("upstream request timed out")]
    Timeout,
}

/// The SSE error event that ends a broken stream.
fn error_event(err: &RelayError) -> Bytes {
    let (message, code) = match err {
        RelayError::Upstream => {
            ("upstream stream ended before the answer was complete", "upstream_stream_error")
        }
        RelayError::Timeout => ("upstream stream timed out", "upstream_timeout"),
    };
    let v = serde_json::json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}});
    Bytes::from(format!("data: {v}\n\n"))
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let err = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = *this.idle_timeout {
                    this.idle.as_mut().reset(Instant::now() + idle);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.record.take();
                this.guard.take();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(_))) => RelayError::Upstream,
            Poll::Pending => {
                let idle = this.idle_timeout.is_some() && this.idle.as_mut().poll(cx).is_ready();
                if idle || this.deadline.poll(cx).is_ready() {
                    RelayError::Timeout
                } else {
                    return Poll::Pending;
                }
            }
        };
        *this.done = true;
        this.guard.take();
        tracing::warn!(error = %err, stream = *this.stream, "upstream response ended early");
        if *this.stream {
            Poll::Ready(Some(Ok(Frame::data(error_event(&err)))))
        } else {
            Poll::Ready(Some(Err(Box::new(err))))
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
