//! Property tests: what must hold for every input of a shape, not just the fixtures.
//! - SSE: the commit judge and every stream translator read a stream the same whatever its split.
//! - splice: the forwarded body is the client's JSON with only `model` (and `stream` when forced,
//!   and the cut `fallbacks`) changed, whatever the keys, nesting, unicode, escapes and spacing.
//!
//! Case counts are kept small so the file runs in seconds; `PROPTEST_CASES` raises them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tier1::testing::json::{Schema, scan};
use tier1::testing::mock;
use tier1::testing::providers::Operation;
use tier1::testing::proxy::sse::{CommitScanner, Verdict};
use tier1::testing::translate::{Dialect, Translated, unstamped};

/// 256 cases per property (well under a second for the file), or `PROPTEST_CASES`.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

// === splitting ===

/// Piece sizes that cover a stream of any length (cycled), from 1 byte up.
fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..4usize, 1..40usize, 1..400usize], 1..12)
}

/// `data` cut into pieces of `sizes` (cycled).
fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        pieces.push(&data[at..end]);
        at = end;
    }
    pieces
}

/// Short text with what breaks naive framing and escaping: quotes, backslashes, control
/// characters, CR/LF, `data:`, and characters outside the BMP.
fn text() -> impl Strategy<Value = String> {
    let pick = prop_oneof![
        4 => any::<char>(),
        2 => prop::sample::select(vec!['"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', ' ', '/']),
        1 => prop::sample::select(vec!['é', '模', '😀', '\u{2028}', '\u{feff}']),
    ];
    prop::collection::vec(pick, 0..12).prop_map(String::from_iter)
}

// === SSE: the commit judge ===

/// One event's `data` as the judge meets it: OpenAI, Anthropic and Gemini shapes, errors,
/// `[DONE]` and text that is not JSON.
fn judge_data() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
        ),
        text().prop_map(|t| json!({"choices": [{"index": 0, "delta": {"content": t}}]})),
        Just(json!({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]})),
        Just(json!({"choices": [{"delta": {}, "finish_reason": "stop"}]})),
        Just(json!({"choices": [], "usage": {"prompt_tokens": 1}})),
        text().prop_map(|t| json!({"error": {"message": t, "type": "rate_limit_error"}})),
        Just(json!({"type": "ping"})),
        text()
            .prop_map(|t| json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": t}})),
        Just(json!({"type": "message_stop"})),
        text().prop_map(|t| json!({"candidates": [{"content": {"parts": [{"text": t}]}}]})),
        Just(json!({"promptFeedback": {"blockReason": "SAFETY"}})),
        Just(Value::String("[DONE]".into())),
        text().prop_map(|t| Value::String(format!("not json {t:?}"))),
    ]
}

/// An SSE stream: each event optionally named, with a comment, its data on one line or spread
/// over several (pretty-printed), in one line-end style; returns (stream, number of events).
fn sse_stream() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let event = (judge_data(), any::<bool>(), any::<bool>(), any::<bool>());
    (prop::collection::vec(event, 0..8), prop::sample::select(vec!["\n", "\r\n", "\r"])).prop_map(
        |(events, eol)| {
            let mut s = String::new();
            for (data, named, comment, multiline) in &events {
                if *comment {
                    s += &format!(": keep-alive{eol}");
                }
                if *named {
                    s += &format!("event: message{eol}id: 7{eol}");
                }
                let text = match data {
                    Value::String(raw) => raw.clone(),
                    v if *multiline => serde_json::to_string_pretty(v).unwrap_or_default(),
                    v => v.to_string(),
                };
                for line in text.split('\n') {
                    s += &format!("data: {line}{eol}");
                }
                s += eol;
            }
            (s.into_bytes(), events.len())
        },
    )
}

