//! Anthropic Messages (the client's format) ⇄ OpenAI chat completions (the provider's): the
//! Anthropic-format ingress served by OpenAI-compatible and Azure providers.
//!
//! Requests: `system` becomes a system message; text and image blocks become content parts
//! (base64 sources as data URLs); assistant `tool_use` blocks become `tool_calls` and user
//! `tool_result` blocks `tool` messages (ahead of the user's other blocks, as OpenAI requires);
//! tools, `tool_choice`, `stop_sequences`, `temperature`, `top_p`, `max_tokens`,
//! `metadata.user_id`. Streams ask for usage (`stream_options.include_usage`) so that the
//! Anthropic stream can report it. Fields OpenAI cannot take are dropped and listed.
//!
//! Responses and streams come back as an Anthropic `message` and its event sequence
//! (`message_start`, content blocks with text and `input_json_delta`s, `message_delta` with the
//! stop reason and usage, `message_stop` only once the provider sent `data: [DONE]`).

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{TranslateError, text_of};

/// A translated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The OpenAI chat body.
    pub body: Bytes,
    /// Anthropic fields OpenAI cannot take, dropped.
    pub dropped: Vec<&'static str>,
}

/// Anthropic fields with no OpenAI counterpart.
const DROPPED: [&str; 4] = ["top_k", "thinking", "container", "mcp_servers"];

/// An Anthropic image block as an OpenAI `image_url` part.
fn image(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str)?,
            source.get("data").and_then(Value::as_str)?
        ),
        Some("url") => source.get("url").and_then(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Anthropic Messages body → OpenAI chat body for `model`.
pub fn request(anthropic: &[u8], model: &str, stream: bool) -> Result<Request, TranslateError> {
    let obj: Map<String, Value> = match serde_json::from_slice(anthropic) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(TranslateError::new("body must be an object")),
        Err(e) => return Err(TranslateError::new(format!("invalid JSON: {e}"))),
    };
    let mut dropped: Vec<&'static str> =
        DROPPED.iter().copied().filter(|k| obj.get(*k).is_some_and(|x| !x.is_null())).collect();
    let mut messages: Vec<Value> = Vec::new();
    if let Some(system) = obj.get("system") {
        let text = text_of(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("messages must be an array"))?;
    for m in turns {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks: Vec<Value> = match content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        match role {
            "user" => user_turn(&blocks, &mut messages, &mut dropped),
            "assistant" => messages.push(assistant_turn(&blocks)),
            other => return Err(TranslateError::new(format!("unsupported message role {other:?}"))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(x) = obj.get("max_tokens").filter(|x| !x.is_null()) {
        out.insert("max_tokens".into(), x.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(x) = obj.get(k).filter(|x| !x.is_null()) {
            out.insert(k.into(), x.clone());
        }
    }
    if let Some(stop) = obj.get("stop_sequences").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        out.insert("stop".into(), Value::Array(stop.clone()));
    }
    if let Some(tools) = tools(&obj) {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = obj.get("tool_choice") {
        let c = match choice.get("type").and_then(Value::as_str) {
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => choice.get("name").map(|n| json!({"type": "function", "function": {"name": n}})),
            Some("auto") => Some(json!("auto")),
            _ => None,
        };
        if let Some(c) = c {
            out.insert("tool_choice".into(), c);
        }
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) && out.contains_key("tools") {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(user) = obj.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str) {
        out.insert("user".into(), json!(user));
    }
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    dropped.dedup();
    let body = serde_json::to_vec(&Value::Object(out)).map_err(|e| TranslateError::new(e.to_string()))?;
    Ok(Request { body: Bytes::from(body), dropped })
}

/// A user turn's blocks: text and images as one user message, each tool result as a `tool`
/// message of its own (before the user message, as OpenAI orders them).
fn user_turn(blocks: &[Value], messages: &mut Vec<Value>, dropped: &mut Vec<&'static str>) {
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": b.get("text")})),
            Some("image") => parts.extend(image(b)),
            Some("tool_result") => messages.push(json!({
                "role": "tool",
                "tool_call_id": b.get("tool_use_id"),
                "content": text_of(b.get("content").unwrap_or(&Value::Null)),
            })),
            _ => dropped.push("content blocks other than text, image and tool_result"),
        }
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
}

/// An assistant turn's blocks as one assistant message: its text and its tool calls.
fn assistant_turn(blocks: &[Value]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": b.get("id"), "type": "function",
                "function": {"name": b.get("name"),
                    "arguments": b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string)},
            })),
            // Thinking is the provider's own; another provider cannot take it.
            _ => {}
        }
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

/// Anthropic `tools` as OpenAI function tools; `None` when there are none.
fn tools(obj: &Map<String, Value>) -> Option<Value> {
    let tools = obj.get("tools").and_then(Value::as_array)?;
    let tools: Vec<Value> = tools
        .iter()
        .filter_map(|t| {
            let mut f = Map::new();
            f.insert("name".into(), t.get("name")?.clone());
            if let Some(d) = t.get("description") {
                f.insert("description".into(), d.clone());
            }
            f.insert(
                "parameters".into(),
                t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
            );
            Some(json!({"type": "function", "function": f}))
        })
        .collect();
    (!tools.is_empty()).then_some(Value::Array(tools))
}

/// OpenAI's `finish_reason` as an Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn usage_of(u: &Value) -> (u64, u64, u64) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
    (n("prompt_tokens").saturating_sub(cached), n("completion_tokens"), cached)
}

