//! See the suite's doc in `main.rs`. Hostile request input: request-level fallbacks (finding 3),
//! deeply nested JSON (6), and the smaller bounds of finding 10 (a huge `max_tokens`, a hostile
//! `x-correlation-id`).

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::common::{self, Fixed, MockUpstream, Tier1};

const BIN: &str = env!("CARGO_BIN_EXE_tier1");

/// An upstream answering every request with `status` and a small OpenAI-shaped JSON body.
async fn upstream(status: u16) -> MockUpstream {
    let body = if status == 200 {
        r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#
    } else {
        r#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#
    };
    MockUpstream::fixed(Fixed {
        status,
        headers: vec![("content-type", "application/json".into())],
        chunks: vec![Bytes::from_static(body.as_bytes())],
        gap: Duration::ZERO,
    })
    .await
}

/// The harness config with room for large bodies, and `extra` appended.
fn config(up: &MockUpstream, extra: &str) -> String {
    common::config(&up.url(), extra).replace("max_body_bytes = 4096", "max_body_bytes = 16777216")
}

/// A chat body for `model` with `fallbacks` in it.
fn chat_with_fallbacks(model: &str, fallbacks: &[String]) -> String {
    let list = serde_json::to_string(fallbacks).unwrap();
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"fallbacks":{list}}}"#)
}

fn distinct(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("up/m{i}")).collect()
}

/// Finding 3: 100,000 distinct fallbacks cost O(N²) in de-duplication (seconds of a core). Now
/// refused at once with a 400 that names the field, the header and the config key, on the
/// OpenAI ingress and the Anthropic Messages ingress alike, and nothing reaches the upstream.
#[tokio::test]
async fn a_hundred_thousand_fallbacks_are_refused_fast() {
    let up = upstream(200).await;
    let tier1 = Tier1::start(&config(&up, "")).await;
    let many = distinct(100_000);
    let messages = {
        let list = serde_json::to_string(&many).unwrap();
        format!(
            r#"{{"model":"smart","max_tokens":16,"messages":[{{"role":"user","content":"hi"}}],"fallbacks":{list}}}"#
        )
    };
    for (path, body, anthropic) in [
        ("/v1/chat/completions", chat_with_fallbacks("smart", &many), false),
        ("/v1/messages", messages, true),
    ] {
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), common::post(&tier1.url(path), &[], &body))
            .await
            .unwrap_or_else(|_| panic!("{path}: 100k fallbacks not answered within 1 s"));
        let took = started.elapsed();
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {}", answer.text());
        let v = answer.json();
        let message = if anthropic {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        } else {
            assert_eq!(v["error"]["code"], "too_many_fallbacks", "{v}");
            assert_eq!(v["error"]["param"], "fallbacks", "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        };
        for needle in ["fallbacks", "x-tier1-fallbacks", "server.max_request_fallbacks", "8"] {
            assert!(message.contains(needle), "{path}: message {message:?} lacks {needle:?}");
        }
        assert!(took < Duration::from_secs(1), "{path}: took {took:?}");
    }
    assert!(up.stats.requests().is_empty(), "a refused request reached the upstream");
}

