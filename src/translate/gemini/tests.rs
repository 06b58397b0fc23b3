use serde_json::json;

use super::*;
use crate::translate::StreamTranslator;

/// The Gemini body of `request(openai, stream)`, with what was dropped and `include_usage`.
fn translate_request(openai: &Value, stream: bool) -> (Value, Vec<&'static str>, bool) {
    let r = request(openai.to_string().as_bytes(), stream).unwrap();
    (serde_json::from_slice(&r.body).unwrap(), r.dropped, r.include_usage)
}

#[test]
fn request_maps_every_openai_field_to_gemini() {
    let openai = json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "user", "content": "Quickly."},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                    "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":18,\"unit\":\"C\"}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "not found"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "lookup"}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}},
        "max_tokens": 100, "max_completion_tokens": 256, "temperature": 0.2, "top_p": 0.9,
        "stop": "END", "seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.25,
        "logit_bias": {"50256": -100}, "store": false, "parallel_tool_calls": false, "n": 2,
        "stream": true, "stream_options": {"include_usage": true}
    });
    let (got, dropped, include_usage) = translate_request(&openai, true);
    let want = json!({
        "contents": [
            {"role": "user", "parts": [
                {"text": "What is in these?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
                {"text": "Quickly."}
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "c2lnbmF0dXJl"},
                {"functionCall": {"name": "lookup", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 18, "unit": "C"}}},
                {"functionResponse": {"name": "lookup", "response": {"content": "not found"}}},
                {"text": "And tomorrow?"}
            ]}
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in English."}]},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "seed": 7,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"answer": {"type": "string"}}}
        },
        "tools": [{"functionDeclarations": [
            {"name": "weather", "description": "Weather by city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "lookup"}
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    });
    assert_eq!(got, want);
    assert_eq!(dropped, ["logit_bias", "store", "n", "parallel_tool_calls"]);
    assert!(include_usage);
}

#[test]
fn request_minimal_body_has_only_contents() {
    let (got, dropped, include_usage) =
        translate_request(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}), false);
    assert_eq!(got, json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
    assert!(dropped.is_empty());
    assert!(!include_usage);
}

#[test]
fn request_n_is_candidate_count_only_without_streaming() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "n": 3});
    let (got, dropped, _) = translate_request(&body, false);
    assert_eq!(got["generationConfig"], json!({"candidateCount": 3}));
    assert!(dropped.is_empty());
    let (got, dropped, _) = translate_request(&body, true);
    assert!(got.get("generationConfig").is_none());
    assert_eq!(dropped, ["n"]);
    let one = json!({"messages": [{"role": "user", "content": "hi"}], "n": 1});
    let (got, dropped, _) = translate_request(&one, true);
    assert!(got.get("generationConfig").is_none());
    assert!(dropped.is_empty());
    let (got, _, _) = translate_request(&one, false);
    assert!(got.get("generationConfig").is_none());
}

#[test]
fn request_tool_choice_variants() {
    let choice = |tool_choice: Value| {
        let body = json!({"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": tool_choice});
        translate_request(&body, false).0.get("toolConfig").cloned()
    };
    assert_eq!(choice(json!("none")), Some(json!({"functionCallingConfig": {"mode": "NONE"}})));
    assert_eq!(choice(json!("auto")), Some(json!({"functionCallingConfig": {"mode": "AUTO"}})));
    assert_eq!(choice(json!("required")), Some(json!({"functionCallingConfig": {"mode": "ANY"}})));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "f"}})),
        Some(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}))
    );
    assert_eq!(choice(Value::Null), None);
}

#[test]
fn request_stop_array_max_tokens_and_json_object() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b"], "max_tokens": 9,
        "response_format": {"type": "json_object"}, "temperature": null});
    let (got, _, _) = translate_request(&body, false);
    assert_eq!(
        got["generationConfig"],
        json!({"maxOutputTokens": 9, "stopSequences": ["a", "b"], "responseMimeType": "application/json"})
    );
}

