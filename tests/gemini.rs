//! `kind = "gemini"`: OpenAI chat and embeddings translated to Gemini's `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents` and back, with the key in
//! `x-goog-api-key`, failover on Gemini's errors and streams cut before content.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

fn cfg(url: &str, extra: &str) -> String {
    format!(
        r#"
[providers.gemini]
kind = "gemini"
base_url = "{url}"
[[providers.gemini.keys]]
name = "main"
secret = "env:UPSTREAM_KEY"
{extra}
"#
    )
}

/// The `data:` events of an OpenAI stream, parsed; `[DONE]` must be the last.
fn chunks(text: &str) -> Vec<serde_json::Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty() && *e != "data: [DONE]")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn chat_streams_and_embeddings_are_translated_both_ways() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/v1/chat/completions");
    let body = r#"{"model":"gemini/gemini-2.5-flash","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":50,"logit_bias":{"1":2}}"#;
    let a = post(&url, &[], body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-gemini-mock-1");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()),
        (Some(9), Some(11))
    );
    assert_eq!(a.header("x-tier1-dropped-params"), Some("logit_bias"));

    let a = post(
        &url,
        &[],
        r#"{"model":"gemini/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let events = chunks(&a.text());
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect::<String>();
    assert_eq!(content, DEFAULT_REPLY);
    let finish: Vec<_> = events.iter().filter_map(|e| e["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["stop"]);
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 11);

    let a = post(
        &t.url("/v1/embeddings"),
        &[],
        r#"{"model":"gemini/text-embedding-004","input":["a","b"],"dimensions":8}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);

    // Gemini's usageMetadata counts as tokens, for the full answer and the stream alike.
    let m = get(&t.url("/metrics")).await.text();
    for (direction, n) in [("input", 18), ("output", 22)] {
        let series =
            format!(r#"tier1_tokens_total{{direction="{direction}",model="other",provider="gemini"}}"#);
        assert_eq!(metric(&m, &series), Some(f64::from(n)), "{series}\n{m}");
    }

    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1beta/models/text-embedding-004:batchEmbedContents",
        ]
    );
    for r in &sent {
        assert_eq!(r.headers["x-goog-api-key"], "sk-upstream-secret-0001");
        assert!(!r.headers.contains_key("authorization"));
        assert!(!r.path.contains("key="), "the key never goes in the URL");
    }
    let first: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        first,
        serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 50},
        })
    );
    let embed: serde_json::Value = serde_json::from_slice(&sent[2].body).unwrap();
    assert_eq!(embed["requests"][1]["model"], "models/text-embedding-004");
    assert_eq!(embed["requests"][1]["content"]["parts"][0]["text"], "b");
    assert_eq!(embed["requests"][1]["outputDimensionality"], 8);
}

#[tokio::test]
async fn gemini_errors_fail_over_cool_down_and_come_back_openai_shaped() {
    let unavailable = Behavior { status: Some(StatusCode::SERVICE_UNAVAILABLE), ..Behavior::default() };
    let cut_early = Behavior { abort_after: Some(1), ..Behavior::default() };
    let cut_late =
        Behavior { abort_after: Some(5), chunk_interval: Duration::from_millis(5), ..Behavior::default() };
    let bad = Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() };
    let mock = MockUpstream::start(
        MockConfig::default()
            .model("unavailable", unavailable)
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
targets = [{ provider = "gemini", model = "unavailable" }, { provider = "gemini", model = "ok" }]
[[routes]]
name = "s"
retry = { attempts = 1 }
targets = [{ provider = "gemini", model = "cut-early" }, { provider = "gemini", model = "ok" }]
[[routes]]
name = "late"
targets = [{ provider = "gemini", model = "cut-late" }, { provider = "gemini", model = "ok" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let url = t.url("/v1/chat/completions");
    let a = post(&url, &[], &chat("r")).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-tier1-fallback-reason")),
        (200, Some("overloaded")),
        "{}",
        a.text()
    );
    assert_eq!(a.json()["choices"][0]["message"]["content"], DEFAULT_REPLY);
    // A stream cut before content fails over invisibly: one role chunk, one [DONE].
    let a = post(&url, &[], &chat_stream("s")).await;
    let events = chunks(&a.text());
    assert_eq!(events.iter().filter(|e| e["choices"][0]["delta"]["role"] == "assistant").count(), 1);
    // A stream cut after content cannot be retried: an error event and no [DONE].
    let a = post(&url, &[], &chat_stream("late")).await;
    let text = a.text();
    assert!(!text.contains("[DONE]") && text.contains("upstream_stream_error"), "{text}");
    // The caller's mistake comes back OpenAI-shaped, with Gemini's message and status.
    let a = post(&url, &[], &chat("gemini/bad")).await;
    assert_eq!(a.status, 400);
    let e = &a.json()["error"];
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("invalid_request_error"), Some("INVALID_ARGUMENT"))
    );
    assert!(e["message"].as_str().unwrap().contains("mock: injected failure 400"));
    // A model name that would change the URL is refused before any call.
    let before = mock.stats.requests().len();
    let a = post(&url, &[], &chat("gemini/x:streamGenerateContent?key=1")).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(mock.stats.requests().len(), before);
}

#[tokio::test]
async fn anthropic_format_requests_reach_gemini_through_both_translations() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/v1/messages");
    let body = r#"{"model":"gemini/gemini-2.5-flash","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&url, &[], body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], serde_json::json!([{"type": "text", "text": DEFAULT_REPLY}]));
    assert_eq!(
        (v["stop_reason"].as_str(), v["usage"]["output_tokens"].as_u64()),
        (Some("end_turn"), Some(11))
    );
    let sent: serde_json::Value = serde_json::from_slice(&mock.stats.requests()[0].body).unwrap();
    assert_eq!(sent["systemInstruction"], serde_json::json!({"parts": [{"text": "Be brief."}]}));
    assert_eq!(sent["generationConfig"], serde_json::json!({"maxOutputTokens": 64}));

    let body = r#"{"model":"gemini/gemini-2.5-flash","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&url, &[], body).await;
    let text = a.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"], "{text}");
    assert!(!text.contains("[DONE]") && !text.contains("chat.completion"), "{text}");
    let deltas: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|d| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deltas, DEFAULT_REPLY);
    assert!(text.contains(r#""output_tokens":11"#), "{text}");
    assert_eq!(
        mock.stats.requests()[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}
