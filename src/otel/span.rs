//! The spans: [`ServerSpan`], one per request, child of the request's `traceparent` when it
//! carries a valid one; [`AttemptSpan`], one per upstream attempt (hedges included), child of
//! the server span, whose context the upstream request carries. Attribute names follow the
//! OpenTelemetry GenAI semantic conventions (`gen_ai.*`) where one exists, else `tier1.*`.
//! Values are names, numbers and classifications: never content, never a secret.
//!
//! Sampling is parent-based: a remote parent's sampled flag is followed, a trace tier1 starts is
//! kept when its trace id falls within `sample_ratio` (the SDK's `TraceIdRatioBased` rule, so a
//! ratio keeps the same traces as before), and an attempt follows its request. An unsampled span
//! is only its ids (the context an upstream request carries): nothing is recorded or exported.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::Otel;
use super::context::{self, SpanCx};
use super::export::Buffer;
use super::record::{Kind, Record, Val, int, now};

const OPERATION: &str = "gen_ai.operation.name";
const PROVIDER: &str = "gen_ai.provider.name";
const REQUEST_MODEL: &str = "gen_ai.request.model";
const MAX_TOKENS: &str = "gen_ai.request.max_tokens";
const RESPONSE_MODEL: &str = "gen_ai.response.model";
const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
const CACHE_READ: &str = "gen_ai.usage.cache_read.input_tokens";
const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
const STATUS_CODE: &str = "http.response.status_code";

/// Room made at a span's start for its encoded attributes: a server span's usually take about
/// 450 bytes with short names, a client span's about 200 (the buffer grows for long names).
const SERVER_ROOM: usize = 512;
const CLIENT_ROOM: usize = 256;

/// The `traceparent` and `tracestate` an upstream request carries.
pub(crate) type Propagated = (Option<HeaderValue>, Option<HeaderValue>);

/// The GenAI operation of an endpoint label (`None`: not a model call, e.g. the model list).
fn operation(endpoint: &str) -> Option<&'static str> {
    match endpoint {
        "chat" | "messages" | "responses" => Some("chat"),
        "embeddings" => Some("embeddings"),
        _ => None,
    }
}

/// `gen_ai.provider.name` of a provider kind (its config spelling): the conventions' names where
/// they have one.
fn provider_name(kind: &'static str) -> &'static str {
    match kind {
        "azure" => "azure.ai.openai",
        "gemini" => "gcp.gemini",
        "bedrock" => "aws.bedrock",
        "vertex" => "gcp.vertex_ai",
        other => other,
    }
}

/// A new span id (never all zeros).
fn span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

/// Whether a trace tier1 starts with `trace_id` is kept at `ratio`: its low 64 bits, shifted
/// right once, below `ratio` × 2⁶³ (the SDK's `TraceIdRatioBased`).
pub(super) fn within(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}

/// A request's span, from its start to the end of its answer (a relayed body's last byte).
pub(crate) struct ServerSpan {
    cx: SpanCx,
    /// The record, when sampled.
    record: Option<Record>,
    buffer: Arc<Buffer>,
    operation: Option<&'static str>,
}

impl std::fmt::Debug for ServerSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpan").finish_non_exhaustive()
    }
}

/// What a request's end tells its span.
pub(crate) struct Ended<'a> {
    /// The answer's status.
    pub status: u16,
    /// The route label.
    pub route: &'a str,
    /// The provider that answered (its config name).
    pub provider: Option<&'a str>,
    /// The upstream model that answered.
    pub model: Option<&'a str>,
    /// Attempts started.
    pub attempts: u32,
    /// Classification of the first failure, when another attempt answered.
    pub fallback_reason: Option<&'static str>,
    /// A stream.
    pub stream: bool,
    /// Time to the first content chunk.
    pub ttft: Option<Duration>,
    /// Tokens in and out, when the provider reported them.
    pub usage: Option<(u64, u64)>,
    /// How it ended: `done`, `refund` (an error answer), `broken`, `gone` (the client left).
    pub end: &'static str,
}

impl Otel {
    /// The span of a request to `endpoint` (its metric label) with `headers`.
    pub(crate) fn server(&self, headers: &http::HeaderMap, endpoint: &'static str) -> ServerSpan {
        let remote = context::extract(headers).map(|sc| SpanCx::remote(&sc));
        let (trace_id, sampled, state, parent) = match remote {
            Some(p) => (p.trace_id, p.sampled, p.state, Some((p.span_id, true))),
            None => {
                let id = fastrand::u128(1..).to_be_bytes();
                (id, within(self.ratio, &id), None, None)
            }
        };
        let cx = SpanCx { trace_id, span_id: span_id(), sampled, state };
        let operation = operation(endpoint);
        let record = sampled.then(|| {
            let mut r = Record::start(
                Kind::Server,
                (trace_id, cx.span_id),
                operation.unwrap_or(endpoint),
                self.buffer.attrs(SERVER_ROOM),
            );
            r.parent = parent;
            r.state.clone_from(&cx.state);
            r.set("tier1.endpoint", Val::Static(endpoint));
            if let Some(op) = operation {
                r.set(OPERATION, Val::Static(op));
            }
            r
        });
        ServerSpan { cx, record, buffer: self.buffer.clone(), operation }
    }
}

impl ServerSpan {
    /// The request asked for `model`, with at most `max_tokens` out.
    pub(crate) fn requested(&mut self, model: &str, max_tokens: Option<u64>) {
        let Some(r) = self.record.as_mut() else { return };
        let model = r.set_text(REQUEST_MODEL, model);
        if self.operation.is_some() {
            r.name.1 = Some(model);
        }
        if let Some(n) = max_tokens {
            r.set(MAX_TOKENS, int(n));
        }
    }

