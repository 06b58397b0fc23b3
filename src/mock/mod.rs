//! The mock provider: OpenAI-shaped answers with configurable timing and fault injection.
//!
//! One generator serves two users: the in-process `kind = "mock"` provider (the demo config, load
//! tests without a network hop) and the standalone [`server::MockUpstream`] (`tier1
//! mock-upstream`), which adds call counting and per-request overrides through `x-mock-*` headers.

pub mod aws;
pub mod bedrock;
pub(crate) mod cache;
pub mod server;
pub mod sigv4;
pub mod tools;
pub mod vertex;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;
use tokio::time::Sleep;

pub(crate) use crate::config::RawBehavior;
pub use crate::config::{Behavior, DEFAULT_REPLY, Quota, Taken};

impl Behavior {
    /// Whether the `n`th request (0-based) should fail, and with which status.
    pub fn failure(&self, n: u64) -> Option<StatusCode> {
        let status = self.status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(first) = self.fail_first {
            return (n < first).then_some(status);
        }
        if self.fail_rate > 0.0 {
            // `status` only names what a failure looks like here: the rest succeed.
            return (fastrand::f64() < self.fail_rate).then_some(status);
        }
        self.status
    }
}

/// What the mock is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MockEndpoint {
    /// `/chat/completions`.
    Chat,
    /// `/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
    /// OpenAI `/responses` (text answers only: the mock makes no tool calls in this format).
    Responses,
    /// Gemini `models/{model}:generateContent`, or `:streamGenerateContent` when `stream`.
    Generate {
        /// The model from the URL.
        model: String,
        /// Whether the stream method was called.
        stream: bool,
    },
    /// Gemini `models/{model}:batchEmbedContents`.
    BatchEmbed,
    /// Bedrock `model/{model}/converse`, or `/converse-stream` when `stream`.
    Converse {
        /// Whether the stream method was called.
        stream: bool,
    },
}

/// Callbacks from a mock stream, so the standalone server can count completions and cancels.
pub(crate) trait StreamObserver: Send + Sync + 'static {
    /// The stream was sent to the end.
    fn completed(&self);
    /// The stream's body was dropped before the end (the client went away).
    fn cancelled(&self);
}

/// The mock's answer to one request: status, a few headers, and a body. With a quota, every
/// answer carries rate-limit headers counting it down, in the endpoint's provider's format, and
/// a request over it gets a 429 with `Retry-After` (the window's end). With `prompt_cache`, the
/// usage reports the prompt's tokens cached for `key` in `cache`.
pub(crate) async fn answer(
    behavior: &Behavior,
    served: &AtomicU64,
    endpoint: MockEndpoint,
    body: &[u8],
    observer: Option<Arc<dyn StreamObserver>>,
    (cache, key): (&cache::PromptCache, &str),
) -> Response<MockBody> {
    let resp = limited(behavior, served, endpoint, body, observer).await;
    if !behavior.prompt_cache || !resp.status().is_success() {
        return resp;
    }
    match cache.lookup(key, body) {
        Some(p) => cache::report(resp, p),
        None => resp,
    }
}

/// The answer, within the quota if there is one.
async fn limited(
    behavior: &Behavior,
    served: &AtomicU64,
    endpoint: MockEndpoint,
    body: &[u8],
    observer: Option<Arc<dyn StreamObserver>>,
) -> Response<MockBody> {
    let Some(quota) = &behavior.quota else {
        return respond(behavior, served, endpoint, body, observer).await;
    };
    let taken = quota.take(tokio::time::Instant::now());
    let anthropic = endpoint == MockEndpoint::Messages;
    let mut resp = if taken.allowed {
        respond(behavior, served, endpoint, body, observer).await
    } else {
        let secs = taken.reset.as_secs() + u64::from(taken.reset.subsec_nanos() > 0);
        error_response(StatusCode::TOO_MANY_REQUESTS, Some(HeaderValue::from(secs)), &endpoint)
    };
    quota_headers(resp.headers_mut(), &taken, anthropic);
    resp
}

