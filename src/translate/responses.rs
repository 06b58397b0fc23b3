//! The OpenAI Responses API (the client's format) ⇄ OpenAI chat completions: the middle step of
//! the Responses API to Anthropic and Gemini providers (Responses → chat → the provider's format,
//! and back through the provider's chat translator, then this one).
//!
//! Requests: `instructions` becomes a system message; `input` (a string, or items: messages with
//! `input_text`, `input_image`, `input_file` and `output_text` parts, `function_call` and
//! `function_call_output` items) becomes chat messages (a run of calls one assistant message);
//! function tools (Responses' flat `{type, name, description, parameters, strict}`) and
//! `tool_choice` become chat's; `max_output_tokens`, `temperature`, `top_p`, `user`,
//! `parallel_tool_calls`, `service_tier`; `text.format` becomes `response_format` and
//! `reasoning.effort` `reasoning_effort` (what the provider's translator makes of them is its
//! own: see [`super::anthropic`], [`super::gemini`]). Fields with no counterpart that change
//! nothing the model writes (`metadata`, `truncation`, `include`, ...) are dropped and listed.
//!
//! What needs OpenAI's stored state cannot be translated, and is refused with a 400 naming the
//! parameter, never dropped: `previous_response_id`, `store: true`, `conversation`,
//! `background: true`, a stored `prompt`, built-in tools (any tool but `function`), item
//! references and uploaded files (`file_id`).
//!
//! Answers come back as a `response` object (reasoning, message and function call items, status
//! `incomplete` at the length limit, usage with cached and reasoning tokens) echoing the request's
//! parameters; streams as the typed event grammar (`response.created`, `response.in_progress`,
//! items added, their parts and deltas, done, then `response.completed` or `response.incomplete`
//! with the whole response), each event named (`event:`) and numbered (`sequence_number` from 0).
//! The stream is complete only at its terminal event, written once the chat stream's `[DONE]`
//! came.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::TranslateError;

/// Responses fields with no chat counterpart that change nothing the model writes.
const DROPPED: [&str; 9] = [
    "metadata",
    "truncation",
    "include",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "top_logprobs",
    "max_tool_calls",
    "stream_options",
];

/// Fields copied to chat as they are.
const COPIED: [&str; 5] = ["temperature", "top_p", "user", "parallel_tool_calls", "service_tier"];

/// What only an OpenAI target can serve, said once.
const OPENAI_ONLY: &str = "is served by OpenAI-format providers only (openai, azure)";

/// A Responses request as a chat one.
#[derive(Debug, Clone)]
pub struct Request {
    /// The chat body.
    pub body: Bytes,
    /// Responses fields chat cannot take, dropped.
    pub dropped: Vec<&'static str>,
    /// What the answer repeats of the request.
    pub echo: Echo,
}

/// The request's parameters a `response` object repeats (`instructions`, `tools`, `temperature`,
/// ...), with OpenAI's defaults for those not sent. Shared by the attempts of one request.
#[derive(Debug, Clone, Default)]
pub struct Echo(Arc<Map<String, Value>>);

impl Echo {
    /// The echoed fields of the Responses request `obj`.
    fn of(obj: &Map<String, Value>) -> Self {
        let mut m = Map::new();
        let mut put = |k: &str, default: Value| {
            let v = obj.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
            m.insert(k.into(), v);
        };
        put("instructions", Value::Null);
        put("max_output_tokens", Value::Null);
        put("metadata", json!({}));
        put("parallel_tool_calls", json!(true));
        put("temperature", json!(1.0));
        put("tool_choice", json!("auto"));
        put("tools", json!([]));
        put("top_p", json!(1.0));
        put("truncation", json!("disabled"));
        put("user", Value::Null);
        let reasoning = obj.get("reasoning");
        let field = |k: &str| reasoning.and_then(|r| r.get(k)).cloned().unwrap_or(Value::Null);
        m.insert("reasoning".into(), json!({"effort": field("effort"), "summary": field("summary")}));
        let format = obj.get("text").and_then(|t| t.get("format")).cloned();
        m.insert("text".into(), json!({"format": format.unwrap_or_else(|| json!({"type": "text"}))}));
        // Nothing is stored: the response cannot be fetched later.
        m.insert("store".into(), json!(false));
        m.insert("previous_response_id".into(), Value::Null);
        Self(Arc::new(m))
    }

