//! The relay under a hostile client and a broken provider: the request deadline and the stream
//! idle timeout fire whatever the client reads (HTTP/1.1 and HTTP/2), one provider event cannot
//! grow without bound, and no provider key echoed in a successful answer reaches the client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Tier1};
use crate::framing::read_request;

/// What a scripted upstream did: bytes it wrote, and whether tier1 closed on it.
#[derive(Default)]
struct Seen {
    written: AtomicU64,
    closed: AtomicBool,
}

/// An upstream that answers each request with `head`, then `body` repeated `times` times, each
/// write after `gap`; it notes when a write fails (tier1 closed the connection).
async fn scripted(head: String, body: Vec<u8>, times: usize, gap: Duration) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let noted = seen.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (head, body, seen) = (head.clone(), body.clone(), noted.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if !read_request(&mut s, &mut buf).await {
                    return;
                }
                if s.write_all(head.as_bytes()).await.is_err() {
                    seen.closed.store(true, Ordering::SeqCst);
                    return;
                }
                for _ in 0..times {
                    if !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    if s.write_all(&body).await.is_err() {
                        seen.closed.store(true, Ordering::SeqCst);
                        return;
                    }
                    seen.written.fetch_add(body.len() as u64, Ordering::SeqCst);
                }
                let _ = s.flush().await;
                // Hold the connection open: the test decides when it ends.
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (addr, seen)
}

fn config(kind: &str, base: &str, provider_extra: &str) -> String {
    format!(
        r#"
[server]
api_keys = ["env:FRONT_KEY"]
[providers.up]
kind = "{kind}"
base_url = "{base}"
request_timeout = "2s"
{provider_extra}
[[providers.up.keys]]
name = "primary"
secret = "env:UPSTREAM_KEY"
"#
    )
}

async fn inflight(t: &Tier1) -> f64 {
    let m = common::get(&t.url("/metrics")).await;
    common::metric(&m.text(), "tier1_inflight_requests").unwrap_or(-1.0)
}

/// A client whose receive buffer is 4 KiB, that sends `request` and then never reads.
async fn stalled_client(addr: SocketAddr, request: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer front-key-0001\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{request}",
        request.len()
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    s
}

