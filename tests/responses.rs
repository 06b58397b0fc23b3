//! The OpenAI Responses API (`POST /v1/responses`, `/openai/v1/responses`), relayed natively to
//! `openai` and `azure` providers: bytes untouched but the spliced model, the typed event stream
//! relayed as is, and its commit rule (the first output event, never `response.created` or
//! `response.in_progress`). To `anthropic` and `gemini` providers: translated through OpenAI chat
//! both ways, full and streamed (the typed event grammar), with tools, the same commit rule, and a
//! 400 naming the parameter for what needs OpenAI's stored state.

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
        let series = format!(
            r#"tier1_requests_total{{code="ok",endpoint="responses",route="{route}",status_class="2xx"}}"#
        );
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

/// Anthropic and Gemini providers on `url` (the mock answers each in its own format), and
/// `extra` routes.
fn translated(url: &str, extra: &str) -> String {
    format!(
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
{extra}
"#
    )
}

const MODELS: [&str; 2] = ["claude/claude-sonnet-4-5", "gem/gemini-2.5-flash"];

/// Checks a translated Responses stream event by event: every event named after its `type`,
/// numbered from 0 by 1, the grammar of one text message; returns the final `response`.
fn check_text_stream(text: &str) -> serde_json::Value {
    let events: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .enumerate()
        .map(|(n, e)| {
            let (name, data) = e.split_once('\n').unwrap();
            let v: serde_json::Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(name.strip_prefix("event: "), v["type"].as_str(), "{e}");
            assert_eq!(v["sequence_number"], n, "{e}");
            v
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|v| v["type"].as_str().unwrap()).collect();
    let deltas = names.iter().filter(|n| **n == "response.output_text.delta").count();
    assert!(deltas > 1, "{names:?}");
    let mut want = vec!["response.created", "response.in_progress", "response.output_item.added"];
    want.push("response.content_part.added");
    want.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    want.extend(["response.output_text.done", "response.content_part.done", "response.output_item.done"]);
    want.push("response.completed");
    assert_eq!(names, want);
    let item = events[2]["item"]["id"].clone();
    for e in &events[2..events.len() - 1] {
        assert_eq!(e["output_index"], 0, "{e}");
        if e.get("item_id").is_some() {
            assert_eq!((&e["item_id"], &e["content_index"]), (&item, &serde_json::json!(0)), "{e}");
        }
    }
    let text: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(text, DEFAULT_REPLY);
    events.last().unwrap()["response"].clone()
}

#[tokio::test]
async fn responses_to_anthropic_and_gemini_are_translated_whole_and_streamed() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&translated(&mock.url(), "")).await;
    for (model, path) in
        MODELS.into_iter().zip(["/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent"])
    {
        let body = format!(
            r#"{{"model":"{model}","input":"hi","instructions":"Be brief.","metadata":{{"k":"v"}}}}"#
        );
        let a = post(&t.url("/v1/responses"), &[], &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.header("x-tier1-dropped-params"), Some("metadata"), "{model}");
        let v = a.json();
        assert_eq!(
            (v["object"].as_str(), v["status"].as_str()),
            (Some("response"), Some("completed")),
            "{v}"
        );
        assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["content"][0]["text"], DEFAULT_REPLY);
        assert_eq!(v["usage"]["input_tokens"], 9, "{v}");
        assert_eq!(v["usage"]["output_tokens"], 11, "{v}");
        let sent = mock.stats.requests().pop().unwrap();
        assert_eq!(sent.path, path);
        let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        let system = sent
            .get("system")
            .cloned()
            .unwrap_or_else(|| sent["systemInstruction"]["parts"][0]["text"].clone());
        assert_eq!(system, "Be brief.", "{sent}");

        let body =
            format!(r#"{{"model":"{model}","input":[{{"role":"user","content":"hi"}}],"stream":true}}"#);
        let a = post(&t.url("/openai/v1/responses"), &[], &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.header("content-type"), Some("text/event-stream"));
        let last = check_text_stream(&a.text());
        assert_eq!(last["status"], "completed");
        assert_eq!(last["output"][0]["content"][0]["text"], DEFAULT_REPLY);
        assert_eq!(last["usage"]["input_tokens"], 9, "{last}");
    }
    let m = get(&t.url("/metrics")).await.text();
    for provider in ["claude", "gem"] {
        let series =
            format!(r#"tier1_tokens_total{{direction="input",model="other",provider="{provider}"}}"#);
        assert_eq!(metric(&m, &series), Some(18.0), "{series}\n{m}");
    }
}

