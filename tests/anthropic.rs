//! The Anthropic-format ingress (`/anthropic/v1/messages`, `/v1/messages`), relayed natively to
//! `kind = "anthropic"` providers: bytes untouched but the model, Anthropic's headers upstream,
//! Anthropic-shaped errors, stream failover before the first content, fallback across targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;

fn cfg(url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
api_keys = ["env:FRONT_KEY"]
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"
[[providers.anthropic.keys]]
name = "main"
secret = "env:UPSTREAM_KEY"
[providers.openai]
kind = "openai"
base_url = "{url}/v1"
{extra}
"#
    )
}

const FRONT: (&str, &str) = ("authorization", "Bearer front-key-0001");

fn messages(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    )
}

#[tokio::test]
async fn messages_pass_through_natively_byte_exact() {
    let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}"#;
    let up = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        chunks: vec![Bytes::from(answer)],
        gap: Duration::ZERO,
    })
    .await;
    let t = Tier1::start(&cfg(&up.url(), "")).await;
    let sent = r#"{"model":"anthropic/claude-sonnet-4-5", "max_tokens": 64,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
    for path in ["/anthropic/v1/messages", "/v1/messages"] {
        let a = post(
            &t.url(path),
            &[FRONT, ("x-relay-token-id", "tok-1"), ("anthropic-version", "2023-06-01")],
            sent,
        )
        .await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        assert_eq!(a.text(), answer);
        assert_eq!(a.header("x-tier1-provider"), Some("anthropic"));
    }
    let first = &up.stats.requests()[0];
    let (headers, body) = (&first.headers, &first.body);
    assert_eq!(body, &sent.replace("anthropic/claude", "claude").into_bytes());
    assert_eq!(headers["x-api-key"], "sk-upstream-secret-0001");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    for absent in ["authorization", "x-relay-token-id"] {
        assert!(!headers.contains_key(absent), "{absent} was forwarded");
    }
}

#[tokio::test]
async fn anthropic_streams_pass_through_byte_exact_without_done() {
    let events: Vec<Bytes> = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]
    .into_iter()
    .map(|s: &'static str| Bytes::from_static(s.as_bytes()))
    .collect();
    let up = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: events.clone(),
        gap: Duration::from_millis(5),
    })
    .await;
    let t = Tier1::start(&cfg(&up.url(), "")).await;
    let a = post(&t.url("/anthropic/v1/messages"), &[FRONT], &messages("anthropic/claude-sonnet-4-5", true))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, events.concat());
    assert!(!a.text().contains("[DONE]"));
}

