use serde_json::{Value, json};

use super::*;
use crate::translate::{EventTranslator, StreamTranslator, unstamped};

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn system_turns_images_and_inference_config_translate_exactly() {
    let openai = json!({
        "model": "claude", "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]},
            {"role": "user", "content": "Quick."},
            {"role": "assistant", "content": "A logo."},
        ],
        "stream_options": {"include_usage": true},
    });
    let r = request(openai.to_string().as_bytes(), 4096).unwrap();
    assert_eq!(
        body(&r),
        json!({
            "messages": [
                {"role": "user", "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                    {"text": "Quick."},
                ]},
                {"role": "assistant", "content": [{"text": "A logo."}]},
            ],
            "system": [{"text": "Be brief."}, {"text": "No emoji."}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        })
    );
    assert!(r.include_usage);
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    // No max_tokens: the provider's default; `stop` as a list.
    let r =
        request(br#"{"messages":[{"role":"user","content":"hi"}],"stop":["a","b"],"seed":1}"#, 77).unwrap();
    assert_eq!(body(&r)["inferenceConfig"], json!({"maxTokens": 77, "stopSequences": ["a", "b"]}));
    assert_eq!(r.dropped, vec!["seed"]);
}

#[test]
fn an_image_url_is_refused_not_fetched() {
    let req = |url: &str| {
        let v = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]});
        request(v.to_string().as_bytes(), 10)
    };
    let e = req("https://example.com/cat.png").unwrap_err();
    assert_eq!(e.param, Some("messages"));
    assert!(e.message.contains("data URLs"), "{e}");
    assert!(req("data:image/tiff;base64,AAAA").unwrap_err().message.contains("image/tiff"));
    for (mime, format) in [("jpeg", "jpeg"), ("jpg", "jpeg"), ("gif", "gif"), ("webp", "webp")] {
        let r = req(&format!("data:image/{mime};base64,AAAA")).unwrap();
        assert_eq!(body(&r)["messages"][0]["content"][0]["image"]["format"], format);
    }
    // An S3 object is Converse's own `s3Location`, its format from the key.
    let uri = "s3://my-bucket.v2/cats/Tabby 1.JPG";
    assert_eq!(
        body(&req(uri).unwrap())["messages"][0]["content"][0],
        json!({"image": {"format": "jpeg", "source": {"s3Location": {"uri": uri}}}})
    );
    let long = format!("s3://bucket/{}.png", "k".repeat(1020));
    for bad in [
        "s3://bucket/cat",
        "s3://bucket/cat.tiff",
        "s3://bucket",
        "s3://bucket/",
        "s3://B/cat.png",
        "s3://ab/cat.png",
        "s3://-bucket/cat.png",
        "s3://bucket-/cat.png",
        "s3://bu_cket/cat.png",
        "s3://bucket/a\nb.png",
        &long,
    ] {
        let e = req(bad).unwrap_err();
        assert_eq!((e.param, e.message.contains("s3://BUCKET/KEY")), (Some("messages"), true), "{bad}");
    }
    assert!(req("s3://bucket/cat.png").is_ok());
}

#[test]
fn tools_calls_and_results_translate_exactly() {
    let openai = json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "{\"c\":21}"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Looks it up",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "noargs"}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
    });
    let r = request(openai.to_string().as_bytes(), 10).unwrap();
    let b = body(&r);
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"c": 21}}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "sunny"}]}},
            ]},
        ])
    );
    assert_eq!(
        b["toolConfig"],
        json!({
            "tools": [
                {"toolSpec": {"name": "weather", "description": "Looks it up",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
                {"toolSpec": {"name": "noargs", "inputSchema": {"json": {"type": "object"}}}},
            ],
            "toolChoice": {"tool": {"name": "weather"}},
        })
    );
    assert_eq!(r.dropped, vec!["parallel_tool_calls"]);
    let choice = |c: Value| {
        let v = json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": c,
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        let r = request(v.to_string().as_bytes(), 10).unwrap();
        (body(&r)["toolConfig"].get("toolChoice").cloned(), r.dropped)
    };
    assert_eq!(choice(json!("auto")), (Some(json!({"auto": {}})), vec![]));
    assert_eq!(choice(json!("required")), (Some(json!({"any": {}})), vec![]));
    assert_eq!(choice(json!("none")), (None, vec!["tool_choice"]));
}

#[test]
fn model_ids_profiles_and_arns_are_valid_and_nothing_else() {
    for ok in [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
        "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0",
    ] {
        assert!(valid_model(ok), "{ok}");
    }
    for bad in ["", "a/../b", "..", "a//b", "/a", "a/", "a?b", "a#b", "a%3Ab", "a b", "é", "a\\b"] {
        assert!(!valid_model(bad), "{bad:?}");
    }
}

#[test]
fn a_response_translates_exactly_with_cache_usage() {
    let raw = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig"}}},
            {"text": "It is "}, {"text": "21°C."},
            {"toolUse": {"toolUseId": "tooluse_9", "name": "weather", "input": {"city": "Paris"}}},
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 7},
        "metrics": {"latencyMs": 320},
    });
    let (out, usage) = response(raw.to_string().as_bytes(), "claude").unwrap();
    let mut v: Value = serde_json::from_slice(&unstamped(&out)).unwrap();
    assert_eq!(v["id"], "chatcmpl-bedrock");
    v["id"] = json!("x");
    assert_eq!(
        v,
        json!({
            "id": "x", "object": "chat.completion", "created": 0, "model": "claude",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "It is 21°C.", "reasoning_content": "Think.",
                "tool_calls": [{"id": "tooluse_9", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}],
            }}],
            "usage": {"prompt_tokens": 117, "completion_tokens": 5, "total_tokens": 122,
                "prompt_tokens_details": {"cached_tokens": 100}},
        })
    );
    assert_eq!(usage, Some((117, 5)));
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        assert_eq!(finish_reason(stop), finish);
    }
    assert!(response(b"not json", "m").is_err());
}

