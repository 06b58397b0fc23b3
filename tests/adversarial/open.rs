//! See the suite's doc in `main.rs`. No API or admin surface open by accident: an open config on a
//! non-loopback address is refused at start, by `tier1 check` and by a reload (unless
//! `server.allow_unauthenticated = true`); admin routes without `admin_keys` need a loopback
//! peer, a loopback Host (or `:authority`) and the `x-tier1-admin` header.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, MockUpstream, TempDir, Tier1, chat, get_with, post, post_empty};

fn parse(text: &str) -> Result<tier1::testing::config::Config, tier1::testing::config::ConfigErrors> {
    tier1::testing::config::parse(text, tier1::testing::config::Format::Toml, &common::env())
}

const MOCK: &str = r#"
[providers.m]
kind = "mock"
[[routes]]
name = "demo"
models = ["demo"]
targets = [{ provider = "m", model = "mock-1" }]
"#;

#[test]
fn open_api_or_admin_on_a_non_loopback_listen_is_refused_unless_explicit() {
    // Open API on 0.0.0.0: refused, naming the key.
    let open = format!("[server]\nlisten = \"0.0.0.0:0\"\napi_keys = []\nadmin_keys = [\"adm-1\"]\n{MOCK}");
    let e = parse(&open).expect_err("open API on 0.0.0.0 refused").to_string();
    assert!(e.contains("server.api_keys") && e.contains("0.0.0.0:0"), "{e}");
    // Keyed API, but admin routes without admin_keys on the same non-loopback listener: refused.
    let admin_open = format!("[server]\nlisten = \"[::]:0\"\napi_keys = [\"front-1\"]\n{MOCK}");
    let e = parse(&admin_open).expect_err("open admin on [::] refused").to_string();
    assert!(e.contains("server.admin_keys"), "{e}");
    // An admin listener on loopback keeps the admin surface local: accepted.
    parse(&format!(
        "[server]\nlisten = \"0.0.0.0:0\"\napi_keys = [\"front-1\"]\nadmin_listen = \"127.0.0.1:0\"\n{MOCK}"
    ))
    .expect("keyed API, loopback admin");
    // Loopback without keys (a sidecar): accepted.
    parse(&format!("[server]\nlisten = \"127.0.0.1:0\"\n{MOCK}")).expect("open on loopback");
    // The explicit opt-out: accepted.
    let allowed = format!("[server]\nlisten = \"0.0.0.0:0\"\nallow_unauthenticated = true\n{MOCK}");
    parse(&allowed).expect("allow_unauthenticated accepts an open config");
}

#[test]
fn tier1_check_reports_an_open_config_and_exits_non_zero() {
    let dir = TempDir::new("open-check");
    let path = dir.write_atomic("t.toml", &format!("[server]\nlisten = \"0.0.0.0:8080\"\n{MOCK}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tier1"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tier1 check accepted an open 0.0.0.0 config: {stderr}");
    assert!(stderr.contains("server.api_keys") && stderr.contains("allow_unauthenticated"), "{stderr}");
}

#[tokio::test]
async fn a_reload_to_an_open_config_is_refused_and_the_old_keys_stay() {
    let up = MockUpstream::fixed(common::Fixed {
        status: 200,
        headers: vec![("content-type", "application/json".to_owned())],
        chunks: vec![bytes::Bytes::from_static(b"{\"id\":\"x\",\"choices\":[]}")],
        gap: Duration::ZERO,
    })
    .await;
    let dir = TempDir::new("open-reload");
    let keyed = "listen = \"0.0.0.0:0\"\napi_keys = [\"env:FRONT_KEY\"]\nadmin_keys = [\"adm-key-1\"]\n";
    let base = common::config(&up.url(), "[reload]\npoll_interval = \"0s\"\n");
    let file = |server: &str| base.replacen("[server]\n", &format!("[server]\n{server}"), 1);
    let path = dir.write_atomic("t.toml", &file(keyed));
    let t = Tier1::start_file(&path, false).await;
    let front = [("authorization", "Bearer front-key-0001"), ("content-type", "application/json")];
    assert_eq!(post(&t.url("/v1/chat/completions"), &front, &chat("smart")).await.status, 200);

    dir.write_atomic(
        "t.toml",
        &file("listen = \"0.0.0.0:0\"\napi_keys = []\nadmin_keys = [\"adm-key-1\"]\n"),
    );
    let a = post_empty(&t.url("/admin/reload"), &[("authorization", "Bearer adm-key-1")]).await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert!(a.text().contains("server.api_keys"), "{}", a.text());
    // The old keys are still enforced.
    let json = [("content-type", "application/json")];
    assert_eq!(post(&t.url("/v1/chat/completions"), &json, &chat("smart")).await.status, 401);
    assert_eq!(post(&t.url("/v1/chat/completions"), &front, &chat("smart")).await.status, 200);
}

/// tier1 with no admin keys, on loopback.
async fn keyless() -> Tier1 {
    Tier1::start(&format!("[server]\n{MOCK}")).await
}

/// Sends raw HTTP/1.1 bytes and returns the status code of the answer.
async fn raw_status(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{head}"))
}

#[tokio::test]
async fn admin_without_keys_refuses_a_foreign_host_dns_rebinding() {
    let t = keyless().await;
    let marker = ("x-tier1-admin", "1");
    for path in ["/admin/state", "/admin/config"] {
        let a = get_with(&t.url(path), &[("host", "evil.example"), marker]).await;
        assert_eq!(a.status, 403, "{path} with Host evil.example: {}", a.text());
        // A name that only starts like a loopback one.
        let a = get_with(&t.url(path), &[("host", "127.0.0.1.evil.example:80"), marker]).await;
        assert_eq!(a.status, 403, "{path}");
    }
    let a = post_empty(&t.url("/admin/breakers/reset"), &[("host", "evil.example"), marker]).await;
    assert_eq!(a.status, 403);
    // HTTP/1.1 absolute form: the request target's authority wins over Host.
    let req = "GET http://evil.example/admin/state HTTP/1.1\r\nhost: 127.0.0.1\r\nx-tier1-admin: 1\r\nconnection: close\r\n\r\n";
    assert_eq!(raw_status(t.addr, req).await, 403);
    // HTTP/2: the :authority counts.
    let tcp = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, want) in [("evil.example", 403), ("localhost:1", 200)] {
        let req = http::Request::get(format!("http://{authority}/admin/state"))
            .header("x-tier1-admin", "1")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), want, "h2 :authority {authority}");
    }
}