fn usage_json((input, output, cached): (u64, u64, u64)) -> Value {
    json!({"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0})
}

/// An Anthropic message id from an OpenAI one (Azure's first stream chunk has an empty one).
fn message_id(openai_id: Option<&str>) -> String {
    let id = openai_id.map(|id| id.trim_start_matches("chatcmpl-")).filter(|id| !id.is_empty());
    format!("msg_{}", id.unwrap_or("tier1"))
}

/// OpenAI `chat.completion` → Anthropic `message`, with the usage (input, output).
pub fn response(openai: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
    let v: Value = serde_json::from_slice(openai)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let choice = v.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    // A refusal is the model's answer too: Anthropic has no separate field for it.
    let text = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty());
    if let Some(t) = text.or_else(|| message.get("refusal").and_then(Value::as_str)) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        content.push(json!({
            "type": "tool_use", "id": call.get("id"), "name": f.get("name"),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop");
    let usage = v.get("usage").filter(|u| !u.is_null()).map(usage_of);
    let out = json!({
        "id": message_id(v.get("id").and_then(Value::as_str)),
        "type": "message", "role": "assistant",
        "model": v.get("model").and_then(Value::as_str).unwrap_or(model),
        "content": content,
        "stop_reason": stop_reason(finish), "stop_sequence": null,
        "usage": usage_json(usage.unwrap_or_default()),
    });
    Ok((Bytes::from(out.to_string()), usage.map(|(i, o, c)| (i + c, o))))
}

/// The error `type` Anthropic uses for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An OpenAI error body → an Anthropic-shaped one (same message).
pub fn error(openai: &[u8], status: u16) -> Bytes {
    let v: Value = serde_json::from_slice(openai).unwrap_or(Value::Null);
    let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("upstream error");
    let kind = anthropic_error_type(status);
    Bytes::from(json!({"type": "error", "error": {"type": kind, "message": message}}).to_string())
}

/// The block open in the Anthropic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Open {
    #[default]
    None,
    Text,
    /// A tool call: OpenAI's tool call index.
    Tool(u64),
}

/// OpenAI `chat.completion.chunk` SSE → Anthropic Messages events.
pub type Stream = super::Sse<StreamState>;

impl Stream {
    /// A translator for `model` (named in `message_start` until the provider names it).
    pub fn new(model: &str) -> Self {
        Self::wrap(StreamState { model: model.to_owned(), ..StreamState::default() })
    }
}

/// What [`Stream`] remembers between chunks.
#[derive(Debug, Default)]
pub struct StreamState {
    model: String,
    started: bool,
    open: Open,
    /// Anthropic content block index of the next block.
    next_block: u64,
    stop: Option<&'static str>,
    usage: (u64, u64, u64),
    /// Whether the provider reported usage at all.
    reported: bool,
    done: bool,
}

fn event(name: &str, v: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {v}\n\n").into_bytes()
}

impl StreamState {
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            let index = self.next_block - 1;
            out.extend(event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
            self.open = Open::None;
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<u8>) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = kind;
        out.extend(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn start(&mut self, v: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(m) = v.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = m.to_owned();
        }
        let message = json!({
            "id": message_id(v.get("id").and_then(Value::as_str)), "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage_json((0, 0, 0)),
        });
        out.extend(event("message_start", &json!({"type": "message_start", "message": message})));
    }

    /// One chunk's data; `false` when it is neither JSON nor `[DONE]`.
    fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if crate::sse::is_done(data) {
            self.finish(out);
            return true;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else { return false };
        self.value(&v, out);
        true
    }

    fn value(&mut self, v: &Value, out: &mut Vec<u8>) {
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            let kind = match crate::sse::classify_error(e) {
                crate::error::Class::RateLimited => "rate_limit_error",
                crate::error::Class::Overloaded => "overloaded_error",
                _ => "api_error",
            };
            let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream error");
            out.extend(event(
                "error",
                &json!({"type": "error", "error": {"type": kind, "message": message}}),
            ));
            return;
        }
        let usage = v.get("usage").filter(|u| !u.is_null());
        let no_choices = v.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if no_choices && usage.is_none() {
            // Nothing to relay (Azure opens with a prompt-filter chunk that has no id or model).
            return;
        }
        self.start(v, out);
        if let Some(u) = usage {
            self.usage = usage_of(u);
            self.reported = true;
        }
        let Some(choice) = v.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = match self.open {
                Open::Text => self.next_block - 1,
                _ => self.open(Open::Text, json!({"type": "text", "text": ""}), out),
            };
            out.extend(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}),
            ));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function").unwrap_or(&Value::Null);
            let index = if self.open == Open::Tool(n) {
                self.next_block - 1
            } else {
                let block =
                    json!({"type": "tool_use", "id": call.get("id"), "name": f.get("name"), "input": {}});
                self.open(Open::Tool(n), block, out)
            };
            if let Some(args) = f.get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                out.extend(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(f));
        }
    }

    /// At `[DONE]`: close the open block, report the stop reason and usage, end the message.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(&Value::Null, out);
        self.close(out);
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage_json(self.usage)});
        out.extend(event("message_delta", &delta));
        out.extend(event("message_stop", &json!({"type": "message_stop"})));
        self.done = true;
    }
}

impl super::EventTranslator for StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.chunk(data, out)
    }

    fn complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.reported.then_some((self.usage.0 + self.usage.2, self.usage.1))
    }

    fn cached(&self) -> u64 {
        if self.reported { self.usage.2 } else { 0 }
    }
}

#[cfg(test)]
mod tests;
