//! OpenAI chat completions and embeddings ⇄ Gemini `generateContent` and `batchEmbedContents`.
//!
//! Requests: system and developer messages become `systemInstruction`; user and assistant turns
//! become `user` and `model` contents (consecutive same-role turns merged), with text, images
//! (data URLs as `inlineData`, other URLs as `fileData`: tier1 never downloads them), assistant
//! `tool_calls` as `functionCall` parts and `tool` results as `functionResponse` parts (named
//! after the call they answer); tools, `tool_choice`, and the sampling parameters Gemini shares
//! go to `generationConfig`; `response_format` to `responseMimeType`/`responseJsonSchema`.
//! Parameters Gemini cannot take are dropped and listed (`x-tier1-dropped-params`).
//!
//! Responses and streams come back as `chat.completion` and `chat.completion.chunk`s: text,
//! thought summaries as `reasoning_content`, function calls as `tool_calls` (with generated ids),
//! mapped finish reasons, and usage (cached and reasoning tokens). A Gemini stream has no end
//! event: it is complete at the chunk carrying a `finishReason`, and `data: [DONE]` follows it.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{ChunkHead, TranslateError, parse, text_of, unix_now};

pub use super::Request;

/// Parameters with no Gemini counterpart.
const DROPPED: [&str; 8] =
    ["logit_bias", "logprobs", "top_logprobs", "service_tier", "store", "modalities", "audio", "prediction"];

/// Whether `model` can go in a Gemini URL path (or an Azure deployment path) as is: no `/`, `?`,
/// `#` or escapes.
pub fn valid_model(model: &str) -> bool {
    crate::providers::path_safe(model)
}

/// A data URL as `inlineData`; anything else as `fileData` (Gemini fetches what it can).
fn media(url: &str, fallback_mime: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(mime) = meta.strip_suffix(";base64")
    {
        return json!({"inlineData": {"mimeType": mime, "data": data}});
    }
    json!({"fileData": {"mimeType": fallback_mime, "fileUri": url}})
}

fn parts_of(content: &Value, dropped: &mut Vec<&'static str>) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let t = p.get("text").and_then(Value::as_str).unwrap_or_default();
                    (!t.is_empty()).then(|| json!({"text": t}))
                }
                Some("image_url") => {
                    let url =
                        p.get("image_url").and_then(|i| i.get("url").or(Some(i))).and_then(Value::as_str)?;
                    Some(media(url, "image/jpeg"))
                }
                Some("input_audio") => {
                    let a = p.get("input_audio")?;
                    let format = a.get("format").and_then(Value::as_str).unwrap_or("wav");
                    let data = a.get("data").and_then(Value::as_str)?;
                    Some(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}))
                }
                Some("file") => {
                    let f = p.get("file")?;
                    let data = f.get("file_data").and_then(Value::as_str)?;
                    Some(media(data, "application/pdf"))
                }
                _ => {
                    dropped.push("content parts other than text, image_url, input_audio and file");
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI chat body → Gemini `generateContent` body.
pub fn request(openai: &[u8], stream: bool) -> Result<Request, TranslateError> {
    let obj = parse(openai)?;
    let present = |k: &str| obj.get(k).is_some_and(|x| !x.is_null());
    let mut dropped: Vec<&'static str> = DROPPED.iter().copied().filter(|k| present(k)).collect();
    // A stream relays one choice; `n` > 1 is honoured only for full answers.
    let several = obj.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1);
    if stream && several {
        dropped.push("n");
    }
    let (system, turns) = conversation(&obj, &mut dropped)?;
    let mut out = Map::new();
    let contents: Vec<Value> =
        turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let config = generation_config(&obj, several && !stream);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(declarations) = declarations(&obj) {
        out.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(mode) = calling_mode(&obj) {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": mode}));
    }
    if present("parallel_tool_calls") {
        dropped.push("parallel_tool_calls");
    }
    Request::new(&obj, out, dropped)
}

/// Gemini turns: a role and its parts.
type Turns = Vec<(&'static str, Vec<Value>)>;

/// The system instruction's parts and the turns of an OpenAI `messages` array, as Gemini has
/// them: `user` and `model` alternate, tool calls are `functionCall` parts of the model's turn,
/// tool results `functionResponse` parts of the user's (named after the call they answer).
fn conversation(
    obj: &Map<String, Value>,
    dropped: &mut Vec<&'static str>,
) -> Result<(Vec<Value>, Turns), TranslateError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Turns = Vec::new();
    let mut push = |role: &'static str, parts: Vec<Value>| {
        if parts.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => turns.push((role, parts)),
        }
    };
    // functionResponse parts carry the function's name; OpenAI tool results only its call id.
    let mut call_names: HashMap<String, Value> = HashMap::new();
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
            "user" => push("user", parts_of(content, dropped)),
            "assistant" => {
                let mut parts = parts_of(content, dropped);
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    parts.push(function_call(call, &mut call_names));
                }
                push("model", parts);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = call_names.get(id).cloned().unwrap_or_else(|| json!(id));
                let text = text_of(content);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                push("user", vec![json!({"functionResponse": {"name": name, "response": response}})]);
            }
            other => return Err(TranslateError::new(format!("unsupported message role {other:?}"))),
        }
    }
    Ok((system, turns))
}

