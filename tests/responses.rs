//! The OpenAI Responses API (`POST /v1/responses`, `/openai/v1/responses`), relayed natively to
//! `openai` and `azure` providers: bytes untouched but the spliced model, the typed event stream
//! relayed as is, and its commit rule (the first output event, never `response.created` or
//! `response.in_progress`). Providers of other formats are no candidates (not translated yet).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

/// A Responses answer with odd spacing and escapes, which a re-encoding would change.
const ODD_RESPONSE: &str = "{\"id\":\"resp_1\",  \"object\":\"response\",\n \"status\":\"completed\",\"model\":\"gpt-4o\",\"output\":[{\"type\":\"message\",\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"caf\\u00e9 \\\"q\\\"\",\"annotations\":[]}]}] ,\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}}";

/// One named Responses event.
fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {{\"type\":\"{name}\",{data}}}\n\n"))
}

#[tokio::test]
async fn a_response_is_relayed_byte_exact_with_the_model_spliced_on_both_paths() {
    let up = MockUpstream::fixed(Fixed::json(ODD_RESPONSE)).await;
    let t = Tier1::start(&config(&format!("{}/v1", up.url()), "")).await;
    let sent = "{ \"model\" : \"up/gpt-4o\",\n \"input\": [{\"role\":\"user\",\"content\":\"h\\u00e9\"}], \"store\":false }";
    for path in ["/v1/responses", "/openai/v1/responses"] {
        let a = post(&t.url(path), &[], sent).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        assert_eq!(a.text(), ODD_RESPONSE, "{path}: response bytes changed");
        assert_eq!(a.header("x-tier1-provider"), Some("up"));
        assert_eq!(a.header("x-tier1-model"), Some("gpt-4o"));
    }
    // A route name resolves as for chat; the upstream gets the bare model, nothing else changed.
    let a = post(&t.url("/v1/responses"), &[], &sent.replace("up/gpt-4o", "smart")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let reqs = up.stats.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.path, "/v1/responses");
        assert_eq!(r.body, sent.replace("up/gpt-4o", "gpt-4o").as_bytes(), "request bytes changed");
        assert_eq!(r.headers["authorization"], "Bearer sk-upstream-secret-0001");
    }
    // Counted as its own endpoint.
    let m = get(&t.url("/metrics")).await.text();
    for (route, n) in [("direct", 2.0), ("smart", 1.0)] {
        let series =
            format!(r#"tier1_requests_total{{endpoint="responses",route="{route}",status_class="2xx"}}"#);
        assert_eq!(metric(&m, &series), Some(n), "{series}\n{m}");
    }
}

#[tokio::test]
async fn a_response_stream_is_relayed_as_is_and_held_until_its_first_output() {
    let events = vec![
        event("response.created", "\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"),
        event("response.in_progress", "\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"),
        event("response.output_item.added", "\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[]}"),
        Bytes::from_static(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hel"),
        Bytes::from_static(b"lo\"}\n\n: keep-alive\n\n"),
        event("response.output_text.delta", "\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\""),
        event("response.completed", "\"sequence_number\":5,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}}"),
    ];
    let up = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: events.clone(),
        gap: Duration::from_millis(30),
    })
    .await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    let body = r#"{"model":"smart","input":"hi","stream":true}"#;
    let resp = post_streaming(&t.url("/v1/responses"), &[], body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // created, in_progress and the empty message item are held until the first delta commits
    // the stream; then they go out together, before the upstream has sent the rest.
    let first = next_chunk(&mut body).await.unwrap();
    assert_eq!(first, events[..5].concat());
    let mut all = first.to_vec();
    while let Some(c) = next_chunk(&mut body).await {
        all.extend_from_slice(&c);
    }
    // Exactly the provider's bytes: no `[DONE]` added (Responses streams have none), no error.
    assert_eq!(String::from_utf8(all).unwrap(), String::from_utf8(events.concat().to_vec()).unwrap());
    let reqs = up.stats.requests();
    assert_eq!((reqs.len(), reqs[0].path.as_str()), (1, "/responses"));
    assert_eq!(reqs[0].body, &br#"{"model":"gpt-4o","input":"hi","stream":true}"#[..]);
}

/// The text of a Responses stream's deltas, and its event names in order.
fn read_stream(text: &str) -> (String, Vec<String>) {
    let (mut deltas, mut names) = (String::new(), Vec::new());
    for e in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        if let Some(name) = e.lines().find_map(|l| l.strip_prefix("event: ")) {
            assert_eq!(v["type"], name, "{e}");
        }
        names.push(v["type"].as_str().unwrap_or("(untyped)").to_owned());
        if v["type"] == "response.output_text.delta" {
            deltas.push_str(v["delta"].as_str().unwrap());
        }
    }
    (deltas, names)
}

