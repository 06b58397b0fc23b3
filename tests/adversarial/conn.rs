//! Every connection state on a deadline: version detection, the TLS handshake, the HTTP/1 head,
//! idle keep-alive, idle HTTP/2 (pings answered or not), and the slot each one holds.
//! See the suite's doc in `main.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{Tier1, answers, chat_stream};

/// The header deadline of every test here.
const DEADLINE: Duration = Duration::from_millis(400);
/// A close must not come more than this before its deadline...
const EARLY: Duration = Duration::from_millis(100);
/// ...nor more than this after it (loaded CI machines).
const LATE: Duration = Duration::from_millis(1500);

/// The HTTP/2 client preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// tier1 with `header_timeout = DEADLINE`, `extra` in `[server]`, a quick mock provider `mock`
/// and one, `slow`, whose streams send their first token only after 1.5 s.
fn config(extra: &str) -> String {
    format!(
        r#"
[server]
header_timeout = "{}ms"
{extra}
[providers.mock]
kind = "mock"
[providers.slow]
kind = "mock"
[providers.slow.mock]
ttft = "1500ms"
reply = "slow answer"
"#,
        DEADLINE.as_millis()
    )
}

/// Reads (discarding whatever arrives) until the server closes; how long after `since` it did.
/// Panics if the socket is still open `DEADLINE + LATE` after `since`.
async fn closed_after(what: &str, s: &mut (impl AsyncRead + Unpin), since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(since + DEADLINE + LATE, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open {:?} after the start", since.elapsed()),
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Asserts a close came at the header deadline (measured from `since`), not well before it.
fn at_deadline(what: &str, took: Duration) {
    assert!(took + EARLY >= DEADLINE, "{what}: closed too early, after {took:?}");
}

/// A plain socket that sends `bytes`, then nothing: closed at the header deadline.
async fn sends_then_silent(bytes: &[u8]) {
    let t = Tier1::start(&config("")).await;
    let since = Instant::now();
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let what = format!("after {:?}", String::from_utf8_lossy(bytes));
    let took = closed_after(&what, &mut s, since).await;
    at_deadline(&what, took);
}

#[tokio::test]
async fn a_silent_socket_is_closed_at_the_header_deadline() {
    sends_then_silent(b"").await;
}

#[tokio::test]
async fn one_byte_p_is_closed_at_the_header_deadline() {
    // `P` could start `POST` or the HTTP/2 preface: the version detection waits for more.
    sends_then_silent(b"P").await;
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed_at_the_header_deadline() {
    sends_then_silent(&PREFACE[..23]).await;
}

#[tokio::test]
async fn a_partial_http1_head_is_closed_at_the_header_deadline() {
    sends_then_silent(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le").await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_deadline() {
    let t = Tier1::start(&config("")).await;
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    let took = closed_after("idle keep-alive", &mut s, Instant::now()).await;
    at_deadline("idle keep-alive", took);
}

/// An HTTP/2 client connection (the `h2` crate answers the server's pings by itself) that also
/// pings the server every 50 ms; returns the request handle and when the connection ended.
async fn h2_pinging(
    addr: std::net::SocketAddr,
) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = conn.ping_pong().unwrap();
    tokio::spawn(async move {
        while pings.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let done = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, done)
}

/// Waits (bounded) for an HTTP/2 connection's task to end; how long after `since`.
async fn h2_closed_after(done: tokio::task::JoinHandle<()>, since: Instant, limit: Duration) -> Duration {
    tokio::time::timeout_at(since + limit, done).await.expect("the HTTP/2 connection is still open").unwrap();
    since.elapsed()
}

#[tokio::test]
async fn idle_http2_connections_close_even_when_they_answer_pings_but_an_open_stream_stays() {
    // http2_idle_timeout unset: it defaults to header_timeout (the HTTP/1 keep-alive idle limit).
    let t = Tier1::start(&config("")).await;

    // A: the preface and SETTINGS, pings, never a request: closed at the header deadline.
    let since_a = Instant::now();
    let (_a, a_done) = h2_pinging(t.addr).await;

    // B: one request, then pings only: closed an idle timeout after its stream ended.
    let (b, b_done) = h2_pinging(t.addr).await;
    let mut b = b.ready().await.unwrap();
    let (res, _) = b.send_request(Request::get("http://x/health").body(()).unwrap(), true).unwrap();
    let mut res = res.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    while res.body_mut().data().await.is_some() {}
    let since_b = Instant::now();

    // C: a stream whose first token comes after 1.5 s (well past the idle timeout), then pings.
    let (c, c_done) = h2_pinging(t.addr).await;
    let mut c = c.ready().await.unwrap();
    let req = Request::post("http://x/v1/chat/completions").header("content-type", "application/json");
    let (res, mut body) = c.send_request(req.body(()).unwrap(), false).unwrap();
    body.send_data(chat_stream("slow/m").into(), true).unwrap();
    let c_started = Instant::now();

    let took = h2_closed_after(a_done, since_a, DEADLINE + LATE).await;
    at_deadline("HTTP/2 without a request", took);
    let took = h2_closed_after(b_done, since_b, DEADLINE + LATE).await;
    at_deadline("idle HTTP/2 after a request", took);

    let mut res = res.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut text = Vec::new();
    while let Some(chunk) = res.body_mut().data().await {
        let chunk = chunk.expect("the open stream was not cut");
        let _ = res.body_mut().flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(c_started.elapsed() >= Duration::from_millis(1400), "the slow stream was slow");
    assert!(text.contains("slow") && text.contains("[DONE]"), "the whole stream arrived: {text}");
    // Once its stream has ended, C is idle too.
    let since_c = Instant::now();
    let took = h2_closed_after(c_done, since_c, DEADLINE + LATE).await;
    at_deadline("HTTP/2 idle after a long stream", took);
}

#[tokio::test]
async fn http2_idle_timeout_is_its_own_key() {
    let t = Tier1::start(&config("http2_idle_timeout = \"1200ms\"")).await;
    let (b, b_done) = h2_pinging(t.addr).await;
    let mut b = b.ready().await.unwrap();
    let (res, _) = b.send_request(Request::get("http://x/health").body(()).unwrap(), true).unwrap();
    let mut res = res.await.unwrap();
    while res.body_mut().data().await.is_some() {}
    let since = Instant::now();
    let took = h2_closed_after(b_done, since, Duration::from_millis(1200) + LATE).await;
    assert!(took >= Duration::from_millis(1100), "closed before the HTTP/2 idle timeout: {took:?}");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls")).join(name)
}

fn tls_config() -> String {
    let tls = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n",
        fixture("server-a.pem"),
        fixture("server-a-key.pem")
    );
    config("").replacen("[providers.mock]", &format!("{tls}[providers.mock]"), 1)
}

async fn tls_dial(addr: std::net::SocketAddr, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_handshakes_and_silence_after_them_are_closed_at_the_header_deadline() {
    let t = Tier1::start(&tls_config()).await;
    // The handshake itself: nothing, or the first bytes of a ClientHello record.
    for hello in [&b""[..], &[0x16, 0x03, 0x01, 0x00]] {
        let since = Instant::now();
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        s.write_all(hello).await.unwrap();
        let what = format!("TLS handshake after {hello:?}");
        at_deadline(&what, closed_after(&what, &mut s, since).await);
    }
    // After a completed handshake: nothing, `P`, 23 bytes of the preface, under either ALPN.
    for (alpn, bytes) in
        [(&b"http/1.1"[..], &b""[..]), (b"http/1.1", b"P"), (b"h2", b""), (b"h2", &PREFACE[..23])]
    {
        let since = Instant::now();
        let mut s = tls_dial(t.addr, alpn).await;
        s.write_all(bytes).await.unwrap();
        s.flush().await.unwrap();
        let what = format!("TLS {} then {bytes:?}", String::from_utf8_lossy(alpn));
        at_deadline(&what, closed_after(&what, &mut s, since).await);
    }
}

#[tokio::test]
async fn slots_held_by_silent_sockets_are_released_at_the_deadline() {
    let t = Tier1::start(&config("max_connections = 2")).await;
    let since = Instant::now();
    let mut silent = [TcpStream::connect(t.addr).await.unwrap(), TcpStream::connect(t.addr).await.unwrap()];
    // Both slots are held: a real client waits in the backlog...
    let url = t.url("/health");
    let served = tokio::spawn(async move {
        while !answers(&url).await {}
        Instant::now()
    });
    for s in &mut silent {
        let what = "silent socket holding a slot";
        at_deadline(what, closed_after(what, s, since).await);
    }
    // ...and is served once the deadline has freed them.
    let served =
        tokio::time::timeout_at(since + DEADLINE + LATE, served).await.expect("served in time").unwrap();
    at_deadline("the waiting client", served - since);
}