#[tokio::test]
async fn admin_without_keys_refuses_a_request_without_the_marker_header() {
    let t = keyless().await;
    // curl's own Host (127.0.0.1:port) is loopback; without the marker, a browser could have sent it.
    assert_eq!(get_with(&t.url("/admin/state"), &[]).await.status, 403);
    assert_eq!(get_with(&t.url("/admin/config"), &[]).await.status, 403);
    assert_eq!(post_empty(&t.url("/admin/breakers/reset"), &[]).await.status, 403);
    // A cross-site form POST is a "simple" request: no custom header, a form content type.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(post(&t.url("/admin/breakers/reset"), &form, "a=b").await.status, 403);
    // A loopback proxy in front (it says so in its forwarding headers) is not the operator.
    let proxied = [("x-tier1-admin", "1"), ("x-forwarded-for", "203.0.113.9")];
    assert_eq!(get_with(&t.url("/admin/state"), &proxied).await.status, 403);
    // Health, readiness and metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get_with(&t.url(path), &[("host", "evil.example")]).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn admin_without_keys_answers_loopback_host_with_the_marker() {
    let t = keyless().await;
    let marker = ("x-tier1-admin", "1");
    // As curl -H 'x-tier1-admin: 1' http://127.0.0.1:PORT/... sends it.
    assert_eq!(get_with(&t.url("/admin/state"), &[marker]).await.status, 200);
    for host in ["localhost", "LocalHost:8080", "127.9.8.7:1", "[::1]:8080", "[::1]"] {
        assert_eq!(get_with(&t.url("/admin/config"), &[("host", host), marker]).await.status, 200, "{host}");
    }
    assert_eq!(post_empty(&t.url("/admin/breakers/reset"), &[marker]).await.status, 200);
}

#[tokio::test]
async fn admin_with_keys_refuses_a_bad_key_even_from_loopback_with_the_marker() {
    let t = Tier1::start(&format!("[server]\nadmin_keys = [\"adm-key-2\"]\n{MOCK}")).await;
    let marker = ("x-tier1-admin", "1");
    assert_eq!(get_with(&t.url("/admin/state"), &[marker]).await.status, 401);
    let bad = [marker, ("authorization", "Bearer adm-key-X")];
    assert_eq!(get_with(&t.url("/admin/state"), &bad).await.status, 401);
    assert_eq!(post_empty(&t.url("/admin/breakers/reset"), &bad).await.status, 401);
    // The key alone is enough: a browser cannot forge an Authorization it does not know.
    let good = [("authorization", "Bearer adm-key-2"), ("host", "tier1.internal")];
    assert_eq!(get_with(&t.url("/admin/state"), &good).await.status, 200);
}