    /// A whole `response` object.
    fn response(&self, head: &Head, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let incomplete = match status {
            "incomplete" => json!({"reason": head.incomplete.unwrap_or("max_output_tokens")}),
            _ => Value::Null,
        };
        let mut r = json!({
            "id": head.response_id(), "object": "response", "created_at": head.created, "status": status,
            "error": null, "incomplete_details": incomplete, "model": head.model, "output": output,
            "usage": usage,
        });
        if let Some(r) = r.as_object_mut() {
            r.extend(self.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        r
    }
}

/// A Responses body → a chat body for `model`.
pub fn request(body: &[u8], model: &str, stream: bool) -> Result<Request, TranslateError> {
    let obj: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(TranslateError::new("body must be an object")),
        Err(e) => return Err(TranslateError::new(format!("invalid JSON: {e}"))),
    };
    refuse_stateful(&obj)?;
    let present = |k: &str| obj.get(k).is_some_and(|x| !x.is_null());
    let mut dropped: Vec<&'static str> = DROPPED.iter().copied().filter(|k| present(k)).collect();
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages(&obj, &mut dropped)?));
    if let Some(n) = obj.get("max_output_tokens").filter(|x| !x.is_null()) {
        out.insert("max_completion_tokens".into(), n.clone());
    }
    for k in COPIED {
        if let Some(x) = obj.get(k).filter(|x| !x.is_null()) {
            out.insert(k.into(), x.clone());
        }
    }
    if let Some(tools) = tools(&obj)? {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = tool_choice(&obj)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(text) = obj.get("text") {
        if let Some(format) = response_format(text) {
            out.insert("response_format".into(), format);
        }
        if text.get("verbosity").is_some_and(|v| !v.is_null()) {
            dropped.push("text.verbosity");
        }
    }
    if let Some(effort) = obj.get("reasoning").and_then(|r| r.get("effort")).filter(|e| !e.is_null()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    dropped.dedup();
    let body = serde_json::to_vec(&Value::Object(out)).map_err(|e| TranslateError::new(e.to_string()))?;
    Ok(Request { body: Bytes::from(body), dropped, echo: Echo::of(&obj) })
}

/// The 400 for what needs OpenAI's stored state or its hosted tools.
fn refuse_stateful(obj: &Map<String, Value>) -> Result<(), TranslateError> {
    let set = |k: &str| obj.get(k).is_some_and(|x| !x.is_null() && *x != Value::Bool(false));
    for (param, what) in [
        ("previous_response_id", "continuing a stored response (previous_response_id)"),
        ("conversation", "a stored conversation"),
        ("prompt", "a stored prompt template"),
        ("background", "a background response (background: true)"),
    ] {
        if set(param) {
            let hint = "send the whole conversation as input";
            return Err(TranslateError::param(param, format!("{what} {OPENAI_ONLY}; {hint}")));
        }
    }
    if obj.get("store") == Some(&Value::Bool(true)) {
        let why = format!("stored responses (store: true) are {}; send store: false", &OPENAI_ONLY[3..]);
        return Err(TranslateError::param("store", why));
    }
    for t in obj.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "function" {
            let why = format!("the built-in tool {kind:?} {OPENAI_ONLY}; only function tools translate");
            return Err(TranslateError::param("tools", why));
        }
    }
    Ok(())
}