/// Rate-limit headers of a quota: Anthropic's (`anthropic-ratelimit-requests-*`, the reset as
/// an RFC 3339 time) or OpenAI's (`x-ratelimit-*-requests`, the reset as a Go duration).
fn quota_headers(headers: &mut http::HeaderMap, t: &crate::config::Taken, anthropic: bool) {
    let value = |s: String| HeaderValue::from_str(&s).ok();
    let (limit, remaining, reset) = if anthropic {
        let at = std::time::SystemTime::now() + t.reset;
        (
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            ("anthropic-ratelimit-requests-reset", humantime::format_rfc3339_millis(at).to_string()),
        )
    } else {
        (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            ("x-ratelimit-reset-requests", format!("{}ms", t.reset.as_millis())),
        )
    };
    for (name, v) in [
        (limit, value(t.limit.to_string())),
        (remaining, value(t.remaining.to_string())),
        (reset.0, value(reset.1)),
    ] {
        if let Some(v) = v {
            headers.insert(http::HeaderName::from_static(name), v);
        }
    }
}

async fn respond(
    behavior: &Behavior,
    served: &AtomicU64,
    endpoint: MockEndpoint,
    body: &[u8],
    observer: Option<Arc<dyn StreamObserver>>,
) -> Response<MockBody> {
    let n = served.fetch_add(1, Ordering::Relaxed);
    if !behavior.latency.is_zero() {
        tokio::time::sleep(behavior.latency).await;
    }
    if let Some(status) = behavior.failure(n) {
        return error_response(status, behavior.retry_after.clone(), &endpoint);
    }
    let (req, tool, reply) = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let tool = match endpoint {
                MockEndpoint::Responses => None,
                MockEndpoint::Converse { .. } => bedrock::to_call(&v),
                _ => tools::to_call(&v),
            };
            (MockRequest::deserialize(&v), tool, continued(&v, &behavior.reply))
        }
        Err(e) => (Err(e), None, &*behavior.reply),
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("mock: invalid JSON body: {e}");
            return json_response(StatusCode::BAD_REQUEST, error_json(&msg, "invalid_request_error"));
        }
    };
    let id = n + 1;
    if let MockEndpoint::Converse { stream } = endpoint {
        return converse(stream, reply, tool.as_deref(), id, |frames| sse(frames, behavior, observer));
    }
    if let Some(tool) = tool {
        return tool_answer(&req, &tool, endpoint, id, |frames| sse(frames, behavior, observer));
    }
    match endpoint {
        MockEndpoint::Generate { model, stream: true } => {
            sse(gemini_frames(&model, reply, id), behavior, observer)
        }
        MockEndpoint::Generate { model, stream: false } => {
            json_response(StatusCode::OK, gemini_json(&model, reply, id))
        }
        MockEndpoint::BatchEmbed => {
            let count = req.requests.as_ref().map_or(1, Vec::len);
            let embeddings: Vec<serde_json::Value> = (0..count)
                .map(|i| serde_json::json!({"values": (0..8).map(|d| ((id + (i * 8 + d) as u64) as f64).sin()).collect::<Vec<f64>>()}))
                .collect();
            json_response(
                StatusCode::OK,
                Bytes::from(serde_json::json!({"embeddings": embeddings}).to_string()),
            )
        }
        MockEndpoint::Embeddings => json_response(StatusCode::OK, embeddings_json(&req, id)),
        MockEndpoint::Messages if req.stream == Some(true) => {
            sse(anthropic_frames(&req.model, reply, id), behavior, observer)
        }
        MockEndpoint::Messages => json_response(StatusCode::OK, anthropic_json(&req.model, reply, id)),
        MockEndpoint::Responses if req.stream == Some(true) => {
            sse(responses_frames(&req.model, reply, id), behavior, observer)
        }
        MockEndpoint::Responses => json_response(StatusCode::OK, responses_json(&req.model, reply, id)),
        MockEndpoint::Chat if req.stream == Some(true) => {
            let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
            let mut resp = sse(stream_frames(&req.model, reply, id, include_usage), behavior, observer);
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        MockEndpoint::Chat | MockEndpoint::Converse { .. } => {
            json_response(StatusCode::OK, completion_json(&req.model, reply, id))
        }
    }
}

