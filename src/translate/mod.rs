//! Translation between wire formats, for providers that do not speak the client's. Each
//! direction is a pure function over bytes (requests, full responses, error bodies) or a small
//! state machine fed chunk by chunk (streams), so fixtures test them without a network.
//!
//! OpenAI chat is the hub: chat ⇄ Anthropic ([`anthropic`]) and chat ⇄ Gemini ([`gemini`]) are
//! the provider translators; Anthropic Messages ([`messages`]) and the Responses API
//! ([`responses`]) are translated to chat, and on through a provider translator where the
//! provider speaks neither (a [`Dialect`] names each composition).

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod messages;
pub mod responses;

use bytes::Bytes;

use crate::operation::Operation;

/// Why a request cannot be translated (the caller's fault: answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    /// What cannot be translated, for the client.
    pub message: String,
    /// The request parameter at fault, when one is (the error body's `param`).
    pub param: Option<&'static str>,
}

impl TranslateError {
    /// An error with no parameter to name.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), param: None }
    }

    /// An error naming the request parameter `param`.
    pub fn param(param: &'static str, message: impl Into<String>) -> Self {
        Self { message: message.into(), param: Some(param) }
    }
}

/// A stream translator: upstream bytes in, client bytes out.
pub trait StreamTranslator: Send {
    /// Translates the next upstream chunk (events may span chunks).
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// Whether the upstream stream reached its proper end (then the client stream is complete).
    fn complete(&self) -> bool;
    /// The usage the upstream reported (input, output), read from its own format: the Tap only
    /// knows OpenAI's and Anthropic's `usage` objects.
    fn usage(&self) -> Option<(u64, u64)>;
    /// Of the input tokens, those the upstream read from its prompt cache.
    fn cached(&self) -> u64 {
        0
    }
    /// Caps one upstream event at `max` bytes (see [`overflowed`](Self::overflowed)).
    fn limit_events(&mut self, max: usize) {
        let _ = max;
    }
    /// Whether an upstream event passed the cap: the stream cannot go on (it would be buffered
    /// whole), and ends with an in-band error.
    fn overflowed(&self) -> bool {
        false
    }
    /// Upstream events left out so far because their `data:` was not JSON (the relay counts
    /// them: `tier1_stream_events_dropped_total`).
    fn dropped(&self) -> u64 {
        0
    }
}

/// A translator of whole SSE events; [`Sse`] cuts the byte stream into events for it.
pub trait EventTranslator: Send {
    /// Translates one event's `data`, appending client bytes to `out`; `false` when the data is
    /// not JSON (nothing is written for it: [`Sse`] counts it as dropped, `[DONE]` aside).
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool;
    /// Whether the upstream stream reached its proper end.
    fn complete(&self) -> bool;
    /// The usage the upstream reported (input, output).
    fn usage(&self) -> Option<(u64, u64)>;
    /// Of the input tokens, those the upstream read from its prompt cache.
    fn cached(&self) -> u64 {
        0
    }
}

/// SSE framing around an [`EventTranslator`]: events may span chunks, and nothing after the
/// stream's proper end is relayed. An event whose data is not JSON is left out and counted, and
/// the stream goes on (before the commit point it already failed the attempt: see
/// [`crate::proxy::sse`]).
#[derive(Debug)]
pub struct Sse<T> {
    pending: crate::sse::Events,
    inner: T,
    dropped: u64,
}

impl<T> Sse<T> {
    /// Frames the stream for `inner`; public so fuzz and property tests can drive the framing
    /// with a translator of their own.
    pub fn wrap(inner: T) -> Self {
        Self { pending: crate::sse::Events::default(), inner, dropped: 0 }
    }
}

