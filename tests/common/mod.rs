//! Test harness: tier1 in process on `127.0.0.1:0`, a fixed-bytes upstream for byte-exact checks,
//! and small HTTP helpers. No fixed ports, no sleeps to wait for readiness: `run` is handed an
//! already-bound listener, so the port accepts as soon as `start` returns.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
        let config =
            tier1::config::parse(toml, tier1::config::Format::Toml, &env()).expect("valid test config");
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
        let format = tier1::config::Format::from_path(path);
        let config = tier1::config::parse(&text, format, &env()).expect("valid test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener =
            if separate_admin { Some(TcpListener::bind("127.0.0.1:0").await.unwrap()) } else { None };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let source = tier1::reload::Source {
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

/// What the fixed upstream answers.
#[derive(Clone)]
pub struct Fixed {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Body frames, sent one by one with `gap` between them.
    pub chunks: Vec<Bytes>,
    pub gap: Duration,
}

/// An upstream that answers every request with exactly the configured bytes and records what
/// it received.
pub struct FixedUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    _stop: oneshot::Sender<()>,
}

impl FixedUpstream {
    pub async fn start(fixed: Fixed) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let rec = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stopped => return,
                };
                let fixed = fixed.clone();
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let fixed = fixed.clone();
                        let rec = rec.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            rec.lock().unwrap().push((parts.headers, body));
                            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
                            tokio::spawn(async move {
                                for c in fixed.chunks {
                                    if tx.send(c).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(fixed.gap).await;
                                }
                            });
                            let body = ChunkBody(rx);
                            let mut resp = Response::new(body);
                            *resp.status_mut() = StatusCode::from_u16(fixed.status).unwrap();
                            for (k, v) in &fixed.headers {
                                resp.headers_mut().append(*k, v.parse().unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, received, _stop: stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

struct ChunkBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
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

/// A real `redis-server` on a free loopback port, stopped on drop. Fails loudly when the binary
/// is missing (scripts/test.sh installs it): a Redis test never skips silently.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port).await
    }

    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, &[]).await
    }

    /// Starts with extra `redis-server` arguments.
    pub async fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run scripts/test.sh, which installs it");
        let server = Self { port, child: Some(child) };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of an unlabelled metric in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns the time it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A three-node Redis Cluster on loopback (no replicas), for `redis.cluster = true`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let conf = dir.path(&format!("nodes-{port}.conf"));
            let conf = conf.to_str().unwrap().to_owned();
            let d = dir.0.to_str().unwrap().to_owned();
            nodes.push(
                RedisServer::start_with(
                    port,
                    &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--dir", &d],
                )
                .await,
            );
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is not installed: run scripts/test.sh");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // Wait (bounded) until every node agrees the cluster is up.
        for n in &nodes {
            let ok = within(Duration::from_secs(10), || async {
                let info = std::process::Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output();
                info.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            })
            .await;
            assert!(ok.is_some(), "cluster never became ready");
        }
        Self { nodes, _dir: dir }
    }
}

/// A running binary and the address it printed.
pub struct Proc {
    pub child: tokio::process::Child,
    pub addr: String,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts the binary and waits (bounded) for its "listening on http://ADDR" line.
pub async fn spawn_binary(bin: &str, args: &[&str]) -> Proc {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).env_remove("TIER1_PROBE_LISTEN");
    spawn_command(cmd).await
}

/// Starts `cmd` (the binary with its arguments and environment) as [`spawn_binary`] does.
pub async fn spawn_command(mut cmd: tokio::process::Command) -> Proc {
    let mut child = cmd
        .env_remove("TIER1_CONFIG")
        .env_remove("TIER1_LISTEN")
        .env("TIER1_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = tx.send(line);
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.recv().await {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("binary exited before listening");
    })
    .await
    .expect("listening line in time");
    Proc { child, addr, lines }
}

impl Proc {
    /// Waits (bounded) for a log line containing `marker` and returns the word after it.
    pub async fn after(&mut self, marker: &str) -> String {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.lines.recv().await {
                if let Some((_, rest)) = line.split_once(marker) {
                    return rest.split_whitespace().next().unwrap_or_default().to_owned();
                }
            }
            panic!("binary exited before logging {marker:?}");
        })
        .await
        .expect("log line in time")
    }
}

/// Whether `url` answers 200 now (a refused connection is a plain `false`).
pub async fn answers(url: &str) -> bool {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    matches!(tokio::time::timeout(Duration::from_secs(1), client().request(req)).await, Ok(Ok(r)) if r.status() == 200)
}