/// An OpenAI tool call as a `functionCall` part; notes the call's name under its id.
fn function_call(call: &Value, call_names: &mut HashMap<String, Value>) -> Value {
    let f = call.get("function").unwrap_or(&Value::Null);
    let name = f.get("name").cloned().unwrap_or(Value::Null);
    if let Some(id) = call.get("id").and_then(Value::as_str) {
        call_names.insert(id.to_owned(), name.clone());
    }
    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
    let args: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    let mut part = json!({"functionCall": {"name": name, "args": args}});
    // Gemini's thought signature, round-tripped the way Google's own OpenAI layer does.
    if let Some(sig) = call.pointer("/extra_content/google/thought_signature") {
        part["thoughtSignature"] = sig.clone();
    }
    part
}

/// `generationConfig`: sampling, length, stop, JSON output and thinking settings
/// (`candidates`: `n` becomes `candidateCount`).
fn generation_config(obj: &Map<String, Value>, candidates: bool) -> Map<String, Value> {
    let mut config = Map::new();
    let copy = |config: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(x) = obj.get(from).filter(|x| !x.is_null()) {
            config.insert(to.into(), x.clone());
        }
    };
    copy(&mut config, "temperature", "temperature");
    copy(&mut config, "top_p", "topP");
    copy(&mut config, "presence_penalty", "presencePenalty");
    copy(&mut config, "frequency_penalty", "frequencyPenalty");
    copy(&mut config, "seed", "seed");
    if candidates {
        copy(&mut config, "n", "candidateCount");
    }
    copy(&mut config, "max_tokens", "maxOutputTokens");
    copy(&mut config, "max_completion_tokens", "maxOutputTokens");
    if let Some(stop) = super::stop_list(obj) {
        config.insert("stopSequences".into(), stop);
    }
    match obj.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = obj.get("response_format").and_then(|f| f.pointer("/json_schema/schema")) {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {}
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "none" | "minimal" => 0,
            "low" => 1024,
            "medium" => 8192,
            _ => 24576,
        };
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
        );
    }
    config
}

/// OpenAI `tools` (functions) as Gemini function declarations; `None` when there are none.
fn declarations(obj: &Map<String, Value>) -> Option<Vec<Value>> {
    let declarations = super::function_tools(obj, "parametersJsonSchema", None);
    (!declarations.is_empty()).then_some(declarations)
}

/// OpenAI `tool_choice` as Gemini's `functionCallingConfig`.
fn calling_mode(obj: &Map<String, Value>) -> Option<Value> {
    match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(json!({"mode": "NONE"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"mode": "AUTO"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"mode": "ANY"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"mode": "ANY", "allowedFunctionNames": [name]})),
        _ => None,
    }
}

