//! Parsing with simd-json and reading the top-level fields the router acts on from its tape,
//! with the per-schema type checks.

use simd_json::prelude::*;

use super::{ScanError, Scanned, Schema};

/// Parses `body` (a copy of it, in `copy`) and reads and checks its fields; then the spans.
pub(super) fn scan_with(
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
        Schema::Responses => check_responses(&obj)?,
    }
    let spans = super::spans::spans(body, buffers.structural_indexes()).ok_or(ScanError::NotJson)??;
    let max_tokens = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|f| obj.get(*f).and_then(|v| v.as_u64()));
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

/// A Responses body: `input` may be absent (a stored prompt, or `previous_response_id`, carries
/// it); the provider checks the rest.
fn check_responses(obj: &Object<'_, '_>) -> Result<(), ScanError> {
    optional(obj, "input", "a string or an array", |v| v.as_str().is_some() || v.is_array())?;
    optional(obj, "max_output_tokens", "a non-negative integer", |v| v.as_u64().is_some())?;
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
