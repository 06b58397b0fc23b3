//! The request fast path: validate an OpenAI body with simd-json, find the byte spans of the
//! top-level fields the router acts on, and splice the upstream model name into the original
//! bytes. The rest of the body is forwarded untouched (no re-serialisation, key order and
//! whitespace kept).

use std::ops::Range;

use bytes::Bytes;
use simd_json::prelude::*;

/// Which request schema to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `/chat/completions`.
    Chat,
    /// `/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
}

/// Why a body was refused (all map to 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not parseable JSON.
    #[error("request body is not valid JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("request body must be a JSON object")]
    NotObject,
    /// A required field is absent.
    #[error("missing required field '{0}'")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field '{field}' must be {want}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        want: &'static str,
    },
    /// A field the router acts on appears twice (ambiguous: refused rather than guessed).
    #[error("field '{0}' appears more than once")]
    Duplicate(&'static str),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("request body nests arrays and objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More request-level fallbacks than `server.max_request_fallbacks`, the body's and the
    /// header's together.
    #[error(
        "{given} request-level fallbacks ('fallbacks' in the body and the 'x-tier1-fallbacks' header \
         together); at most {max} are accepted (server.max_request_fallbacks)"
    )]
    TooManyFallbacks {
        /// How many the request named (the body's alone when they are already too many).
        given: usize,
        /// The cap.
        max: usize,
    },
}

impl ScanError {
    /// OpenAI-style error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson | Self::NotObject => "invalid_json",
            Self::Missing(_) => "missing_required_field",
            Self::WrongType { .. } => "invalid_type",
            Self::Duplicate(_) => "duplicate_field",
            Self::TooDeep => "json_too_deep",
            Self::TooManyFallbacks { .. } => "too_many_fallbacks",
        }
    }

    /// The field concerned, if any (OpenAI's `param`).
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::NotJson | Self::NotObject | Self::TooDeep => None,
            Self::TooManyFallbacks { .. } => Some("fallbacks"),
            Self::Missing(f) | Self::Duplicate(f) => Some(f),
            Self::WrongType { field, .. } => Some(field),
        }
    }
}

/// What the router needs from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The client-facing model name.
    pub model: String,
    /// `stream`, if present and not null.
    pub stream: Option<bool>,
    /// Bifrost-style `fallbacks`: more models to try, in order (removed before forwarding).
    pub fallbacks: Vec<String>,
    /// `max_completion_tokens` or `max_tokens`, for the token estimate of rate limits.
    pub max_tokens: Option<u64>,
    spans: Spans,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spans {
    /// Offset just after the opening `{`.
    body_start: usize,
    model: Range<usize>,
    stream: Option<Range<usize>>,
    /// The whole `"fallbacks": [...]` member with one adjacent comma, to cut out.
    fallbacks: Option<Range<usize>>,
}

/// A worker thread's parse buffers, reused across requests: the copy simd-json parses in place
/// and its structural index. Without them every request paid several allocations.
struct Scratch {
    copy: Vec<u8>,
    buffers: simd_json::Buffers,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch { copy: Vec::new(), buffers: simd_json::Buffers::default() });
}

/// Buffers grown beyond this by a large body are given back after it, so an idle worker does not
/// hold the largest body it ever saw.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Deepest nesting of arrays and objects accepted in a request body (the body's own object is
/// level 1). Fixed, not a setting: it is what serde_json accepts (its recursion limit of 128
/// refuses the 128th level), and the translated paths parse the body with serde_json again, so
/// a higher knob could not be honoured there. Real requests (tool schemas included) stay far
/// below it.
pub(crate) const MAX_DEPTH: usize = 127;

/// Validates `body` against `schema` and locates its `model` and `stream` (any number of
/// fallbacks accepted).
pub fn scan(body: &[u8], schema: Schema) -> Result<Scanned, ScanError> {
    scan_capped(body, schema, usize::MAX)
}