/// The judge's first decisive verdict (or `Pending`) and the events read by then.
fn judge(pieces: &[&[u8]]) -> (Verdict, usize) {
    let mut s = CommitScanner::default();
    for piece in pieces {
        let v = s.feed(piece);
        if v != Verdict::Pending {
            return (v, s.events());
        }
    }
    (Verdict::Pending, s.events())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_judge_reads_any_split_like_the_whole_stream((stream, n) in sse_stream(), sizes in sizes()) {
        let whole = judge(&[&stream]);
        if whole.0 == Verdict::Pending {
            prop_assert_eq!(whole.1, n, "every event is read");
        }
        prop_assert_eq!(judge(&split(&stream, &sizes)), whole);
    }
}

// === SSE: the stream translators ===

/// A whole upstream stream in `dialect`'s format from the mock provider: a text answer (one
/// event per word) or a tool call, with keep-alive comments and the line ends re-written.
fn upstream(dialect: Dialect, reply: &str, tool: bool, keepalive: bool, eol: &str) -> Vec<u8> {
    let frames = match (dialect, tool) {
        (Dialect::Anthropic | Dialect::ResponsesAnthropic, false) => mock::anthropic_frames("m", reply, 1),
        (Dialect::Anthropic | Dialect::ResponsesAnthropic, true) => {
            mock::tools::anthropic_frames("m", reply, 1)
        }
        (Dialect::Gemini | Dialect::GeminiMessages | Dialect::ResponsesGemini, _) => {
            mock::gemini_frames("m", reply, 1)
        }
        (Dialect::OpenAi, false) => mock::stream_frames("m", reply, 1, true),
        (Dialect::OpenAi, true) => mock::tools::openai_frames("m", reply, 1, true),
        (Dialect::Bedrock | Dialect::BedrockMessages | Dialect::ResponsesBedrock, _) => {
            // The event stream as the provider layer hands it on: one SSE event per message.
            let mut sse = tier1::testing::providers::bedrock::ToSse::new(1 << 20);
            let tool = tool.then_some(reply);
            mock::bedrock::converse_frames(reply, tool, 1).iter().map(|f| sse.feed(f).into()).collect()
        }
    };
    let mut out = Vec::new();
    for frame in frames {
        if keepalive {
            out.extend_from_slice(b": keep-alive\n\n");
        }
        out.extend_from_slice(&frame);
    }
    // Framing is all that holds raw line ends: JSON escapes those in strings.
    String::from_utf8(out)
        .expect("mock frames are UTF-8")
        .replace("\r\n", "\n")
        .replace('\n', eol)
        .into_bytes()
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop::sample::select(vec![
        Dialect::Anthropic,
        Dialect::Gemini,
        Dialect::OpenAi,
        Dialect::GeminiMessages,
        Dialect::ResponsesAnthropic,
        Dialect::ResponsesGemini,
        Dialect::Bedrock,
        Dialect::BedrockMessages,
        Dialect::ResponsesBedrock,
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_stream_translator_writes_the_same_bytes_whatever_the_split(
        dialect in dialect(),
        reply in text().prop_filter("a reply has a word", |t| !t.is_empty()),
        model in text(),
        tool: bool,
        keepalive: bool,
        include_usage: bool,
        eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        sizes in sizes(),
    ) {
        let input = upstream(dialect, &reply, tool, keepalive, eol);
        let t = Translated {
            dialect,
            operation: Operation::Chat,
            body: Bytes::new(),
            dropped: Vec::new(),
            include_usage,
            echo: Default::default(),
        };
        let mut whole = t.stream(&model);
        let want = unstamped(&whole.feed(&input));
        prop_assert!(whole.complete(), "a whole stream ends properly: {}", String::from_utf8_lossy(&want));
        let mut pieces = t.stream(&model);
        let mut got = Vec::new();
        for piece in split(&input, &sizes) {
            got.extend(pieces.feed(piece));
        }
        prop_assert_eq!(unstamped(&got), want);
        prop_assert!(pieces.complete());
        prop_assert_eq!(pieces.usage(), whole.usage());
    }
}

// === splice ===

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Writes JSON by hand, with whitespace between tokens and `\uXXXX` escapes (surrogate pairs
/// beyond the BMP) where `style`'s bits say, so keys like `"mod\u0065l"` occur.
struct Writer {
    style: u64,
    out: String,
}

impl Writer {
    fn bit(&mut self) -> bool {
        self.style =
            self.style.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.style >> 63 == 1
    }

    fn ws(&mut self) {
        if self.bit() && self.bit() {
            let ws = if self.bit() { " " } else { "\n\t\r " };
            self.out.push_str(ws);
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if (c as u32) < 0x20 || (self.bit() && self.bit() && self.bit()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(item);
                    self.ws();
                }
                self.out.push(']');
            }
            Value::Object(members) => self.members(members.iter()),
            other => self.out.push_str(&other.to_string()),
        }
    }

    fn members<'a>(&mut self, members: impl Iterator<Item = (&'a String, &'a Value)>) {
        self.out.push('{');
        for (i, (k, v)) in members.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            self.string(k);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(v);
            self.ws();
        }
        self.out.push('}');
    }
}

