//! The spans: [`ServerSpan`], one per request, child of the request's `traceparent` when it
//! carries a valid one; [`AttemptSpan`], one per upstream attempt (hedges included), child of
//! the server span, whose context the upstream request carries. Attribute names follow the
//! OpenTelemetry GenAI semantic conventions (`gen_ai.*`) where one exists, else `tier1.*`.
//! Values are names, numbers and classifications: never content, never a secret.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, Span};

use super::{Otel, context};

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

/// Longest model name put in a span name or attribute (a client's model name is its own).
const MAX_NAME: usize = 128;

/// The `traceparent` and `tracestate` an upstream request carries.
pub(crate) type Propagated = (Option<HeaderValue>, Option<HeaderValue>);

/// `s`, cut to [`MAX_NAME`] bytes at a character boundary.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

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

/// A request's span, from its start to the end of its answer (a relayed body's last byte).
pub(crate) struct ServerSpan {
    span: Span,
    tracer: SdkTracer,
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
        let cx = match context::extract(headers) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let operation = operation(endpoint);
        let mut attributes = vec![KeyValue::new("tier1.endpoint", endpoint)];
        if let Some(op) = operation {
            attributes.push(KeyValue::new(OPERATION, op));
        }
        let span = self
            .tracer
            .span_builder(operation.unwrap_or(endpoint))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &cx);
        ServerSpan { span, tracer: self.tracer.clone(), operation }
    }
}

impl ServerSpan {
    /// The request asked for `model`, with at most `max_tokens` out.
    pub(crate) fn requested(&mut self, model: &str, max_tokens: Option<u64>) {
        let model = bounded(model);
        if let Some(op) = self.operation {
            self.span.update_name(format!("{op} {model}"));
        }
        self.span.set_attribute(KeyValue::new(REQUEST_MODEL, model));
        if let Some(n) = max_tokens {
            self.span.set_attribute(KeyValue::new(MAX_TOKENS, i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }

    /// What the request's attempts start from.
    pub(crate) fn parent(&self) -> Parent {
        let cx = Context::new().with_remote_span_context(self.span.span_context().clone());
        Parent { tracer: self.tracer.clone(), cx, operation: self.operation.unwrap_or("chat") }
    }

    /// The input tokens the provider read from its prompt cache, and the answer's finish
    /// reasons, when it reported them.
    pub(crate) fn answered(&mut self, cached: u64, finish_reasons: &[String]) {
        if cached > 0 {
            self.span.set_attribute(KeyValue::new(CACHE_READ, i64::try_from(cached).unwrap_or(i64::MAX)));
        }
        if !finish_reasons.is_empty() {
            let reasons: Vec<StringValue> =
                finish_reasons.iter().map(|r| StringValue::from(bounded(r))).collect();
            self.span.set_attribute(KeyValue::new(FINISH_REASONS, Value::Array(reasons.into())));
        }
    }

    /// Ends the span with what the request's end tells.
    pub(crate) fn end(mut self, e: &Ended<'_>) {
        let s = &mut self.span;
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        s.set_attribute(KeyValue::new(STATUS_CODE, i64::from(e.status)));
        s.set_attribute(KeyValue::new("tier1.route", e.route.to_owned()));
        s.set_attribute(KeyValue::new("tier1.attempts", i64::from(e.attempts)));
        s.set_attribute(KeyValue::new("tier1.stream", e.stream));
        s.set_attribute(KeyValue::new("tier1.end", e.end));
        if let Some(p) = e.provider {
            s.set_attribute(KeyValue::new("tier1.provider", p.to_owned()));
        }
        if let Some(m) = e.model {
            s.set_attribute(KeyValue::new(RESPONSE_MODEL, bounded(m)));
        }
        if let Some(r) = e.fallback_reason {
            s.set_attribute(KeyValue::new("tier1.fallback_reason", r));
        }
        if let Some(t) = e.ttft {
            s.set_attribute(KeyValue::new("tier1.time_to_first_token", t.as_secs_f64()));
        }
        if let Some((input, output)) = e.usage {
            s.set_attribute(KeyValue::new(INPUT_TOKENS, int(input)));
            s.set_attribute(KeyValue::new(OUTPUT_TOKENS, int(output)));
        }
        if e.status >= 500 || e.end == "broken" {
            s.set_status(Status::error(Cow::Borrowed(if e.end == "broken" { "broken" } else { "error" })));
        }
        s.end();
    }
}

/// What a request's attempts start from: the server span's context.
#[derive(Clone)]
pub(crate) struct Parent {
    tracer: SdkTracer,
    cx: Context,
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
        let model = bounded(t.model);
        let mut attributes = vec![
            KeyValue::new(OPERATION, self.operation),
            KeyValue::new(PROVIDER, provider_name(t.kind)),
            KeyValue::new(REQUEST_MODEL, model.clone()),
            KeyValue::new("tier1.provider", t.provider.to_owned()),
            KeyValue::new("tier1.attempt", i64::from(t.attempt)),
        ];
        if let Some(h) = t.hedge {
            attributes.push(KeyValue::new("tier1.hedge", h));
        }
        let span = self
            .tracer
            .span_builder(format!("{} {model}", self.operation))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        AttemptSpan { span: Some(span) }
    }
}

/// One attempt's span; dropped unended (a hedge that lost, a client that left), it ends as
/// `cancelled`.
pub(crate) struct AttemptSpan {
    span: Option<Span>,
}

impl AttemptSpan {
    /// The trace context the attempt's upstream request carries.
    pub(crate) fn propagated(&self) -> Propagated {
        self.span.as_ref().map_or((None, None), |s| context::inject(s.span_context()))
    }

    /// Ends the span: the upstream's `status` if one answered, and the attempt's classification
    /// (`ok` for a success).
    pub(crate) fn end(mut self, status: Option<u16>, class: &'static str) {
        if let Some(mut s) = self.span.take() {
            if let Some(code) = status {
                s.set_attribute(KeyValue::new(STATUS_CODE, i64::from(code)));
            }
            s.set_attribute(KeyValue::new("tier1.classification", class));
            if class != "ok" {
                s.set_status(Status::error(Cow::Borrowed(class)));
            }
            s.end();
        }
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let Some(mut s) = self.span.take() {
            s.set_attribute(KeyValue::new("tier1.classification", "cancelled"));
            s.end();
        }
    }
}
