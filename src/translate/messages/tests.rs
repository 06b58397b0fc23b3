use serde_json::json;

use super::*;
use crate::translate::StreamTranslator;

/// The OpenAI body of `request(anthropic, "gpt-4o", stream)`, with what was dropped.
fn translate_request(anthropic: &Value, stream: bool) -> (Value, Vec<&'static str>) {
    let r = request(anthropic.to_string().as_bytes(), "gpt-4o", stream).unwrap();
    (serde_json::from_slice(&r.body).unwrap(), r.dropped)
}

/// The OpenAI messages of a one-turn-list Anthropic body.
fn messages_of(turns: Value) -> Value {
    translate_request(&json!({"model": "claude-x", "max_tokens": 10, "messages": turns}), false).0["messages"]
        .clone()
}

#[test]
fn request_system_string_becomes_first_system_message() {
    let (got, dropped) = translate_request(
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "system": "You are terse.",
            "messages": [{"role": "user", "content": "Hi"}]}),
        false,
    );
    let want = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
        ],
        "max_tokens": 64
    });
    assert_eq!(got, want);
    assert!(dropped.is_empty());
}

#[test]
fn request_system_text_blocks_are_joined_into_one_system_message() {
    let got = translate_request(
        &json!({"model": "claude-x", "max_tokens": 8,
            "system": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": "Hi"}]}),
        false,
    )
    .0;
    assert_eq!(
        got["messages"],
        json!([
            {"role": "system", "content": "You are terse.\nAnswer in English."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
        ])
    );
}

#[test]
fn request_user_text_and_images_become_content_parts() {
    let got = messages_of(json!([{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    ]}]));
    let want = json!([{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    ]}]);
    assert_eq!(got, want);
}

#[test]
fn request_assistant_text_and_tool_use_become_tool_calls() {
    let got = messages_of(json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
        ]}
    ]));
    let want = json!([
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]}
    ]);
    assert_eq!(got, want);
    // The arguments are the JSON text of the input.
    let args = got[1]["tool_calls"][0]["function"]["arguments"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(args).unwrap(), json!({"city": "Paris"}));
}

#[test]
fn request_assistant_with_only_tool_use_has_null_content() {
    let got = messages_of(json!([
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}},
            {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {"n": [1, 2]}}
        ]}
    ]));
    assert_eq!(
        got[1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "b", "arguments": "{\"n\":[1,2]}"}}
        ]})
    );
}

#[test]
fn request_assistant_plain_string_content_is_kept() {
    let got = messages_of(json!([
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}
    ]));
    assert_eq!(got[1], json!({"role": "assistant", "content": "Hello!"}));
}

#[test]
fn request_tool_results_become_tool_messages_before_the_user_text() {
    let got = messages_of(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}}
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "Here you go."},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                {"type": "text", "text": "21C"},
                {"type": "text", "text": "sunny"}
            ]},
            {"type": "text", "text": "And tomorrow?"}
        ]}
    ]));
    let want = json!([
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "21C\nsunny"},
        {"role": "user", "content": [
            {"type": "text", "text": "Here you go."},
            {"type": "text", "text": "And tomorrow?"}
        ]}
    ]);
    assert_eq!(got, want);
}

#[test]
fn request_user_turn_of_only_tool_results_has_no_user_message() {
    let got = messages_of(json!([
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
    ]));
    assert_eq!(got.as_array().unwrap().len(), 3);
    assert_eq!(got[2], json!({"role": "tool", "tool_call_id": "t1", "content": "ok"}));
}

#[test]
fn request_tools_and_sampling_fields_are_mapped() {
    let (got, dropped) = translate_request(
        &json!({
            "model": "claude-x",
            "max_tokens": 256,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": ["END", "STOP"],
            "metadata": {"user_id": "u-1"},
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [
                {"name": "weather", "description": "Weather by city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "noop"}
            ],
            "tool_choice": {"type": "auto"}
        }),
        false,
    );
    let want = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "auto",
        "user": "u-1"
    });
    assert_eq!(got, want);
    assert!(dropped.is_empty());
}

