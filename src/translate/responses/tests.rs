use serde_json::json;

use super::*;
use crate::operation::Operation;
use crate::translate::{Dialect, StreamTranslator, unstamped};

/// The chat body of `request(responses, stream)` and what was dropped.
fn translate_request(responses: &Value, stream: bool) -> (Value, Vec<&'static str>) {
    let r = request(responses.to_string().as_bytes(), "claude-sonnet-4-5", stream).unwrap();
    (serde_json::from_slice(&r.body).unwrap(), r.dropped)
}

/// A Responses request with every covered field (the documented item shapes).
fn full_request() -> Value {
    json!({
        "model": "claude",
        "instructions": "You are terse.",
        "input": [
            {"role": "developer", "content": "Answer in English."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is in this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K", "detail": "low"},
                {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}
            ]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
                {"type": "output_text", "text": "Let me look.", "annotations": []}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
                "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":18}"},
            {"type": "function_call_output", "call_id": "call_2",
                "output": [{"type": "input_text", "text": "not found"}]},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "tools": [
            {"type": "function", "name": "weather", "description": "Weather by city", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "function", "name": "lookup"}
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}, "verbosity": "low"},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 256, "temperature": 0.2, "top_p": 0.9, "user": "u-1",
        "parallel_tool_calls": false, "metadata": {"k": "v"}, "truncation": "auto", "store": false,
        "include": ["reasoning.encrypted_content"], "stream": true
    })
}

#[test]
fn request_maps_every_covered_field_to_chat() {
    let (got, dropped) = translate_request(&full_request(), true);
    let want = json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}}
            ]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "not found"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "max_completion_tokens": 256, "temperature": 0.2, "top_p": 0.9, "user": "u-1",
        "parallel_tool_calls": false,
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather by city", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "lookup"}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}},
        "reasoning_effort": "low",
        "stream": true, "stream_options": {"include_usage": true}
    });
    assert_eq!(got, want);
    assert_eq!(dropped, ["metadata", "truncation", "include", "reasoning items", "text.verbosity"]);
}

#[test]
fn a_string_input_is_one_user_message_and_tool_choice_modes_pass() {
    let r = json!({"model": "m", "input": "hi", "instructions": "Be brief.", "tool_choice": "required",
        "text": {"format": {"type": "json_object"}}});
    let (got, dropped) = translate_request(&r, false);
    assert_eq!(
        got,
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"}], "tool_choice": "required",
            "response_format": {"type": "json_object"}})
    );
    assert!(dropped.is_empty());
    for mode in ["auto", "none"] {
        let (got, _) = translate_request(&json!({"input": "x", "tool_choice": mode}), false);
        assert_eq!(got["tool_choice"], mode);
    }
    // Plain text format asks for nothing.
    let (got, _) = translate_request(&json!({"input": "x", "text": {"format": {"type": "text"}}}), false);
    assert!(got.get("response_format").is_none(), "{got}");
}