/// A Converse answer: JSON, or an event stream (`sse` paces the frames).
fn converse(
    stream: bool,
    reply: &str,
    tool: Option<&str>,
    id: u64,
    sse: impl FnOnce(VecDeque<Bytes>) -> Response<MockBody>,
) -> Response<MockBody> {
    if !stream {
        return json_response(StatusCode::OK, bedrock::converse_json(reply, tool, id));
    }
    let mut resp = sse(bedrock::converse_frames(reply, tool, id));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    resp
}

/// How many bytes before the join a continuation starts: models asked to continue a prefill
/// often repeat a little of it, which tier1 removes.
const CONTINUE_REPEAT: usize = 20;

/// The answer to a request that ends in a prefill of `reply` (a trailing assistant message, or
/// Gemini's model turn): the rest of `reply`, from [`CONTINUE_REPEAT`] bytes before the join.
/// Anything else gets `reply`.
fn continued<'r>(v: &serde_json::Value, reply: &'r str) -> &'r str {
    let last = v["messages"].as_array().or_else(|| v["contents"].as_array()).and_then(|m| m.last());
    let Some(last) = last.filter(|m| m["role"] == "assistant" || m["role"] == "model") else { return reply };
    let text: String = match &last["content"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => last["parts"]
            .as_array()
            .map_or_else(String::new, |p| p.iter().filter_map(|b| b["text"].as_str()).collect()),
    };
    if text.is_empty() || !reply.starts_with(&text) {
        return reply;
    }
    let mut start = text.len().saturating_sub(CONTINUE_REPEAT);
    while !reply.is_char_boundary(start) {
        start -= 1;
    }
    &reply[start..]
}

/// The answer to a request whose last message asks for a tool call: the call, in the
/// endpoint's format (`sse` makes a stream of frames).
fn tool_answer(
    req: &MockRequest,
    tool: &str,
    endpoint: MockEndpoint,
    id: u64,
    sse: impl FnOnce(VecDeque<Bytes>) -> Response<MockBody>,
) -> Response<MockBody> {
    let stream = req.stream == Some(true);
    match endpoint {
        MockEndpoint::Generate { model, stream: true } => {
            sse(VecDeque::from([Bytes::from(format!("data: {}\r\n\r\n", tools::gemini(&model, tool, id)))]))
        }
        MockEndpoint::Generate { model, .. } => {
            json_response(StatusCode::OK, Bytes::from(tools::gemini(&model, tool, id).to_string()))
        }
        MockEndpoint::Messages if stream => sse(tools::anthropic_frames(&req.model, tool, id)),
        MockEndpoint::Messages => json_response(StatusCode::OK, tools::anthropic_json(&req.model, tool, id)),
        _ if stream => {
            let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
            sse(tools::openai_frames(&req.model, tool, id, include_usage))
        }
        _ => json_response(StatusCode::OK, tools::openai_json(&req.model, tool, id)),
    }
}