#[test]
fn request_reasoning_effort_sets_thinking_budget() {
    for (effort, budget, include) in [
        ("none", 0, false),
        ("minimal", 0, false),
        ("low", 1024, true),
        ("medium", 8192, true),
        ("high", 24576, true),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort});
        let (got, _, _) = translate_request(&body, false);
        assert_eq!(
            got["generationConfig"],
            json!({"thinkingConfig": {"thinkingBudget": budget, "includeThoughts": include}}),
            "{effort}"
        );
    }
}

#[test]
fn request_tool_result_for_an_unknown_call_is_named_after_its_id() {
    let body = json!({"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "[1,2]"}]});
    let (got, _, _) = translate_request(&body, false);
    assert_eq!(
        got["contents"],
        json!([{"role": "user", "parts": [{"functionResponse": {"name": "call_x", "response": {"content": "[1,2]"}}}]}])
    );
}

#[test]
fn request_drops_unknown_content_parts_once() {
    let body = json!({"messages": [
        {"role": "user", "content": [{"type": "video", "video": {}}, {"type": "text", "text": "a"}]},
        {"role": "user", "content": [{"type": "video", "video": {}}]}
    ]});
    let (got, dropped, _) = translate_request(&body, false);
    assert_eq!(got["contents"], json!([{"role": "user", "parts": [{"text": "a"}]}]));
    assert_eq!(dropped, ["content parts other than text, image_url, input_audio and file"]);
}

#[test]
fn request_rejects_unsupported_roles_and_bad_bodies() {
    assert!(request(br#"{"messages":[{"role":"wizard","content":"x"}]}"#, false).is_err());
    assert!(request(br#"{"messages":[{"content":"x"}]}"#, false).is_err());
    assert!(request(br#"{"messages":"hi"}"#, false).is_err());
    assert!(request(br#"{}"#, false).is_err());
    assert!(request(br#"[]"#, false).is_err());
    assert!(request(b"not json", false).is_err());
}

/// `response(gemini, model)` as JSON, with `created` checked and removed, and the usage.
fn translate_response(gemini: &Value, model: &str) -> (Value, Option<(u64, u64)>) {
    let (body, usage) = response(gemini.to_string().as_bytes(), model).unwrap();
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    let created = v.as_object_mut().unwrap().remove("created").unwrap();
    assert!(created.as_u64().unwrap() > 0);
    (v, usage)
}

#[test]
fn response_maps_text_thoughts_calls_and_usage() {
    let gemini = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Thinking it over.", "thought": true},
                {"text": "Checking."},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"id": "fc_9", "name": "lookup", "args": {}}},
                {"functionCall": {"name": "clock"}}
            ]},
            "finishReason": "STOP", "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 4, "totalTokenCount": 18},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc"
    });
    let (got, usage) = translate_response(&gemini, "gemini-2.5-flash");
    let want = json!({
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gemini-2.5-flash-001",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "Thinking it over.",
                "tool_calls": [
                    {"id": "call_chatcmpl-abc_0", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                        "extra_content": {"google": {"thought_signature": "c2ln"}}},
                    {"id": "fc_9", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                    {"id": "call_chatcmpl-abc_2", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
                ]
            },
            "logprobs": null,
            "finish_reason": "tool_calls"
        }],
        "usage": {
            "prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 3}
        }
    });
    assert_eq!(got, want);
    assert_eq!(usage, Some((10, 8)));
}

#[test]
fn response_calls_only_have_null_content() {
    let gemini = json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        "finishReason": "STOP"}]});
    let (got, usage) = translate_response(&gemini, "m");
    assert_eq!(
        got["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_gemini_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
        ]}, "logprobs": null, "finish_reason": "tool_calls"}])
    );
    assert_eq!(got["usage"], Value::Null);
    assert_eq!(usage, None);
}