#[test]
fn request_tool_choice_spellings() {
    let choice = |c: Value| {
        let body = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}], "tool_choice": c});
        translate_request(&body, false).0
    };
    assert_eq!(choice(json!({"type": "any"}))["tool_choice"], json!("required"));
    assert_eq!(choice(json!({"type": "auto"}))["tool_choice"], json!("auto"));
    assert_eq!(choice(json!({"type": "none"}))["tool_choice"], json!("none"));
    assert_eq!(
        choice(json!({"type": "tool", "name": "weather"}))["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
    // Without the parallel flag, OpenAI's default stands.
    assert!(choice(json!({"type": "auto"})).get("parallel_tool_calls").is_none());
}

#[test]
fn request_disable_parallel_tool_use_sets_parallel_tool_calls_false() {
    let body = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}});
    let got = translate_request(&body, false).0;
    assert_eq!(got["tool_choice"], json!("required"));
    assert_eq!(got["parallel_tool_calls"], json!(false));
}

#[test]
fn request_top_k_and_thinking_are_dropped_and_listed() {
    let (got, dropped) = translate_request(
        &json!({"model": "m", "max_tokens": 100, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 50},
            "messages": [{"role": "user", "content": "hi"}]}),
        false,
    );
    assert_eq!(dropped, ["top_k", "thinking"]);
    assert_eq!(
        got,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 100})
    );
}

#[test]
fn request_stream_asks_for_usage() {
    let body = json!({"model": "claude-x", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let got = translate_request(&body, true).0;
    let want = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 5,
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    assert_eq!(got, want);
    // Not streaming: neither field, whatever the body says.
    let got = translate_request(&body, false).0;
    assert!(got.get("stream").is_none());
    assert!(got.get("stream_options").is_none());
}

#[test]
fn request_model_is_replaced_by_the_given_one() {
    let r = request(br#"{"model":"claude-opus-4","max_tokens":1,"messages":[]}"#, "my-deployment", false)
        .unwrap();
    let got: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(got, json!({"model": "my-deployment", "messages": [], "max_tokens": 1}));
}

#[test]
fn request_rejects_unsupported_roles_and_non_objects() {
    assert!(request(br#"{"messages":[{"role":"wizard","content":"x"}]}"#, "m", false).is_err());
    assert!(request(br#"{"messages":[{"role":"system","content":"x"}]}"#, "m", false).is_err());
    assert!(request(br#"[{"role":"user","content":"x"}]"#, "m", false).is_err());
    assert!(request(b"\"hello\"", "m", false).is_err());
    assert!(request(b"not json", "m", false).is_err());
    assert!(request(br#"{"model":"m"}"#, "m", false).is_err());
}

#[test]
fn response_maps_text_and_tool_calls_to_content_blocks() {
    let openai = json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112,
            "prompt_tokens_details": {"cached_tokens": 40}}
    });
    let (body, usage) = response(openai.to_string().as_bytes(), "gpt-4o").unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    let want = json!({
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "gpt-4o-2024-08-06",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 60, "output_tokens": 12, "cache_read_input_tokens": 40,
            "cache_creation_input_tokens": 0}
    });
    assert_eq!(got, want);
    assert_eq!(usage, Some((100, 12)));
}

#[test]
fn response_finish_reasons_map_to_stop_reasons() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let openai = json!({"id": "chatcmpl-1", "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}]});
        let (body, _) = response(openai.to_string().as_bytes(), "gpt-4o").unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got["stop_reason"], stop, "finish_reason {finish}");
        assert_eq!(stop_reason(finish), stop);
    }
}

#[test]
fn response_without_model_or_usage_falls_back() {
    let openai = json!({"id": "chatcmpl-xyz",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}]});
    let (body, usage) = response(openai.to_string().as_bytes(), "my-deployment").unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    let want = json!({
        "id": "msg_xyz", "type": "message", "role": "assistant", "model": "my-deployment",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0}
    });
    assert_eq!(got, want);
    assert_eq!(usage, None);
}

#[test]
fn response_rejects_invalid_json() {
    assert!(response(b"not json", "m").is_err());
}

#[test]
fn error_429_is_a_rate_limit_error_with_the_message() {
    let e = error(
        br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        429,
    );
    let got: Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(
        got,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"}})
    );
}

#[test]
fn error_400_is_an_invalid_request_error() {
    let e = error(
        br#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens","code":null}}"#,
        400,
    );
    let got: Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(
        got,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens is too large"}})
    );
}

#[test]
fn error_with_a_garbage_body_says_upstream_error() {
    let e = error(b"<html>502 Bad Gateway</html>", 502);
    let got: Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(got, json!({"type": "error", "error": {"type": "api_error", "message": "upstream error"}}));
}

// Streams.

/// An OpenAI stream chunk's SSE event.
fn chunk(choices: Value, extra: Value) -> String {
    let mut v = json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-2024-08-06", "choices": choices});
    if let Value::Object(extra) = extra {
        v.as_object_mut().unwrap().extend(extra);
    }
    format!("data: {v}\n\n")
}

fn delta(delta: Value, finish: Value) -> String {
    chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish}]), json!({}))
}

