//! The relay's framing matrix: upstream framing (Content-Length, chunked, close-delimited,
//! HTTP/2 over TLS) × stream or not × native or translated (each kind) × delivery (one write with
//! the head, head then body, byte by byte). The client must get exactly the provider's bytes
//! (native), or the same complete translation whatever the framing and split (translated).
//!
//! It found the silent truncation: a stream sent with a `Content-Length` lost its last ~3.9 KB
//! (the finish chunk, the usage and `[DONE]`) with status 200, because the relay passed on the
//! upstream's remaining length while it sent the held commit prefix first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Tier1};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length,
    Chunked,
    Close,
    H2,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    WithHead,
    HeadThenBody,
    Bytewise,
}

const FRAMINGS: [Framing; 4] = [Framing::Length, Framing::Chunked, Framing::Close, Framing::H2];
const DELIVERIES: [Delivery; 3] = [Delivery::WithHead, Delivery::HeadThenBody, Delivery::Bytewise];

/// The words every answer carries: long enough that a stream passes 4 KB.
fn words() -> Vec<String> {
    (0..60).map(|i| format!("word{i:02} ")).collect()
}

fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    for w in words() {
        s.push_str(&format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    s.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":60,\"total_tokens\":65}}\n\n");
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn openai_json() -> Vec<u8> {
    let text: String = words().concat();
    serde_json::json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65}})
    .to_string()
    .into_bytes()
}

fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for w in words() {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{w}\"}}}}\n\n"
        ));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":60}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn anthropic_json() -> Vec<u8> {
    serde_json::json!({"id": "m1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": words().concat()}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 60}})
    .to_string()
    .into_bytes()
}

fn gemini_stream() -> Vec<u8> {
    let mut s = String::new();
    let ws = words();
    for (i, w) in ws.iter().enumerate() {
        let last = i + 1 == ws.len();
        let finish = if last { ",\"finishReason\":\"STOP\"" } else { "" };
        let usage = if last {
            ",\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":60,\"totalTokenCount\":65}"
        } else {
            ""
        };
        s.push_str(&format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{w}\"}}],\"role\":\"model\"}}{finish}}}]{usage}}}\r\n\r\n"
        ));
    }
    s.into_bytes()
}

/// One row of the matrix's third axis: which ingress, which provider kind, what it answers.
struct Case {
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    request: String,
    sse: bool,
    upstream: Vec<u8>,
    /// Native: the client gets the upstream's bytes exactly.
    native: bool,
}