#[test]
fn response_maps_finish_reasons() {
    for (reason, finish) in [
        (Some("STOP"), "stop"),
        (None, "stop"),
        (Some("MAX_TOKENS"), "length"),
        (Some("SAFETY"), "content_filter"),
        (Some("RECITATION"), "content_filter"),
        (Some("PROHIBITED_CONTENT"), "content_filter"),
        (Some("OTHER"), "stop"),
    ] {
        let mut candidate = json!({"content": {"role": "model", "parts": [{"text": "Hi"}]}});
        if let Some(r) = reason {
            candidate["finishReason"] = json!(r);
        }
        let (got, _) = translate_response(&json!({"candidates": [candidate]}), "m");
        assert_eq!(
            got["choices"],
            json!([{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "logprobs": null,
                "finish_reason": finish}]),
            "{reason:?}"
        );
    }
    assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    assert_eq!(finish_reason("SAFETY", true), "content_filter");
    assert_eq!(finish_reason("STOP", true), "tool_calls");
    assert_eq!(finish_reason("STOP", false), "stop");
}

#[test]
fn response_keeps_every_candidate() {
    let gemini = json!({"candidates": [
        {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    ]});
    let (got, _) = translate_response(&gemini, "m");
    assert_eq!(
        got["choices"],
        json!([
            {"index": 0, "message": {"role": "assistant", "content": "A"}, "logprobs": null, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "B"}, "logprobs": null, "finish_reason": "length"}
        ])
    );
}

#[test]
fn response_blocked_prompt_is_one_content_filter_choice() {
    let gemini = json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
    let (got, usage) = translate_response(&gemini, "gemini-2.5-flash");
    let want = json!({
        "id": "gemini",
        "object": "chat.completion",
        "model": "gemini-2.5-flash",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": null,
            "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    });
    assert_eq!(got, want);
    assert_eq!(usage, Some((7, 0)));
}

#[test]
fn response_model_falls_back_to_the_given_one() {
    let gemini = json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]});
    assert_eq!(translate_response(&gemini, "gemini-2.5-pro").0["model"], "gemini-2.5-pro");
    let gemini = json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}], "modelVersion": "v-9"});
    assert_eq!(translate_response(&gemini, "gemini-2.5-pro").0["model"], "v-9");
}

#[test]
fn response_rejects_invalid_json() {
    assert!(response(b"{not json", "m").is_err());
}

fn error_json(raw: &[u8]) -> Value {
    serde_json::from_slice(&error(raw)).unwrap()
}