const DONE: &str = "data: [DONE]\n\n";

/// Role chunk, three content chunks, finish "stop", usage chunk, `[DONE]`.
fn text_stream() -> String {
    [
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Hel"}), Value::Null),
        delta(json!({"content": "lo, "}), Value::Null),
        delta(json!({"content": "world."}), Value::Null),
        delta(json!({}), json!("stop")),
        chunk(
            json!([]),
            json!({"usage": {"prompt_tokens": 25, "completion_tokens": 3, "total_tokens": 28,
                "prompt_tokens_details": {"cached_tokens": 5}}}),
        ),
        DONE.to_owned(),
    ]
    .concat()
}

/// The events of an Anthropic stream, as (name, data), checking their framing.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let out = std::str::from_utf8(out).unwrap();
    assert!(out.is_empty() || out.ends_with("\n\n"), "unterminated event in {out:?}");
    out.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let lines: Vec<&str> = e.split('\n').collect();
            assert_eq!(lines.len(), 2, "event {e:?}");
            let name = lines[0].strip_prefix("event: ").unwrap_or_else(|| panic!("no event line in {e:?}"));
            let data = lines[1].strip_prefix("data: ").unwrap_or_else(|| panic!("no data line in {e:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "event {e:?}");
            (name.to_owned(), data)
        })
        .collect()
}

fn named(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Feeds `stream` whole to a fresh translator: (output, complete).
fn run(stream: &str) -> (Vec<u8>, bool) {
    let mut t = Stream::new("gpt-4o");
    let out = t.feed(stream.as_bytes());
    (out, t.complete())
}

fn message_start() -> (String, Value) {
    (
        "message_start".into(),
        json!({"type": "message_start", "message": {
            "id": "msg_s1", "type": "message", "role": "assistant", "model": "gpt-4o-2024-08-06",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0}
        }}),
    )
}

fn ev(name: &str, data: Value) -> (String, Value) {
    (name.to_owned(), data)
}

#[test]
fn stream_text_translates_identically_at_every_split() {
    let stream = text_stream();
    let bytes = stream.as_bytes();
    let mut whole = Vec::new();
    for split in 0..=bytes.len() {
        let mut t = Stream::new("gpt-4o");
        let mut out = t.feed(&bytes[..split]);
        assert_eq!(t.complete(), split == bytes.len(), "complete after first feed at split {split}");
        out.extend(t.feed(&bytes[split..]));
        assert!(t.complete(), "split {split}");
        if split == 0 {
            whole = out;
        } else {
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&whole), "split {split}");
        }
    }
    let text = |t: &str| -> Value {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
    };
    let want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ev("content_block_delta", text("Hel")),
        ev("content_block_delta", text("lo, ")),
        ev("content_block_delta", text("world.")),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 20, "output_tokens": 3, "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 0}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    assert_eq!(events(&whole), want);
}

#[test]
fn stream_is_complete_only_at_done_and_silent_after() {
    let stream = text_stream();
    let (before, after) = stream.split_at(stream.find(DONE).unwrap());
    let mut t = Stream::new("gpt-4o");
    let out = t.feed(before.as_bytes());
    assert!(!t.complete());
    assert!(!named(&events(&out)).contains(&"message_stop"));
    assert!(!named(&events(&out)).contains(&"message_delta"));
    let out = t.feed(after.as_bytes());
    assert!(t.complete());
    assert_eq!(named(&events(&out)), ["content_block_stop", "message_delta", "message_stop"]);
    // Anything after [DONE] is ignored.
    let late = [delta(json!({"content": "late"}), Value::Null), DONE.to_owned()].concat();
    assert!(t.feed(late.as_bytes()).is_empty());
    assert!(t.complete());
}