/// [`scan`], refusing more than `max_fallbacks` entries in `fallbacks` before any is copied.
pub(crate) fn scan_capped(body: &[u8], schema: Schema, max_fallbacks: usize) -> Result<Scanned, ScanError> {
    // Before simd-json: its structural index and tape cost about 20 bytes per bracket, so a
    // 14 MB body of nested arrays took 400 MB.
    if !depth_within(body, MAX_DEPTH)? {
        return Err(ScanError::TooDeep);
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let Scratch { copy, buffers } = &mut *scratch;
            let result = scan_with(body, schema, max_fallbacks, copy, buffers);
            if copy.capacity() > SCRATCH_KEEP {
                *scratch = Scratch { copy: Vec::new(), buffers: simd_json::Buffers::default() };
            }
            result
        }
        // Not reachable (scan does not re-enter), but never worth a panic.
        Err(_) => scan_with(body, schema, max_fallbacks, &mut Vec::new(), &mut simd_json::Buffers::default()),
    })
}

/// Whether arrays and objects in `b` nest no deeper than `max`: one pass over the bytes that
/// counts brackets outside strings, skips string contents eight bytes at a time, and stops at
/// the first level too deep. An error only for bytes that cannot be JSON where this pass and
/// simd-json could disagree on what is a string: an unterminated string, or a backslash outside
/// one (simd-json reads `\"` as an escaped quote wherever it stands). Public for the benchmark.
pub(crate) fn depth_within(b: &[u8], max: usize) -> Result<bool, ScanError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Ok(false);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => {
                i = string_end(b, i + 1).ok_or(ScanError::NotJson)?;
                continue;
            }
            b'\\' => return Err(ScanError::NotJson),
            _ => {}
        }
        i += 1;
    }
    Ok(true)
}

/// The offset just after the quote that closes the string whose contents start at `i`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Whether any byte of `w` equals `c` (the exact SWAR zero-byte test on `w ^ c…c`).
    let has = |w: u64, c: u8| {
        let x = w ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & (ONES << 7) != 0
    };
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            if has(w, b'"') || has(w, b'\\') {
                break;
            }
            i += 8;
        }
        match b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

fn scan_with(
    body: &[u8],
    schema: Schema,
    max_fallbacks: usize,
    copy: &mut Vec<u8>,
    buffers: &mut simd_json::Buffers,
) -> Result<Scanned, ScanError> {
    // simd-json parses in place (it unescapes strings into the buffer), so it gets a copy. The
    // tape is enough to validate and to look fields up; no value tree is built.
    copy.clear();
    copy.extend_from_slice(body);
    let tape = simd_json::to_tape_with_buffers(copy, buffers).map_err(|_| ScanError::NotJson)?;
    let value = tape.as_value();
    let obj = value.as_object().ok_or(ScanError::NotObject)?;
    let model = match obj.get("model") {
        None => return Err(ScanError::Missing("model")),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(ScanError::WrongType { field: "model", want: "a non-empty string" }),
        },
    };
    let stream = match obj.get("stream") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(v.as_bool().ok_or(ScanError::WrongType { field: "stream", want: "a boolean" })?),
    };
    let fallbacks = match obj.get("fallbacks") {
        None => Vec::new(),
        Some(v) if v.is_null() => Vec::new(),
        Some(v) => {
            let want = ScanError::WrongType { field: "fallbacks", want: "an array of model names" };
            let items = v.as_array().ok_or(want.clone())?;
            if items.len() > max_fallbacks {
                return Err(ScanError::TooManyFallbacks { given: items.len(), max: max_fallbacks });
            }
            items
                .iter()
                .map(|m| m.as_str().filter(|s| !s.is_empty()).map(str::to_owned).ok_or(want.clone()))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    match schema {
        Schema::Chat => check_chat(&obj)?,
        Schema::Embeddings => check_embeddings(&obj)?,
        Schema::Messages => check_messages(&obj)?,
    }
    let spans = spans(body, buffers.structural_indexes()).ok_or(ScanError::NotJson)??;
    let max_tokens =
        ["max_completion_tokens", "max_tokens"].iter().find_map(|f| obj.get(*f).and_then(|v| v.as_u64()));
    Ok(Scanned { model, stream, fallbacks, max_tokens, spans })
}

type Object<'t, 'i> = simd_json::tape::Object<'t, 'i>;

fn check_chat(obj: &Object<'_, '_>) -> Result<(), ScanError> {
    let messages = obj.get("messages").ok_or(ScanError::Missing("messages"))?;
    let messages = messages.as_array().ok_or(ScanError::WrongType { field: "messages", want: "an array" })?;
    for m in messages.iter() {
        let role_ok = m.as_object().and_then(|o| o.get("role")).is_some_and(|r| r.as_str().is_some());
        if !role_ok {
            return Err(ScanError::WrongType {
                field: "messages",
                want: "an array of objects with a string 'role'",
            });
        }
    }
    optional(obj, "stream_options", "an object", |v| v.is_object())?;
    for field in ["max_tokens", "max_completion_tokens", "n"] {
        optional(obj, field, "a non-negative integer", |v| v.as_u64().is_some())?;
    }
    for field in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
        optional(obj, field, "a number", |v| v.as_f64().is_some() || v.as_i64().is_some())?;
    }
    optional(obj, "tools", "an array", |v| v.is_array())?;
    Ok(())
}