#[test]
fn error_maps_to_openai_shape() {
    let want = json!({"error": {"message": "m", "type": "rate_limit_exceeded", "param": null,
        "code": "RESOURCE_EXHAUSTED"}});
    assert_eq!(error_json(br#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED"}}"#), want);
    assert_eq!(error_json(br#"[{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED"}}]"#), want);
}

#[test]
fn error_status_kinds_and_fallbacks() {
    for (status, kind) in [
        ("UNAUTHENTICATED", "authentication_error"),
        ("PERMISSION_DENIED", "authentication_error"),
        ("NOT_FOUND", "invalid_request_error"),
        ("INVALID_ARGUMENT", "invalid_request_error"),
        ("FAILED_PRECONDITION", "invalid_request_error"),
        ("OUT_OF_RANGE", "invalid_request_error"),
        ("INTERNAL", "server_error"),
        ("UNAVAILABLE", "server_error"),
    ] {
        let raw = json!({"error": {"code": 1, "message": "x", "status": status}}).to_string();
        assert_eq!(
            error_json(raw.as_bytes()),
            json!({"error": {"message": "x", "type": kind, "param": null, "code": status}}),
            "{status}"
        );
    }
    assert_eq!(
        error_json(b"<html>bad gateway</html>"),
        json!({"error": {"message": "upstream error", "type": "invalid_request_error", "param": null,
            "code": "INVALID_ARGUMENT"}})
    );
}

fn translate_embeddings(openai: &Value, model: &str) -> (Value, Vec<&'static str>) {
    let r = embeddings_request(openai.to_string().as_bytes(), model).unwrap();
    assert!(!r.include_usage);
    (serde_json::from_slice(&r.body).unwrap(), r.dropped)
}

#[test]
fn embeddings_request_maps_string_input() {
    let (got, dropped) =
        translate_embeddings(&json!({"model": "x", "input": "hello"}), "gemini-embedding-001");
    assert_eq!(
        got,
        json!({"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}}]})
    );
    assert!(dropped.is_empty());
}

#[test]
fn embeddings_request_maps_array_input_and_dimensions() {
    let openai = json!({"input": ["a", "b"], "dimensions": 256, "encoding_format": "float"});
    let (got, dropped) = translate_embeddings(&openai, "text-embedding-004");
    assert_eq!(
        got,
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256}
        ]})
    );
    assert!(dropped.is_empty());
}

#[test]
fn embeddings_request_drops_base64_encoding() {
    let (_, dropped) = translate_embeddings(&json!({"input": "a", "encoding_format": "base64"}), "m");
    assert_eq!(dropped, ["encoding_format"]);
}

#[test]
fn embeddings_request_rejects_tokens_and_empty_input() {
    for input in [json!([1, 2, 3]), json!([[1, 2], [3]]), json!([]), json!(["a", 1]), json!(5), Value::Null] {
        let body = json!({"input": input}).to_string();
        assert!(embeddings_request(body.as_bytes(), "m").is_err(), "{input}");
    }
    assert!(embeddings_request(br#"{}"#, "m").is_err());
}

#[test]
fn embeddings_response_is_an_openai_list() {
    let gemini = json!({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3]}]});
    let (body, usage) = embeddings_response(gemini.to_string().as_bytes(), "gemini-embedding-001").unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        got,
        json!({"object": "list", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3]}
        ], "model": "gemini-embedding-001", "usage": {"prompt_tokens": 0, "total_tokens": 0}})
    );
    assert_eq!(usage, None);
    assert!(embeddings_response(br#"{"error":{}}"#, "m").is_err());
    assert!(embeddings_response(b"nope", "m").is_err());
}

/// The events of an OpenAI SSE output: JSON with `created` checked and removed, `[DONE]` as a
/// string.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}"));
            if data == "[DONE]" {
                return json!("[DONE]");
            }
            let mut v: Value = serde_json::from_str(data).unwrap();
            if let Some(o) = v.as_object_mut()
                && let Some(created) = o.remove("created")
            {
                assert!(created.as_u64().unwrap() > 0);
            }
            v
        })
        .collect()
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

const STREAM: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9},",
    "\"modelVersion\": \"gemini-2.5-flash-001\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" world\"}],\"role\": \"model\"},\"index\": 0}],",
    "\"modelVersion\": \"gemini-2.5-flash-001\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},",
    "\"finishReason\": \"STOP\",\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 3,\"thoughtsTokenCount\": 2,",
    "\"cachedContentTokenCount\": 1,\"totalTokenCount\": 14},",
    "\"modelVersion\": \"gemini-2.5-flash-001\",\"responseId\": \"r1\"}\r\n\r\n",
);

fn stream_want(include_usage: bool) -> Vec<Value> {
    let (id, model) = ("chatcmpl-r1", "gemini-2.5-flash-001");
    let mut want = vec![
        chunk(id, model, json!({"role": "assistant", "content": ""}), None),
        chunk(id, model, json!({"content": "Hello"}), None),
        chunk(id, model, json!({"content": " world"}), None),
        chunk(id, model, json!({"content": "!"}), None),
        chunk(id, model, json!({}), Some("stop")),
    ];
    if include_usage {
        want.push(json!({"id": id, "object": "chat.completion.chunk", "model": model, "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14,
                "prompt_tokens_details": {"cached_tokens": 1},
                "completion_tokens_details": {"reasoning_tokens": 2}}}));
    }
    want.push(json!("[DONE]"));
    want
}

