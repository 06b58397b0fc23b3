//! How finished spans leave: [`Queue`], the SDK's span processor, puts each one in a bounded
//! buffer (a push under a short lock, on the request's thread; when the buffer is full the span
//! is dropped and counted, `tier1_otlp_spans_dropped_total{reason="queue_full"}`). [`run`], a
//! background task, takes them in batches, every `interval` or as soon as a batch is full, and
//! sends each batch with the OTLP/HTTP protobuf exporter under its own timeout; a batch that
//! fails is dropped and counted (`reason="export_failed"`). The exporter's HTTP client is
//! tier1's own upstream client ([`Transport`]): the same hyper and rustls stack, no other.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

use crate::metrics::Metrics;

/// Spans sent in one export request.
const BATCH: usize = 512;
/// Largest collector answer read (an `ExportTraceServiceResponse` is a few bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// The buffer between the request path and the export task.
#[derive(Debug)]
pub(crate) struct Buffer {
    spans: Mutex<Vec<SpanData>>,
    max: usize,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Buffer {
    /// A buffer of at most `max` spans.
    pub(crate) fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { spans: Mutex::new(Vec::new()), max, wake: tokio::sync::Notify::new(), metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SpanData>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to [`BATCH`] spans, oldest first.
    fn take(&self) -> Vec<SpanData> {
        let mut spans = self.lock();
        if spans.len() <= BATCH {
            return std::mem::take(&mut *spans);
        }
        let rest = spans.split_off(BATCH);
        std::mem::replace(&mut *spans, rest)
    }

    fn dropped(&self, reason: &'static str, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.metrics.otlp_spans_dropped_total.get(crate::metrics::labels::OtlpDrop { reason }).inc_by(n);
    }
}

/// The SDK's span processor: ended, sampled spans into the [`Buffer`].
#[derive(Debug)]
pub(crate) struct Queue(pub(crate) Arc<Buffer>);

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let b = &self.0;
        let mut spans = b.lock();
        if spans.len() >= b.max {
            drop(spans);
            b.dropped("queue_full", 1);
            return;
        }
        spans.push(span);
        let full = spans.len() >= BATCH;
        drop(spans);
        if full {
            b.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.wake.notify_one();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends what `buffer` holds through `exporter`, every `interval` or as soon as a batch is full,
/// each batch within `timeout`; at `stop`, what is left goes once more, then the task ends.
pub(crate) async fn run(
    buffer: Arc<Buffer>,
    exporter: opentelemetry_otlp::SpanExporter,
    (interval, timeout): (Duration, Duration),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(interval) => false,
            () = buffer.wake.notified() => false,
        };
        loop {
            let batch = buffer.take();
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match tokio::time::timeout(timeout, exporter.export(batch)).await {
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
        }
        if stopping {
            return;
        }
    }
}

/// The exporter's HTTP client: tier1's own upstream client (hyper over rustls, ring).
#[derive(Debug)]
pub(crate) struct Transport(pub(crate) crate::upstream::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Transport {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, opentelemetry_http::HttpError> {
        let resp = self.0.send(request).await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}