#[test]
fn stateful_features_and_built_in_tools_are_refused_naming_the_parameter() {
    let cases = [
        (json!({"input": "x", "previous_response_id": "resp_1"}), "previous_response_id"),
        (json!({"input": "x", "store": true}), "store"),
        (json!({"input": "x", "conversation": "conv_1"}), "conversation"),
        (json!({"input": "x", "background": true}), "background"),
        (json!({"input": "x", "prompt": {"id": "pmpt_1"}}), "prompt"),
        (json!({"input": "x", "tools": [{"type": "web_search"}]}), "tools"),
        (
            json!({"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "file_search"}]}),
            "tools",
        ),
        (json!({"input": "x", "tools": [{"type": "mcp", "server_label": "s"}]}), "tools"),
        (json!({"input": "x", "tool_choice": {"type": "web_search_preview"}}), "tool_choice"),
        (
            json!({"input": "x", "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}),
            "tool_choice",
        ),
        (json!({"input": [{"type": "item_reference", "id": "msg_1"}]}), "input"),
        (json!({"input": [{"type": "web_search_call", "id": "ws_1"}]}), "input"),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
            "input",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}),
            "input",
        ),
        (json!({"model": "m"}), "input"),
    ];
    for (body, param) in cases {
        let e = request(body.to_string().as_bytes(), "m", false).unwrap_err();
        assert_eq!(e.param, Some(param), "{body}: {e}");
    }
    let e = request(br#"{"input":"x","store":true}"#, "m", false).unwrap_err();
    assert!(e.message.contains("store: false") && e.message.contains("OpenAI"), "{e}");
    let e = request(br#"{"input":"x","tools":[{"type":"code_interpreter"}]}"#, "m", false).unwrap_err();
    assert!(e.message.contains("\"code_interpreter\"") && e.message.contains("function tools"), "{e}");
    let e = request(br#"{"input":"x","previous_response_id":"r"}"#, "m", false).unwrap_err();
    assert!(e.message.contains("previous_response_id"), "{e}");
    // Sent as their harmless values, they are no trouble.
    let ok = r#"{"input":"x","store":false,"background":false,"previous_response_id":null,"tools":[]}"#;
    assert!(request(ok.as_bytes(), "m", false).is_ok());
}

/// The `response` object for `chat` answering `req`, parsed.
fn translate_response(chat: &Value, req: &Value) -> Value {
    let echo = Echo::of(req.as_object().unwrap());
    serde_json::from_slice(&response(chat.to_string().as_bytes(), &echo).unwrap()).unwrap()
}

/// The `response` object's fields that repeat a request that set none of them.
fn defaults() -> Value {
    json!({"instructions": null, "max_output_tokens": null, "metadata": {}, "parallel_tool_calls": true,
        "previous_response_id": null, "reasoning": {"effort": null, "summary": null}, "store": false,
        "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "user": null})
}

fn with(base: Value, extra: Value) -> Value {
    merge(&base, extra)
}

#[test]
fn a_text_answer_is_one_message_item_with_usage() {
    let chat = json!({"id": "chatcmpl-abc", "object": "chat.completion", "created": 1_700_000_000,
        "model": "claude-sonnet-4-5", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello there"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 8}}});
    let got =
        translate_response(&chat, &json!({"input": "hi", "instructions": "Be brief.", "temperature": 0.5}));
    let want = with(
        defaults(),
        json!({
            "id": "resp_abc", "object": "response", "created_at": 1_700_000_000, "status": "completed",
            "error": null, "incomplete_details": null, "model": "claude-sonnet-4-5",
            "instructions": "Be brief.", "temperature": 0.5,
            "output": [{"id": "msg_abc", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}]}],
            "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 3,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15},
        }),
    );
    assert_eq!(got, want);
}

#[test]
fn calls_and_reasoning_are_items_and_a_length_stop_is_incomplete() {
    let chat = json!({"id": "msg_01X", "object": "chat.completion", "created": 5, "model": "gemini-2.5-flash",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": null,
            "reasoning_content": "Thinking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 20}}});
    let tools = json!([{"type": "function", "name": "weather"}]);
    let got = translate_response(&chat, &json!({"input": "hi", "tools": tools, "max_output_tokens": 30}));
    let want = with(
        defaults(),
        json!({
            "id": "resp_01X", "object": "response", "created_at": 5, "status": "incomplete", "error": null,
            "incomplete_details": {"reason": "max_output_tokens"}, "model": "gemini-2.5-flash",
            "tools": tools, "max_output_tokens": 30,
            "output": [
                {"id": "rs_01X", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking."}]},
                {"id": "fc_call_1", "type": "function_call", "status": "completed", "call_id": "call_1",
                    "name": "weather", "arguments": "{\"city\":\"Paris\"}"}
            ],
            "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 30,
                "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 39},
        }),
    );
    assert_eq!(got, want);
}

/// Events of a Responses stream: (the `event:` name, the data), checking that the name is the
/// data's `type` and that `sequence_number` counts from 0 by 1.
fn events(out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    let mut all = Vec::new();
    for (n, e) in text.split("\n\n").filter(|e| !e.is_empty()).enumerate() {
        let (name, data) = e.split_once('\n').unwrap();
        let mut v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(name.strip_prefix("event: "), v["type"].as_str(), "{e}");
        assert_eq!(v["sequence_number"], n, "{e}");
        v.as_object_mut().unwrap().remove("sequence_number");
        all.push(v);
    }
    all
}

fn chunk(delta: Value, finish: Value) -> String {
    let v = json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 7, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {v}\n\n")
}

fn usage_chunk() -> String {
    let v = json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 7, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}});
    format!("data: {v}\n\n")
}

fn response_at(status: &str, output: Value, usage: Value) -> Value {
    with(
        defaults(),
        json!({"id": "resp_s1", "object": "response", "created_at": 7, "status": status, "error": null,
            "incomplete_details": null, "model": "m", "output": output, "usage": usage}),
    )
}

#[test]
fn a_text_stream_follows_the_event_grammar_event_by_event() {
    let input = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
        usage_chunk(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let mut t = Stream::new("m", Echo::of(json!({"input": "hi"}).as_object().unwrap()));
    let mut out = t.feed(&input.as_bytes()[..input.len() - 14]);
    assert!(!t.complete(), "complete only at its terminal event");
    out.extend(t.feed(&input.as_bytes()[input.len() - 14..]));
    assert!(t.complete());
    assert_eq!(t.usage(), Some((9, 2)));
    let (item, at) = ("msg_s1", json!({"item_id": "msg_s1", "output_index": 0, "content_index": 0}));
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let done = json!({"id": item, "type": "message", "status": "completed", "role": "assistant",
        "content": [part("Hello")]});
    let usage = json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 11});
    let want = vec![
        json!({"type": "response.created", "response": response_at("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.in_progress", "response": response_at("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": item, "type": "message",
            "status": "in_progress", "role": "assistant", "content": []}}),
        with(at.clone(), json!({"type": "response.content_part.added", "part": part("")})),
        with(at.clone(), json!({"type": "response.output_text.delta", "delta": "Hel", "logprobs": []})),
        with(at.clone(), json!({"type": "response.output_text.delta", "delta": "lo", "logprobs": []})),
        with(at.clone(), json!({"type": "response.output_text.done", "text": "Hello", "logprobs": []})),
        with(at, json!({"type": "response.content_part.done", "part": part("Hello")})),
        json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
        json!({"type": "response.completed", "response": response_at("completed", json!([done]), usage)}),
    ];
    assert_eq!(events(&out), want);
}

/// A chat delta of tool call `i`: its first (with `id` and a name) or a later one.
fn call(i: u64, id: Option<&str>, args: &str) -> Value {
    let mut c = json!({"index": i, "function": {"arguments": args}});
    if let Some(id) = id {
        c["id"] = json!(id);
        c["type"] = json!("function");
        c["function"]["name"] = json!(format!("f{i}"));
    }
    json!({"tool_calls": [c]})
}

#[test]
fn a_stream_of_reasoning_text_and_calls_numbers_its_items_and_stops_incomplete_at_the_limit() {
    let input = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"reasoning_content": "Hmm."}), Value::Null),
        chunk(json!({"content": "Calling."}), Value::Null),
        chunk(call(0, Some("call_a"), ""), Value::Null),
        chunk(call(0, None, "{\"q\":"), Value::Null),
        chunk(call(0, None, "1}"), Value::Null),
        chunk(call(1, Some("call_b"), "{}"), Value::Null),
        chunk(json!({}), json!("length")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let mut t = Stream::new("m", Echo::default());
    let all = events(&t.feed(input.as_bytes()));
    let kinds: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    // Every event of an item names its index and id.
    let at = |i: usize| (all[i]["output_index"].as_u64().unwrap(), all[i]["item_id"].clone());
    assert_eq!(at(4), (0, json!("rs_s1")));
    assert_eq!(at(10), (1, json!("msg_s1")));
    assert_eq!(at(15), (2, json!("fc_call_a")));
    assert_eq!(at(20), (3, json!("fc_call_b")));
    assert_eq!(
        all[14]["item"],
        json!({"id": "fc_call_a", "type": "function_call", "status": "in_progress", "arguments": "",
            "call_id": "call_a", "name": "f0"})
    );
    assert_eq!(all[17]["arguments"], "{\"q\":1}");
    let last = &all[23]["response"];
    assert_eq!(
        (last["status"].as_str(), &last["incomplete_details"]),
        (Some("incomplete"), &json!({"reason": "max_output_tokens"}))
    );
    let output = last["output"].as_array().unwrap();
    assert_eq!(output.len(), 4);
    assert_eq!(output[2]["arguments"], "{\"q\":1}");
    assert_eq!(
        output[3],
        json!({"id": "fc_call_b", "type": "function_call", "status": "completed",
        "arguments": "{}", "call_id": "call_b", "name": "f1"})
    );
    assert_eq!(last["usage"], Value::Null, "no usage was reported");
}

#[test]
fn an_error_chunk_is_an_error_event_and_the_stream_is_not_complete() {
    let mut t = Stream::new("m", Echo::default());
    let err =
        r#"data: {"error":{"message":"overloaded","type":"overloaded_error","param":null,"code":null}}"#;
    let all =
        events(&t.feed(format!("{}{err}\n\n", chunk(json!({"content": "Hi"}), Value::Null)).as_bytes()));
    assert_eq!(
        all.last().unwrap(),
        &json!({"type": "error", "code": "overloaded_error", "message": "overloaded", "param": null})
    );
    assert!(!t.complete());
}

// === through the provider translators ===

#[test]
fn to_anthropic_the_request_goes_through_chat_and_lists_what_anthropic_drops() {
    let t = Dialect::ResponsesAnthropic
        .request(Operation::Responses, full_request().to_string().as_bytes(), "claude-sonnet-4-5", 1024, true)
        .unwrap();
    assert_eq!(Dialect::ResponsesAnthropic.operation(Operation::Responses), Operation::Messages);
    let got: Value = serde_json::from_slice(&t.body).unwrap();
    let want = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 256,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "lookup", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp\":18}"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "not found"},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "temperature": 0.2, "top_p": 0.9,
        "tools": [
            {"name": "weather", "description": "Weather by city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "lookup", "input_schema": {"type": "object"}}
        ],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"},
        "stream": true
    });
    assert_eq!(got, want);
    assert_eq!(
        t.dropped,
        [
            "metadata",
            "truncation",
            "include",
            "reasoning items",
            "text.verbosity",
            "response_format",
            "reasoning_effort",
            "content parts other than text and image_url"
        ]
    );
    assert!(t.include_usage);
}

#[test]
fn to_gemini_the_schema_and_effort_reach_generation_config() {
    let t = Dialect::ResponsesGemini
        .request(Operation::Responses, full_request().to_string().as_bytes(), "gemini-2.5-flash", 0, false)
        .unwrap();
    assert_eq!(Dialect::ResponsesGemini.operation(Operation::Responses), Operation::Chat);
    let got: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        got["generationConfig"],
        json!({"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 256,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"answer": {"type": "string"}}},
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
    );
    assert_eq!(
        got["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}, {"text": "Answer in English."}]})
    );
    assert_eq!(
        got["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
    );
    assert_eq!(
        got["contents"][2]["parts"],
        json!([{"functionResponse": {"name": "weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "lookup", "response": {"content": "not found"}}},
            {"text": "And tomorrow?"}])
    );
    assert_eq!(
        got["contents"][0]["parts"][2],
        json!({"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}})
    );
    assert_eq!(
        t.dropped,
        ["metadata", "truncation", "include", "reasoning items", "text.verbosity", "parallel_tool_calls"]
    );
    let bad = Dialect::ResponsesGemini.request(Operation::Responses, br#"{"input":"x"}"#, "a/b", 0, false);
    assert!(bad.is_err());
}

#[test]
fn cached_and_reasoning_tokens_survive_the_chat_step() {
    let anthropic = json!({"id": "msg_01A", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0, "output_tokens": 2}});
    let t = Dialect::ResponsesAnthropic
        .request(Operation::Responses, br#"{"input":"x"}"#, "c", 64, false)
        .unwrap();
    let (body, usage) = t.response(anthropic.to_string().as_bytes(), "c").unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "resp_01A");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(v["usage"]["input_tokens"], 105);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(usage, Some((105, 2)));
    let gemini = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 4, "thoughtsTokenCount": 10,
            "cachedContentTokenCount": 32, "totalTokenCount": 64},
        "modelVersion": "gemini-2.5-flash", "responseId": "g1"});
    let t =
        Dialect::ResponsesGemini.request(Operation::Responses, br#"{"input":"x"}"#, "g", 0, false).unwrap();
    let (body, _) = t.response(gemini.to_string().as_bytes(), "g").unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 50, "input_tokens_details": {"cached_tokens": 32}, "output_tokens": 14,
            "output_tokens_details": {"reasoning_tokens": 10}, "total_tokens": 64})
    );
    assert_eq!((v["id"].as_str(), v["model"].as_str()), (Some("resp_g1"), Some("gemini-2.5-flash")));
    // Errors keep OpenAI's shape, which is the Responses API's.
    let e = t.error(br#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED"}}"#, 429);
    assert_eq!(serde_json::from_slice::<Value>(&e).unwrap()["error"]["type"], "rate_limit_exceeded");
}

#[test]
fn an_anthropic_tool_stream_becomes_a_function_call_item() {
    let t = Dialect::ResponsesAnthropic
        .request(
            Operation::Responses,
            br#"{"input":"x","stream":true,"tools":[{"type":"function","name":"f"}]}"#,
            "c",
            64,
            true,
        )
        .unwrap();
    let frames: Vec<u8> =
        crate::mock::tools::anthropic_frames("c", "f", 1).iter().flat_map(|b| b.to_vec()).collect();
    let mut s = t.stream("c");
    let all = events(&unstamped(&s.feed(&frames)));
    assert!(s.complete());
    let last = all.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let item = &last["response"]["output"][0];
    assert_eq!((item["type"].as_str(), item["name"].as_str()), (Some("function_call"), Some("f")));
    assert_eq!(item["arguments"], crate::mock::tools::ARGUMENTS);
    assert_eq!(last["response"]["tools"], json!([{"type": "function", "name": "f"}]));
    let args: String = all
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(args, crate::mock::tools::ARGUMENTS);
}