fn check_messages(obj: &Object<'_, '_>) -> Result<(), ScanError> {
    let messages = obj.get("messages").ok_or(ScanError::Missing("messages"))?;
    if !messages.is_array() {
        return Err(ScanError::WrongType { field: "messages", want: "an array" });
    }
    optional(obj, "max_tokens", "a non-negative integer", |v| v.as_u64().is_some())?;
    Ok(())
}

fn check_embeddings(obj: &Object<'_, '_>) -> Result<(), ScanError> {
    let input = obj.get("input").ok_or(ScanError::Missing("input"))?;
    if input.as_str().is_none() && !input.is_array() {
        return Err(ScanError::WrongType { field: "input", want: "a string or an array" });
    }
    Ok(())
}

fn optional(
    obj: &Object<'_, '_>,
    field: &'static str,
    want: &'static str,
    ok: impl Fn(&simd_json::tape::Value<'_, '_>) -> bool,
) -> Result<(), ScanError> {
    match obj.get(field) {
        Some(v) if !v.is_null() && !ok(&v) => Err(ScanError::WrongType { field, want }),
        _ => Ok(()),
    }
}

/// Finds the spans of top-level `model`, `stream` and `fallbacks` in JSON simd-json accepted, by
/// walking its structural index (the offsets of every `{}[]:,` outside strings and of every
/// value's first byte) instead of the bytes: a 50 KB prompt is one hop, not 50,000 steps. `None`
/// only if the index does not describe an object (cannot happen after a successful parse).
fn spans(b: &[u8], index: &[u32]) -> Option<Result<Spans, ScanError>> {
    let at = |k: usize| index.get(k).map(|&p| p as usize);
    let open = at(0)?;
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut spans = Spans { body_start: open + 1, ..Spans::default() };
    let mut model = None;
    // Offset of the comma before the current member, if any.
    let mut prev_comma: Option<usize> = None;
    let mut k = 1;
    loop {
        let key_start = at(k)?;
        match b.get(key_start)? {
            b'}' => break,
            b'"' => {}
            _ => return None,
        }
        let colon = at(k + 1)?;
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let key = key_start..trim_end(b, colon);
        k += 2;
        let value_start = at(k)?;
        let value_end = match b.get(value_start)? {
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match b.get(at(k)?)? {
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
                k += 1;
                at(k - 1)? + 1
            }
            _ => {
                k += 1;
                trim_end(b, at(k)?)
            }
        };
        let value = value_start..value_end;
        // The `,` or `}` after the member.
        let sep = at(k)?;
        let name = key_name(&b[key.start + 1..key.end - 1]);
        let next_comma = (b.get(sep) == Some(&b',')).then_some(sep);
        match name.as_deref() {
            Some("model") if model.replace(value.clone()).is_some() => {
                return Some(Err(ScanError::Duplicate("model")));
            }
            Some("stream") if spans.stream.replace(value.clone()).is_some() => {
                return Some(Err(ScanError::Duplicate("stream")));
            }
            Some("fallbacks") => {
                // Cut the member with the comma after it, or, for the last member, the one before.
                let cut = match (next_comma, prev_comma) {
                    (Some(c), _) => key.start..skip_ws(b, c + 1),
                    (None, Some(c)) => c..value.end,
                    (None, None) => key.start..value.end,
                };
                if spans.fallbacks.replace(cut).is_some() {
                    return Some(Err(ScanError::Duplicate("fallbacks")));
                }
            }
            _ => {}
        }
        match b.get(sep)? {
            b',' => {
                prev_comma = Some(sep);
                k += 1;
            }
            b'}' => break,
            _ => return None,
        }
    }
    spans.model = model?;
    Some(Ok(spans))
}

