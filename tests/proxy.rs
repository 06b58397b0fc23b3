//! Integration tests over real sockets: client → tier1 → upstream (the fault-injecting mock, or
//! a fixed-bytes upstream for byte-exact checks).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ODD_JSON: &str = "{\"id\":\"x\",  \"object\":\"chat.completion\",\n \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"caf\\u00e9 \\\"q\\\"\"},\"finish_reason\":\"stop\"}] ,\"usage\":{}}";

#[tokio::test]
async fn non_stream_round_trip_is_byte_exact() {
    let up = MockUpstream::fixed(Fixed::json(ODD_JSON)).await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    // `gpt-4o` is listed by the route and sent upstream as `gpt-4o`: nothing to change.
    let sent = "{ \"model\": \"gpt-4o\", \"messages\": [ {\"role\":\"user\",\"content\":\"hi\"} ],  \"temperature\": 0.2 }";
    let a = post(&t.url("/v1/chat/completions"), &[], sent).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), ODD_JSON, "response bytes changed");
    let reqs = up.stats.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, sent.as_bytes(), "request bytes changed");
    assert_eq!(a.header("x-tier1-provider"), Some("up"));
    assert_eq!(a.header("x-tier1-model"), Some("gpt-4o"));
    assert_eq!(a.header("x-tier1-attempts"), Some("1"));
}

#[tokio::test]
async fn stream_round_trip_is_byte_exact_and_chunked_as_it_arrives() {
    let events: Vec<Bytes> = vec![
        Bytes::from_static(b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"),
        Bytes::from_static(b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hel"),
        Bytes::from_static(b"lo\"}}]}\n\n: keep-alive comment\n\n"),
        Bytes::from_static(
            b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n",
        ),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ];
    let up = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: events.clone(),
        gap: Duration::from_millis(30),
    })
    .await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    let resp = post_streaming(&t.url("/v1/chat/completions"), &[], &chat_stream("gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // The role preamble is held until the first content event commits the stream; then both go
    // out at once, before the upstream has sent the rest.
    let first = next_chunk(&mut body).await.unwrap();
    assert_eq!(first, events[..3].concat());
    let mut all = first.to_vec();
    while let Some(c) = next_chunk(&mut body).await {
        all.extend_from_slice(&c);
    }
    assert_eq!(all, events.concat());
}

#[tokio::test]
async fn provider_model_with_slashes_goes_to_that_provider() {
    let up = MockUpstream::fixed(Fixed::json("{}")).await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    let sent = r#"{"model":"up/meta-llama/llama-3.3-70b","messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&t.url("/v1/chat/completions"), &[], sent).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-model"), Some("meta-llama/llama-3.3-70b"));
    let body = &up.stats.requests()[0].body;
    assert_eq!(body, &sent.replace("up/meta-llama", "meta-llama").into_bytes());
}

#[tokio::test]
async fn route_name_and_glob_splice_the_target_model() {
    let up = MockUpstream::fixed(Fixed::json("{}")).await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    for model in ["smart", "gpt-4.1-preview"] {
        let a = post(&t.url("/openai/v1/chat/completions"), &[], &chat(model)).await;
        assert_eq!(a.status, 200, "{model}");
        assert_eq!(a.header("x-tier1-model"), Some("gpt-4o"));
    }
    for r in up.stats.requests() {
        assert_eq!(r.body, chat("gpt-4o").into_bytes());
    }
}

#[tokio::test]
async fn accept_event_stream_without_stream_field_is_served_as_a_stream() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[("accept", "text/event-stream")], &chat("smart")).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().starts_with("text/event-stream"));
    assert!(a.text().ends_with("data: [DONE]\n\n"), "{}", a.text());
    let sent = &mock.stats.requests()[0].body;
    let sent: serde_json::Value = serde_json::from_slice(sent).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["model"], "gpt-4o");
}

#[tokio::test]
async fn mock_stream_through_tier1_ends_with_done_and_reassembles_the_reply() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    assert_eq!(a.status, 200);
    let mut text = String::new();
    let mut done = false;
    for event in a.text().split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert!(done);
    assert_eq!(text, DEFAULT_REPLY);
}