/// Polls `check` every 50 ms until it holds or `limit` passes; the time it took.
async fn until<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_at_the_request_deadline() {
    // 64 MB of JSON answer, offered as fast as the socket takes it.
    let chunk = vec![b' '; 1 << 20];
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", 64 << 20);
    let (addr, seen) = scripted(head, chunk, 64, Duration::ZERO).await;
    let t = Tier1::start(&config("openai", &format!("http://{addr}/v1"), "")).await;
    let _client = stalled_client(t.addr, &common::chat("up/gpt-4o")).await;
    assert!(
        until(Duration::from_secs(2), async || inflight(&t).await == 1.0).await.is_some(),
        "the request is in flight"
    );
    // request_timeout is 2 s: everything is released shortly after, while the client still
    // holds its socket open without reading.
    let took = until(Duration::from_secs(6), async || {
        inflight(&t).await == 0.0 && seen.closed.load(Ordering::SeqCst)
    })
    .await;
    assert!(
        took.is_some(),
        "in flight {} upstream closed {}",
        inflight(&t).await,
        seen.closed.load(Ordering::SeqCst)
    );
    assert!(seen.written.load(Ordering::SeqCst) < 64 << 20, "the upstream could not send it all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_read_is_cut_at_its_idle_timeout() {
    let event = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "x".repeat(16_000)
    );
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_owned();
    let chunk = format!("{:x}\r\n{event}\r\n", event.len()).into_bytes();
    // 16 MB/s: the socket buffers between tier1 and the client fill within a second.
    let (addr, seen) = scripted(head, chunk, 20_000, Duration::from_millis(1)).await;
    // A long request deadline: only the idle timeout can end it.
    let extra = "idle_timeout = \"1s\"\n";
    let cfg = config("openai", &format!("http://{addr}/v1"), extra)
        .replace("request_timeout = \"2s\"", "request_timeout = \"60s\"");
    let t = Tier1::start(&cfg).await;
    let _client = stalled_client(t.addr, &common::chat_stream("up/gpt-4o")).await;
    assert!(
        until(Duration::from_secs(2), async || inflight(&t).await == 1.0).await.is_some(),
        "the stream is in flight"
    );
    let took = until(Duration::from_secs(6), async || {
        inflight(&t).await == 0.0 && seen.closed.load(Ordering::SeqCst)
    })
    .await;
    assert!(took.is_some(), "a stream nobody reads holds its slot: in flight {}", inflight(&t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_grants_no_window_is_cut_at_the_request_deadline() {
    let chunk = vec![b' '; 1 << 20];
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", 64 << 20);
    let (addr, seen) = scripted(head, chunk, 64, Duration::ZERO).await;
    let t = Tier1::start(&config("openai", &format!("http://{addr}/v1"), "")).await;
    let tcp = TcpStream::connect(t.addr).await.unwrap();
    let (mut h2, conn) =
        h2::client::Builder::new().initial_window_size(1024).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{}/v1/chat/completions", t.addr))
        .header("authorization", "Bearer front-key-0001")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut send) = h2.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from(common::chat("up/gpt-4o")), true).unwrap();
    // The head comes; the body is never read, so no window is ever given back.
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let took = until(Duration::from_secs(6), async || {
        inflight(&t).await == 0.0 && seen.closed.load(Ordering::SeqCst)
    })
    .await;
    assert!(took.is_some(), "an h2 stream with no window holds its slot: in flight {}", inflight(&t).await);
    drop(resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_huge_provider_event_ends_the_stream_instead_of_filling_memory() {
    // An Anthropic stream (translated for an OpenAI client) whose second event never ends.
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"";
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{start}");
    // Then 200 MB of one event's text, 64 KiB a write.
    let (addr, seen) = scripted(head, vec![b'a'; 64 << 10], 3200, Duration::ZERO).await;
    let extra = "max_event_bytes = 1048576\n";
    let cfg = config("anthropic", &format!("http://{addr}"), extra)
        .replace("request_timeout = \"2s\"", "request_timeout = \"30s\"");
    let t = Tier1::start(&cfg).await;
    let a = common::post(
        &t.url("/v1/chat/completions"),
        &[("authorization", "Bearer front-key-0001")],
        &common::chat_stream("up/claude"),
    )
    .await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(text.contains("\"content\":\"Hi\""), "{text}");
    assert!(text.contains("upstream_event_too_large"), "ends with the in-band error: {text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let closed = until(Duration::from_secs(3), async || seen.closed.load(Ordering::SeqCst)).await;
    assert!(closed.is_some(), "the provider's connection is closed");
    let sent = seen.written.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "tier1 stopped reading after about the cap, not after {sent} bytes");
}

/// The upstream key, as [`common::env`] sets it.
const KEY: &str = "sk-upstream-secret-0001";

/// Answers in `kind`'s format, with the upstream key tier1 sent echoed inside the text; a
/// stream is written in two pieces split inside the key.
async fn echoing(stream: bool, kind: &str) -> SocketAddr {
    let text = format!("your key is {KEY}, thanks");
    let (ct, body) = match (kind, stream) {
        ("openai", false) => (
            "application/json",
            serde_json::json!({"id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})
            .to_string(),
        ),
        ("openai", true) => (
            "text/event-stream",
            format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\ndata: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n"
            ),
        ),
        ("anthropic", false) => (
            "application/json",
            serde_json::json!({"id":"m","type":"message","role":"assistant","model":"claude",
            "content":[{"type":"text","text":text}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":1,"output_tokens":2}})
            .to_string(),
        ),
        _ => (
            "text/event-stream",
            format!(
                "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}}}\n\nevent: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\nevent: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":2}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
            ),
        ),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::new();
                while read_request(&mut s, &mut buf).await {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let cut = body.find(KEY).unwrap() + 7;
                    let _ = s.write_all(&[head.as_bytes(), &body.as_bytes()[..cut]].concat()).await;
                    let _ = s.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = s.write_all(&body.as_bytes()[cut..]).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_in_a_successful_answer_never_reaches_the_client() {
    let messages = |stream: bool| {
        format!(
            r#"{{"model":"up/m","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        )
    };
    for (kind, path, stream) in [
        ("openai", "/v1/chat/completions", false),
        ("openai", "/v1/chat/completions", true),
        ("anthropic", "/v1/chat/completions", false),
        ("anthropic", "/v1/chat/completions", true),
        ("openai", "/v1/messages", false),
        ("openai", "/v1/messages", true),
        ("anthropic", "/v1/messages", true),
    ] {
        let addr = echoing(stream, kind).await;
        let base = if kind == "openai" { format!("http://{addr}/v1") } else { format!("http://{addr}") };
        let t = Tier1::start(&config(kind, &base, "")).await;
        let body = if path == "/v1/messages" {
            messages(stream)
        } else if stream {
            common::chat_stream("up/m")
        } else {
            common::chat("up/m")
        };
        let a = common::post(
            &t.url(path),
            &[("authorization", "Bearer front-key-0001"), ("anthropic-version", "2023-06-01")],
            &body,
        )
        .await;
        let label = format!("{kind} {path} stream={stream}");
        assert_eq!(a.status, 200, "{label}: {}", a.text());
        let text = a.text();
        assert!(
            !text.contains(KEY) && !text.contains("secret-0001"),
            "{label}: the key reached the client: {text}"
        );
        assert!(text.contains("your key is [redacted*************], thanks"), "{label}: {text}");
    }
}