#[test]
fn stream_translates_identically_at_every_split_point() {
    let bytes = STREAM.as_bytes();
    let want = stream_want(true);
    for split in 0..=bytes.len() {
        let mut t = Stream::new("gemini-2.5-flash", true);
        let mut out = t.feed(&bytes[..split]);
        // The last event ends at the `\r` of its closing blank line: the final `\n` adds nothing.
        let done_early = split >= bytes.len() - 1;
        assert_eq!(t.complete(), done_early, "split {split}");
        assert_eq!(String::from_utf8_lossy(&out).contains("[DONE]"), done_early, "split {split}");
        out.extend(t.feed(&bytes[split..]));
        assert!(t.complete(), "split {split}");
        assert_eq!(t.usage(), Some((9, 5)), "split {split}");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.ends_with("\n\ndata: [DONE]\n\n"), "split {split}");
        assert_eq!(text.matches("data: [DONE]").count(), 1, "split {split}");
        assert_eq!(events(&out), want, "split {split}");
    }
}

#[test]
fn stream_is_complete_only_after_the_finish_chunk() {
    let mut t = Stream::new("gemini-2.5-flash", false);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for event in STREAM.split_inclusive("\r\n\r\n") {
        out.extend(t.feed(event.as_bytes()));
        seen.push(t.complete());
    }
    assert_eq!(seen, [false, false, true]);
    assert_eq!(events(&out), stream_want(false));
}

#[test]
fn stream_ignores_data_after_the_finish() {
    let extra = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"late\"}]},\"finishReason\": \"STOP\"}]}\r\n\r\n";
    let mut t = Stream::new("gemini-2.5-flash", true);
    let out = t.feed(format!("{STREAM}{extra}").as_bytes());
    assert_eq!(events(&out), stream_want(true));
    assert!(t.feed(extra.as_bytes()).is_empty());
    assert!(t.feed(b"data: {\"error\": {\"code\": 500, \"message\": \"x\"}}\n\n").is_empty());
    assert!(t.complete());
}

#[test]
fn stream_without_finish_reason_is_incomplete() {
    let cut = &STREAM[..STREAM.rfind("data: ").unwrap()];
    let mut t = Stream::new("gemini-2.5-flash", true);
    let out = t.feed(cut.as_bytes());
    assert!(!t.complete());
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("[DONE]"));
    assert_eq!(events(&out), stream_want(true)[..3]);
    assert_eq!(t.usage(), Some((9, 0)));
}

#[test]
fn stream_translates_function_calls() {
    let stream = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me think.\", \"thought\": true}],",
        "\"role\": \"model\"}}],\"responseId\": \"r2\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"weather\",",
        "\"args\": {\"city\": \"Paris\"}},\"thoughtSignature\": \"c2ln\"}],\"role\": \"model\"}}],",
        "\"responseId\": \"r2\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"id\": \"fc_1\", \"name\": \"clock\"}}],",
        "\"role\": \"model\"},\"finishReason\": \"STOP\"}],\"responseId\": \"r2\",",
        "\"usageMetadata\": {\"promptTokenCount\": 4,\"candidatesTokenCount\": 6}}\r\n\r\n",
    );
    let mut t = Stream::new("gemini-2.5-pro", false);
    let out = t.feed(stream.as_bytes());
    assert!(t.complete());
    assert_eq!(t.usage(), Some((4, 6)));
    let (id, model) = ("chatcmpl-r2", "gemini-2.5-pro");
    let want = vec![
        chunk(id, model, json!({"role": "assistant", "content": ""}), None),
        chunk(id, model, json!({"reasoning_content": "Let me think."}), None),
        chunk(
            id,
            model,
            json!({"tool_calls": [{"index": 0, "id": "call_chatcmpl-r2_0", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                "extra_content": {"google": {"thought_signature": "c2ln"}}}]}),
            None,
        ),
        chunk(
            id,
            model,
            json!({"tool_calls": [{"index": 1, "id": "fc_1", "type": "function",
                "function": {"name": "clock", "arguments": "{}"}}]}),
            None,
        ),
        chunk(id, model, json!({}), Some("tool_calls")),
        json!("[DONE]"),
    ];
    assert_eq!(events(&out), want);
}