/// The chat messages of `instructions` and `input`.
fn messages(obj: &Map<String, Value>, dropped: &mut Vec<&'static str>) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    if let Some(i) = obj.get("instructions").and_then(Value::as_str).filter(|i| !i.is_empty()) {
        out.push(json!({"role": "system", "content": i}));
    }
    let items = match obj.get("input") {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(out);
        }
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(TranslateError::param("input", "input is required")),
        Some(_) => return Err(TranslateError::param("input", "input must be a string or an array")),
    };
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => out.push(message(item, dropped)?),
            Some("function_call") => function_call(item, &mut out),
            Some("function_call_output") => out.push(json!({
                "role": "tool", "tool_call_id": item.get("call_id"),
                "content": text_of(item.get("output").unwrap_or(&Value::Null)),
            })),
            // The model's own reasoning, from an earlier answer: another provider cannot take it.
            Some("reasoning") => dropped.push("reasoning items"),
            Some(kind) => {
                let why =
                    format!("input items of type {kind:?} (stored items, built-in tool calls) {OPENAI_ONLY}");
                return Err(TranslateError::param("input", why));
            }
        }
    }
    Ok(out)
}

/// A `function_call` item as a tool call of the assistant message before it (a run of calls is
/// one message, as chat has them), or of a new one.
fn function_call(item: &Value, out: &mut Vec<Value>) {
    let call = json!({"id": item.get("call_id"), "type": "function",
        "function": {"name": item.get("name"), "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}")}});
    if let Some(last) = out.last_mut().filter(|m| m["role"] == "assistant")
        && let Some(m) = last.as_object_mut()
    {
        match m.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) => calls.push(call),
            None => {
                m.insert("tool_calls".into(), json!([call]));
            }
        }
        return;
    }
    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// Text parts' text, joined (a string as is).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A message item as a chat message: the assistant's and the system's text as a string, the
/// user's parts as chat content parts.
fn message(item: &Value, dropped: &mut Vec<&'static str>) -> Result<Value, TranslateError> {
    let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
    let content = item.get("content").unwrap_or(&Value::Null);
    match role {
        "assistant" | "system" | "developer" => Ok(json!({"role": role, "content": text_of(content)})),
        "user" => {
            let content = match content {
                Value::Array(parts) => Value::Array(user_parts(parts, dropped)?),
                other => json!(text_of(other)),
            };
            Ok(json!({"role": "user", "content": content}))
        }
        other => Err(TranslateError::param("input", format!("unsupported message role {other:?}"))),
    }
}

fn user_parts(parts: &[Value], dropped: &mut Vec<&'static str>) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    let stored = |what: &str| {
        TranslateError::param("input", format!("{what} by file_id (an uploaded file) {OPENAI_ONLY}"))
    };
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or_default()}));
            }
            Some("input_image") => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    return Err(stored("an image"));
                };
                let mut image = json!({"url": url});
                if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                    image["detail"] = d.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some("input_file") => {
                if let Some(data) = p.get("file_data").and_then(Value::as_str) {
                    let mut file = json!({"file_data": data});
                    if let Some(name) = p.get("filename") {
                        file["filename"] = name.clone();
                    }
                    out.push(json!({"type": "file", "file": file}));
                } else if p.get("file_id").is_some_and(|f| !f.is_null()) {
                    return Err(stored("a file"));
                } else {
                    dropped.push("input_file without file_data");
                }
            }
            _ => dropped.push("content parts other than input_text, input_image and input_file"),
        }
    }
    Ok(out)
}