/// An SSE answer of `frames`, sent at `behavior`'s pace.
fn sse(
    frames: VecDeque<Bytes>,
    behavior: &Behavior,
    observer: Option<Arc<dyn StreamObserver>>,
) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::Stream(MockStream::new(frames, behavior, observer)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

#[derive(Deserialize)]
struct MockRequest {
    #[serde(default)]
    model: String,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    input: Option<serde_json::Value>,
    /// Gemini `batchEmbedContents`.
    requests: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn words(reply: &str) -> impl Iterator<Item = &str> {
    // Split after each space so that the pieces concatenate back to the reply exactly.
    reply.split_inclusive(' ')
}

fn usage(reply: &str) -> serde_json::Value {
    let completion = words(reply).count();
    serde_json::json!({"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion})
}

/// A non-streaming `chat.completion` body.
pub fn completion_json(model: &str, reply: &str, id: u64) -> Bytes {
    let v = serde_json::json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(reply),
    });
    Bytes::from(v.to_string())
}

/// The SSE frames of a streamed answer: a role preamble, one chunk per word, the finish chunk, an
/// optional usage chunk, and `data: [DONE]`.
pub fn stream_frames(model: &str, reply: &str, id: u64, include_usage: bool) -> VecDeque<Bytes> {
    let created = unix_now();
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let v = serde_json::json!({
            "id": format!("chatcmpl-mock-{id}"), "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {v}\n\n"))
    };
    let mut frames = VecDeque::new();
    frames.push_back(chunk(serde_json::json!({"role": "assistant", "content": ""}), None));
    for w in words(reply) {
        frames.push_back(chunk(serde_json::json!({"content": w}), None));
    }
    frames.push_back(chunk(serde_json::json!({}), Some("stop")));
    if include_usage {
        let v = serde_json::json!({
            "id": format!("chatcmpl-mock-{id}"), "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [], "usage": usage(reply),
        });
        frames.push_back(Bytes::from(format!("data: {v}\n\n")));
    }
    frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// A Gemini `GenerateContentResponse` for one chunk of text (`finish`: the last one).
fn gemini_chunk(model: &str, text: &str, id: u64, finish: bool, output: usize) -> serde_json::Value {
    let mut candidate =
        serde_json::json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if finish {
        candidate["finishReason"] = serde_json::json!("STOP");
    }
    serde_json::json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": output, "totalTokenCount": 9 + output},
        "modelVersion": model, "responseId": format!("gemini-mock-{id}"),
    })
}

/// A non-streaming Gemini answer.
pub fn gemini_json(model: &str, reply: &str, id: u64) -> Bytes {
    Bytes::from(gemini_chunk(model, reply, id, true, words(reply).count()).to_string())
}

/// A Gemini `alt=sse` stream: one chunk per word (CRLF-separated, as Google sends them), the last
/// with `finishReason`; no end marker.
pub fn gemini_frames(model: &str, reply: &str, id: u64) -> VecDeque<Bytes> {
    let pieces: Vec<&str> = words(reply).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let v = gemini_chunk(model, w, id, i + 1 == pieces.len(), i + 1);
            Bytes::from(format!("data: {v}\r\n\r\n"))
        })
        .collect()
}

/// A non-streaming Anthropic `message`.
pub fn anthropic_json(model: &str, reply: &str, id: u64) -> Bytes {
    let output = words(reply).count();
    let v = serde_json::json!({
        "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 9, "output_tokens": output},
    });
    Bytes::from(v.to_string())
}