#[test]
fn stream_maps_max_tokens_and_blocked_prompts() {
    let mut t = Stream::new("m", false);
    let out = t.feed(b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}, \"finishReason\": \"MAX_TOKENS\"}]}\n\n");
    assert!(t.complete());
    assert_eq!(
        events(&out),
        vec![
            chunk("gemini", "m", json!({"role": "assistant", "content": ""}), None),
            chunk("gemini", "m", json!({"content": "a"}), None),
            chunk("gemini", "m", json!({}), Some("length")),
            json!("[DONE]"),
        ]
    );

    let mut t = Stream::new("m", true);
    let out = t.feed(
        b"data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}, \"usageMetadata\": {\"promptTokenCount\": 3}}\r\n\r\n",
    );
    assert!(t.complete());
    assert_eq!(
        events(&out),
        vec![
            chunk("gemini", "m", json!({"role": "assistant", "content": ""}), None),
            chunk("gemini", "m", json!({}), Some("content_filter")),
            json!({"id": "gemini", "object": "chat.completion.chunk", "model": "m", "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0}}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_error_chunk_becomes_an_openai_error_event() {
    let mut t = Stream::new("gemini-2.5-flash", true);
    let out = t.feed(b"data: {\"error\": {\"code\": 503, \"message\": \"overloaded\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n");
    assert!(!t.complete());
    assert_eq!(
        events(&out),
        vec![
            json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": "UNAVAILABLE"}})
        ]
    );
}

#[test]
fn stream_error_after_content_keeps_earlier_chunks() {
    let first = STREAM.split_inclusive("\r\n\r\n").next().unwrap();
    let mut t = Stream::new("gemini-2.5-flash", false);
    let mut out = t.feed(first.as_bytes());
    out.extend(t.feed(
        b"data: {\"error\": {\"code\": 429, \"message\": \"m\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n",
    ));
    assert!(!t.complete());
    let mut want = stream_want(false)[..2].to_vec();
    want.push(json!({"error": {"message": "m", "type": "rate_limit_exceeded", "param": null,
        "code": "RESOURCE_EXHAUSTED"}}));
    assert_eq!(events(&out), want);
}

#[test]
fn stream_skips_comments_and_non_json_data() {
    let mut t = Stream::new("m", false);
    let out = t.feed(b": keep-alive\n\ndata: not json\n\n");
    assert!(out.is_empty());
    assert!(!t.complete());
}

#[test]
fn valid_model_accepts_plain_names_only() {
    assert!(valid_model("gemini-2.5-flash"));
    assert!(valid_model("gemini_embedding.001"));
    for bad in ["", ".", "..", "a/b", "a?b", "a#b", "a%2F", "a b", "models/gemini-2.5-flash", "..\\x"] {
        assert!(!valid_model(bad), "{bad:?}");
    }
}

#[test]
fn usage_at_the_limits_saturates() {
    // Regression (seen while fuzzing): the sums overflowed on huge counts, a panic in debug builds.
    let max = u64::MAX;
    let body = json!({"candidates": [], "usageMetadata": {"promptTokenCount": max,
        "candidatesTokenCount": max, "thoughtsTokenCount": 1}});
    let (out, usage) = response(body.to_string().as_bytes(), "m").unwrap();
    assert_eq!(usage, Some((max, max)));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["total_tokens"], max);
    assert_eq!(v["usage"]["completion_tokens"], max);
}