fn cases() -> Vec<Case> {
    let messages = |stream: bool| {
        format!(
            r#"{{"model":"up/gpt-4o","max_tokens":100,"messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        )
    };
    vec![
        Case {
            name: "openai stream",
            kind: "openai",
            path: "/v1/chat/completions",
            request: common::chat_stream("up/gpt-4o"),
            sse: true,
            upstream: openai_stream(),
            native: true,
        },
        Case {
            name: "openai json",
            kind: "openai",
            path: "/v1/chat/completions",
            request: common::chat("up/gpt-4o"),
            sse: false,
            upstream: openai_json(),
            native: true,
        },
        Case {
            name: "anthropic stream to openai",
            kind: "anthropic",
            path: "/v1/chat/completions",
            request: common::chat_stream("up/claude"),
            sse: true,
            upstream: anthropic_stream(),
            native: false,
        },
        Case {
            name: "anthropic json to openai",
            kind: "anthropic",
            path: "/v1/chat/completions",
            request: common::chat("up/claude"),
            sse: false,
            upstream: anthropic_json(),
            native: false,
        },
        Case {
            name: "gemini stream to openai",
            kind: "gemini",
            path: "/v1/chat/completions",
            request: common::chat_stream("up/gemini-2.5-flash"),
            sse: true,
            upstream: gemini_stream(),
            native: false,
        },
        Case {
            name: "openai stream to messages",
            kind: "openai",
            path: "/v1/messages",
            request: messages(true),
            sse: true,
            upstream: openai_stream(),
            native: false,
        },
        Case {
            name: "openai json to messages",
            kind: "openai",
            path: "/v1/messages",
            request: messages(false),
            sse: false,
            upstream: openai_json(),
            native: false,
        },
        Case {
            name: "anthropic stream native on messages",
            kind: "anthropic",
            path: "/v1/messages",
            request: messages(true).replace("up/gpt-4o", "up/claude"),
            sse: true,
            upstream: anthropic_stream(),
            native: true,
        },
    ]
}

/// Reads one request (head and Content-Length body); `false` when the peer closed.
pub(crate) async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + 4 + len);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The body in chunked encoding, in three uneven chunks.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let cuts = [0, body.len() / 7, body.len() / 2, body.len()];
    for w in cuts.windows(2) {
        let part = &body[w[0]..w[1]];
        if part.is_empty() {
            continue;
        }
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn deliver(s: &mut TcpStream, head: &[u8], body: &[u8], delivery: Delivery) -> std::io::Result<()> {
    match delivery {
        Delivery::WithHead => s.write_all(&[head, body].concat()).await?,
        Delivery::HeadThenBody => {
            s.write_all(head).await?;
            s.flush().await?;
            // Two segments: the relay reads the head alone first.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            s.write_all(body).await?;
        }
        Delivery::Bytewise => {
            for b in [head, body].concat() {
                s.write_all(&[b]).await?;
                s.flush().await?;
            }
        }
    }
    s.flush().await
}

/// An HTTP/1.1 upstream that answers every request with `body` in the given framing and
/// delivery; counts requests.
async fn h1_upstream(
    body: Vec<u8>,
    sse: bool,
    framing: Framing,
    delivery: Delivery,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (body, hits) = (body.clone(), counted.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::new();
                while read_request(&mut s, &mut buf).await {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let ct = if sse { "text/event-stream" } else { "application/json" };
                    let (head, payload) = match framing {
                        Framing::Length => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            ),
                            body.to_vec(),
                        ),
                        Framing::Chunked => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ntransfer-encoding: chunked\r\n\r\n"
                            ),
                            chunked(&body),
                        ),
                        Framing::Close | Framing::H2 => (
                            format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\nconnection: close\r\n\r\n"),
                            body.to_vec(),
                        ),
                    };
                    if deliver(&mut s, head.as_bytes(), &payload, delivery).await.is_err() {
                        return;
                    }
                    if framing == Framing::Close {
                        let _ = s.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// An HTTP/2 upstream over TLS (the test CA's `localhost` certificate) that answers with `body`
/// and a `content-length`, in DATA frames cut per `delivery`.
async fn h2_upstream(body: Vec<u8>, sse: bool, delivery: Delivery) -> (SocketAddr, Arc<AtomicUsize>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let certs =
        CertificateDer::pem_file_iter(dir.join("server-a.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-a-key.pem")).unwrap();
    let mut tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let body = Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (acceptor, body, hits) = (acceptor.clone(), body.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else { return };
                let service = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let frames: Vec<Bytes> = match delivery {
                        Delivery::WithHead => vec![body.clone()],
                        Delivery::HeadThenBody => {
                            let cut = body.len() / 3;
                            vec![body.slice(..cut), body.slice(cut..)]
                        }
                        Delivery::Bytewise => (0..body.len()).map(|i| body.slice(i..i + 1)).collect(),
                    };
                    let stream = futures_stream(frames);
                    let resp = http::Response::builder()
                        .header("content-type", if sse { "text/event-stream" } else { "application/json" })
                        .header("content-length", body.len())
                        .body(stream)
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A body of the given DATA frames.
fn futures_stream(frames: Vec<Bytes>) -> http_body_util::StreamBody<FrameIter> {
    http_body_util::StreamBody::new(FrameIter(frames.into_iter()))
}

struct FrameIter(std::vec::IntoIter<Bytes>);

impl futures_core::Stream for FrameIter {
    type Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn tier1_config(kind: &str, base: &str, h2: bool) -> String {
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let ca = if h2 { format!("ca_file = {:?}\n", ca.display().to_string()) } else { String::new() };
    format!(
        r#"
[server]
api_keys = ["env:FRONT_KEY"]
[providers.up]
kind = "{kind}"
base_url = "{base}"
request_timeout = "10s"
{ca}[[providers.up.keys]]
name = "primary"
secret = "env:UPSTREAM_KEY"
"#
    )
}

/// `"created":N` and `"id":"…"` values zeroed: translations stamp both per request.
fn normalized(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(&tier1::testing::translate::unstamped(out)).into_owned();
    let mut result = String::new();
    let mut rest = s.as_str();
    while let Some(at) = rest.find("\"id\":\"") {
        result.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        let end = rest.find('"').unwrap_or(rest.len());
        result.push_str("ID");
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// The text and completeness of a client answer in OpenAI or Anthropic form.
fn check_complete(case: &Case, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let tail = &text[text.len().saturating_sub(300)..];
    let want: String = words().concat();
    let mut got = String::new();
    if case.sse {
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("bad event {line}: {e}"))?;
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                got.push_str(t);
            }
            if let Some(t) = v["delta"]["text"].as_str() {
                got.push_str(t);
            }
        }
        if case.path == "/v1/messages" {
            if !text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
                return Err(format!("no message_stop at the end: ...{tail}"));
            }
        } else if !text.ends_with("data: [DONE]\n\n") || !text.contains("\"finish_reason\":\"stop\"") {
            return Err(format!("no finish and [DONE] at the end: ...{tail}"));
        }
    } else {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {text}"))?;
        got = v["choices"][0]["message"]["content"]
            .as_str()
            .or_else(|| v["content"][0]["text"].as_str())
            .unwrap_or_default()
            .to_owned();
    }
    if got != want {
        return Err(format!("the answer's text is {got:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_stream_mode_translation_and_split_arrives_byte_for_byte() {
    let mut failures = Vec::new();
    let only = std::env::var("FRAMING_ONLY").unwrap_or_default();
    for case in cases().into_iter().filter(|c| c.name.contains(&only)) {
        let mut baseline: Option<String> = None;
        for framing in FRAMINGS {
            for delivery in DELIVERIES {
                let ((addr, hits), base) = if framing == Framing::H2 {
                    let up = h2_upstream(case.upstream.clone(), case.sse, delivery).await;
                    let base = format!("https://localhost:{}", up.0.port());
                    (up, base)
                } else {
                    let up = h1_upstream(case.upstream.clone(), case.sse, framing, delivery).await;
                    let base = format!("http://{}", up.0);
                    (up, base)
                };
                let base = if case.kind == "openai" { format!("{base}/v1") } else { base };
                let _ = addr;
                let t = Tier1::start(&tier1_config(case.kind, &base, framing == Framing::H2)).await;
                let label = format!("{} / {framing:?} / {delivery:?}", case.name);
                let req = common::post_req(
                    &t.url(case.path),
                    &[("authorization", "Bearer front-key-0001"), ("anthropic-version", "2023-06-01")],
                    &case.request,
                );
                let resp = match common::client().request(req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        failures.push(format!("{label}: no answer: {e:?}"));
                        continue;
                    }
                };
                let (parts, body) = resp.into_parts();
                let body = match http_body_util::BodyExt::collect(body).await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        failures.push(format!("{label}: body failed: {e:?}"));
                        continue;
                    }
                };
                let a = common::Answer { status: parts.status, headers: parts.headers, body };
                if hits.load(Ordering::SeqCst) != 1 {
                    failures.push(format!("{label}: {} upstream calls", hits.load(Ordering::SeqCst)));
                }
                if a.status != 200 {
                    failures.push(format!("{label}: status {} {}", a.status, a.text()));
                    continue;
                }
                if case.sse && a.header("content-length").is_some() {
                    failures.push(format!("{label}: a stream declares a length"));
                }
                if case.native {
                    if a.body[..] != case.upstream[..] {
                        failures.push(format!(
                            "{label}: {} bytes (headers {:?}), the provider sent {}",
                            a.body.len(),
                            a.headers,
                            case.upstream.len()
                        ));
                    }
                    continue;
                }
                if let Err(e) = check_complete(&case, &a.body) {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
                let n = normalized(&a.body);
                match &baseline {
                    None => baseline = Some(n),
                    Some(b) if *b != n => {
                        failures.push(format!("{label}: differs from the first translation"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of the matrix failed:\n{}", failures.len(), failures.join("\n"));
}