/// Gemini's `finishReason` as an OpenAI `finish_reason` (`called`: the answer holds calls).
pub fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Gemini `usageMetadata` → (prompt, completion, cached, reasoning).
fn usage_of(u: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    // Saturating: the counts are the upstream's to choose, and overflow would panic in debug builds.
    let completion = n("candidatesTokenCount").saturating_add(thoughts);
    (n("promptTokenCount"), completion, n("cachedContentTokenCount"), thoughts)
}

fn usage_json((prompt, completion, cached, reasoning): (u64, u64, u64, u64)) -> Value {
    json!({
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })
}

/// What one candidate's parts say: text, thoughts, and calls (OpenAI `tool_calls` entries
/// numbered from `first_call`).
struct Parts {
    text: String,
    thoughts: String,
    calls: Vec<Value>,
}

fn read_parts(candidate: &Value, id: &str, first_call: usize) -> Parts {
    let mut p = Parts { text: String::new(), thoughts: String::new(), calls: Vec::new() };
    for part in candidate.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
        if let Some(call) = part.get("functionCall") {
            let n = first_call + p.calls.len();
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{id}_{n}"), ToOwned::to_owned);
            let mut c = json!({
                "index": n, "id": call_id, "type": "function",
                "function": {
                    "name": call.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": call.get("args").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            });
            if let Some(sig) = part.get("thoughtSignature") {
                c["extra_content"] = json!({"google": {"thought_signature": sig}});
            }
            p.calls.push(c);
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                p.thoughts.push_str(t);
            } else {
                p.text.push_str(t);
            }
        }
    }
    p
}

fn response_id(v: &Value) -> String {
    v.get("responseId")
        .and_then(Value::as_str)
        .map_or_else(|| "gemini".to_owned(), |id| format!("chatcmpl-{id}"))
}

/// Gemini `GenerateContentResponse` → OpenAI `chat.completion`, with the usage (input, output).
pub fn response(gemini: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
    let v: Value = serde_json::from_slice(gemini)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let id = response_id(&v);
    let mut choices = Vec::new();
    for (i, c) in v.get("candidates").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let p = read_parts(c, &id, 0);
        let calls: Vec<Value> = p
            .calls
            .into_iter()
            .map(|mut c| {
                if let Some(o) = c.as_object_mut() {
                    o.remove("index");
                }
                c
            })
            .collect();
        let called = !calls.is_empty();
        let mut message = json!({"role": "assistant",
            "content": if p.text.is_empty() && called { Value::Null } else { json!(p.text) }});
        if !p.thoughts.is_empty() {
            message["reasoning_content"] = json!(p.thoughts);
        }
        if called {
            message["tool_calls"] = Value::Array(calls);
        }
        let reason = c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        choices.push(json!({"index": index, "message": message, "logprobs": null,
            "finish_reason": finish_reason(reason, called)}));
    }
    if choices.is_empty() {
        // The prompt itself was blocked: no candidates, a `promptFeedback.blockReason`.
        choices.push(json!({"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": null,
            "finish_reason": "content_filter"}));
    }
    let usage = v.get("usageMetadata").map(usage_of);
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
        "usage": usage.map_or(Value::Null, usage_json),
    });
    Ok((Bytes::from(out.to_string()), usage.map(|u| (u.0, u.1))))
}

/// A Gemini error body (`{"error": {code, message, status}}`) → an OpenAI-shaped one.
pub fn error(gemini: &[u8]) -> Bytes {
    let v: Value = serde_json::from_slice(gemini).unwrap_or(Value::Null);
    // Some Gemini front ends answer errors as a one-element array.
    let e = v.get("error").or_else(|| v.pointer("/0/error")).unwrap_or(&Value::Null);
    let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream error");
    let status = e.get("status").and_then(Value::as_str).unwrap_or("INVALID_ARGUMENT");
    let kind = match status {
        "RESOURCE_EXHAUSTED" => "rate_limit_exceeded",
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => "authentication_error",
        "NOT_FOUND" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request_error",
        _ => "server_error",
    };
    Bytes::from(
        json!({"error": {"message": message, "type": kind, "param": null, "code": status}}).to_string(),
    )
}

