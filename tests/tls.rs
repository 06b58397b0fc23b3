//! Inbound TLS and mTLS on the main listener, certificate rotation without a restart, an upstream
//! that requires tier1's client certificate, and the listener's header and HTTP/2 limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls")).join(name)
}

fn cert_der(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixture(name)).unwrap()
}

/// A tier1 whose main listener serves TLS from `cert`/`key` (paths), optionally requiring client
/// certificates signed by the test CA, with an in-process mock provider.
fn tls_config(cert: &std::path::Path, key: &std::path::Path, mtls: bool, extra_server: &str) -> String {
    let client_ca = if mtls { format!("client_ca = {:?}", fixture("ca.pem")) } else { String::new() };
    format!(
        r#"
[server]
header_timeout = "2s"
{extra_server}
[server.tls]
cert = {cert:?}
key = {key:?}
reload_interval = "50ms"
{client_ca}

[providers.mock]
kind = "mock"
"#
    )
}

/// Connects over TLS trusting the test CA, offering `alpn`, presenting `client` (cert, key) if set.
async fn dial(
    addr: std::net::SocketAddr,
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der("ca.pem")).unwrap();
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert_der(cert)], PrivateKeyDer::from_pem_file(fixture(key)).unwrap())
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One chat request over an established TLS stream, HTTP/1.1 or HTTP/2 as ALPN chose.
async fn chat_over(tls: TlsStream<TcpStream>) -> Result<(http::Version, StatusCode, String), String> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = Request::post("/v1/chat/completions")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat("mock/gpt"))))
        .unwrap();
    let res = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await
    }
    .map_err(|e| e.to_string())?;
    let (version, status) = (res.version(), res.status());
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((version, status, String::from_utf8_lossy(&body).into_owned()))
}

