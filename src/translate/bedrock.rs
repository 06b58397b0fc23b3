//! OpenAI chat completions ⇄ the Amazon Bedrock Converse API (`converse`, `converse-stream`).
//!
//! Requests: system and developer messages become `system` blocks; user, assistant and tool
//! turns become Converse turns (consecutive same-role turns merged), with text, images (data URLs
//! as `bytes` sources, `s3://` objects as `s3Location`s: Converse takes no other image URL and
//! tier1 never downloads one),
//! assistant `tool_calls` as `toolUse` blocks and `tool` results as `toolResult` blocks; tools
//! and `tool_choice` as `toolConfig`; `max_tokens`, `temperature`, `top_p` and `stop` as
//! `inferenceConfig`. The model is not in the body: it goes in the URL path
//! ([`crate::providers::bedrock`]), so [`valid_model`] decides which names can. Parameters
//! Converse cannot take are dropped and listed (`x-tier1-dropped-params`).
//!
//! Responses come back as `chat.completion`: text, reasoning as `reasoning_content`, `toolUse`
//! blocks as `tool_calls`, mapped stop reasons, usage with cache reads and writes. A stream comes
//! as the provider layer hands it on: each event-stream message one SSE event whose data is
//! `{"<event type>": payload}` (an exception: `{"error": {"type", "message"}}`); it is complete
//! at `metadata`, the event after `messageStop` that carries the usage.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{ChunkHead, TranslateError, parse, text_of, unix_now};

pub use super::Request;

/// The id of every translated answer (Converse gives none).
const ID: &str = "chatcmpl-bedrock";

/// Parameters with no Converse counterpart.
const DROPPED: [&str; 14] = super::UNMAPPED_CHAT_PARAMS;

/// Whether `model` is a Bedrock model id, inference profile id or ARN tier1 can put in a URL
/// path: 1 to 2048 of `A-Z a-z 0-9 . - _ : /`, with no empty, `.` or `..` segment. It is
/// percent-encoded whole into one path segment besides (`/` and `:` included), so it can never
/// change the host or the path.
pub fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 2048
        && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
        && model.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// An image as Converse takes it: a base64 data URL as `bytes`, an `s3://` object as
/// `s3Location`; any other URL is the caller's fault (`Err`): tier1 never downloads one.
fn image(url: &str) -> Result<Value, TranslateError> {
    if let Some(object) = url.strip_prefix("s3://") {
        return s3_image(url, object);
    }
    let unsupported = || {
        TranslateError::param("messages", "Bedrock takes images as base64 data URLs or s3:// objects only")
    };
    let rest = url.strip_prefix("data:").ok_or_else(unsupported)?;
    let (meta, data) = rest.split_once(',').ok_or_else(unsupported)?;
    let mime = meta.strip_suffix(";base64").ok_or_else(unsupported)?;
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err(TranslateError::param("messages", format!("Bedrock takes no {mime:?} images"))),
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// `s3://BUCKET/KEY` (`object` without the scheme) as an `s3Location` source, as Converse's
/// `S3Location` allows it (a bucket name of 3-63 `a-z 0-9 . -`, at most 1024 bytes in all); the
/// format from the key's extension, which Converse requires.
fn s3_image(uri: &str, object: &str) -> Result<Value, TranslateError> {
    let bad = || {
        TranslateError::param(
            "messages",
            "an s3:// image is s3://BUCKET/KEY ending .png, .jpeg, .jpg, .gif or .webp",
        )
    };
    let (bucket, key) = object.split_once('/').ok_or_else(bad)?;
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(bucket.as_bytes().first())
        && edge(bucket.as_bytes().last());
    if !bucket_ok || key.is_empty() || uri.len() > 1024 || key.chars().any(char::is_control) {
        return Err(bad());
    }
    let extension = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).ok_or_else(bad)?;
    let format = match extension.as_str() {
        "png" => "png",
        "jpeg" | "jpg" => "jpeg",
        "gif" => "gif",
        "webp" => "webp",
        _ => return Err(bad()),
    };
    Ok(json!({"image": {"format": format, "source": {"s3Location": {"uri": uri}}}}))
}

fn blocks_of(content: &Value, dropped: &mut Vec<&'static str>) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match content {
        Value::String(s) if !s.is_empty() => blocks.push(json!({"text": s})),
        Value::Array(parts) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !t.is_empty() {
                            blocks.push(json!({"text": t}));
                        }
                    }
                    Some("image_url") => {
                        let url = p.get("image_url").and_then(|i| i.get("url").or(Some(i)));
                        blocks.push(image(url.and_then(Value::as_str).unwrap_or_default())?);
                    }
                    _ => dropped.push("content parts other than text and image_url"),
                }
            }
        }
        _ => {}
    }
    Ok(blocks)
}