impl<T: EventTranslator> StreamTranslator for Sse<T> {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.pending.push(chunk) {
            return out;
        }
        while let Some(event) = self.pending.next_event() {
            if self.inner.complete() {
                continue;
            }
            if let Some(data) = crate::sse::data_of(event)
                && !self.inner.on_event(&data, &mut out)
                && !crate::sse::is_done(&data)
            {
                self.dropped += 1;
            }
        }
        self.pending.check();
        out
    }

    fn complete(&self) -> bool {
        self.inner.complete()
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.inner.usage()
    }

    fn cached(&self) -> u64 {
        self.inner.cached()
    }

    fn limit_events(&mut self, max: usize) {
        self.pending.limit(max);
    }

    fn overflowed(&self) -> bool {
        self.pending.overflowed()
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// `"created":N` (and the Responses API's `"created_at":N`) zeroed: two translators made a second apart stamp different times, so their
/// outputs compare equal only without it. For the unit and property tests and the fuzz targets.
#[doc(hidden)]
pub fn unstamped(out: &[u8]) -> Vec<u8> {
    const KEYS: [&[u8]; 2] = [b"\"created\":", b"\"created_at\":"];
    let mut result = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if let Some(key) = KEYS.iter().find(|k| out[i..].starts_with(k)) {
            result.extend_from_slice(key);
            result.push(b'0');
            i += key.len();
            while out.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else {
            result.push(out[i]);
            i += 1;
        }
    }
    result
}

/// What every chunk of one translated OpenAI stream repeats, and how chunks are written.
#[derive(Debug, Default)]
pub(crate) struct ChunkHead {
    /// The completion id.
    pub id: String,
    /// The model, as the provider named it.
    pub model: String,
    /// When the stream started (Unix seconds).
    pub created: u64,
}

impl ChunkHead {
    /// A head stamped now, for `model` until the provider names one.
    pub(crate) fn new(model: &str) -> Self {
        Self { id: String::new(), model: model.to_owned(), created: unix_now() }
    }

    /// One `chat.completion.chunk` event with a single choice.
    pub(crate) fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Vec<u8> {
        let v = serde_json::json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        format!("data: {v}\n\n").into_bytes()
    }

    /// The closing events: the usage chunk (when asked for) and `[DONE]`.
    pub(crate) fn done(&self, usage: Option<serde_json::Value>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(usage) = usage {
            let v = serde_json::json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage});
            out.extend(format!("data: {v}\n\n").into_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}

/// An OpenAI chat request translated for a provider (Anthropic, Gemini).
#[derive(Debug, Clone)]
pub struct Request {
    /// The provider's body.
    pub body: Bytes,
    /// OpenAI parameters the provider cannot take, dropped.
    pub dropped: Vec<&'static str>,
    /// `stream_options.include_usage`: the stream ends with a usage chunk.
    pub include_usage: bool,
}

impl Request {
    /// The provider's body `out`, with what was `dropped` and the `openai` request's
    /// `stream_options.include_usage`.
    pub(crate) fn new(
        openai: &serde_json::Map<String, serde_json::Value>,
        out: serde_json::Map<String, serde_json::Value>,
        mut dropped: Vec<&'static str>,
    ) -> Result<Self, TranslateError> {
        let include_usage = openai
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        dropped.dedup();
        let body = serde_json::to_vec(&serde_json::Value::Object(out))
            .map_err(|e| TranslateError::new(e.to_string()))?;
        Ok(Self { body: Bytes::from(body), dropped, include_usage })
    }
}

/// OpenAI `stop` (one string or a list) as a list.
pub(crate) fn stop_list(obj: &serde_json::Map<String, serde_json::Value>) -> Option<serde_json::Value> {
    match obj.get("stop") {
        Some(serde_json::Value::String(s)) => Some(serde_json::json!([s])),
        Some(serde_json::Value::Array(a)) => Some(serde_json::Value::Array(a.clone())),
        _ => None,
    }
}

/// The functions of an OpenAI `tools` array as `{name, description, <schema_key>: parameters}`
/// objects, for the formats that declare tools that way; a function without parameters gets
/// `default`, or no schema. Tools without a function or a name are left out.
pub(crate) fn function_tools(
    obj: &serde_json::Map<String, serde_json::Value>,
    schema_key: &str,
    default: Option<&serde_json::Value>,
) -> Vec<serde_json::Value> {
    let tools = obj.get("tools").and_then(serde_json::Value::as_array).into_iter().flatten();
    tools
        .filter_map(|t| {
            let f = t.get("function")?;
            let mut tool = serde_json::Map::new();
            tool.insert("name".into(), f.get("name")?.clone());
            if let Some(d) = f.get("description") {
                tool.insert("description".into(), d.clone());
            }
            if let Some(schema) = f.get("parameters").or(default) {
                tool.insert(schema_key.into(), schema.clone());
            }
            Some(serde_json::Value::Object(tool))
        })
        .collect()
}

/// OpenAI chat parameters with no counterpart in Anthropic Messages nor in Bedrock's Converse:
/// dropped and listed by both translators.
const UNMAPPED_CHAT_PARAMS: [&str; 14] = [
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "response_format",
    "service_tier",
    "store",
    "modalities",
    "audio",
    "prediction",
    // Anthropic's extended thinking needs a token budget below `max_tokens`, and thinking
    // blocks signed by Anthropic in later turns: not a setting to guess from an effort level.
    "reasoning_effort",
];

/// A request body as a JSON object (a translator's input).
fn parse(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(_) => Err(TranslateError::new("body must be an object")),
        Err(e) => Err(TranslateError::new(format!("invalid JSON: {e}"))),
    }
}

/// A message's text: the string, or its parts' `text` joined by newlines.
fn text_of(content: &serde_json::Value) -> String {
    use serde_json::Value;
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// Now, in Unix seconds (`created` fields).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The format a provider speaks where the client spoke another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic Messages, for OpenAI chat.
    Anthropic,
    /// Gemini `generateContent` and `batchEmbedContents`, for OpenAI chat and embeddings.
    Gemini,
    /// OpenAI chat, for the Anthropic-format ingress.
    OpenAi,
    /// Gemini, for the Anthropic-format ingress: through OpenAI's format, both ways.
    GeminiMessages,
    /// Anthropic Messages, for the Responses API: through OpenAI chat, both ways.
    ResponsesAnthropic,
    /// Gemini, for the Responses API: through OpenAI chat, both ways.
    ResponsesGemini,
    /// Bedrock Converse, for OpenAI chat.
    Bedrock,
    /// Bedrock Converse, for the Anthropic-format ingress: through OpenAI's format, both ways.
    BedrockMessages,
    /// Bedrock Converse, for the Responses API: through OpenAI chat, both ways.
    ResponsesBedrock,
}

/// A request in the provider's format.
#[derive(Debug, Clone)]
pub struct Translated {
    /// Into which format.
    pub dialect: Dialect,
    /// What the client asked (chat, embeddings, or Anthropic messages).
    pub operation: Operation,
    /// The provider's body.
    pub body: Bytes,
    /// OpenAI parameters the provider cannot take, dropped (`x-tier1-dropped-params`).
    pub dropped: Vec<&'static str>,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// What a Responses answer repeats of the request (empty for the other dialects).
    pub echo: responses::Echo,
}

impl Dialect {
    /// The provider's operation for a client's `op`.
    pub fn operation(self, op: Operation) -> Operation {
        match self {
            Self::Anthropic | Self::ResponsesAnthropic => Operation::Messages,
            Self::Gemini => op,
            Self::OpenAi | Self::GeminiMessages | Self::ResponsesGemini => Operation::Chat,
            // Converse is one call whatever the client asked.
            Self::Bedrock | Self::BedrockMessages | Self::ResponsesBedrock => Operation::Chat,
        }
    }

    /// Translates a client request of `op` for `model`.
    pub fn request(
        self,
        op: Operation,
        body: &[u8],
        model: &str,
        default_max_tokens: u32,
        stream: bool,
    ) -> Result<Translated, TranslateError> {
        if matches!(self, Self::Gemini | Self::GeminiMessages | Self::ResponsesGemini)
            && !gemini::valid_model(model)
        {
            // The model goes in Gemini's URL path.
            return Err(TranslateError::new(format!("{model:?} is not a Gemini model name")));
        }
        if matches!(self, Self::Bedrock | Self::BedrockMessages | Self::ResponsesBedrock)
            && !bedrock::valid_model(model)
        {
            // The model goes in Bedrock's URL path.
            return Err(TranslateError::new(format!("{model:?} is not a Bedrock model id")));
        }
        if matches!(self, Self::ResponsesAnthropic | Self::ResponsesGemini | Self::ResponsesBedrock) {
            return self.responses_request(body, model, default_max_tokens, stream);
        }
        let (body, dropped, include_usage) = match (self, op) {
            (Self::OpenAi, _) => {
                let r = messages::request(body, model, stream)?;
                (r.body, r.dropped, false)
            }
            (Self::GeminiMessages, _) => {
                let openai = messages::request(body, model, stream)?;
                let r = gemini::request(&openai.body, stream)?;
                let mut dropped = openai.dropped;
                dropped.extend(r.dropped);
                // The inner OpenAI stream carries usage, for the Anthropic `message_delta`.
                (r.body, dropped, stream)
            }
            (Self::Anthropic, _) => {
                let r = anthropic::request(body, model, default_max_tokens, stream)?;
                (r.body, r.dropped, r.include_usage)
            }
            (Self::Bedrock, _) => {
                let r = bedrock::request(body, default_max_tokens)?;
                (r.body, r.dropped, r.include_usage)
            }
            (Self::BedrockMessages, _) => {
                let openai = messages::request(body, model, stream)?;
                let r = bedrock::request(&openai.body, default_max_tokens)?;
                let mut dropped = openai.dropped;
                dropped.extend(r.dropped);
                // The inner OpenAI stream carries usage, for the Anthropic `message_delta`.
                (r.body, dropped, stream)
            }
            (Self::Gemini, Operation::Embeddings) => {
                let r = gemini::embeddings_request(body, model)?;
                (r.body, r.dropped, r.include_usage)
            }
            (Self::Gemini | Self::ResponsesAnthropic | Self::ResponsesGemini | Self::ResponsesBedrock, _) => {
                let r = gemini::request(body, stream)?;
                (r.body, r.dropped, r.include_usage)
            }
        };
        let echo = responses::Echo::default();
        Ok(Translated { dialect: self, operation: op, body, dropped, include_usage, echo })
    }

    /// A Responses request through chat to the provider's format.
    fn responses_request(
        self,
        body: &[u8],
        model: &str,
        default_max_tokens: u32,
        stream: bool,
    ) -> Result<Translated, TranslateError> {
        let chat = responses::request(body, model, stream)?;
        let r = match self {
            Self::ResponsesAnthropic => anthropic::request(&chat.body, model, default_max_tokens, stream)?,
            Self::ResponsesBedrock => bedrock::request(&chat.body, default_max_tokens)?,
            _ => gemini::request(&chat.body, stream)?,
        };
        let mut dropped = chat.dropped;
        dropped.extend(r.dropped);
        Ok(Translated {
            dialect: self,
            operation: Operation::Responses,
            body: r.body,
            dropped,
            // The inner chat stream carries usage, for `response.completed`.
            include_usage: stream,
            echo: chat.echo,
        })
    }
}

impl Translated {
    /// The provider's full answer → the client's, with the usage it reported (input, output).
    pub fn response(&self, raw: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
        match (self.dialect, self.operation) {
            (Dialect::OpenAi, _) => messages::response(raw, model),
            (Dialect::GeminiMessages, _) => {
                let (openai, usage) = gemini::response(raw, model)?;
                let (anthropic, _) = messages::response(&openai, model)?;
                Ok((anthropic, usage))
            }
            (Dialect::Anthropic, _) => anthropic::response(raw),
            (Dialect::Gemini, Operation::Embeddings) => gemini::embeddings_response(raw, model),
            (Dialect::Gemini, _) => gemini::response(raw, model),
            (Dialect::ResponsesAnthropic, _) => {
                let (chat, usage) = anthropic::response(raw)?;
                Ok((responses::response(&chat, &self.echo)?, usage))
            }
            (Dialect::ResponsesGemini, _) => {
                let (chat, usage) = gemini::response(raw, model)?;
                Ok((responses::response(&chat, &self.echo)?, usage))
            }
            (Dialect::Bedrock, _) => bedrock::response(raw, model),
            (Dialect::BedrockMessages, _) => {
                let (openai, usage) = bedrock::response(raw, model)?;
                let (anthropic, _) = messages::response(&openai, model)?;
                Ok((anthropic, usage))
            }
            (Dialect::ResponsesBedrock, _) => {
                let (chat, usage) = bedrock::response(raw, model)?;
                Ok((responses::response(&chat, &self.echo)?, usage))
            }
        }
    }

    /// The provider's error body (with its status) → the client's shape.
    pub fn error(&self, raw: &[u8], status: u16) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => messages::error(raw, status),
            Dialect::GeminiMessages => messages::error(&gemini::error(raw), status),
            // The Responses API's error bodies are OpenAI's.
            Dialect::Anthropic | Dialect::ResponsesAnthropic => anthropic::error(raw),
            Dialect::Gemini | Dialect::ResponsesGemini => gemini::error(raw),
            Dialect::Bedrock | Dialect::ResponsesBedrock => bedrock::error(raw, status),
            Dialect::BedrockMessages => messages::error(&bedrock::error(raw, status), status),
        }
    }

    /// A translator for the provider's stream.
    pub fn stream(&self, model: &str) -> Box<dyn StreamTranslator> {
        match self.dialect {
            Dialect::Anthropic => Box::new(anthropic::Stream::new(self.include_usage)),
            Dialect::Gemini => Box::new(gemini::Stream::new(model, self.include_usage)),
            Dialect::OpenAi => Box::new(messages::Stream::new(model)),
            Dialect::GeminiMessages => {
                Box::new(Chain(gemini::Stream::new(model, self.include_usage), messages::Stream::new(model)))
            }
            Dialect::ResponsesAnthropic => Box::new(Chain(
                anthropic::Stream::new(true),
                responses::Stream::new(model, self.echo.clone()),
            )),
            Dialect::ResponsesGemini => Box::new(Chain(
                gemini::Stream::new(model, true),
                responses::Stream::new(model, self.echo.clone()),
            )),
            Dialect::Bedrock => Box::new(bedrock::Stream::new(model, self.include_usage)),
            Dialect::BedrockMessages => {
                Box::new(Chain(bedrock::Stream::new(model, true), messages::Stream::new(model)))
            }
            Dialect::ResponsesBedrock => Box::new(Chain(
                bedrock::Stream::new(model, true),
                responses::Stream::new(model, self.echo.clone()),
            )),
        }
    }
}