    /// What the request's attempts start from.
    pub(crate) fn parent(&self) -> Parent {
        Parent {
            cx: self.cx.clone(),
            buffer: self.buffer.clone(),
            operation: self.operation.unwrap_or("chat"),
        }
    }

    /// The input tokens the provider read from its prompt cache, and the answer's finish
    /// reasons, when it reported them.
    pub(crate) fn answered(&mut self, cached: u64, finish_reasons: &[&str]) {
        let Some(r) = self.record.as_mut() else { return };
        if cached > 0 {
            r.set(CACHE_READ, int(cached));
        }
        if !finish_reasons.is_empty() {
            r.set_list(FINISH_REASONS, finish_reasons);
        }
    }

    /// Ends the span with what the request's end tells.
    pub(crate) fn end(self, e: &Ended<'_>) {
        let Some(mut r) = self.record else { return };
        r.set(STATUS_CODE, Val::Int(i64::from(e.status)));
        r.set_text("tier1.route", e.route);
        r.set("tier1.attempts", Val::Int(i64::from(e.attempts)));
        r.set("tier1.stream", Val::Bool(e.stream));
        r.set("tier1.end", Val::Static(e.end));
        if let Some(p) = e.provider {
            r.set_text("tier1.provider", p);
        }
        if let Some(m) = e.model {
            r.set_text(RESPONSE_MODEL, m);
        }
        if let Some(reason) = e.fallback_reason {
            r.set("tier1.fallback_reason", Val::Static(reason));
        }
        if let Some(t) = e.ttft {
            r.set("tier1.time_to_first_token", Val::F64(t.as_secs_f64()));
        }
        if let Some((input, output)) = e.usage {
            r.set(INPUT_TOKENS, int(input));
            r.set(OUTPUT_TOKENS, int(output));
        }
        if e.status >= 500 || e.end == "broken" {
            r.error = Some(if e.end == "broken" { "broken" } else { "error" });
        }
        r.end = now();
        self.buffer.push(r);
    }
}

/// What a request's attempts start from: the server span's context.
#[derive(Clone)]
pub(crate) struct Parent {
    cx: SpanCx,
    buffer: Arc<Buffer>,
    operation: &'static str,
}

impl std::fmt::Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent").finish_non_exhaustive()
    }
}

/// Who an attempt goes to.
pub(crate) struct Target<'a> {
    /// The provider's kind (its config spelling).
    pub kind: &'static str,
    /// The provider's config name.
    pub provider: &'a str,
    /// The upstream model.
    pub model: &'a str,
    /// The attempt's number in the request (1 first; hedges included).
    pub attempt: u32,
    /// What started it, when it is a hedge.
    pub hedge: Option<&'static str>,
}

impl Parent {
    /// The span of an attempt on `t`.
    pub(crate) fn attempt(&self, t: &Target<'_>) -> AttemptSpan {
        let cx = SpanCx { span_id: span_id(), ..self.cx.clone() };
        let record = cx.sampled.then(|| {
            let attrs = self.buffer.attrs(CLIENT_ROOM);
            let mut r = Record::start(Kind::Client, (cx.trace_id, cx.span_id), self.operation, attrs);
            r.parent = Some((self.cx.span_id, false));
            r.state.clone_from(&cx.state);
            r.set(OPERATION, Val::Static(self.operation));
            r.set(PROVIDER, Val::Static(provider_name(t.kind)));
            let model = r.set_text(REQUEST_MODEL, t.model);
            r.name.1 = Some(model);
            r.set_text("tier1.provider", t.provider);
            r.set("tier1.attempt", Val::Int(i64::from(t.attempt)));
            if let Some(h) = t.hedge {
                r.set("tier1.hedge", Val::Static(h));
            }
            r
        });
        AttemptSpan { cx, record, buffer: self.buffer.clone() }
    }
}

/// One attempt's span; dropped unended (a hedge that lost, a client that left), it ends as
/// `cancelled`.
pub(crate) struct AttemptSpan {
    cx: SpanCx,
    record: Option<Record>,
    buffer: Arc<Buffer>,
}

impl AttemptSpan {
    /// The trace context the attempt's upstream request carries.
    pub(crate) fn propagated(&self) -> Propagated {
        self.cx.inject()
    }

    /// Ends the span: the upstream's `status` if one answered, and the attempt's classification
    /// (`ok` for a success).
    pub(crate) fn end(mut self, status: Option<u16>, class: &'static str) {
        if let Some(mut r) = self.record.take() {
            if let Some(code) = status {
                r.set(STATUS_CODE, Val::Int(i64::from(code)));
            }
            r.set("tier1.classification", Val::Static(class));
            if class != "ok" {
                r.error = Some(class);
            }
            r.end = now();
            self.buffer.push(r);
        }
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.set("tier1.classification", Val::Static("cancelled"));
            r.end = now();
            self.buffer.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn the_ratio_keeps_the_trace_ids_whose_low_half_falls_below_it() {
        let id = |low: u64| {
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&low.to_be_bytes());
            b
        };
        assert!(within(1.0, &id(u64::MAX)));
        assert!(!within(0.0, &id(0)));
        assert!(within(0.5, &id(((1u64 << 62) - 1) << 1)));
        assert!(!within(0.5, &id(1 << 63)));
        let kept = (0..10_000).filter(|_| within(0.25, &fastrand::u128(1..).to_be_bytes())).count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
    }
}
