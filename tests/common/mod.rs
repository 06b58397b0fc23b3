//! Test harness, one for every test file: tier1 in process on `127.0.0.1:0`, the one mock
//! upstream ([`upstream`]), the tier1 binary and third-party servers ([`process`], [`redis_server`]),
//! bounded polls ([`wait`]) and small HTTP helpers. No fixed ports, no free-port guesses, no
//! sleeps to wait for readiness: `run` is handed an already-bound listener, so the port accepts
//! as soon as `start` returns; a started binary reports the port it bound.

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

pub mod process;
pub mod redis_server;
pub mod upstream;
pub mod wait;

pub use process::*;
pub use redis_server::*;
pub use upstream::*;
pub use wait::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Secrets the test configs reference through `env:`.
pub fn env() -> HashMap<String, String> {
    [("UPSTREAM_KEY", "sk-upstream-secret-0001"), ("FRONT_KEY", "front-key-0001")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// tier1 running in this process.
pub struct Tier1 {
    pub addr: SocketAddr,
    /// The separate admin listener, when started with one.
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Tier1 {
    /// Starts tier1 with `toml` (secrets from [`env`]).
    pub async fn start(toml: &str) -> Self {
        Self::start_env(toml, &env()).await
    }

    /// Starts tier1 with `toml`, its environment `vars`.
    pub async fn start_env(toml: &str, vars: &HashMap<String, String>) -> Self {
        let config = tier1::testing::config::parse(toml, tier1::testing::config::Format::Toml, vars)
            .expect("valid test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tier1::run(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("tier1 runs");
        });
        Self { addr, admin: None, stop: Some(stop), task: Some(task) }
    }

    /// Starts tier1 from a config file (hot reload on), optionally with a separate admin listener.
    pub async fn start_file(path: &std::path::Path, separate_admin: bool) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let format = tier1::testing::config::Format::from_path(path);
        let config = tier1::testing::config::parse(&text, format, &env()).expect("valid test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener =
            if separate_admin { Some(TcpListener::bind("127.0.0.1:0").await.unwrap()) } else { None };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let source = tier1::Source {
            path: path.to_owned(),
            env: std::sync::Arc::new(env()),
            overrides: Default::default(),
        };
        let options =
            tier1::Options { config, source: Some(source), text, admin_listener, probe_listener: None };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tier1::serve(listener, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("tier1 runs");
        });
        Self { addr, admin, stop: Some(stop), task: Some(task) }
    }

    /// A URL on the admin listener (the main one when there is no separate admin listener).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.unwrap_or(self.addr))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal; returns a handle that resolves when tier1 has drained.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("shut down once")
    }
}

impl Drop for Tier1 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A plain HTTP/1.1 client (no pooling surprises between tests).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new())
}

/// A finished exchange.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OpenAI error code.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends a request and reads the whole answer.
pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let resp = client().request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Answer { status: parts.status, headers: parts.headers, body }
}

/// POSTs JSON with extra headers.
pub async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    send(post_req(url, headers, body)).await
}

pub fn post_req(url: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

/// Starts a streaming request and returns the response with its body unread.
pub async fn post_streaming(url: &str, headers: &[(&str, &str)], body: &str) -> Response<Incoming> {
    client().request(post_req(url, headers, body)).await.expect("request sent")
}

/// Reads the next data frame of a body (skipping trailers).
pub async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        match body.frame().await? {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    return Some(d);
                }
            }
            Err(_) => return None,
        }
    }
}

pub const CHAT: &str = r#"{"model":"MODEL","messages":[{"role":"user","content":"hi"}]}"#;

/// A chat body for `model`.
pub fn chat(model: &str) -> String {
    CHAT.replace("MODEL", model)
}

/// A chat body for `model` with `"stream":true`.
pub fn chat_stream(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":true}}"#)
}

/// A tier1 config with one `openai`-kind provider named `up` at `base_url`, its key from
/// `UPSTREAM_KEY`, and a route `smart` → `up/gpt-4o`. `extra` is appended (more routes...).
pub fn config(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
body_timeout = "500ms"
header_timeout = "500ms"
max_body_bytes = 4096

[providers.up]
kind = "openai"
base_url = "{base_url}"
request_timeout = "2s"
connect_timeout = "500ms"
[[providers.up.keys]]
name = "primary"
secret = "env:UPSTREAM_KEY"

[[routes]]
name = "smart"
models = ["smart", "gpt-4o", "gpt-*"]
targets = [{{ provider = "up", model = "gpt-4o" }}]
{extra}
"#
    )
}

/// A fresh temporary directory for one test (removed on drop).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tier1-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }

    /// Writes `file` atomically (temporary file, then rename), as editors and config tools do.
    pub fn write_atomic(&self, file: &str, text: &str) -> std::path::PathBuf {
        let tmp = self.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        let path = self.0.join(file);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// POSTs with no body.
pub async fn post_empty(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::post(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// GETs with headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// The value of an unlabelled metric in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Whether `url` answers 200 now (a refused connection is a plain `false`).
pub async fn answers(url: &str) -> bool {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    matches!(tokio::time::timeout(Duration::from_secs(1), client().request(req)).await, Ok(Ok(r)) if r.status() == 200)
}