#[tokio::test]
async fn a_stream_cut_before_its_first_output_fails_over_invisibly_and_one_cut_after_does_not() {
    // The mock's Responses stream: created, in_progress, the message item, its text part, then a
    // delta per word. `abort_after` counts the events after `response.created`.
    let before = Behavior { abort_after: Some(3), ..Behavior::default() };
    let after =
        Behavior { abort_after: Some(5), chunk_interval: Duration::from_millis(5), ..Behavior::default() };
    let mock =
        MockUpstream::start(MockConfig::default().model("cut-before", before).model("cut-after", after))
            .await
            .unwrap();
    let routes = r#"
[[routes]]
name = "early"
retry = { attempts = 1 }
targets = [{ provider = "up", model = "cut-before" }, { provider = "up", model = "whole" }]
[[routes]]
name = "late"
retry = { attempts = 1 }
targets = [{ provider = "up", model = "cut-after" }, { provider = "up", model = "whole" }]
"#;
    let t = Tier1::start(&config(&format!("{}/v1", mock.url()), routes)).await;
    let url = t.url("/v1/responses");
    let a = post(&url, &[], r#"{"model":"early","input":"hi","stream":true}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-model"), Some("whole"));
    assert_eq!(a.header("x-tier1-attempts"), Some("2"));
    let (text, names) = read_stream(&a.text());
    assert_eq!(text, DEFAULT_REPLY);
    // One answer, the second target's: its own created, nothing of the first attempt.
    assert_eq!(names.iter().filter(|n| *n == "response.created").count(), 1, "{names:?}");
    assert_eq!(names.first().map(String::as_str), Some("response.created"));
    assert_eq!(names.last().map(String::as_str), Some("response.completed"));
    assert!(a.text().contains("\"model\":\"whole\"") && !a.text().contains("cut-before"));
    assert_eq!((mock.stats.calls_for("cut-before"), mock.stats.calls_for("whole")), (1, 1));

    // Cut after the first delta: committed, so not switched; the client sees the break.
    let a = post(&url, &[], r#"{"model":"late","input":"hi","stream":true}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-model"), Some("cut-after"));
    let text = a.text();
    assert!(text.contains("response.output_text.delta") && !text.contains("response.completed"), "{text}");
    assert!(text.contains("upstream_stream_error") && !text.contains("[DONE]"), "{text}");
    // In the Responses API's own grammar: an `error` event (the SDKs raise it as an APIError),
    // not chat's error chunk.
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let (event, data) = last.split_once('\n').unwrap();
    assert_eq!(event, "event: error", "{last}");
    let v: serde_json::Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("upstream_stream_error")),
        "{v}"
    );
    assert!(v["sequence_number"].is_u64() && v["message"].is_string(), "{v}");
    assert_eq!((mock.stats.calls_for("cut-after"), mock.stats.calls_for("whole")), (1, 1));
}

#[tokio::test]
async fn a_response_is_counted_and_its_usage_metered_whole_or_streamed() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&format!("{}/v1", mock.url()), "")).await;
    let a = post(&t.url("/v1/responses"), &[], r#"{"model":"smart","input":"hi"}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("response"), Some("gpt-4o")));
    assert_eq!(v["output"][0]["content"][0]["text"], DEFAULT_REPLY);
    let a =
        post(&t.url("/openai/v1/responses"), &[], r#"{"model":"smart","input":"hi","stream":true}"#).await;
    assert_eq!(read_stream(&a.text()).0, DEFAULT_REPLY);
    let m = get(&t.url("/metrics")).await.text();
    for (direction, n) in [("input", 18), ("output", 22)] {
        let series = format!(r#"tier1_tokens_total{{direction="{direction}",model="gpt-4o",provider="up"}}"#);
        assert_eq!(metric(&m, &series), Some(f64::from(n)), "{series}\n{m}");
    }
}

#[tokio::test]
async fn azure_responses_go_to_the_v1_api_with_the_deployment_in_the_body() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = format!(
        r#"
[providers.az]
kind = "azure"
base_url = "{}"
[[providers.az.keys]]
secret = "env:UPSTREAM_KEY"
[[routes]]
name = "smart"
targets = [{{ provider = "az", model = "gpt-4o", deployment = "gpt4o-prod" }}]
"#,
        mock.url()
    );
    let t = Tier1::start(&toml).await;
    let a = post(&t.url("/v1/responses"), &[], r#"{"model":"smart","input":"hi","stream":true}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(read_stream(&a.text()).0, DEFAULT_REPLY);
    let a = post(&t.url("/v1/responses"), &[], r#"{"model":"az/my-deploy","input":"hi"}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/openai/v1/responses", "/openai/v1/responses"]);
    let models: Vec<serde_json::Value> = sent
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["model"].clone())
        .collect();
    assert_eq!(models, ["gpt4o-prod", "my-deploy"]);
    assert!(sent.iter().all(|r| r.headers["api-key"] == "sk-upstream-secret-0001"));
}

#[tokio::test]
async fn a_model_served_only_by_anthropic_or_gemini_gets_a_clear_400() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = format!(
        r#"
[providers.claude]
kind = "anthropic"
base_url = "{url}"
[[providers.claude.keys]]
secret = "env:UPSTREAM_KEY"
[providers.gem]
kind = "gemini"
base_url = "{url}"
[[providers.gem.keys]]
secret = "env:UPSTREAM_KEY"
[[routes]]
name = "claude"
targets = [{{ provider = "claude", model = "claude-sonnet-4-5" }}, {{ provider = "gem", model = "gemini-2.5-flash" }}]
"#,
        url = mock.url()
    );
    let t = Tier1::start(&toml).await;
    for model in ["claude", "claude/claude-sonnet-4-5", "gem/gemini-2.5-flash"] {
        let a = post(&t.url("/v1/responses"), &[], &format!(r#"{{"model":"{model}","input":"hi"}}"#)).await;
        assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "unsupported_provider_format"), "{model}");
        let v = a.json();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(model) && message.contains("openai, azure or mock"), "{message}");
        assert_eq!(v["error"]["param"], "model");
    }
    // Chat to the same route still goes through (translated).
    assert_eq!(post(&t.url("/v1/chat/completions"), &[], &chat("claude")).await.status, 200);
    assert_eq!(mock.stats.requests().len(), 1, "no Responses request went upstream");
}