#[test]
fn errors_come_back_in_openai_shape() {
    let e = |raw: &str, status| serde_json::from_slice::<Value>(&error(raw.as_bytes(), status)).unwrap();
    assert_eq!(
        e(r#"{"message":"Too many requests, please wait before trying again."}"#, 429),
        json!({"error": {"message": "Too many requests, please wait before trying again.",
            "type": "rate_limit_exceeded", "param": null, "code": null}})
    );
    assert_eq!(
        e(r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}"#, 400)["error"],
        json!({"message": "bad", "type": "invalid_request_error", "param": null, "code": "ValidationException"})
    );
    assert_eq!(e(r#"{"Message":"denied"}"#, 403)["error"]["type"], "authentication_error");
    assert_eq!(
        e("", 503)["error"],
        json!({"message": "upstream error", "type": "server_error", "param": null, "code": null})
    );
}

/// A Converse stream as the provider layer hands it on (see `providers::bedrock::stream`).
pub(crate) fn stream_fixture(tool: bool) -> String {
    let mut events = vec![json!({"messageStart": {"role": "assistant"}})];
    if tool {
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Checking."}}}));
        events.push(json!({"contentBlockStop": {"contentBlockIndex": 0}}));
        events.push(json!({"contentBlockStart": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}}}}));
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}}));
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}}));
        events.push(json!({"contentBlockStop": {"contentBlockIndex": 1}}));
        events.push(json!({"messageStop": {"stopReason": "tool_use"}}));
    } else {
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hm."}}}}));
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Hello"}}}));
        events.push(json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": " world"}}}));
        events.push(json!({"contentBlockStop": {"contentBlockIndex": 1}}));
        events.push(json!({"messageStop": {"stopReason": "end_turn"}}));
    }
    events.push(json!({"metadata": {"usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15, "cacheReadInputTokens": 4}, "metrics": {"latencyMs": 99}}}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e.as_object().unwrap().keys().next().unwrap()))
        .collect()
}

/// The `data:` of every event the translator wrote, `[DONE]` as a string.
fn events(out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(unstamped(out)).unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .map(|mut v| {
            if v.get("id").is_some() {
                v["id"] = json!("x");
            }
            v
        })
        .collect()
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

#[test]
fn a_text_stream_translates_event_by_event() {
    let mut t = Stream::new("m", true);
    let out = t.feed(stream_fixture(false).as_bytes());
    assert!(t.complete());
    assert_eq!(
        events(&out),
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"reasoning_content": "Hm."}), Value::Null),
            chunk(json!({"content": "Hello"}), Value::Null),
            chunk(json!({"content": " world"}), Value::Null),
            chunk(json!({}), json!("stop")),
            json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 16, "completion_tokens": 3, "total_tokens": 19,
                    "prompt_tokens_details": {"cached_tokens": 4}}}),
            json!("[DONE]"),
        ]
    );
    assert_eq!(t.usage(), Some((16, 3)));
    assert_eq!(t.cached(), 4);
}

#[test]
fn a_tool_stream_translates_event_by_event_without_usage_unless_asked() {
    let mut t = Stream::new("m", false);
    let out = t.feed(stream_fixture(true).as_bytes());
    assert!(t.complete());
    let call = |c: Value| chunk(json!({"tool_calls": [c]}), Value::Null);
    assert_eq!(
        events(&out),
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Checking."}), Value::Null),
            call(
                json!({"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": ""}})
            ),
            call(json!({"index": 0, "function": {"arguments": "{\"city\":"}})),
            call(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}})),
            chunk(json!({}), json!("tool_calls")),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn an_exception_in_the_stream_comes_out_as_an_openai_error_event() {
    let mut t = Stream::new("m", false);
    let input = "event: messageStart\ndata: {\"messageStart\":{\"role\":\"assistant\"}}\n\n\
        event: error\ndata: {\"error\":{\"type\":\"modelStreamErrorException\",\"message\":\"broke\"}}\n\n";
    let out = t.feed(input.as_bytes());
    assert!(!t.complete());
    assert_eq!(
        events(&out)[1],
        json!({"error": {"message": "broke", "type": "server_error", "param": null, "code": "modelStreamErrorException"}})
    );
    let mut s = StreamState::default();
    let mut out = Vec::new();
    assert!(!s.on_event(b"not json", &mut out));
    assert!(out.is_empty());
}
