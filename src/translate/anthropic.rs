//! OpenAI chat completions ⇄ Anthropic Messages.
//!
//! Requests: system and developer messages become `system`; user, assistant and tool turns become
//! Anthropic turns (consecutive same-role turns merged), with text, images (data URLs as base64
//! sources, http(s) URLs as URL sources: tier1 never downloads them), assistant `tool_calls` as
//! `tool_use` blocks and `tool` results as `tool_result` blocks; tools, `tool_choice`, `stop`,
//! `temperature`, `top_p`, `user`; `max_tokens` (required by Anthropic) from the request or the
//! provider's default. Parameters Anthropic cannot take (`response_format`: Anthropic's
//! structured outputs are a beta behind a header; `reasoning_effort`) are dropped and listed
//! (`x-tier1-dropped-params`), never silently reinterpreted.
//!
//! Responses and streams come back as `chat.completion` and `chat.completion.chunk`s with stable
//! ids, incremental `tool_calls`, mapped finish reasons, usage (with cached tokens), and
//! `data: [DONE]` only after Anthropic's `message_stop`.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{ChunkHead, TranslateError, text_of, unix_now};

pub use super::Request;

/// Parameters with no Anthropic counterpart.
const DROPPED: [&str; 14] = super::UNMAPPED_CHAT_PARAMS;

fn blocks_of(content: &Value, dropped: &mut Vec<&'static str>) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let t = p.get("text").and_then(Value::as_str).unwrap_or_default();
                    (!t.is_empty()).then(|| json!({"type": "text", "text": t}))
                }
                Some("image_url") => {
                    let url =
                        p.get("image_url").and_then(|i| i.get("url").or(Some(i))).and_then(Value::as_str)?;
                    Some(image(url))
                }
                _ => {
                    dropped.push("content parts other than text and image_url");
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A data URL as a base64 source; anything else as a URL source.
fn image(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(media) = meta.strip_suffix(";base64")
    {
        return json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// OpenAI chat body → Anthropic Messages body for `model`.
pub fn request(
    openai: &[u8],
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Request, TranslateError> {
    let v: Value =
        serde_json::from_slice(openai).map_err(|e| TranslateError::new(format!("invalid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| TranslateError::new("body must be an object"))?;
    let mut dropped: Vec<&'static str> = DROPPED
        .iter()
        .copied()
        .filter(|k| {
            obj.get(*k).is_some_and(|x| !x.is_null())
                && !(*k == "n" && obj.get(*k).and_then(Value::as_u64) == Some(1))
        })
        .collect();
    let (system, turns) = conversation(obj, &mut dropped)?;
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let max_tokens = obj
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| obj.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(u64::from(default_max_tokens));
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let messages: Vec<Value> =
        turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    out.insert("messages".into(), Value::Array(messages));
    for k in ["temperature", "top_p"] {
        if let Some(x) = obj.get(k).filter(|x| !x.is_null()) {
            out.insert(k.into(), x.clone());
        }
    }
    if let Some(stop) = super::stop_list(obj) {
        out.insert("stop_sequences".into(), stop);
    }
    if let Some(tools) = tools(obj) {
        out.insert("tools".into(), tools);
    }
    if let Some(c) = tool_choice(obj, out.contains_key("tools")) {
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = obj.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Request::new(obj, out, dropped)
}

/// Anthropic turns: a role and its content blocks.
type Turns = Vec<(String, Vec<Value>)>;

/// The system prompt's parts and the turns of an OpenAI `messages` array, as Anthropic has them:
/// roles alternate (a run of one role is one turn), tool calls are `tool_use` blocks of the
/// assistant's turn, tool results `tool_result` blocks of the user's.
fn conversation(
    obj: &Map<String, Value>,
    dropped: &mut Vec<&'static str>,
) -> Result<(Vec<String>, Turns), TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Turns = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((r, b)) if r == role => b.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    };
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("messages must be an array"))?;
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => push("user", blocks_of(content, dropped)),
            "assistant" => {
                let mut blocks = blocks_of(content, dropped);
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": f.get("name").cloned().unwrap_or(Value::Null),
                        "input": input,
                    }));
                }
                push("assistant", blocks);
            }
            "tool" => push(
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(content),
                })],
            ),
            other => return Err(TranslateError::new(format!("unsupported message role {other:?}"))),
        }
    }
    Ok((system, turns))
}

/// OpenAI `tools` (functions) as Anthropic tools; `None` when there are none.
fn tools(obj: &Map<String, Value>) -> Option<Value> {
    let tools = super::function_tools(obj, "input_schema", Some(&json!({"type": "object"})));
    (!tools.is_empty()).then_some(Value::Array(tools))
}