#[tokio::test]
async fn a_translated_tool_call_is_a_function_call_item_and_its_output_goes_back() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&translated(&mock.url(), "")).await;
    let tools = r#"[{"type":"function","name":"lookup","description":"Look up","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}]"#;
    for model in MODELS {
        let body = format!(r#"{{"model":"{model}","input":"find it","tools":{tools},"tool_choice":"auto"}}"#);
        let v = post(&t.url("/v1/responses"), &[], &body).await.json();
        let call = &v["output"][0];
        assert_eq!(
            (call["type"].as_str(), call["name"].as_str()),
            (Some("function_call"), Some("lookup")),
            "{v}"
        );
        assert_eq!(call["arguments"], r#"{"q":"mock"}"#);
        let call_id = call["call_id"].as_str().unwrap().to_owned();
        assert_eq!(v["tools"][0]["name"], "lookup");

        // Streamed: the call as an output item with its argument deltas.
        let stream = body.replace("\"tool_choice\"", "\"stream\":true,\"tool_choice\"");
        let text = post(&t.url("/v1/responses"), &[], &stream).await.text();
        assert!(text.contains("event: response.function_call_arguments.delta\n"), "{text}");
        assert!(text.contains("event: response.function_call_arguments.done\n"), "{text}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        assert!(
            last.starts_with("event: response.completed\n") && last.contains(r#""type":"function_call""#),
            "{last}"
        );

        // The round trip: the call and its output as input items; the mock then answers in text.
        let body = format!(
            r#"{{"model":"{model}","tools":{tools},"input":[{{"role":"user","content":"find it"}},
            {{"type":"function_call","call_id":"{call_id}","name":"lookup","arguments":"{{\"q\":\"mock\"}}"}},
            {{"type":"function_call_output","call_id":"{call_id}","output":"{{\"found\":true}}"}}]}}"#
        );
        let a = post(&t.url("/v1/responses"), &[], &body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.json()["output"][0]["content"][0]["text"], DEFAULT_REPLY, "{model}");
        let sent: serde_json::Value =
            serde_json::from_slice(&mock.stats.requests().pop().unwrap().body).unwrap();
        let sent = sent.to_string();
        assert!(sent.contains("tool_result") || sent.contains("functionResponse"), "{sent}");
    }
}

#[tokio::test]
async fn stateful_features_get_a_400_naming_the_parameter_and_nothing_goes_upstream() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&translated(&mock.url(), "")).await;
    let cases = [
        (r#""previous_response_id":"resp_1""#, "previous_response_id"),
        (r#""store":true"#, "store"),
        (r#""tools":[{"type":"web_search"}]"#, "tools"),
        (r#""tools":[{"type":"file_search","vector_store_ids":["vs_1"]}]"#, "tools"),
        (r#""conversation":"conv_1""#, "conversation"),
        (r#""background":true"#, "background"),
    ];
    for model in MODELS {
        for (field, param) in cases {
            for stream in ["false", "true"] {
                let body = format!(r#"{{"model":"{model}","input":"hi","stream":{stream},{field}}}"#);
                let a = post(&t.url("/v1/responses"), &[], &body).await;
                assert_eq!(
                    (a.status.as_u16(), a.code().as_str()),
                    (400, "untranslatable_request"),
                    "{body}: {}",
                    a.text()
                );
                let v = a.json();
                assert_eq!(v["error"]["param"], param, "{v}");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(message.contains("OpenAI"), "{message}");
            }
        }
    }
    assert_eq!(mock.stats.requests().len(), 0, "nothing went upstream");
}

#[tokio::test]
async fn a_translated_stream_cut_before_its_first_output_fails_over_invisibly() {
    // The mock's Anthropic stream: message_start, an empty text block, a ping, then a delta per
    // word. Cut after the ping, nothing has committed: tier1 switches to the next target.
    // Spaced out, so that the head and the first events reach tier1 before the cut.
    let before =
        Behavior { abort_after: Some(2), chunk_interval: Duration::from_millis(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("cut-before", before)).await.unwrap();
    let routes = r#"
[[routes]]
name = "early"
retry = { attempts = 1 }
targets = [{ provider = "claude", model = "cut-before" }, { provider = "gem", model = "gemini-2.5-flash" }]
"#;
    let t = Tier1::start(&translated(&mock.url(), routes)).await;
    let a = post(&t.url("/v1/responses"), &[], r#"{"model":"early","input":"hi","stream":true}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!((a.header("x-tier1-provider"), a.header("x-tier1-attempts")), (Some("gem"), Some("2")));
    let text = a.text();
    // One answer, the second target's, numbered from 0: nothing of the first attempt.
    check_text_stream(&text);
    assert!(!text.contains("cut-before"), "{text}");
    let paths: Vec<String> = mock.stats.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/messages", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"]);
    assert_eq!(mock.stats.calls_for("cut-before"), 1);
}