#[test]
fn stream_text_then_tool_call_in_pieces() {
    let call = |c: Value| delta(json!({"tool_calls": [c]}), Value::Null);
    let stream = [
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Checking."}), Value::Null),
        call(json!({"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": ""}})),
        call(json!({"index": 0, "function": {"arguments": "{\"city\": "}})),
        call(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}})),
        delta(json!({}), json!("tool_calls")),
        DONE.to_owned(),
    ]
    .concat();
    let (out, complete) = run(&stream);
    assert!(complete);
    let args = |s: &str| {
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": s}})
    };
    let want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Checking."}}),
        ),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}}),
        ),
        ev("content_block_delta", args("{\"city\": ")),
        ev("content_block_delta", args("\"Paris\"}")),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ev(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    assert_eq!(events(&out), want);
}

#[test]
fn stream_parallel_tool_calls_become_two_tool_use_blocks() {
    let call = |c: Value| delta(json!({"tool_calls": [c]}), Value::Null);
    let stream = [
        delta(json!({"role": "assistant", "content": null}), Value::Null),
        call(json!({"index": 0, "id": "call_a", "type": "function",
            "function": {"name": "weather", "arguments": ""}})),
        call(json!({"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}})),
        call(json!({"index": 1, "id": "call_b", "type": "function",
            "function": {"name": "time", "arguments": ""}})),
        call(json!({"index": 1, "function": {"arguments": "{\"tz\":\"CET\"}"}})),
        delta(json!({}), json!("tool_calls")),
        DONE.to_owned(),
    ]
    .concat();
    let (out, complete) = run(&stream);
    assert!(complete);
    let args = |index: u64, s: &str| {
        json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": s}})
    };
    let want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}}),
        ),
        ev("content_block_delta", args(0, "{\"city\":\"Paris\"}")),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "call_b", "name": "time", "input": {}}}),
        ),
        ev("content_block_delta", args(1, "{\"tz\":\"CET\"}")),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ev(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    assert_eq!(events(&out), want);
}

#[test]
fn stream_without_done_is_incomplete() {
    let stream = text_stream();
    let cut = &stream[..stream.find(DONE).unwrap()];
    let (out, complete) = run(cut);
    assert!(!complete);
    let got = events(&out);
    let names = named(&got);
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta"
        ]
    );
    assert!(!names.contains(&"message_stop"));
}

#[test]
fn stream_error_chunk_becomes_an_error_event() {
    let stream = [
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Hi"}), Value::Null),
        "data: {\"error\":{\"message\":\"slow\",\"type\":\"rate_limit_exceeded\"}}\n\n".to_owned(),
    ]
    .concat();
    let (out, complete) = run(&stream);
    assert!(!complete);
    let got = events(&out);
    assert_eq!(
        got.last().unwrap(),
        &ev("error", json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}))
    );
    assert_eq!(named(&got), ["message_start", "content_block_start", "content_block_delta", "error"]);
}

#[test]
fn stream_error_kinds_follow_the_upstream_type() {
    for (e, kind) in [
        (json!({"message": "busy", "type": "server_overloaded"}), "overloaded_error"),
        (json!({"message": "boom", "type": "server_error"}), "api_error"),
    ] {
        let (out, _) = run(&format!("data: {}\n\n", json!({"error": e})));
        assert_eq!(
            events(&out),
            [ev("error", json!({"type": "error", "error": {"type": kind, "message": e["message"]}}))]
        );
    }
}

#[test]
fn stream_azure_prompt_filter_chunk_does_not_blank_the_message_id() {
    let stream = [
        format!(
            "data: {}\n\n",
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})
        ),
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Hi"}), Value::Null),
        delta(json!({}), json!("stop")),
        DONE.to_owned(),
    ]
    .concat();
    let (out, complete) = run(&stream);
    assert!(complete);
    let got = events(&out);
    assert_eq!(
        named(&got),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let message = &got[0].1["message"];
    assert_eq!(message["model"], "gpt-4o-2024-08-06");
    let id = message["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() > "msg_".len(), "message id {id:?}");
}