#[tokio::test]
async fn upstream_sees_provider_key_and_ids_but_not_inbound_auth_or_relay_headers() {
    let up = MockUpstream::fixed(Fixed::json("{}")).await;
    let toml = config(&up.url(), "").replace("[server]", "[server]\napi_keys = [\"env:FRONT_KEY\"]");
    let t = Tier1::start(&toml).await;
    let a = post(
        &t.url("/v1/chat/completions"),
        &[
            ("authorization", "Bearer front-key-0001"),
            ("x-request-id", "req-42"),
            ("x-correlation-id", "corr-7"),
            ("x-relay-token-id", "tok-1"),
            ("x-relay-client-ip", "203.0.113.9"),
            ("cookie", "session=abc"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
        ],
        &chat("smart"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-request-id"), Some("req-42"));
    let headers = &up.stats.requests()[0].headers;
    assert_eq!(headers["authorization"], "Bearer sk-upstream-secret-0001");
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-correlation-id"], "corr-7");
    for absent in ["x-relay-token-id", "x-relay-client-ip", "cookie", "x-hop"] {
        assert!(!headers.contains_key(absent), "{absent} was forwarded");
    }
}

#[tokio::test]
async fn hop_by_hop_and_private_upstream_headers_are_not_passed_back() {
    let mut fixed = Fixed::json("{}");
    fixed.headers.extend([
        ("set-cookie", "upstream=1".to_owned()),
        ("openai-organization", "org-secret-name".to_owned()),
        ("x-ratelimit-remaining-requests", "99".to_owned()),
        ("keep-alive", "timeout=5".to_owned()),
    ]);
    let up = MockUpstream::fixed(fixed).await;
    let t = Tier1::start(&config(&up.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200);
    assert!(a.header("set-cookie").is_none());
    assert!(a.header("openai-organization").is_none());
    assert!(a.header("keep-alive").is_none());
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("99"));
    // A request id is generated when the client sent none.
    assert_eq!(a.header("x-request-id").unwrap().len(), 36);
    assert_eq!(up.stats.requests()[0].headers["x-request-id"], a.header("x-request-id").unwrap());
}

#[tokio::test]
async fn bad_input_gets_openai_shaped_errors() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let url = t.url("/v1/chat/completions");
    let cases: [(&str, u16, &str); 8] = [
        ("{not json", 400, "invalid_json"),
        ("[1,2]", 400, "invalid_json"),
        (r#"{"messages":[]}"#, 400, "missing_required_field"),
        (r#"{"model":"smart"}"#, 400, "missing_required_field"),
        (r#"{"model":7,"messages":[]}"#, 400, "invalid_type"),
        (r#"{"model":"smart","messages":"hi"}"#, 400, "invalid_type"),
        (r#"{"model":"smart","messages":[],"stream":"yes"}"#, 400, "invalid_type"),
        (r#"{"model":"no-such-model","messages":[]}"#, 404, "model_not_found"),
    ];
    for (body, status, code) in cases {
        let a = post(&url, &[], body).await;
        assert_eq!(a.status, status, "{body}");
        assert_eq!(a.code(), code, "{body}");
        assert!(a.json()["error"]["message"].is_string());
        assert!(a.json()["error"]["type"].is_string());
    }
    assert_eq!(mock.stats.snapshot().requests, 0, "bad input reached the upstream");

    let a = get(&url).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("POST"));
    assert_eq!(a.code(), "method_not_allowed");
    let a = send(Request::post(t.url("/v1/models")).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(a.status, 405);
    let a = get(&t.url("/v2/nothing")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (404, "unknown_url"));
}

#[tokio::test]
async fn oversized_body_is_refused_without_reading_it() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    // Declared too large: 413 at once, although not a byte of the body was sent.
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // Chunked, growing past the limit (4096 in the test config): 413 too.
    let big =
        format!(r#"{{"model":"smart","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(5000));
    let a = post(&t.url("/v1/chat/completions"), &[], &big).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.code(), "request_too_large");
    assert_eq!(mock.stats.snapshot().requests, 0);
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slow_body_times_out_with_408() {
    let t = Tier1::start(&config("http://127.0.0.1:9/v1", "")).await;
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{\"model\":")
        .await
        .unwrap();
    // body_timeout is 500ms in the test config; the rest never comes.
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let t = Tier1::start(&config("http://127.0.0.1:9/v1", "")).await;
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // header_timeout is 500ms: the connection is closed (hyper sends no response for this).
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "connection still open");
}

#[tokio::test]
async fn auth_on_refuses_without_the_key_and_spares_health_routes() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = config(&mock.url(), "").replace("[server]", "[server]\napi_keys = [\"env:FRONT_KEY\"]");
    let t = Tier1::start(&toml).await;
    let url = t.url("/v1/chat/completions");
    for auth in [None, Some("Bearer wrong"), Some("Basic front-key-0001")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let a = post(&url, &headers, &chat("smart")).await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert_eq!(a.code(), "invalid_api_key");
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    }
    let a = post(&t.url("/v1/embeddings"), &[], r#"{"model":"smart","input":"x"}"#).await;
    assert_eq!(a.status, 401);
    assert_eq!(mock.stats.snapshot().requests, 0);
    let a = post(&url, &[("authorization", "Bearer front-key-0001")], &chat("smart")).await;
    assert_eq!(a.status, 200);
    for path in ["/v1/models", "/openai/v1/models", "/health", "/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&t.url(path)).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn auth_off_is_open() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let a =
        post(&t.url("/v1/chat/completions"), &[("authorization", "Bearer anything")], &chat("smart")).await;
    assert_eq!(a.status, 200);
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Nothing listens there, and nothing can start to while the test holds the port.
    let closed = ClosedPort::new();
    let t = Tier1::start(&config(&format!("http://127.0.0.1:{}/v1", closed.port()), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.code(), "upstream_unreachable");
    // A connect error moves on at once (`retry.on_connect = "next"`, the default): one target,
    // one attempt.
    assert_eq!(a.header("x-tier1-attempts"), Some("1"));
    assert_eq!(a.json()["error"]["attempts"].as_array().unwrap().len(), 1);
    // With `on_connect = "retry"` the target's own tries come first.
    let url = format!("http://127.0.0.1:{}/v1", closed.port());
    let retry = config(&url, "").replace(
        "[[routes]]\nname = \"smart\"",
        "[[routes]]\nname = \"smart\"\nretry = { attempts = 2, on_connect = \"retry\" }",
    );
    assert!(retry.contains("on_connect"), "the test config has a route named smart");
    let t = Tier1::start(&retry).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.header("x-tier1-attempts"), Some("2"));
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let slow = Behavior { latency: Duration::from_secs(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let toml = config(&mock.url(), "").replace("request_timeout = \"2s\"", "request_timeout = \"300ms\"");
    let t = Tier1::start(&toml).await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 504);
    assert_eq!(a.code(), "upstream_timeout");
    // A timeout moves on at once (`retry.on_timeout = "next"`, the default): with one target,
    // one attempt of 300ms, not the mock's 5s.
    assert_eq!(a.header("x-tier1-attempts"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn caller_fault_statuses_pass_through_with_their_body_and_secrets_redacted() {
    for status in [400u16, 404, 409, 413, 422] {
        let body = format!(
            r#"{{"error":{{"message":"bad thing {status}; key sk-upstream-secret-0001 echoed","type":"invalid_request_error","code":"x"}}}}"#
        );
        let mut fixed = Fixed::json(&body);
        fixed.status = status;
        let up = MockUpstream::fixed(fixed).await;
        let t = Tier1::start(&config(&up.url(), "")).await;
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
        assert_eq!(a.status.as_u16(), status);
        assert_eq!(a.text(), body.replace("sk-upstream-secret-0001", "[redacted*************]"));
        assert!(!a.text().contains("sk-upstream"));
    }
}

#[tokio::test]
async fn upstream_auth_failure_is_never_passed_through() {
    for status in [401u16, 403] {
        let mut fixed =
            Fixed::json(r#"{"error":{"message":"Incorrect API key provided: sk-upstream-secret-0001"}}"#);
        fixed.status = status;
        let up = MockUpstream::fixed(fixed).await;
        let t = Tier1::start(&config(&up.url(), "")).await;
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
        assert_eq!(a.status, 502, "{status}");
        assert_eq!(a.code(), "upstream_auth");
        assert!(!a.text().contains("sk-upstream"));
    }
}

#[tokio::test]
async fn upstream_rate_limit_and_server_errors_map_to_429_and_502() {
    let limited = Behavior {
        status: Some(http::StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("3")),
        ..Behavior::default()
    };
    let broken = Behavior { status: Some(http::StatusCode::INTERNAL_SERVER_ERROR), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("limited", limited).model("broken", broken))
        .await
        .unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("up/broken")).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.code(), "upstream_error");
    // The only key is rate limited for longer than max_backoff: no wait, a 429 at once.
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("up/limited")).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("3"));
    assert_eq!(a.code(), "rate_limited");
    // The key now rests for that model (its other models are still tried: a 502 again), so for
    // it nothing can be tried: a 429 with the time it comes back (issue 20: a 5xx would make the
    // front rest the sidecar for every provider; it was a 503).
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("up/broken")).await;
    assert_eq!(a.status, 502);
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("up/limited")).await;
    assert_eq!(a.status, 429);
    assert!(matches!(a.header("retry-after"), Some("3" | "2")), "{:?}", a.header("retry-after"));
    assert_eq!(a.code(), "rate_limited");
}

#[tokio::test]
async fn stream_cut_mid_way_ends_with_an_error_event_and_no_done() {
    let cut =
        Behavior { abort_after: Some(3), chunk_interval: Duration::from_millis(10), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(cut)).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(!text.contains("[DONE]"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "upstream_stream_error");
}

#[tokio::test]
async fn client_disconnect_mid_stream_drops_the_upstream_promptly() {
    let slow = Behavior { chunk_interval: Duration::from_millis(100), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let resp = post_streaming(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    let mut body = resp.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    assert!(next_chunk(&mut body).await.is_some());
    drop(body);
    let snap = mock
        .stats
        .wait_until(Duration::from_millis(500), |s| s.streams_cancelled == 1 && s.connections_closed >= 1)
        .await
        .unwrap_or_else(|s| panic!("upstream still streaming after the client left: {s:?}"));
    assert_eq!(snap.streams_completed, 0);
}

#[tokio::test]
async fn embeddings_round_trip() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let routes = r#"
[[routes]]
name = "embed"
models = ["embed"]
targets = [{ provider = "up", model = "text-embedding-3-small" }]
"#;
    let t = Tier1::start(&config(&mock.url(), routes)).await;
    let a = post(&t.url("/v1/embeddings"), &[], r#"{"model":"embed","input":["a","b"]}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    let sent = &mock.stats.requests()[0];
    assert_eq!(sent.path, "/embeddings");
    assert_eq!(&sent.body[..], br#"{"model":"text-embedding-3-small","input":["a","b"]}"#);
    let a = post(&t.url("/v1/embeddings"), &[], r#"{"model":"embed"}"#).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "missing_required_field"));
}

#[tokio::test]
async fn models_lists_routes_and_provider_pairs() {
    let toml = config("http://127.0.0.1:9/v1", "")
        .replace("kind = \"openai\"", "kind = \"openai\"\nmodels = [\"gpt-4o-mini\"]");
    let t = Tier1::start(&toml).await;
    let a = get(&t.url("/v1/models")).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for want in ["smart", "gpt-4o", "up/gpt-4o", "up/gpt-4o-mini"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert!(!ids.contains(&"gpt-*"), "globs are not model ids");
    assert!(v["data"].as_array().unwrap().iter().all(|m| m["owned_by"] == "up" && m["object"] == "model"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_code_and_status_class() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    post(&t.url("/v1/chat/completions"), &[], &chat("up/gpt-4o")).await;
    post(&t.url("/v1/chat/completions"), &[], &chat("made-up-model-123")).await;
    let a = get(&t.url("/metrics")).await;
    let text = a.text();
    assert!(a.header("content-type").unwrap().starts_with("text/plain"));
    let has = |line: &str| text.lines().any(|l| l == line);
    let requests = |labels: &str| format!("tier1_requests_total{{{labels}}}");
    let ok =
        |route: &str| requests(&format!(r#"code="ok",endpoint="chat",route="{route}",status_class="2xx""#));
    assert!(has(&format!("{} 2", ok("smart"))), "{text}");
    assert!(has(&format!("{} 1", ok("direct"))), "{text}");
    let unknown = requests(r#"code="not_found",endpoint="chat",route="unmatched",status_class="4xx""#);
    assert!(has(&format!("{unknown} 1")), "{text}");
    assert!(
        has(r#"tier1_request_duration_seconds_count{endpoint="chat",route="smart",stream="false"} 2"#),
        "{text}"
    );
    assert!(!text.contains("made-up-model-123"), "client model names must never become labels");
    assert!(has("tier1_inflight_requests 0"), "{text}");
}

#[tokio::test]
async fn in_process_mock_provider_answers_stream_and_non_stream() {
    let toml = r#"
[providers.demo]
kind = "mock"
[providers.demo.mock]
reply = "one two three"

[[routes]]
name = "demo"
targets = [{ provider = "demo", model = "m" }]
"#;
    let t = Tier1::start(toml).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("demo")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["choices"][0]["message"]["content"], "one two three");
    assert_eq!(a.json()["model"], "m");
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("demo")).await;
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(a.text().matches("data: ").count(), 1 + 3 + 1 + 1);
}

#[tokio::test]
async fn shutdown_turns_readyz_off_keeps_accepting_during_the_delay_and_finishes_streams() {
    let slow = Behavior { chunk_interval: Duration::from_millis(50), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let toml = config(&mock.url(), "")
        .replace("[server]", "[server]\nshutdown_delay = \"400ms\"\ndrain_timeout = \"5s\"");
    let mut t = Tier1::start(&toml).await;
    let resp = post_streaming(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    let mut body = resp.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    let done = t.shutdown();
    // Readiness turns off at once (first request after the signal is processed)...
    let ready = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let a = get(&format!("http://{}/readyz", t.addr)).await;
            if a.status == 503 {
                return a;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("readyz turned 503");
    assert_eq!(ready.status, 503);
    // ...while new connections are still served during the lame-duck delay.
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200);
    // The in-flight stream runs to its end.
    let mut rest = Vec::new();
    while let Some(c) = next_chunk(&mut body).await {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    tokio::time::timeout(Duration::from_secs(5), done).await.expect("drained in time").unwrap();
    assert!(tokio::net::TcpStream::connect(t.addr).await.is_err(), "listener still open");
}

/// An HTTPS upstream with the test CA's `localhost` certificate, offering h2 and http/1.1 by ALPN;
/// answers `{}` and records the HTTP version of each request.
async fn tls_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<http::Version>>>) {
    use rustls_pki_types::pem::PemObject;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(format!("{dir}/server-a.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(format!("{dir}/server-a-key.pem")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/v1", listener.local_addr().unwrap().port());
    let versions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = versions.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    seen.lock().unwrap().push(req.version());
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (url, versions)
}

#[tokio::test]
async fn https_upstream_with_extra_ca_negotiates_h2_and_unknown_ca_is_refused() {
    let (url, versions) = tls_upstream().await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
    let trusted = config(&url, "")
        .replace("request_timeout = \"2s\"", &format!("request_timeout = \"2s\"\nca_file = \"{ca}\""));
    let t = Tier1::start(&trusted).await;
    for _ in 0..2 {
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    assert_eq!(*versions.lock().unwrap(), vec![http::Version::HTTP_2; 2]);
    // Without the CA, the certificate is not trusted: the upstream is unreachable, never used.
    let t = Tier1::start(&config(&url, "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (502, "upstream_unreachable"));
    assert_eq!(versions.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn inbound_h2c_prior_knowledge_is_served() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp =
        client.request(post_req(&t.url("/v1/chat/completions"), &[], &chat_stream("smart"))).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn unknown_api_paths_ask_for_the_key_before_saying_not_found() {
    let toml =
        config("http://127.0.0.1:9/v1", "").replace("[server]", "[server]\napi_keys = [\"env:FRONT_KEY\"]");
    let t = Tier1::start(&toml).await;
    for path in ["/v1/files", "/openai/v1/responses", "/anthropic/v1/messages"] {
        assert_eq!(get(&t.url(path)).await.status, 401, "{path}");
    }
    let a = send(
        Request::get(t.url("/v1/files"))
            .header("authorization", "Bearer front-key-0001")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(get(&t.url("/nothing-here")).await.status, 404);
}

#[tokio::test]
async fn endless_request_headers_are_refused_with_431() {
    let t = Tier1::start(&config("http://127.0.0.1:9/v1", "")).await;
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let filler = format!("x-filler: {}\r\n", "a".repeat(1000));
    // Past the 64 KiB head limit tier1 answers 431 and stops reading; the writes may then fail.
    for _ in 0..80 {
        if s.write_all(filler.as_bytes()).await.is_err() {
            break;
        }
    }
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");
}

#[tokio::test]
async fn client_disconnect_before_headers_cancels_the_upstream_request() {
    let slow = Behavior { latency: Duration::from_secs(3), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let t = Tier1::start(&config(&mock.url(), "")).await;
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let body = chat("smart");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    mock.stats.wait_until(Duration::from_secs(2), |s| s.requests == 1).await.unwrap();
    let left = tokio::time::Instant::now();
    drop(s);
    mock.stats
        .wait_until(Duration::from_millis(100), |s| s.connections_closed >= 1)
        .await
        .unwrap_or_else(|s| panic!("upstream request still open 100ms after the client left: {s:?}"));
    assert!(left.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn max_inflight_answers_503_at_once_and_frees_slots_at_the_end_of_streams() {
    let slow = Behavior { chunk_interval: Duration::from_millis(100), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let toml = config(&mock.url(), "").replace("[server]", "[server]\nmax_inflight = 2");
    let t = Tier1::start(&toml).await;
    let url = t.url("/v1/chat/completions");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut body = post_streaming(&url, &[], &chat_stream("smart")).await.into_body();
        assert!(next_chunk(&mut body).await.is_some());
        held.push(body);
    }
    let started = tokio::time::Instant::now();
    let a = post(&url, &[], &chat("smart")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (503, "server_busy"));
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(200), "it queued");
    // Health and metrics are not API traffic: still served.
    assert_eq!(get(&t.url("/healthz")).await.status, 200);
    drop(held);
    mock.stats.wait_until(Duration::from_secs(2), |s| s.streams_cancelled == 2).await.unwrap();
    let served =
        within(Duration::from_secs(2), || async { post(&url, &[], &chat("smart")).await.status == 200 })
            .await;
    assert!(served.is_some(), "slots were not released");
}

#[tokio::test]
async fn max_connections_pauses_accepting_until_a_connection_closes() {
    let toml = config("http://127.0.0.1:9/v1", "")
        .replace("[server]", "[server]\nmax_connections = 2")
        .replace("header_timeout = \"500ms\"", "header_timeout = \"30s\"");
    let t = Tier1::start(&toml).await;
    // Two keep-alive connections, each answered once and then left open.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    // A third connection waits in the backlog: no answer while both are open...
    let third = tokio::spawn({
        let addr = t.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            read_head(&mut s).await
        }
    });
    // Asserting an absence: nothing to poll for, so a window in which a served connection
    // would have had its answer (the scenario's observation, not a wait for readiness).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third connection was served above max_connections");
    // ...and is served as soon as one closes.
    drop(open.pop());
    let head =
        tokio::time::timeout(Duration::from_secs(3), third).await.expect("served after a close").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// Issue 19's silent provider: a primary that never sends its first byte, 3 tries per target.
/// The fallback answers within one `first_byte_timeout` (it took 3 timeouts and their backoffs).
#[tokio::test]
async fn a_silent_provider_is_left_after_one_first_byte_timeout() {
    let silent = Behavior { latency: Duration::from_secs(10), ..Behavior::default() };
    let silent = MockUpstream::start(MockConfig::with_default(silent)).await.unwrap();
    let healthy = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = format!(
        r#"
[providers.silent]
kind = "openai"
base_url = "{}"
first_byte_timeout = "400ms"

[providers.healthy]
kind = "openai"
base_url = "{}"

[[routes]]
name = "smart"
retry = {{ attempts = 3, backoff = "50ms" }}
targets = [{{ provider = "silent", model = "m" }}, {{ provider = "healthy", model = "m" }}]
"#,
        silent.url(),
        healthy.url()
    );
    let t = Tier1::start(&toml).await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-provider"), Some("healthy"));
    assert_eq!(a.header("x-tier1-attempts"), Some("2"));
    assert_eq!(silent.stats.snapshot().requests, 1, "the silent target was tried again");
    // One timeout of 400ms, not three (1.2 s and their backoffs).
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
}

/// Issue 19 item 6: a stream whose events come as these chunks, 20 ms apart (each its own
/// write, so a chunk boundary is a read boundary at tier1).
async fn sse_upstream(chunks: &[&'static str]) -> MockUpstream {
    MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: chunks.iter().map(|c| Bytes::from_static(c.as_bytes())).collect(),
        gap: Duration::from_millis(20),
    })
    .await
}

const ROLE: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const HEL: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
const LO: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n";
const STOP: &str =
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";
const DROPPED_UP: &str = r#"tier1_stream_events_dropped_total{provider="up",reason="invalid_json"}"#;

/// Streams `chat_stream("smart")` through tier1 to `up` and returns the whole client body.
async fn stream_through(up: &MockUpstream) -> (Tier1, Answer) {
    let t = Tier1::start(&config(&up.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    (t, a)
}

#[tokio::test]
async fn a_malformed_event_after_the_commit_is_left_out_and_counted() {
    let up = sse_upstream(&[ROLE, HEL, "data: {\"choices\":[\n\n", LO, STOP, DONE]).await;
    let (t, a) = stream_through(&up).await;
    assert_eq!(a.status, 200);
    // Byte for byte, less exactly the malformed event: the SDKs would give up at it.
    assert_eq!(a.text(), [ROLE, HEL, LO, STOP, DONE].concat());
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, DROPPED_UP), Some(1.0), "{m}");
}

#[tokio::test]
async fn a_malformed_event_split_across_two_reads_is_left_out_whole() {
    // The event's second half shares its chunk with the next good event.
    let head = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"con";
    let tail = "tent\":\"lost\"}}\n\ndata: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n";
    let up = sse_upstream(&[ROLE, HEL, head, tail, STOP, DONE]).await;
    let (t, a) = stream_through(&up).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), [ROLE, HEL, LO, STOP, DONE].concat());
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, DROPPED_UP), Some(1.0), "{m}");
}

#[tokio::test]
async fn a_malformed_event_before_the_commit_fails_the_attempt_and_the_fallback_answers() {
    let broken = sse_upstream(&["data: not json\n\n", HEL, STOP, DONE]).await;
    let healthy = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = format!(
        r#"
[providers.broken]
kind = "openai"
base_url = "{}"

[providers.healthy]
kind = "openai"
base_url = "{}"

[[routes]]
name = "smart"
retry = {{ attempts = 1 }}
targets = [{{ provider = "broken", model = "m" }}, {{ provider = "healthy", model = "m" }}]
"#,
        broken.url(),
        healthy.url()
    );
    let t = Tier1::start(&toml).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-provider"), Some("healthy"));
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("server"));
    assert_eq!((broken.stats.snapshot().requests, healthy.stats.snapshot().requests), (1, 1));
    let text = a.text();
    // Nothing of the broken attempt (its events have `"id":"c"`) reached the client.
    assert!(!text.contains("not json") && !text.contains(r#""id":"c""#), "{text}");
    assert!(text.ends_with(DONE), "{text}");
    // A failed attempt, not a dropped event.
    let m = get(&t.url("/metrics")).await.text();
    let series = r#"tier1_stream_events_dropped_total{provider="broken",reason="invalid_json"}"#;
    assert!(metric(&m, series).is_none_or(|n| n == 0.0), "{m}");
}

/// Issue 19's missing `[DONE]`: a provider that finished its answer but left out the end marker
/// made the client's stream end without one (the front waits for it); tier1 adds it.
#[tokio::test]
async fn a_finished_stream_without_done_gets_one_and_an_unfinished_one_is_a_broken_stream() {
    let up = sse_upstream(&[ROLE, HEL, LO, STOP]).await;
    let (_t, a) = stream_through(&up).await;
    assert_eq!(a.text(), [ROLE, HEL, LO, STOP, DONE].concat());
    // No finish reason and no `[DONE]`: the answer was cut, whatever the connection said.
    let up = sse_upstream(&[ROLE, HEL, LO]).await;
    let (_t, a) = stream_through(&up).await;
    let text = a.text();
    assert!(text.starts_with(&[ROLE, HEL, LO].concat()) && !text.contains("[DONE]"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.contains("upstream_stream_error"), "{text}");
}

/// An in-stream error after the commit is a break: the client gets tier1's own error event (in
/// its format, from one place), never the provider's mixed into the answer, and no `[DONE]`.
#[tokio::test]
async fn an_in_stream_error_after_the_commit_breaks_the_stream() {
    let err = "data: {\"error\":{\"message\":\"overloaded, key sk-upstream-secret\",\"type\":\"overloaded_error\"}}\n\n";
    let up = sse_upstream(&[ROLE, HEL, err, LO, STOP, DONE]).await;
    let (_t, a) = stream_through(&up).await;
    let text = a.text();
    assert!(text.starts_with(&[ROLE, HEL].concat()), "{text}");
    assert!(
        !text.contains("overloaded_error") && !text.contains("[DONE]") && !text.contains("\"lo\""),
        "{text}"
    );
    assert!(text.trim_end().rsplit("\n\n").next().unwrap().contains("upstream_stream_error"), "{text}");
}