/// Function tools in chat's nested shape; `None` when there are none (built-in tools were
/// refused already).
fn tools(obj: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for t in tools {
        let Some(name) = t.get("name").filter(|n| n.is_string()) else {
            return Err(TranslateError::param("tools", "a function tool needs a name"));
        };
        let mut f = Map::new();
        f.insert("name".into(), name.clone());
        for k in ["description", "parameters", "strict"] {
            if let Some(x) = t.get(k).filter(|x| !x.is_null()) {
                f.insert(k.into(), x.clone());
            }
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Some(Value::Array(out)))
}

/// `tool_choice` as chat's: the modes as they are, a named function nested.
fn tool_choice(obj: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    match obj.get("tool_choice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(Some(json!(s))),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .filter(|n| n.is_string())
                .ok_or_else(|| TranslateError::param("tool_choice", "a function tool_choice needs a name"))?;
            Ok(Some(json!({"type": "function", "function": {"name": name}})))
        }
        Some(other) => {
            let kind =
                other.get("type").and_then(Value::as_str).map_or_else(|| other.to_string(), str::to_owned);
            let why = format!("tool_choice {kind:?} {OPENAI_ONLY}; use auto, none, required or a function");
            Err(TranslateError::param("tool_choice", why))
        }
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(text: &Value) -> Option<Value> {
    let format = text.get("format")?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if let Some(x) = format.get(k).filter(|x| !x.is_null()) {
                    schema.insert(k.into(), x.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => None,
    }
}

/// What every event and the `response` object of one answer repeat.
#[derive(Debug, Default)]
struct Head {
    /// The chat completion's id, less `chatcmpl-` and `msg_`: the stem of every id here.
    stem: String,
    model: String,
    created: u64,
    /// Why the answer stopped short, when it did (`incomplete_details.reason`).
    incomplete: Option<&'static str>,
}

impl Head {
    fn read(&mut self, chat: &Value) {
        if let Some(id) = chat.get("id").and_then(Value::as_str) {
            let stem = id.trim_start_matches("chatcmpl-").trim_start_matches("msg_");
            if !stem.is_empty() {
                stem.clone_into(&mut self.stem);
            }
        }
        if let Some(m) = chat.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            m.clone_into(&mut self.model);
        }
        if let Some(c) = chat.get("created").and_then(Value::as_u64) {
            self.created = c;
        }
    }

    fn stem(&self) -> &str {
        if self.stem.is_empty() { "tier1" } else { &self.stem }
    }

    fn response_id(&self) -> String {
        format!("resp_{}", self.stem())
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.stem())
    }

    fn reasoning_id(&self) -> String {
        format!("rs_{}", self.stem())
    }

    /// The status a chat `finish_reason` means (and notes why an answer is incomplete).
    fn status(&mut self, finish: Option<&str>) -> &'static str {
        self.incomplete = match finish {
            Some("length") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        if self.incomplete.is_some() { "incomplete" } else { "completed" }
    }
}

/// Chat `usage` as Responses usage (cached and reasoning tokens kept); `null` when absent.
fn usage_of(u: Option<&Value>) -> Value {
    let Some(u) = u.filter(|u| !u.is_null()) else { return Value::Null };
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/prompt_tokens"), n("/completion_tokens"));
    json!({
        "input_tokens": input, "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input.saturating_add(output),
    })
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, text: &str, done: bool) -> Value {
    let (status, content) =
        if done { ("completed", json!([text_part(text)])) } else { ("in_progress", json!([])) };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn reasoning_item(id: &str, text: &str, done: bool) -> Value {
    let summary = if done { json!([{"type": "summary_text", "text": text}]) } else { json!([]) };
    json!({"id": id, "type": "reasoning", "summary": summary})
}

fn call_item(call: &Call, done: bool) -> Value {
    json!({"id": format!("fc_{}", call.call_id), "type": "function_call",
        "status": if done { "completed" } else { "in_progress" },
        "arguments": if done { call.arguments.as_str() } else { "" }, "call_id": call.call_id, "name": call.name})
}

/// A function call being written.
#[derive(Debug, Clone, Default)]
struct Call {
    call_id: String,
    name: String,
    arguments: String,
}

/// A chat `chat.completion` → a Responses `response` object repeating `echo`.
pub fn response(chat: &[u8], echo: &Echo) -> Result<Bytes, TranslateError> {
    let v: Value = serde_json::from_slice(chat)
        .map_err(|e| TranslateError::new(format!("invalid upstream JSON: {e}")))?;
    let mut head = Head::default();
    head.read(&v);
    let choice = v.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(r) = message.get("reasoning_content").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        output.push(reasoning_item(&head.reasoning_id(), r, true));
    }
    let calls = message.get("tool_calls").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
    if !text.is_empty() || calls.is_empty() {
        output.push(message_item(&head.message_id(), text, true));
    }
    for c in calls {
        let f = c.get("function").unwrap_or(&Value::Null);
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let call = Call { call_id: s(c.get("id")), name: s(f.get("name")), arguments: s(f.get("arguments")) };
        output.push(call_item(&call, true));
    }
    let status = head.status(choice.get("finish_reason").and_then(Value::as_str));
    let out = echo.response(&head, status, output, usage_of(v.get("usage")));
    Ok(Bytes::from(out.to_string()))
}

/// The item open in the stream.
#[derive(Debug, Clone)]
enum Open {
    Reasoning(String),
    Message(String),
    /// A function call: chat's tool call index, and the call.
    Call(u64, Call),
}

/// Chat `chat.completion.chunk` SSE → Responses API events.
pub type Stream = super::Sse<StreamState>;

impl Stream {
    /// A translator for `model` (named until the provider names one), repeating `echo`.
    pub fn new(model: &str, echo: Echo) -> Self {
        let head = Head { model: model.to_owned(), created: super::unix_now(), ..Head::default() };
        Self::wrap(StreamState { head, echo, ..StreamState::default() })
    }
}

/// What [`Stream`] remembers between chunks.
#[derive(Debug, Default)]
pub struct StreamState {
    head: Head,
    echo: Echo,
    /// The next event's `sequence_number`.
    seq: u64,
    started: bool,
    open: Option<Open>,
    /// The items done, in order: an open item's `output_index` is its length.
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl StreamState {
    /// Writes one event, numbered.
    fn emit(&mut self, mut v: Value, out: &mut Vec<u8>) {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.extend(format!("event: {kind}\ndata: {v}\n\n").into_bytes());
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.echo.response(&self.head, "in_progress", Vec::new(), Value::Null);
        self.emit(json!({"type": "response.created", "response": r}), out);
        self.emit(json!({"type": "response.in_progress", "response": r}), out);
    }

    /// Closes the open item: its done events, and it joins the output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else { return };
        let i = self.index();
        let item = match open {
            Open::Reasoning(text) => {
                let id = self.head.reasoning_id();
                let at = json!({"item_id": id, "output_index": i, "summary_index": 0});
                self.emit(
                    merge(&at, json!({"type": "response.reasoning_summary_text.done", "text": text})),
                    out,
                );
                let part = json!({"type": "summary_text", "text": text});
                self.emit(
                    merge(&at, json!({"type": "response.reasoning_summary_part.done", "part": part})),
                    out,
                );
                reasoning_item(&id, &text, true)
            }
            Open::Message(text) => {
                let id = self.head.message_id();
                let at = json!({"item_id": id, "output_index": i, "content_index": 0});
                let done = json!({"type": "response.output_text.done", "text": text, "logprobs": []});
                self.emit(merge(&at, done), out);
                self.emit(
                    merge(&at, json!({"type": "response.content_part.done", "part": text_part(&text)})),
                    out,
                );
                message_item(&id, &text, true)
            }
            Open::Call(_, call) => {
                let done = json!({"type": "response.function_call_arguments.done",
                    "item_id": format!("fc_{}", call.call_id), "output_index": i, "arguments": call.arguments});
                self.emit(done, out);
                call_item(&call, true)
            }
        };
        self.emit(json!({"type": "response.output_item.done", "output_index": i, "item": item}), out);
        self.output.push(item);
    }

    /// Opens an item (closing the one before): its added events.
    fn open(&mut self, open: Open, out: &mut Vec<u8>) {
        self.close(out);
        let i = self.index();
        let item = match &open {
            Open::Reasoning(_) => reasoning_item(&self.head.reasoning_id(), "", false),
            Open::Message(_) => message_item(&self.head.message_id(), "", false),
            Open::Call(_, call) => call_item(call, false),
        };
        let id = item["id"].clone();
        self.emit(json!({"type": "response.output_item.added", "output_index": i, "item": item}), out);
        match &open {
            Open::Reasoning(_) => {
                let part = json!({"type": "summary_text", "text": ""});
                self.emit(
                    json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                    "output_index": i, "summary_index": 0, "part": part}),
                    out,
                );
            }
            Open::Message(_) => self.emit(
                json!({"type": "response.content_part.added", "item_id": id,
                "output_index": i, "content_index": 0, "part": text_part("")}),
                out,
            ),
            Open::Call(..) => {}
        }
        self.open = Some(open);
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
            let code = e.get("code").filter(|c| c.is_string()).or_else(|| e.get("type"));
            let message = e.get("message").and_then(Value::as_str).unwrap_or("upstream error");
            self.emit(json!({"type": "error", "code": code, "message": message, "param": null}), out);
            return;
        }
        let usage = v.get("usage").filter(|u| !u.is_null());
        if v.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty) && usage.is_none() {
            return;
        }
        self.head.read(v);
        self.start(out);
        if let Some(u) = usage {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("reasoning_content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.reasoning(t, out);
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.text(t, out);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            self.call(call, out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
    }

    fn reasoning(&mut self, t: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Open::Reasoning(_))) {
            self.open(Open::Reasoning(String::new()), out);
        }
        if let Some(Open::Reasoning(text)) = &mut self.open {
            text.push_str(t);
        }
        let delta = json!({"type": "response.reasoning_summary_text.delta", "item_id": self.head.reasoning_id(),
            "output_index": self.index(), "summary_index": 0, "delta": t});
        self.emit(delta, out);
    }

    fn text(&mut self, t: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Open::Message(_))) {
            self.open(Open::Message(String::new()), out);
        }
        if let Some(Open::Message(text)) = &mut self.open {
            text.push_str(t);
        }
        let delta = json!({"type": "response.output_text.delta", "item_id": self.head.message_id(),
            "output_index": self.index(), "content_index": 0, "delta": t, "logprobs": []});
        self.emit(delta, out);
    }

    fn call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        if !matches!(self.open, Some(Open::Call(i, _)) if i == n) {
            let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
            let c = Call { call_id: s(call.get("id")), name: s(f.get("name")), arguments: String::new() };
            self.open(Open::Call(n, c), out);
        }
        let Some(args) = f.get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) else { return };
        let Some(Open::Call(_, c)) = &mut self.open else { return };
        c.arguments.push_str(args);
        let item_id = format!("fc_{}", c.call_id);
        let delta = json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
            "output_index": self.index(), "delta": args});
        self.emit(delta, out);
    }

    /// At `[DONE]`: close the open item, then the terminal event with the whole response.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let status = self.head.status(self.finish.as_deref());
        let output = std::mem::take(&mut self.output);
        let r = self.echo.response(&self.head, status, output, usage_of(self.usage.as_ref()));
        let kind = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(json!({"type": kind, "response": r}), out);
        self.done = true;
    }
}

/// `extra`'s fields over `base`'s (an event's type and payload over its position).
fn merge(base: &Value, extra: Value) -> Value {
    let mut v = base.clone();
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

impl super::EventTranslator for StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.chunk(data, out)
    }

    fn complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<(u64, u64)> {
        let u = self.usage.as_ref()?;
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some((n("prompt_tokens"), n("completion_tokens")))
    }
}

#[cfg(test)]
mod tests;