/// OpenAI `tool_choice` and `parallel_tool_calls: false` as Anthropic's `tool_choice`
/// (`has_tools`: the request has tools, which `disable_parallel_tool_use` needs).
fn tool_choice(obj: &Map<String, Value>, has_tools: bool) -> Option<Value> {
    let mut choice = match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::Object(o)) => {
            o.get("function").and_then(|f| f.get("name")).map(|name| json!({"type": "tool", "name": name}))
        }
        _ => None,
    };
    if obj.get("parallel_tool_calls") == Some(&Value::Bool(false)) && has_tools {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(c) = c.as_object_mut() {
            c.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    choice
}

/// Anthropic's `stop_reason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> (u64, u64, u64) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    // Saturating: the counts are the upstream's to choose, and overflow would panic in debug builds.
    let input = n("input_tokens").saturating_add(n("cache_creation_input_tokens")).saturating_add(cached);
    (input, n("output_tokens"), cached)
}

fn usage_json(input: u64, output: u64, cached: u64) -> Value {
    json!({
        "prompt_tokens": input, "completion_tokens": output, "total_tokens": input.saturating_add(output),
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// Anthropic `message` → OpenAI `chat.completion`, with the usage (input, output) it reported.
pub fn response(anthropic: &[u8]) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
    let v: Value = serde_json::from_slice(anthropic)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in v.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let stop = v.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
    let usage = v.get("usage").map(usage_of);
    let out = json!({
        "id": v.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": unix_now(),
        "model": v.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(stop)}],
        "usage": usage.map_or(Value::Null, |(i, o, c)| usage_json(i, o, c)),
    });
    Ok((Bytes::from(out.to_string()), usage.map(|(i, o, _)| (i, o))))
}

/// An Anthropic error body → an OpenAI-shaped one (same message and type).
pub fn error(anthropic: &[u8]) -> Bytes {
    let v: Value = serde_json::from_slice(anthropic).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&Value::Null);
    let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream error");
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("invalid_request_error");
    Bytes::from(json!({"error": {"message": message, "type": kind, "param": null, "code": null}}).to_string())
}

/// Anthropic SSE events → OpenAI `chat.completion.chunk` SSE.
pub type Stream = super::Sse<StreamState>;

impl Stream {
    /// A translator; `include_usage` adds the usage chunk before `[DONE]`.
    pub fn new(include_usage: bool) -> Self {
        Self::wrap(StreamState { head: ChunkHead::new(""), include_usage, ..StreamState::default() })
    }
}

/// What [`Stream`] remembers between events.
#[derive(Debug, Default)]
pub struct StreamState {
    head: ChunkHead,
    include_usage: bool,
    input: (u64, u64),
    output: u64,
    /// Anthropic content block index → OpenAI tool call index.
    tools: HashMap<u64, u64>,
    stopped: bool,
}

impl StreamState {
    /// One event's data; `false` when it is not JSON.
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(data) else { return false };
        self.value(&v, out);
        true
    }

    fn value(&mut self, v: &Value, out: &mut Vec<u8>) {
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.head.id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                self.head.model = m.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
                if let Some(u) = m.get("usage") {
                    let (i, o, c) = usage_of(u);
                    self.input = (i, c);
                    self.output = o;
                }
                out.extend(self.head.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools.len() as u64;
                        self.tools.insert(index, n);
                        let call = json!([{"index": n, "id": block.get("id"), "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""}}]);
                        out.extend(self.head.chunk(json!({"tool_calls": call}), None));
                    }
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.extend(self.head.chunk(json!({"content": t}), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        out.extend(self.head.chunk(json!({"content": d.get("text")}), None));
                    }
                    Some("input_json_delta") => {
                        let n = self.tools.get(&index).copied().unwrap_or(0);
                        let call = json!([{"index": n, "function": {"arguments": d.get("partial_json")}}]);
                        out.extend(self.head.chunk(json!({"tool_calls": call}), None));
                    }
                    Some("thinking_delta") => {
                        out.extend(self.head.chunk(json!({"reasoning_content": d.get("thinking")}), None));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage").and_then(|u| u.get("output_tokens")).and_then(Value::as_u64) {
                    self.output = u;
                }
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                out.extend(self.head.chunk(json!({}), Some(finish_reason(stop))));
            }
            "message_stop" => {
                let usage = self.include_usage.then(|| usage_json(self.input.0, self.output, self.input.1));
                out.extend(self.head.done(usage));
                self.stopped = true;
            }
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let err = json!({"error": {"message": e.get("message"), "type": e.get("type"), "param": null, "code": null}});
                out.extend(format!("data: {err}\n\n").into_bytes());
            }
            _ => {}
        }
    }
}

impl super::EventTranslator for StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.event(data, out)
    }

    fn complete(&self) -> bool {
        self.stopped
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.stopped.then_some((self.input.0, self.output))
    }

    fn cached(&self) -> u64 {
        if self.stopped { self.input.1 } else { 0 }
    }
}

#[cfg(test)]
mod tests;