#[tokio::test]
async fn an_overloaded_target_falls_back_and_a_stream_cut_before_content_is_invisible() {
    let busy = Behavior { status: Some(StatusCode::from_u16(529).unwrap()), ..Behavior::default() };
    let cut = Behavior { abort_after: Some(1), ..Behavior::default() };
    let mock =
        MockUpstream::start(MockConfig::default().model("busy", busy).model("cut", cut)).await.unwrap();
    let routes = r#"
[[routes]]
name = "claude"
retry = { attempts = 1 }
targets = [{ provider = "anthropic", model = "busy" }, { provider = "anthropic", model = "claude-ok" }]
[[routes]]
name = "claude-stream"
retry = { attempts = 1 }
targets = [{ provider = "anthropic", model = "cut" }, { provider = "anthropic", model = "claude-ok" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let a = post(&t.url("/v1/messages"), &[FRONT], &messages("claude", false)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("overloaded"));
    assert_eq!(a.json()["content"][0]["text"], DEFAULT_REPLY);
    // "cut" sends message_start, then drops the connection before any text.
    let a = post(&t.url("/v1/messages"), &[FRONT], &messages("claude-stream", true)).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert_eq!(text.matches("event: message_start").count(), 1, "{text}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), "{text}");
    assert_eq!(a.header("x-tier1-model"), Some("claude-ok"));
    // Anthropic usage counts as tokens.
    let m = get(&t.url("/metrics")).await.text();
    assert!(
        m.contains(r#"tier1_tokens_total{direction="input",model="claude-ok",provider="anthropic"} 9"#),
        "{m}"
    );
}

#[tokio::test]
async fn errors_on_the_anthropic_ingress_are_anthropic_shaped() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/anthropic/v1/messages");
    let shape = |a: &Answer| (a.status.as_u16(), a.json()["type"].clone(), a.json()["error"]["type"].clone());
    let a = post(&url, &[], &messages("anthropic/claude", false)).await;
    assert_eq!(shape(&a), (401, "error".into(), "authentication_error".into()));
    let a = post(&url, &[FRONT], &messages("nobody/claude", false)).await;
    assert_eq!(shape(&a), (404, "error".into(), "not_found_error".into()));
    let a = post(&url, &[FRONT], r#"{"model":"anthropic/claude"}"#).await;
    assert_eq!(shape(&a), (400, "error".into(), "invalid_request_error".into()));
    // A request that cannot be translated for an OpenAI provider is refused before any call.
    let a = post(
        &url,
        &[FRONT],
        r#"{"model":"openai/gpt-4o","max_tokens":9,"messages":[{"role":"robot","content":"x"}]}"#,
    )
    .await;
    assert_eq!(shape(&a), (400, "error".into(), "invalid_request_error".into()));
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("cannot translate"), "{}", a.text());
    // Embeddings are not something Anthropic serves.
    let a = post(&t.url("/v1/embeddings"), &[FRONT], r#"{"model":"anthropic/claude","input":"x"}"#).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "unsupported_provider_format"));
    assert_eq!(mock.stats.snapshot().requests, 0);
}

#[tokio::test]
async fn openai_requests_to_anthropic_are_translated_both_ways() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/v1/chat/completions");
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"presence_penalty":0.3}"#;
    let a = post(&url, &[FRONT], body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    assert_eq!(a.header("x-tier1-dropped-params"), Some("presence_penalty"));
    let sent = &mock.stats.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-upstream-secret-0001");
    let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(
        sent["messages"],
        serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    // Streamed: OpenAI chunks, the usage chunk asked for, then [DONE].
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let a = post(&url, &[FRONT], body).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let mut content = String::new();
    let mut usage = None;
    for e in text.split("\n\n").filter(|e| !e.is_empty() && *e != "data: [DONE]") {
        let v: serde_json::Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    assert_eq!(content, DEFAULT_REPLY);
    assert_eq!(usage.unwrap()["completion_tokens"], 11);
}

#[tokio::test]
async fn translated_requests_fail_over_and_errors_come_back_openai_shaped() {
    let busy = Behavior { status: Some(StatusCode::from_u16(529).unwrap()), ..Behavior::default() };
    let cut_early = Behavior { abort_after: Some(1), ..Behavior::default() };
    let cut_late =
        Behavior { abort_after: Some(5), chunk_interval: Duration::from_millis(5), ..Behavior::default() };
    let bad = Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() };
    let mock = MockUpstream::start(
        MockConfig::default()
            .model("busy", busy)
            .model("cut-early", cut_early)
            .model("cut-late", cut_late)
            .model("bad", bad),
    )
    .await
    .unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 1 }
targets = [{ provider = "anthropic", model = "busy" }, { provider = "anthropic", model = "ok" }]
[[routes]]
name = "s"
retry = { attempts = 1 }
targets = [{ provider = "anthropic", model = "cut-early" }, { provider = "anthropic", model = "ok" }]
[[routes]]
name = "late"
targets = [{ provider = "anthropic", model = "cut-late" }, { provider = "anthropic", model = "ok" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let url = t.url("/v1/chat/completions");
    let a = post(&url, &[FRONT], &chat("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-fallback-reason")), (200, Some("overloaded")));
    assert_eq!(a.json()["choices"][0]["message"]["content"], DEFAULT_REPLY);
    let a = post(&url, &[FRONT], &chat_stream("s")).await;
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(a.text().matches("\"role\":\"assistant\"").count(), 1, "{}", a.text());
    let a = post(&url, &[FRONT], &chat_stream("late")).await;
    let text = a.text();
    assert!(!text.contains("[DONE]") && text.contains("upstream_stream_error"), "{text}");
    let a = post(&url, &[FRONT], &chat("anthropic/bad")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("mock: injected failure 400"));
}

/// The Anthropic-format events of a stream: (event name, data), each data's `type` the name.
fn events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: serde_json::Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_requests_to_openai_providers_are_translated_both_ways() {
    let busy = Behavior { status: Some(StatusCode::SERVICE_UNAVAILABLE), ..Behavior::default() };
    let bad = Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() };
    let mock =
        MockUpstream::start(MockConfig::default().model("busy", busy).model("bad", bad)).await.unwrap();
    let routes = r#"
[[routes]]
name = "claude-compatible"
retry = { attempts = 1 }
targets = [{ provider = "openai", model = "busy" }, { provider = "openai", model = "gpt-4o" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let url = t.url("/anthropic/v1/messages");
    let body = r#"{"model":"openai/gpt-4o","max_tokens":64,"system":"Be brief.","top_k":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&url, &[FRONT], body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!((v["type"].as_str(), v["role"].as_str()), (Some("message"), Some("assistant")));
    assert_eq!(v["content"], serde_json::json!([{"type": "text", "text": DEFAULT_REPLY}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        (v["usage"]["input_tokens"].as_u64(), v["usage"]["output_tokens"].as_u64()),
        (Some(9), Some(11))
    );
    assert_eq!(a.header("x-tier1-dropped-params"), Some("top_k"));
    let sent = &mock.stats.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"model": "gpt-4o", "max_tokens": 64, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );

    // Streamed, through a route whose first target is down: Anthropic events, usage included.
    let a = post(&url, &[FRONT], &messages("claude-compatible", true)).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-fallback-reason")), (200, Some("overloaded")));
    let got = events(&a.text());
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "content_block_start"]);
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let text: String = got.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect::<String>();
    assert_eq!(text, DEFAULT_REPLY);
    let delta = &got[got.len() - 2].1;
    assert_eq!(
        (delta["delta"]["stop_reason"].as_str(), delta["usage"]["output_tokens"].as_u64()),
        (Some("end_turn"), Some(11))
    );
    let sent: serde_json::Value =
        serde_json::from_slice(&mock.stats.requests().last().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    // The provider's refusal comes back Anthropic-shaped.
    let a = post(&url, &[FRONT], &messages("openai/bad", false)).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        (a.json()["type"].as_str(), a.json()["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error"))
    );
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("mock: injected failure 400"));
}

#[tokio::test]
async fn a_translated_answer_charges_the_tokens_it_reported_to_token_limits() {
    // 100 tokens a minute. A request is pre-charged at prompt bytes / 4 + max_tokens (about 80
    // here) and settled with the usage the provider reported (9 + 11 = 20): 20 + 80 leaves no
    // room for a second. Were a translated answer refunded, 0 + 80 would pass.
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let limit = "[[limits]]\nname = \"tokens\"\nscope = \"global\"\ntokens = 100\nper = \"60s\"\n";
    let t = Tier1::start(&cfg(&mock.url(), limit)).await;
    let body =
        r#"{"model":"anthropic/claude-x","max_tokens":60,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&t.url("/v1/chat/completions"), &[FRONT], body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["usage"]["total_tokens"], 20, "{}", a.text());
    let a = post(&t.url("/v1/chat/completions"), &[FRONT], body).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.header("x-tier1-limit"), Some("tokens"));
    assert_eq!(mock.stats.snapshot().requests, 1);
}

/// Issue 19 item 6, translated: an Anthropic stream with a malformed event after its first text
/// reaches an OpenAI client whole, as if the event were not there, and the event is counted.
#[tokio::test]
async fn a_malformed_event_in_a_translated_stream_is_left_out_and_counted() {
    let events = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    let bad = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_de";
    let upstream = |chunks: Vec<&'static str>| {
        MockUpstream::fixed(Fixed {
            status: 200,
            headers: vec![("content-type", "text/event-stream".into())],
            chunks: chunks.into_iter().map(|s| Bytes::from_static(s.as_bytes())).collect(),
            gap: Duration::from_millis(5),
        })
    };
    let mut with_bad = events.to_vec();
    with_bad.insert(3, bad);
    with_bad.insert(4, "lta\",\"text\":\"lost\"\n\n");
    let clean = upstream(events.to_vec()).await;
    let broken = upstream(with_bad).await;
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let mut out = Vec::new();
    for up in [&clean, &broken] {
        let t = Tier1::start(&cfg(&up.url(), "")).await;
        let a = post(&t.url("/v1/chat/completions"), &[FRONT], body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let m = get(&t.url("/metrics")).await.text();
        let series = r#"tier1_stream_events_dropped_total{provider="anthropic",reason="invalid_json"}"#;
        out.push((tier1::testing::translate::unstamped(&a.body), metric(&m, series)));
    }
    let text = String::from_utf8_lossy(&out[1].0).into_owned();
    assert!(text.ends_with("data: [DONE]\n\n") && !text.contains("lost"), "{text}");
    assert_eq!(out[1].0, out[0].0, "the stream changed beyond the dropped event");
    assert_eq!((out[0].1, out[1].1), (Some(0.0), Some(1.0)));
}