/// `end` moved back over whitespace: where the token before it ends.
fn trim_end(b: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(b.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    end
}

/// A key's text; keys with escapes are decoded (rare, but `"mod\u0065l"` is still `model`).
fn key_name(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if raw.contains(&b'\\') {
        let quoted = [b"\"", raw, b"\""].concat();
        serde_json::from_slice::<String>(&quoted).ok().map(std::borrow::Cow::Owned)
    } else {
        std::str::from_utf8(raw).ok().map(std::borrow::Cow::Borrowed)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

impl Scanned {
    /// The body to send upstream: `model` replaced by `upstream_model`, and `"stream":true` set
    /// when `force_stream` (a client that asked for SSE through `Accept` only). Returns the
    /// original bytes, without copying, when nothing changes.
    pub fn splice(&self, body: &Bytes, upstream_model: &str, force_stream: bool) -> Bytes {
        let force_stream = force_stream && self.stream != Some(true);
        if !force_stream && upstream_model == self.model && self.spans.fallbacks.is_none() {
            return body.clone();
        }
        // The model as a JSON string: quoted as is unless it needs escaping (rare).
        let escaped = upstream_model
            .bytes()
            .any(|b| b < 0x20 || b == b'"' || b == b'\\')
            .then(|| serde_json::to_vec(upstream_model).unwrap_or_default());
        let model_json: &[u8] = escaped.as_deref().unwrap_or(upstream_model.as_bytes());
        let quote: &[u8] = if escaped.is_some() { b"" } else { b"\"" };
        // At most three edits, on the stack; the output is sized exactly, so turning it into
        // `Bytes` neither reallocates nor copies.
        let mut edits: [(usize, usize, [&[u8]; 3]); 3] = [(0, 0, [b""; 3]); 3];
        edits[0] = (self.spans.model.start, self.spans.model.end, [quote, model_json, quote]);
        let mut n = 1;
        if let Some(cut) = &self.spans.fallbacks {
            edits[n] = (cut.start, cut.end, [b""; 3]);
            n += 1;
        }
        if force_stream {
            let start = self.spans.body_start;
            edits[n] = match &self.spans.stream {
                Some(span) => (span.start, span.end, [b"true", b"", b""]),
                None => (start, start, [b"\"stream\":true,", b"", b""]),
            };
            n += 1;
        }
        let edits = &mut edits[..n];
        // By start, then end: the `stream` insertion at `body_start` must come before a
        // `fallbacks` cut that starts at the same offset (the first member).
        edits.sort_unstable_by_key(|&(start, end, _)| (start, end));
        let len = edits.iter().fold(body.len(), |len, (start, end, text)| {
            len - (end - start) + text.iter().map(|t| t.len()).sum::<usize>()
        });
        let mut out = Vec::with_capacity(len);
        let mut at = 0;
        for (start, end, text) in edits.iter() {
            out.extend_from_slice(&body[at..*start]);
            for t in text {
                out.extend_from_slice(t);
            }
            at = *end;
        }
        out.extend_from_slice(&body[at..]);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Scanned, ScanError> {
        scan(body.as_bytes(), Schema::Chat)
    }

    #[test]
    fn finds_model_and_stream() {
        let s =
            chat(r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#)
                .unwrap();
        assert_eq!(s.model, "openai/gpt-4o");
        assert_eq!(s.stream, Some(true));
        let s = chat(r#"{"messages":[],"model":"m","stream":null}"#).unwrap();
        assert_eq!(s.stream, None);
    }

    #[test]
    fn spans_skip_nested_values_and_brackets_inside_strings() {
        let raw = " {\n \"messages\" : [ {\"role\":\"user\",\"content\":\"} ] { [ \\\" ,\"} ], \"extra\": [1, [2, {\"x\": null}]] ,\n\t\"n\" : 1 ,\"stream\"\t: false , \"model\" :\"m\"\r\n}";
        let s = chat(raw).unwrap();
        assert_eq!((s.model.as_str(), s.stream), ("m", Some(false)));
        assert_eq!(&raw[s.spans.model.clone()], "\"m\"");
        assert_eq!(&raw[s.spans.stream.clone().unwrap()], "false");
        let out = s.splice(&Bytes::from(raw), "up/x", false);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(raw).unwrap();
        want["model"] = "up/x".into();
        assert_eq!(v, want);
    }

    #[test]
    fn splice_keeps_everything_else() {
        let raw = "{ \"messages\" : [{\"role\":\"user\",\"content\":\"a \\\"model\\\": x\"}],\n \"model\" : \"openrouter/meta-llama/llama-3.3-70b\", \"temperature\":0.5 }";
        let s = chat(raw).unwrap();
        let out = s.splice(&Bytes::from(raw), "meta-llama/llama-3.3-70b", false);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            raw.replace("openrouter/meta-llama/llama-3.3-70b", "meta-llama/llama-3.3-70b")
        );
    }

    #[test]
    fn unchanged_body_is_not_copied() {
        let raw = Bytes::from(r#"{"model":"gpt-4o","messages":[]}"#);
        let s = scan(&raw, Schema::Chat).unwrap();
        let out = s.splice(&raw, "gpt-4o", false);
        assert_eq!(out.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn force_stream_inserts_or_replaces() {
        let raw = Bytes::from(r#"{"model":"a","messages":[]}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "b", true);
        assert_eq!(&out[..], br#"{"stream":true,"model":"b","messages":[]}"#);
        let raw = Bytes::from(r#"{"model":"a","messages":[],"stream":null}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", true);
        assert_eq!(&out[..], br#"{"model":"a","messages":[],"stream":true}"#);
    }

    #[test]
    fn fallbacks_are_read_and_cut_out() {
        for (raw, want) in [
            (r#"{"model":"a","fallbacks":["b","c/d"],"messages":[]}"#, r#"{"model":"x","messages":[]}"#),
            (r#"{"model":"a","messages":[], "fallbacks" : ["b","c/d"] }"#, r#"{"model":"x","messages":[] }"#),
            (r#"{"fallbacks":["b","c/d"], "model":"a","messages":[]}"#, r#"{"model":"x","messages":[]}"#),
        ] {
            let s = chat(raw).unwrap();
            assert_eq!(s.fallbacks, ["b", "c/d"]);
            let out = s.splice(&Bytes::from(raw), "x", false);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        }
        assert!(matches!(
            chat(r#"{"model":"a","messages":[],"fallbacks":"b"}"#),
            Err(ScanError::WrongType { .. })
        ));
        assert!(matches!(
            chat(r#"{"model":"a","messages":[],"fallbacks":[""]}"#),
            Err(ScanError::WrongType { .. })
        ));
        let raw = Bytes::from(r#"{"model":"a","messages":[],"fallbacks":[]}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", false);
        assert_eq!(&out[..], br#"{"model":"a","messages":[]}"#);
    }

    #[test]
    fn force_stream_with_fallbacks_first() {
        // Regression (found by fuzzing): the insertion and the cut both start after `{`; sorted
        // by start alone, the cut came first and the insertion sliced backwards (a panic).
        let raw = Bytes::from(r#"{"fallbacks":["b"], "model":"a","messages":[]}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "x", true);
        assert_eq!(&out[..], br#"{"stream":true,"model":"x","messages":[]}"#);
        let raw = Bytes::from(r#"{"fallbacks":[],"model":"a","messages":[],"stream":false}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", true);
        assert_eq!(&out[..], br#"{"model":"a","messages":[],"stream":true}"#);
    }

    #[test]
    fn splice_escapes_model() {
        let raw = Bytes::from(r#"{"model":"x","messages":[]}"#);
        let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "we\"ird", false);
        assert_eq!(&out[..], br#"{"model":"we\"ird","messages":[]}"#);
    }

    /// A chat body with `depth` levels in all (its own object included).
    fn nested(depth: usize, open: char, close: char) -> String {
        let mut v = String::from("1");
        for _ in 0..depth - 2 {
            v = if open == '{' { format!("{{\"k\":{v}}}") } else { format!("{open}{v}{close}") };
        }
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"x":[{v}]}}"#)
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_before_parsing() {
        for (open, close) in [('[', ']'), ('{', '}')] {
            let ok = nested(MAX_DEPTH, open, close);
            assert_eq!(depth_within(ok.as_bytes(), MAX_DEPTH), Ok(true));
            assert!(chat(&ok).is_ok(), "{open}: {MAX_DEPTH} levels are accepted");
            // What the translated paths parse again, serde_json, accepts it too.
            assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok(), "{open}");
            let deeper = nested(MAX_DEPTH + 1, open, close);
            assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err(), "{open}: the same limit");
            assert_eq!(chat(&nested(MAX_DEPTH + 1, open, close)), Err(ScanError::TooDeep), "{open}");
        }
        // Far too deep, and unbalanced: refused at level 128 without reading the rest.
        let mut deep = String::from(r#"{"model":"m","messages":[],"x":"#);
        deep.extend(std::iter::repeat_n('[', 1_000_000));
        assert_eq!(chat(&deep), Err(ScanError::TooDeep));
        assert_eq!(ScanError::TooDeep.code(), "json_too_deep");
        assert!(ScanError::TooDeep.to_string().contains("127"));
    }

    #[test]
    fn depth_counts_only_brackets_outside_strings() {
        let brackets = "[".repeat(300);
        let quoted = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{brackets} \" {brackets} \\"}}]}}"#
        );
        assert_eq!(depth_within(quoted.as_bytes(), MAX_DEPTH), Ok(true));
        assert!(chat(&quoted).is_ok());
        // Every alignment of a quote or backslash against the eight-byte skip.
        for pad in 0..17 {
            let s = format!(r#"["{}\"[[[", [[1]]]"#, "a".repeat(pad));
            assert_eq!(depth_within(s.as_bytes(), 3), Ok(true), "{s}");
            assert_eq!(depth_within(s.as_bytes(), 2), Ok(false), "{s}");
            let s = format!(r#"["{}\\", [[1]]]"#, "é".repeat(pad));
            assert_eq!(depth_within(s.as_bytes(), 3), Ok(true), "{s}");
            assert_eq!(depth_within(s.as_bytes(), 2), Ok(false), "{s}");
        }
        // Where simd-json could see strings elsewhere: a backslash outside a string (simd-json
        // takes `\"` as escaped wherever it is) and an unterminated string are not JSON.
        let sneaky = format!(r#"{{"model":"m","messages":[],"x":\"{}"#, "[".repeat(1000));
        assert_eq!(chat(&sneaky), Err(ScanError::NotJson));
        assert_eq!(depth_within(br#"{"a":"unterminated"#, MAX_DEPTH), Err(ScanError::NotJson));
    }

    #[test]
    fn fallbacks_beyond_the_cap_are_refused() {
        let raw = r#"{"model":"a","messages":[],"fallbacks":["b","c","d"]}"#;
        assert_eq!(scan_capped(raw.as_bytes(), Schema::Chat, 3).unwrap().fallbacks, ["b", "c", "d"]);
        let e = scan_capped(raw.as_bytes(), Schema::Chat, 2).unwrap_err();
        assert_eq!(e, ScanError::TooManyFallbacks { given: 3, max: 2 });
        assert_eq!((e.code(), e.param()), ("too_many_fallbacks", Some("fallbacks")));
        assert!(scan_capped(raw.as_bytes(), Schema::Messages, 0).is_err());
    }

    #[test]
    fn refuses_bad_bodies() {
        assert_eq!(chat("{nope"), Err(ScanError::NotJson));
        assert_eq!(chat("[1]"), Err(ScanError::NotObject));
        assert_eq!(chat(r#"{"messages":[]}"#), Err(ScanError::Missing("model")));
        assert_eq!(chat(r#"{"model":"m"}"#), Err(ScanError::Missing("messages")));
        assert!(matches!(
            chat(r#"{"model":5,"messages":[]}"#),
            Err(ScanError::WrongType { field: "model", .. })
        ));
        assert!(matches!(
            chat(r#"{"model":"m","messages":{}}"#),
            Err(ScanError::WrongType { field: "messages", .. })
        ));
        assert!(matches!(
            chat(r#"{"model":"m","messages":[],"stream":"yes"}"#),
            Err(ScanError::WrongType { field: "stream", .. })
        ));
        assert!(matches!(
            chat(r#"{"model":"m","messages":[],"max_tokens":-1}"#),
            Err(ScanError::WrongType { field: "max_tokens", .. })
        ));
        assert_eq!(chat(r#"{"model":"a","model":"b","messages":[]}"#), Err(ScanError::Duplicate("model")));
        assert_eq!(
            chat(r#"{"mod\u0065l":"a","model":"b","messages":[]}"#),
            Err(ScanError::Duplicate("model"))
        );
        assert_eq!(scan(br#"{"model":"e"}"#, Schema::Embeddings), Err(ScanError::Missing("input")));
        assert!(scan(br#"{"model":"e","input":["a","b"]}"#, Schema::Embeddings).is_ok());
    }
}