/// Converse turns: a role and its content blocks.
type Turns = Vec<(&'static str, Vec<Value>)>;

/// The system blocks and the turns of an OpenAI `messages` array, as Converse has them.
fn conversation(
    obj: &Map<String, Value>,
    dropped: &mut Vec<&'static str>,
) -> Result<(Vec<Value>, Turns), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Turns = Vec::new();
    let mut push = |role: &'static str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
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
            "system" | "developer" => {
                let t = text_of(content);
                if !t.is_empty() {
                    system.push(json!({"text": t}));
                }
            }
            "user" => push("user", blocks_of(content, dropped)?),
            "assistant" => {
                let mut blocks = blocks_of(content, dropped)?;
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    blocks.push(tool_use(call));
                }
                push("assistant", blocks);
            }
            "tool" => {
                let text = text_of(content);
                let result = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => json!({"json": v}),
                    _ => json!({"text": text}),
                };
                let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
                push("user", vec![json!({"toolResult": {"toolUseId": id, "content": [result]}})]);
            }
            other => return Err(TranslateError::new(format!("unsupported message role {other:?}"))),
        }
    }
    Ok((system, turns))
}

/// An OpenAI tool call as a `toolUse` block.
fn tool_use(call: &Value) -> Value {
    let f = call.get("function").unwrap_or(&Value::Null);
    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    json!({"toolUse": {
        "toolUseId": call.get("id").cloned().unwrap_or(Value::Null),
        "name": f.get("name").cloned().unwrap_or(Value::Null),
        "input": input,
    }})
}

/// `inferenceConfig`: length, sampling and stop sequences.
fn inference_config(obj: &Map<String, Value>, default_max_tokens: u32) -> Value {
    let mut config = Map::new();
    let max_tokens = obj
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| obj.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(u64::from(default_max_tokens));
    config.insert("maxTokens".into(), json!(max_tokens));
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(x) = obj.get(from).filter(|x| !x.is_null()) {
            config.insert(to.into(), x.clone());
        }
    }
    if let Some(stop) = super::stop_list(obj) {
        config.insert("stopSequences".into(), stop);
    }
    Value::Object(config)
}

/// OpenAI `tools` and `tool_choice` as `toolConfig`; `None` without tools. Converse has no
/// `none` choice: the tools stay declared (earlier `toolUse` blocks need them) and the choice is
/// dropped.
fn tool_config(obj: &Map<String, Value>, dropped: &mut Vec<&'static str>) -> Option<Value> {
    let specs = super::function_tools(obj, "inputSchema", Some(&json!({"type": "object"})));
    if specs.is_empty() {
        return None;
    }
    let tools: Vec<Value> = specs
        .into_iter()
        .map(|mut s| {
            if let Some(schema) = s.get_mut("inputSchema") {
                *schema = json!({"json": schema.take()});
            }
            json!({"toolSpec": s})
        })
        .collect();
    let mut config = json!({"tools": tools});
    let choice = match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "none" => {
            dropped.push("tool_choice");
            None
        }
        Some(Value::Object(o)) => {
            o.get("function").and_then(|f| f.get("name")).map(|n| json!({"tool": {"name": n}}))
        }
        _ => None,
    };
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Some(config)
}

/// OpenAI chat body → Converse body (the model goes in the URL, not here).
pub fn request(openai: &[u8], default_max_tokens: u32) -> Result<Request, TranslateError> {
    let obj = parse(openai)?;
    let mut dropped: Vec<&'static str> = DROPPED
        .iter()
        .copied()
        .filter(|k| {
            obj.get(*k).is_some_and(|x| !x.is_null())
                && !(*k == "n" && obj.get(*k).and_then(Value::as_u64) == Some(1))
        })
        .collect();
    for k in ["parallel_tool_calls", "user"] {
        if obj.get(k).is_some_and(|x| !x.is_null()) {
            dropped.push(k);
        }
    }
    let (system, turns) = conversation(&obj, &mut dropped)?;
    let mut out = Map::new();
    let messages: Vec<Value> =
        turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("inferenceConfig".into(), inference_config(&obj, default_max_tokens));
    if let Some(tools) = tool_config(&obj, &mut dropped) {
        out.insert("toolConfig".into(), tools);
    }
    Request::new(&obj, out, dropped)
}

/// Converse's `stopReason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse `usage` → (input with the cache reads and writes, output, cache reads).
fn usage_of(u: &Value) -> (u64, u64, u64) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cacheReadInputTokens");
    // Saturating: the counts are the upstream's to choose.
    let input = n("inputTokens").saturating_add(n("cacheWriteInputTokens")).saturating_add(cached);
    (input, n("outputTokens"), cached)
}

fn usage_json((input, output, cached): (u64, u64, u64)) -> Value {
    json!({
        "prompt_tokens": input, "completion_tokens": output, "total_tokens": input.saturating_add(output),
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// Converse answer → OpenAI `chat.completion` for `model`, with the usage (input, output).
pub fn response(raw: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
    let v: Value = serde_json::from_slice(raw)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for block in v.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(t) = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str)
        {
            reasoning.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            calls.push(json!({
                "id": u.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": u.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": u.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            }));
        }
    }
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let stop = v.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
    let usage = v.get("usage").map(usage_of);
    let out = json!({
        "id": ID,
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(stop)}],
        "usage": usage.map_or(Value::Null, usage_json),
    });
    Ok((Bytes::from(out.to_string()), usage.map(|(i, o, _)| (i, o))))
}