/// Connect and send one request; any failure (handshake or the first read, where TLS 1.3 reports
/// a refused client certificate) is an `Err`.
async fn try_chat(addr: std::net::SocketAddr, client: Option<(&str, &str)>) -> Result<StatusCode, String> {
    let tls = dial(addr, client, &[b"http/1.1"]).await.map_err(|e| e.to_string())?;
    chat_over(tls).await.map(|(_, status, _)| status)
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let tls = dial(addr, None, &[b"http/1.1"]).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let res = send
        .send_request(
            Request::get("/metrics").header("host", "localhost").body(Full::new(Bytes::new())).unwrap(),
        )
        .await
        .unwrap();
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn tls_listener_serves_http1_and_h2_by_alpn_and_refuses_plain_http() {
    let t =
        Tier1::start(&tls_config(&fixture("server-a.pem"), &fixture("server-a-key.pem"), false, "")).await;

    let tls = dial(t.addr, None, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, status, body) = chat_over(tls).await.unwrap();
    assert_eq!((version, status), (http::Version::HTTP_2, StatusCode::OK), "{body}");
    assert!(body.contains("chat.completion"), "{body}");

    let tls = dial(t.addr, None, &[b"http/1.1"]).await.unwrap();
    let (version, status, _) = chat_over(tls).await.unwrap();
    assert_eq!((version, status), (http::Version::HTTP_11, StatusCode::OK));

    // A plain HTTP request on the TLS port gets no HTTP answer, and counts as a failed handshake.
    let mut plain = TcpStream::connect(t.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await.unwrap();
    assert!(!buf.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&buf));
    let m = metrics_text(t.addr).await;
    assert_eq!(metric(&m, "tier1_tls_handshake_failures_total"), Some(1.0), "{m}");
}

#[tokio::test]
async fn mtls_accepts_only_clients_signed_by_the_client_ca() {
    let t = Tier1::start(&tls_config(&fixture("server-a.pem"), &fixture("server-a-key.pem"), true, "")).await;
    assert_eq!(try_chat(t.addr, Some(("client.pem", "client-key.pem"))).await, Ok(StatusCode::OK));
    assert!(try_chat(t.addr, None).await.is_err(), "a client without a certificate is refused");
    assert!(
        try_chat(t.addr, Some(("client-other.pem", "client-other-key.pem"))).await.is_err(),
        "a certificate from another CA is refused"
    );
}

#[tokio::test]
async fn rotated_certificate_is_served_without_a_restart_and_open_connections_survive() {
    let dir = TempDir::new("tls-rotate");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::copy(fixture("server-a.pem"), &cert).unwrap();
    std::fs::copy(fixture("server-a-key.pem"), &key).unwrap();
    let t = Tier1::start(&tls_config(&cert, &key, false, "")).await;

    let old = dial(t.addr, None, &[b"http/1.1"]).await.unwrap();
    assert_eq!(old.get_ref().1.peer_certificates().unwrap()[0], cert_der("server-a.pem"));
    let (mut old_send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old)).await.unwrap();
    tokio::spawn(conn);

    // Rotate as cert-manager does: both files replaced by renames.
    dir.write_atomic("key.pem", &std::fs::read_to_string(fixture("server-b-key.pem")).unwrap());
    dir.write_atomic("cert.pem", &std::fs::read_to_string(fixture("server-b.pem")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = dial(t.addr, None, &[b"http/1.1"]).await;
        if let Ok(tls) = tls
            && tls.get_ref().1.peer_certificates().unwrap()[0] == cert_der("server-b.pem")
        {
            assert_eq!(chat_over(tls).await.unwrap().1, StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "the rotated certificate was never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection opened before the rotation keeps working.
    let res = old_send
        .send_request(
            Request::post("/v1/chat/completions")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(chat("mock/gpt"))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let m = metrics_text(t.addr).await;
    assert!(metric(&m, "tier1_tls_reloads_total{result=\"ok\"}").unwrap() >= 1.0, "{m}");
}

#[tokio::test]
async fn upstream_requiring_a_client_certificate_gets_the_configured_one() {
    // The upstream is another tier1 with mTLS on: it only answers the test CA's clients.
    let upstream =
        Tier1::start(&tls_config(&fixture("server-a.pem"), &fixture("server-a-key.pem"), true, "")).await;
    let base = format!("https://localhost:{}/v1", upstream.addr.port());
    let provider = |client: &str| {
        format!(
            r#"
[providers.edge]
kind = "openai"
base_url = "{base}"
ca_file = {ca:?}
request_timeout = "5s"
{client}
"#,
            ca = fixture("ca.pem")
        )
    };
    let with_cert = provider(&format!(
        "client_cert = {:?}\nclient_key = {:?}",
        fixture("client.pem"),
        fixture("client-key.pem")
    ));
    let t = Tier1::start(&with_cert).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("edge/mock/gpt")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("chat.completion"), "{}", a.text());

    let t = Tier1::start(&provider("")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("edge/mock/gpt")).await;
    assert!(a.status.is_server_error(), "without the client certificate the upstream refuses: {}", a.text());
}

#[test]
fn tls_config_problems_are_reported_with_their_key_path() {
    let parse = |toml: &str| {
        tier1::testing::config::parse(toml, tier1::testing::config::Format::Toml, &env())
            .unwrap_err()
            .to_string()
    };
    let e = parse("[server.tls]\ncert = \"x.pem\"\n");
    assert!(e.contains("server.tls.key") && e.contains("required"), "{e}");
    let e = parse(&format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n",
        fixture("server-a.pem"),
        fixture("server-b-key.pem")
    ));
    assert!(e.contains("server.tls"), "{e}");
    let e = parse(&format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"https://x\"\nclient_cert = {:?}\n",
        fixture("client.pem")
    ));
    assert!(e.contains("providers.p.client_cert"), "{e}");
    let e = parse("[server]\nmax_header_bytes = 100\n");
    assert!(e.contains("server.max_header_bytes"), "{e}");
}

#[tokio::test]
async fn header_count_and_size_limits_answer_431() {
    let t = Tier1::start(
        "[server]\nmax_headers = 20\nmax_header_bytes = 8192\n[providers.mock]\nkind = \"mock\"\n",
    )
    .await;
    let ok: Vec<(String, String)> = (0..10).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = ok.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(post(&t.url("/v1/chat/completions"), &refs, &chat("mock/gpt")).await.status, 200);

    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(raw_status(&t, &refs).await, 431);

    let big = "v".repeat(10_000);
    assert_eq!(raw_status(&t, &[("x-big", &big)]).await, 431);
}

/// Sends a request by hand (hyper's client would refuse nothing) and returns the status code.
async fn raw_status(t: &Tier1, headers: &[(&str, &str)]) -> u16 {
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let mut req = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

#[tokio::test]
async fn http2_advertises_the_stream_limit_and_idle_keepalive_connections_close() {
    let t = Tier1::start(
        "[server]\nhttp2_max_concurrent_streams = 7\nheader_timeout = \"300ms\"\n[providers.mock]\nkind = \"mock\"\n",
    )
    .await;
    let tcp = TcpStream::connect(t.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS arrive with the first exchange.
    let (res, _) = client.send_request(Request::get(t.url("/health")).body(()).unwrap(), true).unwrap();
    assert_eq!(res.await.unwrap().status(), StatusCode::OK);
    assert_eq!(client.current_max_send_streams(), 7);

    // HTTP/1.1: after an answer, an idle keep-alive connection is closed at the header deadline.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(rest, Ok(0) | Err(_)), "the idle connection was closed");
    assert!(idle.elapsed() >= Duration::from_millis(250), "not before the deadline: {:?}", idle.elapsed());
}
