//! How finished spans leave: [`Buffer::push`] puts each sampled [`Record`] in a bounded buffer
//! (a push under a short lock, on the request's thread; when the buffer is full the span is
//! dropped and counted, `tier1_otlp_spans_dropped_total{reason="queue_full"}`). [`run`], a
//! background task, takes them in batches, every `interval` or as soon as a batch is full,
//! encodes each batch as OTLP protobuf ([`super::encode`]) and posts it to the collector under
//! its own timeout, retrying what OTLP/HTTP calls retryable; a batch that fails is dropped and
//! counted (`reason="export_failed"`). The HTTP client is tier1's own upstream client: the same
//! hyper and rustls stack, no other. The attribute buffers of the spans a batch held go back to
//! the buffer, for new spans to fill ([`Buffer::attrs`]): no allocation per span.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Limited};

use super::encode::{self, Head};
use super::record::Record;
use crate::metrics::Metrics;

/// Spans sent in one export request.
const BATCH: usize = 512;
/// Largest collector answer read (an `ExportTraceServiceResponse` is a few bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// Sends of one batch at most (the first and three retries), the first retry after
/// [`FIRST_RETRY`], each next one twice as late (opentelemetry-otlp's recommended policy).
const SENDS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest `Retry-After` followed (the batch's timeout bounds it anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Attribute buffers of exported spans kept for new spans, at most.
const SPARE: usize = BATCH;

/// The buffer between the request path and the export task.
#[derive(Debug)]
pub(crate) struct Buffer {
    spans: Mutex<Vec<Record>>,
    /// Attribute buffers of exported spans, emptied, for new spans to fill: a span's start takes
    /// one (a lock) instead of allocating it, and the export gives them back instead of freeing
    /// them.
    spare: Mutex<Vec<Vec<u8>>>,
    max: usize,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Buffer {
    /// A buffer of at most `max` spans.
    pub(crate) fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            spans: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            max,
            wake: tokio::sync::Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An ended, sampled span, queued for export (or dropped and counted when the buffer is full).
    pub(super) fn push(&self, span: Record) {
        let mut spans = self.lock();
        if spans.len() >= self.max {
            drop(spans);
            self.dropped("queue_full", 1);
            return;
        }
        spans.push(span);
        let full = spans.len() >= BATCH;
        drop(spans);
        if full {
            self.wake.notify_one();
        }
    }

    /// A new span's attribute buffer: a spare one, else one with room for `room` bytes.
    pub(super) fn attrs(&self, room: usize) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| Vec::with_capacity(room))
    }

    /// Takes `batch`'s spans (exported or dropped), their attribute buffers kept as spares.
    fn recycle(&self, batch: &mut Vec<Record>) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        let room = SPARE.saturating_sub(spare.len());
        spare.extend(batch.drain(..).take(room).map(Record::recycled));
        drop(spare);
        batch.clear();
    }

    /// Up to [`BATCH`] spans, oldest first; `spare` (the last batch, emptied here before the
    /// lock) becomes the buffer, so that pushes do not grow a new one from nothing each time.
    fn take(&self, mut spare: Vec<Record>) -> Vec<Record> {
        spare.clear();
        let mut spans = self.lock();
        if spans.len() <= BATCH {
            return std::mem::replace(&mut *spans, spare);
        }
        let rest = spans.split_off(BATCH);
        std::mem::replace(&mut *spans, rest)
    }

    /// Whether a whole batch is waiting.
    fn full(&self) -> bool {
        self.lock().len() >= BATCH
    }

    fn dropped(&self, reason: &'static str, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.metrics.otlp_spans_dropped_total.get(crate::metrics::labels::OtlpDrop { reason }).inc_by(n);
    }
}

/// Where and how batches are posted.
#[derive(Debug)]
pub(crate) struct Exporter {
    /// tier1's own upstream client (hyper over rustls, ring).
    pub(crate) client: crate::upstream::Client,
    /// The collector's `/v1/traces` URL.
    pub(crate) endpoint: Uri,
    /// The configured headers, then `content-type`.
    pub(crate) headers: HeaderMap,
    /// The resource and scope, encoded once.
    pub(crate) head: Head,
}

/// Why a send failed: the collector's status (`None`: no answer), and how long it asked to wait.
struct Failed(Option<u16>, Option<Duration>);

impl Failed {
    /// Whether OTLP/HTTP lets the batch go again: no answer, 429, 502, 503, 504.
    fn retryable(&self) -> bool {
        matches!(self.0, None | Some(429 | 502 | 503 | 504))
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(status) => write!(f, "the collector answered {status}"),
            None => f.write_str("the collector could not be reached"),
        }
    }
}

impl Exporter {
    /// Posts `body` once.
    async fn send(&self, body: Bytes) -> Result<(), Failed> {
        let mut req = Request::post(self.endpoint.clone()).body(body).map_err(|_| Failed(None, None))?;
        *req.headers_mut() = self.headers.clone();
        let resp = self.client.send(req).await.map_err(|_| Failed(None, None))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        // Read to the end, so that the connection goes back to the pool.
        let read = Limited::new(resp.into_body(), MAX_ANSWER).collect().await;
        match (status.is_success(), read) {
            (true, Ok(_)) => Ok(()),
            (true, Err(_)) => Err(Failed(None, None)),
            (false, _) => Err(Failed(Some(status.as_u16()), retry_after)),
        }
    }

    /// Posts `records` as one request, again after a retryable failure (up to [`SENDS`] in all,
    /// backing off).
    async fn export(&self, records: &[Record]) -> Result<(), Failed> {
        let body = Bytes::from(encode::request(&self.head, records));
        let mut wait = FIRST_RETRY;
        let mut sends = 1;
        loop {
            match self.send(body.clone()).await {
                Err(e) if e.retryable() && sends < SENDS => {
                    let jitter = Duration::from_millis(fastrand::u64(..100));
                    tokio::time::sleep(e.1.unwrap_or(wait + jitter)).await;
                    wait *= 2;
                    sends += 1;
                }
                other => return other,
            }
        }
    }
}

/// The headers every export request carries: `headers` (the configured ones) and the
/// protobuf content type.
pub(crate) fn headers(configured: impl IntoIterator<Item = (http::HeaderName, HeaderValue)>) -> HeaderMap {
    let mut h: HeaderMap = configured.into_iter().collect();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    h
}

/// Sends what `buffer` holds through `exporter`, every `interval` or as soon as a batch is full,
/// each batch within `timeout`; at `stop`, what is left goes once more, then the task ends.
pub(crate) async fn run(
    buffer: Arc<Buffer>,
    exporter: Exporter,
    (interval, timeout): (Duration, Duration),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(interval) => false,
            () = buffer.wake.notified() => false,
        };
        loop {
            batch = buffer.take(batch);
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match tokio::time::timeout(timeout, exporter.export(&batch)).await {
                Ok(Ok(())) => {
                    buffer.metrics.otlp_spans_exported_total.inc_by(n as u64);
                    failing = false;
                }
                failed => {
                    buffer.dropped("export_failed", n);
                    if !std::mem::replace(&mut failing, true) {
                        // The endpoint is not logged: it may carry user-info.
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {timeout:?}"),
                        };
                        tracing::warn!(%error, spans = n, "OTLP export failed; spans dropped (later failures counted, not logged, until one succeeds)");
                    }
                }
            }
            buffer.recycle(&mut batch);
            // At once again only for a whole batch (or, stopping, for what is left): the spans
            // that came during the send wait for the interval and go in one bigger batch (a post
            // costs about the same whatever the batch's size).
            if !stopping && !buffer.full() {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}