/// The OpenAI error `type` of a Bedrock exception (its name, or its status when the body has
/// none).
fn error_kind(exception: &str, status: u16) -> &'static str {
    let e = exception.to_ascii_lowercase();
    if e.contains("throttling") || status == 429 {
        "rate_limit_exceeded"
    } else if e.contains("accessdenied") || e.contains("unrecognizedclient") || matches!(status, 401 | 403) {
        "authentication_error"
    } else if e.contains("validation") || e.contains("resourcenotfound") || matches!(status, 400 | 404) {
        "invalid_request_error"
    } else {
        "server_error"
    }
}

/// A Bedrock error body (`{"message": ...}`, the exception named by `x-amzn-ErrorType` or a
/// `__type`) with its status → an OpenAI-shaped one.
pub fn error(raw: &[u8], status: u16) -> Bytes {
    let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let message =
        v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).unwrap_or("upstream error");
    let exception = v.get("__type").and_then(Value::as_str).unwrap_or_default();
    let exception = exception.rsplit('#').next().unwrap_or_default();
    let code = if exception.is_empty() { Value::Null } else { json!(exception) };
    let out = json!({"error": {"message": message, "type": error_kind(exception, status), "param": null, "code": code}});
    Bytes::from(out.to_string())
}

/// Converse stream events (as SSE, see the module doc) → OpenAI `chat.completion.chunk` SSE.
pub type Stream = super::Sse<StreamState>;

impl Stream {
    /// A translator for `model`; `include_usage` adds the usage chunk before `[DONE]`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        let mut head = ChunkHead::new(model);
        // Converse names no answer: a fixed id, so a stream translates the same whenever it does.
        head.id = ID.to_owned();
        Self::wrap(StreamState { head, include_usage, ..StreamState::default() })
    }
}

/// What [`Stream`] remembers between events.
#[derive(Debug, Default)]
pub struct StreamState {
    head: ChunkHead,
    include_usage: bool,
    /// Converse content block index → OpenAI tool call index.
    tools: HashMap<u64, u64>,
    usage: Option<(u64, u64, u64)>,
    done: bool,
}

impl StreamState {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(data) else { return false };
        for (kind, e) in &v {
            self.value(kind, e, out);
        }
        true
    }

    fn value(&mut self, kind: &str, e: &Value, out: &mut Vec<u8>) {
        let index = e.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "messageStart" => out.extend(self.head.chunk(json!({"role": "assistant", "content": ""}), None)),
            "contentBlockStart" => {
                if let Some(u) = e.pointer("/start/toolUse") {
                    let n = self.tools.len() as u64;
                    self.tools.insert(index, n);
                    let call = json!([{"index": n, "id": u.get("toolUseId"), "type": "function",
                        "function": {"name": u.get("name"), "arguments": ""}}]);
                    out.extend(self.head.chunk(json!({"tool_calls": call}), None));
                }
            }
            "contentBlockDelta" => self.delta(index, e.get("delta").unwrap_or(&Value::Null), out),
            "messageStop" => {
                let stop = e.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
                out.extend(self.head.chunk(json!({}), Some(finish_reason(stop))));
            }
            "metadata" => {
                self.usage = Some(e.get("usage").map(usage_of).unwrap_or_default());
                let usage = self.include_usage.then(|| usage_json(self.usage.unwrap_or_default()));
                out.extend(self.head.done(usage));
                self.done = true;
            }
            "error" => {
                let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
                let err = json!({"error": {"message": e.get("message"), "type": error_kind(kind, 0),
                    "param": null, "code": kind}});
                out.extend(format!("data: {err}\n\n").into_bytes());
            }
            _ => {}
        }
    }

    fn delta(&mut self, index: u64, d: &Value, out: &mut Vec<u8>) {
        if let Some(t) = d.get("text").and_then(Value::as_str) {
            out.extend(self.head.chunk(json!({"content": t}), None));
        } else if let Some(input) = d.pointer("/toolUse/input").and_then(Value::as_str) {
            let n = self.tools.get(&index).copied().unwrap_or(0);
            let call = json!([{"index": n, "function": {"arguments": input}}]);
            out.extend(self.head.chunk(json!({"tool_calls": call}), None));
        } else if let Some(t) = d.pointer("/reasoningContent/text").and_then(Value::as_str) {
            out.extend(self.head.chunk(json!({"reasoning_content": t}), None));
        }
    }
}

impl super::EventTranslator for StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.event(data, out)
    }

    fn complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.usage.map(|(i, o, _)| (i, o))
    }

    fn cached(&self) -> u64 {
        self.usage.map_or(0, |u| u.2)
    }
}

#[cfg(test)]
mod tests;