/// An Anthropic stream: `message_start`, one text block (a delta per word, with a `ping`),
/// `message_delta` with the stop reason and usage, `message_stop`.
pub fn anthropic_frames(model: &str, reply: &str, id: u64) -> VecDeque<Bytes> {
    let event = |name: &str, v: serde_json::Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    let mut frames = VecDeque::new();
    frames.push_back(event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {
        "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    ));
    frames.push_back(event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}),
    ));
    frames.push_back(event("ping", serde_json::json!({"type": "ping"})));
    for w in words(reply) {
        frames.push_back(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    frames.push_back(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push_back(event("message_delta", serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": words(reply).count()}})));
    frames.push_back(event("message_stop", serde_json::json!({"type": "message_stop"})));
    frames
}

/// A Responses API `response` object: `output` empty while in progress, else the one message.
fn response_object(model: &str, reply: &str, id: u64, done: bool) -> serde_json::Value {
    let output = words(reply).count();
    let (status, items, usage) = if done {
        let item = responses_message(reply, id, true);
        let usage = serde_json::json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9 + output});
        ("completed", vec![item], usage)
    } else {
        ("in_progress", Vec::new(), serde_json::Value::Null)
    };
    serde_json::json!({
        "id": format!("resp_mock_{id}"), "object": "response", "created_at": unix_now(), "status": status,
        "error": null, "incomplete_details": null, "instructions": null, "max_output_tokens": null,
        "model": model, "output": items, "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "user": null, "metadata": {},
    })
}

/// The message output item of a Responses answer (`done`: with its text).
fn responses_message(reply: &str, id: u64, done: bool) -> serde_json::Value {
    let content = if done {
        serde_json::json!([{"type": "output_text", "text": reply, "annotations": []}])
    } else {
        serde_json::json!([])
    };
    let status = if done { "completed" } else { "in_progress" };
    serde_json::json!({"id": format!("msg_mock_{id}"), "type": "message", "status": status,
        "role": "assistant", "content": content})
}

/// A non-streaming Responses API answer.
pub fn responses_json(model: &str, reply: &str, id: u64) -> Bytes {
    Bytes::from(response_object(model, reply, id, true).to_string())
}

/// A Responses API stream, as OpenAI sends one: `response.created`, `response.in_progress`, the
/// message item and its text part added, one `response.output_text.delta` per word, the text,
/// part and item done, `response.completed` with the usage. Every event is named and numbered
/// (`sequence_number`); there is no `[DONE]`.
pub fn responses_frames(model: &str, reply: &str, id: u64) -> VecDeque<Bytes> {
    let item_id = format!("msg_mock_{id}");
    let mut frames = VecDeque::new();
    let mut push = |mut v: serde_json::Value| {
        let name = v["type"].as_str().unwrap_or_default().to_owned();
        v["sequence_number"] = frames.len().into();
        frames.push_back(Bytes::from(format!("event: {name}\ndata: {v}\n\n")));
    };
    push(
        serde_json::json!({"type": "response.created", "response": response_object(model, reply, id, false)}),
    );
    push(
        serde_json::json!({"type": "response.in_progress", "response": response_object(model, reply, id, false)}),
    );
    push(serde_json::json!({"type": "response.output_item.added", "output_index": 0,
        "item": responses_message(reply, id, false)}));
    let part = |text: &str| serde_json::json!({"type": "output_text", "text": text, "annotations": []});
    push(serde_json::json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
        "content_index": 0, "part": part("")}));
    for w in words(reply) {
        push(serde_json::json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
            "content_index": 0, "delta": w, "logprobs": []}));
    }
    push(serde_json::json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
        "content_index": 0, "text": reply, "logprobs": []}));
    push(serde_json::json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
        "content_index": 0, "part": part(reply)}));
    push(serde_json::json!({"type": "response.output_item.done", "output_index": 0,
        "item": responses_message(reply, id, true)}));
    push(
        serde_json::json!({"type": "response.completed", "response": response_object(model, reply, id, true)}),
    );
    frames
}

fn embeddings_json(req: &MockRequest, id: u64) -> Bytes {
    let count = match &req.input {
        Some(serde_json::Value::Array(items)) if !items.is_empty() && !items[0].is_number() => items.len(),
        _ => 1,
    };
    let data: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let embedding: Vec<f64> = (0..8).map(|d| ((id as f64) + (i * 8 + d) as f64).sin()).collect();
            serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let v = serde_json::json!({
        "object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": 4 * count, "total_tokens": 4 * count},
    });
    Bytes::from(v.to_string())
}

/// An OpenAI-shaped error body.
pub(crate) fn error_json(message: &str, kind: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            .to_string(),
    )
}

fn error_response(
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    endpoint: &MockEndpoint,
) -> Response<MockBody> {
    let msg = format!("mock: injected failure {}", status.as_u16());
    if let MockEndpoint::Converse { .. } = endpoint {
        let mut resp = bedrock::error_response(status, &msg);
        if let Some(ra) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        return resp;
    }
    let body = if matches!(endpoint, MockEndpoint::Generate { .. } | MockEndpoint::BatchEmbed) {
        // Google's error shape: numeric code, message, canonical status.
        let canonical = match status.as_u16() {
            429 => "RESOURCE_EXHAUSTED",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            400..=499 => "INVALID_ARGUMENT",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        Bytes::from(
            serde_json::json!({"error": {"code": status.as_u16(), "message": msg, "status": canonical}})
                .to_string(),
        )
    } else if *endpoint == MockEndpoint::Messages {
        // Anthropic's error shape and types.
        let kind = match status.as_u16() {
            429 => "rate_limit_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            400..=499 => "invalid_request_error",
            529 | 503 => "overloaded_error",
            _ => "api_error",
        };
        Bytes::from(serde_json::json!({"type": "error", "error": {"type": kind, "message": msg}}).to_string())
    } else {
        let kind = match status.as_u16() {
            429 => "rate_limit_exceeded",
            401 | 403 => "authentication_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        error_json(&msg, kind)
    };
    let mut resp = json_response(status, body);
    if let Some(ra) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, ra);
    }
    resp
}