/// Two translators in a row: the first's output is the second's input.
struct Chain<A, B>(A, B);

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for Chain<A, B> {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let middle = self.0.feed(chunk);
        if middle.is_empty() { Vec::new() } else { self.1.feed(&middle) }
    }

    fn complete(&self) -> bool {
        self.0.complete() && self.1.complete()
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.0.usage()
    }

    fn cached(&self) -> u64 {
        self.0.cached()
    }

    fn dropped(&self) -> u64 {
        self.0.dropped() + self.1.dropped()
    }

    // The upstream's events are the first translator's: the cap is its to keep.
    fn limit_events(&mut self, max: usize) {
        self.0.limit_events(max);
    }

    fn overflowed(&self) -> bool {
        self.0.overflowed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;

    /// Feeds `input` in the given piece sizes (cycled) and returns all output.
    fn feed(t: &mut dyn StreamTranslator, input: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + size.max(&1)).min(input.len());
            out.extend(t.feed(&input[at..end]));
            at = end;
        }
        out
    }

    /// Makes a fresh translator.
    type Make = Box<dyn Fn() -> Box<dyn StreamTranslator>>;

    /// A Gemini stream of a text chunk, then the mock's call (sent whole, with the finish).
    fn gemini_tool_frames() -> Vec<u8> {
        let text = serde_json::json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]},
            "index": 0}], "modelVersion": "m", "responseId": "gemini-mock-1"});
        format!("data: {text}\r\n\r\ndata: {}\r\n\r\n", mock::tools::gemini("m", "f", 1)).into_bytes()
    }

    /// What a Responses stream repeats of a request with a tool.
    fn echo() -> responses::Echo {
        let req = br#"{"input":"hi","tools":[{"type":"function","name":"f"}]}"#;
        responses::request(req, "m", true).unwrap().echo
    }

    /// (name, translator, a whole upstream stream in the provider's format).
    fn translators() -> Vec<(&'static str, Make, Vec<u8>)> {
        let join = |frames: std::collections::VecDeque<bytes::Bytes>| {
            frames.iter().flat_map(|b| b.to_vec()).collect()
        };
        let reply = "Hello there, streaming world.";
        vec![
            (
                "anthropic text",
                Box::new(|| Box::new(anthropic::Stream::new(true))),
                join(mock::anthropic_frames("m", reply, 1)),
            ),
            (
                "anthropic tool",
                Box::new(|| Box::new(anthropic::Stream::new(true))),
                join(mock::tools::anthropic_frames("m", "f", 1)),
            ),
            (
                "gemini text",
                Box::new(|| Box::new(gemini::Stream::new("m", true))),
                join(mock::gemini_frames("m", reply, 1)),
            ),
            (
                "openai→messages text",
                Box::new(|| Box::new(messages::Stream::new("m"))),
                join(mock::stream_frames("m", reply, 1, true)),
            ),
            (
                "openai→messages tool",
                Box::new(|| Box::new(messages::Stream::new("m"))),
                join(mock::tools::openai_frames("m", "f", 1, true)),
            ),
            (
                "gemini→messages text",
                Box::new(|| Box::new(Chain(gemini::Stream::new("m", true), messages::Stream::new("m")))),
                join(mock::gemini_frames("m", reply, 1)),
            ),
            (
                "anthropic→responses text",
                Box::new(|| {
                    Box::new(Chain(anthropic::Stream::new(true), responses::Stream::new("m", echo())))
                }),
                join(mock::anthropic_frames("m", reply, 1)),
            ),
            (
                "anthropic→responses tool",
                Box::new(|| {
                    Box::new(Chain(anthropic::Stream::new(true), responses::Stream::new("m", echo())))
                }),
                join(mock::tools::anthropic_frames("m", "f", 1)),
            ),
            (
                "gemini→responses text",
                Box::new(|| {
                    Box::new(Chain(gemini::Stream::new("m", true), responses::Stream::new("m", echo())))
                }),
                join(mock::gemini_frames("m", reply, 1)),
            ),
            (
                "gemini→responses tool",
                Box::new(|| {
                    Box::new(Chain(gemini::Stream::new("m", true), responses::Stream::new("m", echo())))
                }),
                gemini_tool_frames(),
            ),
        ]
    }

    #[test]
    fn an_event_that_is_not_json_is_left_out_and_counted_and_the_stream_goes_on() {
        for (name, make, input) in translators() {
            let input = String::from_utf8(input).unwrap();
            let mut clean = make();
            let want = unstamped(&clean.feed(input.as_bytes()));
            assert_eq!(clean.dropped(), 0, "{name}");
            // After the stream's first event, one that is cut short and one that is no JSON.
            let at = input.find("\n\n").map_or_else(|| input.find("\r\n\r\n").unwrap() + 4, |i| i + 2);
            let bad =
                format!("{}data: {{\"choices\":[\n\ndata: not json\r\n\r\n{}", &input[..at], &input[at..]);
            for sizes in [&[1 << 20][..], &[1], &[7, 13]] {
                let mut t = make();
                assert_eq!(unstamped(&feed(t.as_mut(), bad.as_bytes(), sizes)), want, "{name} {sizes:?}");
                assert_eq!(t.dropped(), 2, "{name} {sizes:?}");
                assert!(t.complete(), "{name}");
            }
        }
    }

    #[test]
    fn every_stream_ends_with_bare_cr_line_ends() {
        // Regression (found by the property tests): the closing event was held back waiting
        // for a `\n` after the final `\r`, so the client never got `[DONE]`/`message_stop`.
        for (name, make, input) in translators() {
            let input = String::from_utf8(input).unwrap().replace("\r\n", "\n").replace('\n', "\r");
            let mut whole = make();
            let want = unstamped(&whole.feed(input.as_bytes()));
            assert!(whole.complete(), "{name}: {}", String::from_utf8_lossy(&want));
            let mut bytewise = make();
            assert_eq!(unstamped(&feed(bytewise.as_mut(), input.as_bytes(), &[1])), want, "{name}");
        }
    }

    #[test]
    fn every_stream_translates_the_same_whole_byte_by_byte_and_in_random_splits() {
        for (name, make, input) in translators() {
            let mut whole = make();
            let want = unstamped(&whole.feed(&input));
            assert!(whole.complete(), "{name}: {}", String::from_utf8_lossy(&want));
            assert!(want.len() > 100, "{name}: {}", String::from_utf8_lossy(&want));
            let mut bytewise = make();
            assert_eq!(unstamped(&feed(bytewise.as_mut(), &input, &[1])), want, "{name}: 1 byte at a time");
            assert!(bytewise.complete(), "{name}");
            // Pseudo-random piece sizes (a fixed LCG: reproducible failures).
            let mut seed = 0x2545_f491_u64;
            for round in 0..50 {
                let sizes: Vec<usize> = (0..16)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        1 + (seed >> 33) as usize % 97
                    })
                    .collect();
                let mut t = make();
                assert_eq!(
                    unstamped(&feed(t.as_mut(), &input, &sizes)),
                    want,
                    "{name}: round {round} {sizes:?}"
                );
                assert_eq!(t.usage(), whole.usage(), "{name}");
            }
        }
    }
}
