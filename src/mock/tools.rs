//! Tool calls from the mock: when a request offers tools and has no tool result yet, the mock
//! calls the first tool with `{"q": "mock"}`, in the wire format of the endpoint asked, so that
//! clients (and the official SDKs) see real tool-call responses and streamed argument deltas.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{Value, json};

/// The arguments the mock calls a tool with, and the pieces a stream sends them in.
pub const ARGUMENTS: &str = r#"{"q":"mock"}"#;
pub(crate) const PIECES: [&str; 2] = [r#"{"q":"#, r#""mock"}"#];

/// The tool to call: the first one offered (OpenAI, Anthropic or Gemini shape), unless the
/// conversation already holds a tool result (then the mock answers in text).
pub fn to_call(body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    let first = tools.first()?;
    let name = first
        .pointer("/function/name")
        .or_else(|| first.get("name"))
        .or_else(|| first.pointer("/functionDeclarations/0/name"))?
        .as_str()?;
    let answered =
        body.get("messages").or_else(|| body.get("contents")).and_then(Value::as_array).is_some_and(|m| {
            m.iter().any(|m| {
                m.get("role").and_then(Value::as_str) == Some("tool")
                    || m.get("content").and_then(Value::as_array).is_some_and(|blocks| {
                        blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    })
                    || m.get("parts")
                        .and_then(Value::as_array)
                        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
            })
        });
    (!answered).then(|| name.to_owned())
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// OpenAI `chat.completion` calling `tool`.
pub fn openai_json(model: &str, tool: &str, id: u64) -> Bytes {
    let call = json!({"id": format!("call_mock_{id}"), "type": "function",
        "function": {"name": tool, "arguments": ARGUMENTS}});
    Bytes::from(
        json!({
            "id": format!("chatcmpl-mock-{id}"), "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        })
        .to_string(),
    )
}

/// OpenAI chunks calling `tool`: id and name first, the arguments in pieces, then the finish.
pub fn openai_frames(model: &str, tool: &str, id: u64, include_usage: bool) -> VecDeque<Bytes> {
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": format!("chatcmpl-mock-{id}"), "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}))
    };
    let mut frames = VecDeque::new();
    frames.push_back(chunk(json!({"role": "assistant", "content": null}), Value::Null));
    frames.push_back(chunk(
        json!({"tool_calls": [{"index": 0, "id": format!("call_mock_{id}"), "type": "function",
            "function": {"name": tool, "arguments": ""}}]}),
        Value::Null,
    ));
    for piece in PIECES {
        frames.push_back(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    frames.push_back(chunk(json!({}), json!("tool_calls")));
    if include_usage {
        frames.push_back(sse(
            &json!({"id": format!("chatcmpl-mock-{id}"), "object": "chat.completion.chunk",
            "created": 0, "model": model, "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}),
        ));
    }
    frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// Anthropic `message` with a `tool_use` block.
pub fn anthropic_json(model: &str, tool: &str, id: u64) -> Bytes {
    Bytes::from(
        json!({
            "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": tool, "input": {"q": "mock"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 9, "output_tokens": 5},
        })
        .to_string(),
    )
}

/// Anthropic events calling `tool`: a `tool_use` block with `input_json_delta`s.
pub fn anthropic_frames(model: &str, tool: &str, id: u64) -> VecDeque<Bytes> {
    let event = |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    let mut frames = VecDeque::new();
    frames.push_back(event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    ));
    frames.push_back(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": tool, "input": {}}}),
    ));
    for piece in PIECES {
        frames.push_back(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": piece}}),
        ));
    }
    frames.push_back(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    frames.push_back(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
    ));
    frames.push_back(event("message_stop", json!({"type": "message_stop"})));
    frames
}

/// A Gemini answer with a `functionCall` part (a stream sends it whole, in one chunk).
pub fn gemini(model: &str, tool: &str, id: u64) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": tool, "args": {"q": "mock"}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
        "modelVersion": model, "responseId": format!("gemini-mock-{id}"),
    })
}
