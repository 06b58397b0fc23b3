//! Broken providers: hostile `Retry-After` values, repeated `Transfer-Encoding` lines, content
//! codings nobody asked for, and made-up direct models that must not share one rest.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{Tier1, chat, chat_stream, config, post};

/// A raw provider on 127.0.0.1:0: answers each request with the bytes `answer` picks from the
/// request's text (head and body), keeping the connection open unless `close` is set. Counts
/// connections and keeps every request's text.
struct Raw {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Raw {
    async fn start(close: bool, answer: fn(&str) -> String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 8192];
                        let n =
                            match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
                                Ok(Ok(n)) if n > 0 => n,
                                _ => return,
                            };
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let text = String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
                        buf.drain(..end + 4 + len);
                        let reply = answer(&text);
                        seen.lock().unwrap().push(text);
                        if sock.write_all(reply.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, connections, requests }
    }

    /// Requests whose text contains `needle`.
    fn calls(&self, needle: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| r.contains(needle)).count()
    }
}

const JSON: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

fn chunked(body: &str) -> String {
    format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
}

/// Fails before the fix: `Retry-After: 1e20` panicked in `Duration::from_secs_f64` on the
/// request's task, so the client's connection was dropped with no answer.
#[tokio::test]
async fn a_huge_retry_after_is_clamped_and_answered() {
    let up = Raw::start(false, |_| {
        "HTTP/1.1 503 Busy\r\nretry-after: 1e20\r\ncontent-length: 2\r\n\r\n{}".to_owned()
    })
    .await;
    let t = Tier1::start(&config(&up.url, "")).await;
    for _ in 0..2 {
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
        // 429 overloaded, then 503 resting: both with the clamped Retry-After.
        assert!(matches!(a.status.as_u16(), 429 | 503), "{} {}", a.status, a.text());
        let secs: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&secs), "Retry-After {secs}: over resilience.cooldown.max");
    }
    assert_eq!(up.calls("POST"), 1, "the target rests (clamped) after the first 503");
}

/// Fails before the fix: only the first Transfer-Encoding line was read, so `gzip` then
/// `chunked` was framed to the close and the chunk framing reached the client inside a 200; and
/// Transfer-Encoding with Content-Length was refused instead of TE winning.
#[tokio::test]
async fn every_transfer_encoding_line_counts() {
    let up = Raw::start(true, |_| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n{}",
            chunked(JSON)
        )
    })
    .await;
    let t = Tier1::start(&config(&up.url, "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 502, "a coding tier1 did not ask for is a broken answer: {}", a.text());

    // Transfer-Encoding beats Content-Length (RFC 9112 §6.3), and that connection is not reused.
    let up = Raw::start(false, |_| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n{}",
            chunked(JSON)
        )
    })
    .await;
    let t = Tier1::start(&config(&up.url, "")).await;
    for _ in 0..2 {
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.text(), JSON);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "a TE + CL connection went back to the pool");
}

/// Fails before the fix: tier1 asked for no encoding in particular, and dropped
/// `Content-Encoding` while relaying the encoded bytes (a body the client cannot decode); an
/// encoded stream was relayed as if it were events.
#[tokio::test]
async fn content_codings_go_on_with_an_untouched_body_or_are_refused() {
    let up = Raw::start(false, |req| {
        let body = "\u{1f}\u{8b}not really gzip";
        if req.contains("\"stream\":true") || req.contains("/v1/messages") {
            // A stream or an answer to translate: tier1 must read it.
            let ty = if req.contains("\"stream\":true") { "text/event-stream" } else { "application/json" };
            format!("HTTP/1.1 200 OK\r\ncontent-type: {ty}\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        } else {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    })
    .await;
    let extra = format!(
        r#"
[providers.anth]
kind = "anthropic"
base_url = "{}"
request_timeout = "2s"
[[providers.anth.keys]]
name = "k"
secret = "env:UPSTREAM_KEY"
"#,
        up.url.trim_end_matches("/v1")
    );
    let t = Tier1::start(&config(&up.url, &extra)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-encoding"), Some("gzip"), "the coding goes on with the body");
    assert_eq!(&a.body[..], "\u{1f}\u{8b}not really gzip".as_bytes(), "byte for byte");
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("smart")).await;
    assert_eq!(a.status, 502, "an encoded stream: {}", a.text());
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("anth/claude-x")).await;
    assert_eq!(a.status, 502, "an encoded answer to translate: {}", a.text());
    let requests = up.requests.lock().unwrap().clone();
    assert!(requests.len() >= 3);
    for r in &requests {
        assert!(r.to_lowercase().contains("\r\naccept-encoding: identity\r\n"), "{r}");
    }
}

/// Fails before the fix: every made-up direct model of a provider shared one state, so one
/// 503 with `Retry-After` on `up/made-up-a` rested `up/made-up-b` (answered 503 without calling
/// the provider).
#[tokio::test]
async fn made_up_direct_models_rest_on_their_own_within_a_bound() {
    let up = Raw::start(false, |req| {
        if req.contains("\"model\":\"made-up-b\"") {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{JSON}",
                JSON.len()
            )
        } else {
            "HTTP/1.1 503 Busy\r\nretry-after: 30\r\ncontent-length: 2\r\n\r\n{}".to_owned()
        }
    })
    .await;
    let t = Tier1::start(&config(&up.url, "")).await;
    let url = t.url("/v1/chat/completions");
    assert_eq!(post(&url, &[], &chat("up/made-up-a")).await.status, 429);
    let a = post(&url, &[], &chat("up/made-up-b")).await;
    assert_eq!(a.status, 200, "made-up-b rests with made-up-a: {}", a.text());
    assert_eq!(up.calls("\"model\":\"made-up-b\""), 1);
    // Resting: a 429 to come back to (never a 5xx, which would rest a front's sidecar).
    assert_eq!(post(&url, &[], &chat("up/made-up-a")).await.status, 429, "resting");
    assert_eq!(up.calls("\"model\":\"made-up-a\""), 1, "made-up-a rests");

    // Names past the bound, all resting, share the provider's one direct state: the map stops
    // growing, so the next new name finds the shared state resting and the provider is not called.
    let n = tier1::testing::resilience::DIRECT_MODELS;
    for i in 0..n + 1 {
        post(&url, &[], &chat(&format!("up/m{i}"))).await;
    }
    let before = up.requests.lock().unwrap().len();
    let a = post(&url, &[], &chat("up/one-more")).await;
    assert_eq!(a.status, 429, "resting");
    assert_eq!(up.requests.lock().unwrap().len(), before, "a name past the bound got a state of its own");
    // What a state still says is kept past the bound: made-up-a rests on.
    assert_eq!(post(&url, &[], &chat("up/made-up-a")).await.status, 429);
    assert_eq!(up.calls("\"model\":\"made-up-a\""), 1);
}
