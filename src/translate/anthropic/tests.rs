use serde_json::json;

use super::*;
use crate::translate::StreamTranslator;

#[test]
fn request_maps_every_openai_field_to_anthropic() {
    let openai = json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_completion_tokens": 256, "temperature": 0.2, "stop": "END", "user": "u-1",
        "presence_penalty": 0.5, "seed": 7, "stream": true,
        "stream_options": {"include_usage": true}
    });
    let r = request(openai.to_string().as_bytes(), "claude-sonnet-4-5", 4096, true).unwrap();
    let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let want = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "tools": [{"name": "weather", "description": "Weather by city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "metadata": {"user_id": "u-1"},
        "stream": true
    });
    assert_eq!(got, want);
    assert_eq!(r.dropped, ["presence_penalty", "seed"]);
    assert!(r.include_usage);
}

#[test]
fn request_defaults_and_tool_choice_spellings() {
    let body = |extra: serde_json::Value| {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = request(v.to_string().as_bytes(), "m", 4096, false).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    let v = body(json!({}));
    assert_eq!(v["max_tokens"], 4096);
    assert_eq!(v["tools"][0]["input_schema"], json!({"type": "object"}));
    assert!(v.get("stream").is_none());
    assert_eq!(body(json!({"tool_choice": "required"}))["tool_choice"], json!({"type": "any"}));
    assert_eq!(body(json!({"tool_choice": "none"}))["tool_choice"], json!({"type": "none"}));
    assert_eq!(
        body(json!({"parallel_tool_calls": false}))["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(body(json!({"max_tokens": 9, "stop": ["a", "b"]}))["stop_sequences"], json!(["a", "b"]));
    assert!(request(br#"{"messages":[{"role":"wizard","content":"x"}]}"#, "m", 1, false).is_err());
    // JSON mode has no Messages counterpart: dropped and listed, the request otherwise unchanged.
    let json_mode =
        br#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#;
    let r = request(json_mode, "m", 64, false).unwrap();
    assert_eq!(r.dropped, ["response_format"]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v.get("response_format").is_none() && v.get("output_format").is_none(), "{v}");
}

#[test]
fn response_maps_text_tool_calls_finish_and_usage() {
    let anthropic = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}
    });
    let (body, usage) = response(anthropic.to_string().as_bytes()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "msg_1");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19,
        "prompt_tokens_details": {"cached_tokens": 4}})
    );
    assert_eq!(usage, Some((14, 5)));
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_reason(stop), finish);
    }
}

#[test]
fn errors_keep_message_and_type() {
    let e = error(
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(v["error"]["message"], "max_tokens: too large");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

const STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_7\",\"name\":\"weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":21}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn translate(split: usize) -> String {
    let mut t = Stream::new(true);
    let mut out = Vec::new();
    for chunk in STREAM.as_bytes().chunks(split) {
        out.extend(t.feed(chunk));
    }
    assert!(t.complete());
    assert_eq!(t.usage(), Some((12, 21)));
    String::from_utf8(out).unwrap()
}

#[test]
fn stream_translates_text_tool_calls_finish_usage_and_done_in_any_split() {
    let whole = translate(STREAM.len());
    for split in [1, 2, 3, 7, 64] {
        assert_eq!(translate(split), whole, "split {split}");
    }
    let events: Vec<serde_json::Value> = whole
        .split("\n\n")
        .filter(|e| !e.is_empty() && *e != "data: [DONE]")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(whole.ends_with("data: [DONE]\n\n"));
    assert!(events.iter().all(|e| e["id"] == "msg_9" && e["object"] == "chat.completion.chunk"));
    assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Let me check.");
    let calls: Vec<&serde_json::Value> =
        events.iter().filter_map(|e| e["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls[0][0]["id"], "toolu_7");
    assert_eq!(calls[0][0]["function"]["name"], "weather");
    let args: String = calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(args, r#"{"city": "Paris"}"#);
    assert!(calls.iter().all(|c| c[0]["index"] == 0));
    let finish = events.iter().find_map(|e| e["choices"][0]["finish_reason"].as_str()).unwrap();
    assert_eq!(finish, "tool_calls");
    let usage = events.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 12);
    assert_eq!(usage["usage"]["completion_tokens"], 21);
}

#[test]
fn a_stream_without_message_stop_is_incomplete() {
    let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
    let mut t = Stream::new(false);
    let out = String::from_utf8(t.feed(cut.as_bytes())).unwrap();
    assert!(!t.complete());
    assert!(!out.contains("[DONE]"));
}

#[test]
fn usage_at_the_limits_saturates() {
    // Regression (seen while fuzzing): the sums overflowed on huge counts, a panic in debug builds.
    let max = u64::MAX;
    let body = json!({"usage": {"input_tokens": max, "cache_creation_input_tokens": 1,
        "cache_read_input_tokens": max, "output_tokens": max}});
    let (out, usage) = response(body.to_string().as_bytes()).unwrap();
    assert_eq!(usage, Some((max, max)));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["total_tokens"], max);
    let mut t = Stream::new(true);
    let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": max, "cache_read_input_tokens": 2}}});
    let out = t.feed(format!("data: {start}\n\ndata: {{\"type\":\"message_stop\"}}\n\n").as_bytes());
    assert!(String::from_utf8(out).unwrap().contains(&format!("\"total_tokens\":{max}")));
    assert_eq!(t.usage(), Some((max, 0)));
}