/// A JSON response with a full body.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::Full(Some(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The mock's response body.
pub(crate) enum MockBody {
    /// A complete body, sent at once.
    Full(Option<Bytes>),
    /// A timed SSE stream.
    Stream(MockStream),
}

/// The error a mock stream ends with when told to abort.
#[derive(Debug, thiserror::Error)]
#[error("mock: stream aborted as configured")]
pub(crate) struct MockAbort;

impl Body for MockBody {
    type Data = Bytes;
    type Error = MockAbort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, MockAbort>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(s) => s.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Stream(s) => s.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// A paced SSE stream: the role preamble at once, the first content frame after `ttft`, then one
/// frame every `chunk_interval`.
pub(crate) struct MockStream {
    frames: VecDeque<Bytes>,
    ttft: Duration,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    preamble_done: bool,
    /// Frames sent after the preamble.
    sent: usize,
    abort_after: Option<usize>,
    observer: Option<Arc<dyn StreamObserver>>,
    done: bool,
}

impl MockStream {
    fn new(frames: VecDeque<Bytes>, b: &Behavior, observer: Option<Arc<dyn StreamObserver>>) -> Self {
        Self {
            frames,
            ttft: b.ttft,
            interval: b.chunk_interval,
            sleep: None,
            preamble_done: false,
            sent: 0,
            abort_after: b.abort_after,
            observer,
            done: false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, MockAbort>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.preamble_done {
            self.preamble_done = true;
            if let Some(frame) = self.frames.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
        }
        if self.abort_after.is_some_and(|n| self.sent >= n) {
            self.done = true;
            return Poll::Ready(Some(Err(MockAbort)));
        }
        let gap = if self.sent == 0 { self.ttft } else { self.interval };
        if !gap.is_zero() {
            let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        match self.frames.pop_front() {
            Some(frame) => {
                self.sent += 1;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            None => {
                self.done = true;
                if let Some(o) = self.observer.take() {
                    o.completed();
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for MockStream {
    fn drop(&mut self) {
        if !self.done
            && let Some(o) = self.observer.take()
        {
            o.cancelled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rate_with_a_status_fails_only_that_fraction() {
        let b =
            Behavior { status: Some(StatusCode::TOO_MANY_REQUESTS), fail_rate: 0.5, ..Behavior::default() };
        let failed = (0..1000).filter(|n| b.failure(*n).is_some()).count();
        // Binomial(1000, 0.5): 400..600 is more than six standard deviations wide.
        assert!((400..600).contains(&failed), "{failed} of 1000 failed");
        assert!((0..1000).filter_map(|n| b.failure(n)).all(|s| s == StatusCode::TOO_MANY_REQUESTS));
    }

    #[test]
    fn status_alone_fails_every_request_and_fail_first_only_the_first() {
        let always = Behavior { status: Some(StatusCode::BAD_GATEWAY), ..Behavior::default() };
        assert!((0..10).all(|n| always.failure(n) == Some(StatusCode::BAD_GATEWAY)));
        let first = Behavior { fail_first: Some(2), ..Behavior::default() };
        let got: Vec<_> = (0..4).map(|n| first.failure(n)).collect();
        let e = Some(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(got, vec![e, e, None, None]);
        assert!((0..10).all(|n| Behavior::default().failure(n).is_none()));
    }
}