/// OpenAI embeddings body → Gemini `batchEmbedContents` body for `model`.
pub fn embeddings_request(openai: &[u8], model: &str) -> Result<Request, TranslateError> {
    let obj = parse(openai)?;
    let inputs: Vec<&str> = match obj.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => {
            a.iter().filter_map(Value::as_str).collect()
        }
        _ => return Err(TranslateError::new("input must be a string or an array of strings for Gemini")),
    };
    let dimensions = obj.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = inputs
        .into_iter()
        .map(|text| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    let mut dropped = Vec::new();
    if obj.get("encoding_format").and_then(Value::as_str).is_some_and(|f| f != "float") {
        dropped.push("encoding_format");
    }
    let body =
        serde_json::to_vec(&json!({"requests": requests})).map_err(|e| TranslateError::new(e.to_string()))?;
    Ok(Request { body: Bytes::from(body), dropped, include_usage: false })
}

/// Gemini `batchEmbedContents` answer → OpenAI embeddings list.
pub fn embeddings_response(
    gemini: &[u8],
    model: &str,
) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
    let v: Value = serde_json::from_slice(gemini)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let list = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("upstream answer has no embeddings"))?;
    let data: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e.get("values").cloned().unwrap_or(json!([]))}))
        .collect();
    let out = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0}});
    Ok((Bytes::from(out.to_string()), None))
}

/// Gemini SSE chunks (`alt=sse`) → OpenAI `chat.completion.chunk` SSE.
pub type Stream = super::Sse<StreamState>;

impl Stream {
    /// A translator for `model`; `include_usage` adds the usage chunk before `[DONE]`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self::wrap(StreamState { head: ChunkHead::new(model), include_usage, ..StreamState::default() })
    }
}

/// What [`Stream`] remembers between chunks.
#[derive(Debug, Default)]
pub struct StreamState {
    head: ChunkHead,
    include_usage: bool,
    started: bool,
    calls: usize,
    usage: Option<(u64, u64, u64, u64)>,
    finished: bool,
}

impl StreamState {
    /// One chunk's data; `false` when it is not JSON.
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(data) else { return false };
        self.value(&v, out);
        true
    }

    fn value(&mut self, v: &Value, out: &mut Vec<u8>) {
        if let Some(e) = v.get("error") {
            let err = error(json!({"error": e}).to_string().as_bytes());
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&err);
            out.extend_from_slice(b"\n\n");
            return;
        }
        if !self.started {
            self.started = true;
            self.head.id = response_id(v);
            if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                self.head.model = m.to_owned();
            }
            out.extend(self.head.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(usage_of(u));
        }
        let candidate = v.pointer("/candidates/0").unwrap_or(&Value::Null);
        let p = read_parts(candidate, &self.head.id, self.calls);
        if !p.thoughts.is_empty() {
            out.extend(self.head.chunk(json!({"reasoning_content": p.thoughts}), None));
        }
        if !p.text.is_empty() {
            out.extend(self.head.chunk(json!({"content": p.text}), None));
        }
        if !p.calls.is_empty() {
            self.calls += p.calls.len();
            out.extend(self.head.chunk(json!({"tool_calls": p.calls}), None));
        }
        let reason = candidate.get("finishReason").and_then(Value::as_str).or_else(|| {
            // A blocked prompt ends the stream with no candidate at all.
            v.pointer("/promptFeedback/blockReason").and_then(Value::as_str).map(|_| "SAFETY")
        });
        if let Some(reason) = reason {
            out.extend(self.head.chunk(json!({}), Some(finish_reason(reason, self.calls > 0))));
            let usage = self.include_usage.then(|| usage_json(self.usage.unwrap_or_default()));
            out.extend(self.head.done(usage));
            self.finished = true;
        }
    }
}

impl super::EventTranslator for StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.event(data, out)
    }

    fn complete(&self) -> bool {
        self.finished
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.usage.map(|u| (u.0, u.1))
    }

    fn cached(&self) -> u64 {
        self.usage.map_or(0, |u| u.2)
    }
}

#[cfg(test)]
mod tests;