/// Fields `scan` checks the type of: left out of the random ones so every body is valid.
const CHECKED: [&str; 15] = [
    "model",
    "stream",
    "fallbacks",
    "messages",
    "input",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
];

/// A request body valid for every schema: `model`, `messages`, `input`, maybe `stream` and
/// `fallbacks`, and random other members, in a random order; returns (body, its members).
fn request() -> impl Strategy<Value = (Bytes, Map<String, Value>)> {
    let others = prop::collection::btree_map(
        text().prop_filter("unchecked", |k| !CHECKED.contains(&k.as_str())),
        json_value(),
        0..6,
    );
    let stream =
        prop_oneof![Just(None), Just(Some(Value::Null)), any::<bool>().prop_map(|b| Some(Value::Bool(b)))];
    let fallbacks =
        prop::option::of(prop::collection::vec(text().prop_filter("non-empty", |t| !t.is_empty()), 0..3));
    (text().prop_filter("non-empty", |t| !t.is_empty()), text(), stream, fallbacks, others, any::<u64>())
        .prop_flat_map(|(model, content, stream, fallbacks, others, style)| {
            let mut members: Vec<(String, Value)> = others.into_iter().collect();
            members.push(("model".into(), Value::String(model)));
            members.push(("messages".into(), json!([{"role": "user", "content": content}])));
            members.push(("input".into(), json!(["x"])));
            if let Some(s) = stream {
                members.push(("stream".into(), s));
            }
            if let Some(f) = fallbacks {
                members.push(("fallbacks".into(), json!(f)));
            }
            (Just(members).prop_shuffle(), Just(style))
        })
        .prop_map(|(members, style)| {
            let mut w = Writer { style, out: String::new() };
            w.ws();
            w.members(members.iter().map(|(k, v)| (k, v)));
            w.ws();
            (Bytes::from(w.out), members.into_iter().collect())
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn splice_changes_only_model_stream_and_fallbacks(
        (body, members) in request(),
        schema in prop::sample::select(vec![Schema::Chat, Schema::Embeddings, Schema::Messages]),
        upstream in text(),
        force_stream: bool,
    ) {
        let scanned = scan(&body, schema).map_err(|e| TestCaseError::fail(format!("{e}: {body:?}")))?;
        prop_assert_eq!(Some(&Value::String(scanned.model.clone())), members.get("model"));
        let out = scanned.splice(&body, &upstream, force_stream);
        let got: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        // Compared with the body as parsed, not as generated: serde_json reads some floats 1 ULP off.
        let Ok(Value::Object(mut want)) = serde_json::from_slice::<Value>(&body) else {
            return Err(TestCaseError::fail("the generated body is not a JSON object"));
        };
        want.insert("model".into(), Value::String(upstream.clone()));
        want.remove("fallbacks");
        if force_stream {
            want.insert("stream".into(), Value::Bool(true));
        }
        prop_assert_eq!(got, Value::Object(want));
        if !upstream.is_empty() {
            let again = scan(&out, schema).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.model, upstream);
        }
    }
}