/// Finding 3: the cap counts the body's `fallbacks` and the `x-tier1-fallbacks` header together;
/// 8 are accepted, 9 are refused whichever way they come.
#[tokio::test]
async fn the_fallback_cap_counts_body_and_header_together() {
    let up = upstream(200).await;
    let tier1 = Tier1::start(&config(&up, "")).await;
    let url = tier1.url("/v1/chat/completions");
    let eight = distinct(8);
    let ok = common::post(&url, &[], &chat_with_fallbacks("smart", &eight)).await;
    assert_eq!(ok.status, StatusCode::OK, "8 in the body: {}", ok.text());
    let header = eight.join(", ");
    let ok = common::post(&url, &[("x-tier1-fallbacks", &header)], &common::chat("smart")).await;
    assert_eq!(ok.status, StatusCode::OK, "8 in the header: {}", ok.text());

    let nine = distinct(9);
    let header = nine.join(",");
    let split = nine[5..].join(",");
    for (name, headers, body) in [
        ("9 in the body", vec![], chat_with_fallbacks("smart", &nine)),
        ("9 in the header", vec![("x-tier1-fallbacks", header.as_str())], common::chat("smart")),
        ("5 + 4", vec![("x-tier1-fallbacks", split.as_str())], chat_with_fallbacks("smart", &nine[..5])),
    ] {
        let answer = common::post(&url, &headers, &body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: {}", answer.text());
        assert_eq!(answer.code(), "too_many_fallbacks", "{name}");
        assert!(answer.text().contains("9"), "{name}: the count given is named: {}", answer.text());
    }
    assert_eq!(up.stats.requests().len(), 2, "only the two accepted requests reached the upstream");
}

/// Finding 3, the linear de-duplication keeps what the quadratic one did: each provider/model
/// pair is tried once, in first-seen order, whether it comes from the route, the body or the
/// header. The upstream answers 500 and a target is tried once, so each candidate is one request.
#[tokio::test]
async fn duplicate_fallbacks_are_tried_once() {
    let up = upstream(500).await;
    let once = "[resilience]\ndefault_retry = { attempts = 1, backoff = \"10ms\", max_backoff = \"10ms\" }\n";
    let tier1 = Tier1::start(&config(&up, once)).await;
    let body = chat_with_fallbacks("smart", &["up/gpt-4o", "up/m2", "smart", "up/m2"].map(String::from));
    let answer = common::post(
        &tier1.url("/v1/chat/completions"),
        &[("x-tier1-fallbacks", "up/m3, up/m2,up/m3,smart")],
        &body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    let models: Vec<String> = up
        .stats
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["model"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(models, ["gpt-4o", "m2", "m3"]);
}

/// Peak resident memory (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Finding 6: a 14 MB body of nested arrays made simd-json build a tape and index for every
/// bracket (peak RSS 10 → 434 MB), and tier1 then forwarded it. Now refused with 400 before
/// any parse: the binary's peak RSS grows by less than 64 MB beyond the body itself, and
/// nothing reaches the upstream.
#[tokio::test]
async fn deeply_nested_json_is_refused_with_bounded_memory() {
    let up = upstream(200).await;
    let dir = common::TempDir::new("nested");
    let cfg = dir.write_atomic("tier1.toml", &config(&up, "").replace("env:UPSTREAM_KEY", "sk-test"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proc = common::spawn_binary(
        BIN,
        &["--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")],
    )
    .await;
    let pid = proc.child.id().unwrap();
    let url = format!("http://{}/v1/chat/completions", proc.addr);
    // Warm up: one ordinary request, so the baseline includes the request path's own memory.
    let ok = common::post(&url, &[], &common::chat("smart")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let before = peak_rss(pid);

    let depth = 7_000_000;
    let mut body = String::with_capacity(2 * depth + 100);
    body.push_str(r#"{"model":"smart","messages":[{"role":"user","content":"hi"}],"x":"#);
    body.extend(std::iter::repeat_n('[', depth));
    body.extend(std::iter::repeat_n(']', depth));
    body.push('}');
    let answer = tokio::time::timeout(Duration::from_secs(20), common::post(&url, &[], &body))
        .await
        .expect("answered in time");
    let grown = peak_rss(pid).saturating_sub(before);
    eprintln!("peak RSS grew by {} MB for a {} MB body", grown >> 20, body.len() >> 20);
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.code(), "json_too_deep", "{}", answer.text());
    assert!(answer.text().contains("127"), "{}", answer.text());
    let bound = body.len() as u64 + 64 * 1024 * 1024;
    assert!(grown < bound, "peak RSS grew by {} MB for a {} MB body", grown >> 20, body.len() >> 20);
    assert_eq!(up.stats.requests().len(), 1, "the nested body reached the upstream");
}

/// Finding 10: `estimate_tokens` added `max_tokens` unchecked: near `u64::MAX` it overflowed (a
/// panic in debug builds, a wrap to a tiny estimate in release, which skipped the token
/// pre-check). Saturated, the estimate is huge and the tokens-per-minute limit refuses it.
#[tokio::test]
async fn a_huge_max_tokens_is_refused_by_the_token_limit() {
    let up = upstream(200).await;
    let limits = "[[limits]]\nname = \"tpm\"\ntokens = 100000\nper = \"60s\"\n";
    let tier1 = Tier1::start(&config(&up, limits)).await;
    let url = tier1.url("/v1/chat/completions");
    let huge = u64::MAX - 10;
    let body =
        format!(r#"{{"model":"smart","messages":[{{"role":"user","content":"hi"}}],"max_tokens":{huge}}}"#);
    let resp = common::client().request(common::post_req(&url, &[], &body)).await;
    let resp = resp.unwrap_or_else(|e| panic!("no answer for a huge max_tokens (tier1 panicked?): {e}"));
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["x-tier1-limit"], "tpm");
    assert!(up.stats.requests().is_empty(), "a huge max_tokens reached the upstream");
    // An ordinary request still passes: the refused estimate was not charged.
    let ok = common::post(&url, &[], &common::chat("smart")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

/// Finding 10: `x-correlation-id` was forwarded upstream unchecked (up to the header limit, any
/// header bytes). Now it goes upstream only when it is a sane token, as `x-request-id` must be;
/// otherwise it is dropped.
#[tokio::test]
async fn a_hostile_correlation_id_is_not_forwarded() {
    let up = upstream(200).await;
    let tier1 = Tier1::start(&config(&up, "")).await;
    let url = tier1.url("/v1/chat/completions");
    let long = "a".repeat(60 * 1024);
    for (name, value) in [("60 KiB", long.as_str()), ("tab", "abc\tdef"), ("space", "abc def")] {
        let answer = common::post(&url, &[("x-correlation-id", value)], &common::chat("smart")).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text());
        let headers = up.stats.requests().pop().unwrap().headers;
        assert!(
            headers.get("x-correlation-id").is_none(),
            "{name}: forwarded as {:?}",
            headers["x-correlation-id"]
        );
    }
    // A high byte (obs-text), which the client library will not send: through a raw socket.
    let body = common::chat("smart");
    let mut raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\nx-correlation-id: ab",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(b"\xff\x01cd\r\n\r\n");
    raw.extend_from_slice(body.as_bytes());
    let before = up.stats.requests().len();
    let head = raw_exchange(tier1.addr, &raw).await;
    if head.starts_with("HTTP/1.1 200") {
        assert_eq!(up.stats.requests().len(), before + 1);
        let headers = up.stats.requests().pop().unwrap().headers;
        assert!(
            headers.get("x-correlation-id").is_none(),
            "high byte: forwarded as {:?}",
            headers["x-correlation-id"]
        );
    } else {
        assert_eq!(up.stats.requests().len(), before, "refused, and not forwarded: {head}");
    }
    // A sane one is forwarded as is.
    let answer = common::post(&url, &[("x-correlation-id", "corr-123_abc.9")], &common::chat("smart")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let headers = up.stats.requests().pop().unwrap().headers;
    assert_eq!(headers["x-correlation-id"], "corr-123_abc.9");
}

/// Writes `raw`, reads until the peer closes (bounded), returns what came back as text.
async fn raw_exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
