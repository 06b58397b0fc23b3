//! Secret hygiene (issue #11): the real binary with a distinctive value in every place a secret
//! can be configured (provider keys, several per provider, `env:`, `file:` and literal; extra
//! headers; server api_keys and admin_keys; the Redis URL's password), logging JSON at trace
//! level. A broad set of paths is driven (successes, auth failures, upstream errors that echo the
//! key back, 404s, bad JSON, admin routes, reloads good and bad, a Redis outage, /metrics), and
//! no secret may appear in any response header or body or log line, raw, base64 or URL-encoded.
//!
//! Also: no client input picks the upstream host or path. Model names shaped like URLs, unknown
//! providers, fallbacks and Host headers never reach a listener that is not configured, and an
//! Azure deployment named by the client cannot walk out of `/openai/deployments/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{MockConfig, MockUpstream, TempDir};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const FRONT_ENV: &str = "front-SECRET-env-a1b2c3";
const FRONT_LITERAL: &str = "front-SECRET-literal-d4e5f6";
const ADMIN: &str = "admin-SECRET-g7h8i9";
const OPENAI_A: &str = "sk-SECRET-openai-a-j1k2l3";
/// With `+`, `/` and `=`: its URL-encoded form differs from the raw one.
const OPENAI_B_FILE: &str = "sk-SECRET+openai/b=m4n5o6";
const ANTHROPIC: &str = "sk-ant-SECRET-p7q8r9";
const GEMINI_LITERAL: &str = "gm-SECRET-literal-s1t2u3";
const AZURE: &str = "az-SECRET-v4w5x6";
const ECHO_A: &str = "sk-SECRET-echo-a-y7z8a9";
const ECHO_B: &str = "sk-SECRET-echo-b-b1c2d3";
const ORG_HEADER: &str = "org-SECRET-header-e4f5g6";
const REDIS_PASSWORD: &str = "redisSECRETpw-h7i8j9";

fn secrets() -> Vec<&'static str> {
    vec![
        FRONT_ENV,
        FRONT_LITERAL,
        ADMIN,
        OPENAI_A,
        OPENAI_B_FILE,
        ANTHROPIC,
        GEMINI_LITERAL,
        AZURE,
        ECHO_A,
        ECHO_B,
        ORG_HEADER,
        REDIS_PASSWORD,
    ]
}

// === encodings ===

fn base64(input: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The forms a leaked secret could take: raw, base64 (standard and URL-safe, padded or not) and
/// URL-encoded (upper and lower case).
fn forms(secret: &str) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut v = vec![
        secret.to_owned(),
        base64(secret.as_bytes(), STD, true),
        base64(secret.as_bytes(), STD, false),
        base64(secret.as_bytes(), URL, false),
        url_encode(secret),
        url_encode(secret).to_lowercase(),
    ];
    v.sort();
    v.dedup();
    v
}

#[test]
fn encodings_match_known_values() {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(base64(b"Man", STD, true), "TWFu");
    assert_eq!(base64(b"Ma", STD, true), "TWE=");
    assert_eq!(base64(b"M", STD, true), "TQ==");
    assert_eq!(base64(b"M", STD, false), "TQ");
    assert_eq!(url_encode("a+b/c=d"), "a%2Bb%2Fc%3Dd");
}

/// Every (secret, form) found in `haystack`, with a little context.
fn leaks(haystack: &str, where_: &str) -> Vec<String> {
    let mut found = Vec::new();
    for s in secrets() {
        for f in forms(s) {
            if let Some(at) = haystack.find(&f) {
                let around =
                    &haystack.as_bytes()[at.saturating_sub(120)..(at + f.len() + 120).min(haystack.len())];
                found
                    .push(format!("{where_}: {f:?} (secret {s:?}) in …{}…", String::from_utf8_lossy(around)));
            }
        }
    }
    found
}

// === upstreams ===

/// A provider that records what it receives and, for some models, answers an error whose body
/// (and a rate-limit header) echoes every request header back: the key included.
struct EchoUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
}

impl EchoUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let rec = rec.clone();
                        async move { Ok::<_, Infallible>(echo(req, &rec).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn echo(req: Request<Incoming>, rec: &Mutex<Vec<(String, http::HeaderMap)>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let uri = parts.uri.to_string();
    rec.lock().unwrap().push((uri.clone(), parts.headers.clone()));
    let model = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["model"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let everything: String = parts
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}; ", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let status = ["echo400", "echo401", "echo403", "echo429", "echo500", "echo503"]
        .iter()
        .find(|m| model == **m || uri.contains(**m))
        .map(|m| m[4..].parse::<u16>().unwrap());
    let mut resp = match status {
        Some(s) => {
            let body = serde_json::json!({"error": {
                "message": format!("Incorrect API key provided. You sent: {everything}"),
                "type": "invalid_request_error", "code": "invalid_api_key",
            }});
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = StatusCode::from_u16(s).unwrap();
            r
        }
        // A success that echoes every request header (the key included) inside the answer: as
        // JSON or SSE, in OpenAI's format or, for the Messages path, Anthropic's.
        None => {
            let content = format!("hello from the echo upstream; you sent {everything}");
            let stream = serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["stream"] == serde_json::Value::Bool(true));
            let anthropic = uri.ends_with("/v1/messages");
            let text = match (anthropic, stream) {
                (false, false) => serde_json::json!({
                    "id": "x", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })
                .to_string(),
                (false, true) => {
                    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
                        serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                    };
                    format!(
                        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                        chunk(serde_json::json!({"content": content}), serde_json::Value::Null),
                        chunk(serde_json::json!({}), serde_json::json!("stop"))
                    )
                }
                (true, false) => serde_json::json!({
                    "id": "m", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": content}], "stop_reason": "end_turn",
                    "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1},
                })
                .to_string(),
                (true, true) => [
                    serde_json::json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                        "model": model, "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}}),
                    serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": content}}),
                    serde_json::json!({"type": "content_block_stop", "index": 0}),
                    serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                        "usage": {"output_tokens": 1}}),
                    serde_json::json!({"type": "message_stop"}),
                ]
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
                .collect(),
            };
            let mut r = Response::new(Full::new(Bytes::from(text)));
            if stream {
                r.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
            }
            r
        }
    };
    if !resp.headers().contains_key("content-type") {
        resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    }
    // Headers tier1 passes back to the client (x-ratelimit-*), with the key in them.
    if let Some(v) = parts.headers.get("authorization").or_else(|| parts.headers.get("api-key")) {
        resp.headers_mut().insert("x-ratelimit-echo", v.clone());
    }
    resp
}

/// A listener no config names: it must never see a connection.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Counting {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { addr, accepted }
    }
}

// === the binary ===

fn config(mock: &str, echo: &str, key_file: &std::path::Path, reply: &str) -> String {
    format!(
        r#"
[server]
api_keys = ["env:FRONT_KEY", "{FRONT_LITERAL}"]
admin_keys = ["env:ADMIN_KEY"]
max_body_bytes = 65536

[log]
format = "json"
level = "trace"
sample = 1.0

[reload]
poll_interval = "0s"

[providers.oa]
kind = "openai"
base_url = "{mock}/v1"
models = ["gpt-4o"]
keys = [
  {{ name = "a", secret = "env:OPENAI_KEY_A", models = ["gpt-4o", "text-embedding-*"] }},
  {{ name = "b", secret = "file:{key_file}", models = ["gpt-4o-mini"] }},
]

[providers.an]
kind = "anthropic"
base_url = "{mock}"
keys = [{{ name = "main", secret = "env:ANTHROPIC_KEY" }}]

[providers.gm]
kind = "gemini"
base_url = "{mock}"
keys = [{{ name = "main", secret = "{GEMINI_LITERAL}" }}]

[providers.az]
kind = "azure"
base_url = "{echo}"
keys = [{{ name = "main", secret = "env:AZURE_KEY" }}]

[providers.echo]
kind = "openai"
base_url = "{echo}/v1"
headers = {{ "X-Org" = "env:ORG_SECRET" }}
keys = [{{ name = "a", secret = "env:ECHO_KEY_A" }}, {{ name = "b", secret = "env:ECHO_KEY_B" }}]

[providers.echoan]
kind = "anthropic"
base_url = "{echo}"
keys = [{{ name = "a", secret = "env:ECHO_KEY_A" }}]

[[routes]]
name = "chat"
targets = [{{ provider = "oa", model = "{reply}" }}]

[[routes]]
name = "claude"
targets = [{{ provider = "an", model = "claude-x" }}]

[[routes]]
name = "gem"
targets = [{{ provider = "gm", model = "gemini-2.5-flash" }}]

[[routes]]
name = "echo-chain"
targets = [{{ provider = "echo", model = "echo500" }}, {{ provider = "echo", model = "echo401" }}]

[redis]
url = "env:REDIS_URL"
sync_interval = "50ms"
timeout = "300ms"
"#,
        key_file = key_file.display()
    )
}

struct Captured {
    /// Everything the clients received: status lines, headers, bodies.
    responses: String,
    count: usize,
}

impl Captured {
    fn add(&mut self, what: &str, a: &common::Answer) {
        self.count += 1;
        self.responses.push_str(&format!("\n=== {what}: {}\n", a.status));
        for (k, v) in &a.headers {
            self.responses.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        self.responses.push_str(&a.text());
    }
}

async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> common::Answer {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    common::send(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_leaks_into_responses_or_logs() {
    let dir = TempDir::new("secrets");
    let key_file = dir.path("openai-b.key");
    std::fs::write(&key_file, format!("{OPENAI_B_FILE}\n")).unwrap();
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let echo = EchoUpstream::start().await;
    let mut redis =
        common::RedisServer::start_with(0, |_| vec!["--requirepass".into(), REDIS_PASSWORD.into()]).await;
    let cfg = dir.write_atomic("tier1.toml", &config(&mock.url(), &echo.url(), &key_file, "gpt-4o"));

    let mut child = tokio::process::Command::new(common::BIN)
        .args(["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("TIER1_CONFIG")
        .env_remove("TIER1_LISTEN")
        .env_remove("TIER1_LOG")
        .env("FRONT_KEY", FRONT_ENV)
        .env("ADMIN_KEY", ADMIN)
        .env("OPENAI_KEY_A", OPENAI_A)
        .env("ANTHROPIC_KEY", ANTHROPIC)
        .env("AZURE_KEY", AZURE)
        .env("ECHO_KEY_A", ECHO_A)
        .env("ECHO_KEY_B", ECHO_B)
        .env("ORG_SECRET", ORG_HEADER)
        .env("REDIS_URL", format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tier1 starts");
    let logs = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
    let addr_tx = Arc::new(Mutex::new(Some(addr_tx)));
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        let addr_tx = addr_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stream));
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, rest)) = line.split_once("listening on http://")
                    && let Some(tx) = addr_tx.lock().unwrap().take()
                {
                    let _ = tx
                        .send(rest.chars().take_while(|c| c.is_ascii_digit() || ".:".contains(*c)).collect());
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        }));
    }
    let addr = tokio::time::timeout(Duration::from_secs(20), addr_rx).await.unwrap().unwrap();
    let base = format!("http://{addr}");
    let chat_url = format!("{base}/v1/chat/completions");
    let front = format!("Bearer {FRONT_ENV}");
    let front_lit = format!("Bearer {FRONT_LITERAL}");
    let admin = format!("Bearer {ADMIN}");
    let json = ("content-type", "application/json");
    let mut got = Captured { responses: String::new(), count: 0 };

    // Redis up before anything (the sync task connects with the password).
    let up = common::within(Duration::from_secs(10), || async {
        common::metric(&common::get(&format!("{base}/metrics")).await.text(), "tier1_redis_up") == Some(1.0)
    })
    .await;
    assert!(up.is_some(), "tier1 never connected to the password-protected Redis");

    // Successes, every provider kind, streamed and not, both inbound keys.
    for (what, auth, body) in [
        ("chat", &front, common::chat("chat")),
        ("chat, literal front key", &front_lit, common::chat("chat")),
        ("chat stream", &front, common::chat_stream("chat")),
        ("chat, the second key", &front, common::chat("oa/gpt-4o-mini")),
        ("anthropic translated", &front, common::chat("claude")),
        ("anthropic stream", &front, common::chat_stream("claude")),
        ("gemini", &front, common::chat("gem")),
        ("gemini stream", &front, common::chat_stream("gem")),
        ("azure", &front, common::chat("az/gpt4o")),
    ] {
        let a = send("POST", &chat_url, &[json, ("authorization", auth)], &body).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        got.add(what, &a);
    }
    let a = send(
        "POST",
        &format!("{base}/v1/embeddings"),
        &[json, ("authorization", &front)],
        r#"{"model":"oa/text-embedding-3-small","input":["x"]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    got.add("embeddings", &a);
    let messages = r#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = send("POST", &format!("{base}/v1/messages"), &[json, ("x-api-key", FRONT_ENV)], messages).await;
    assert_eq!(a.status, 200, "{}", a.text());
    got.add("messages", &a);

    // Upstream errors that echo the key (and the secret extra header) in their body and headers.
    let a = send("POST", &chat_url, &[json, ("authorization", &front)], &common::chat("echo/fine")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    got.add("echo success, headers echoed", &a);
    // Successes that echo the key in their answer: JSON and streams, native and translated
    // (Anthropic to OpenAI), and on the Messages ingress (OpenAI to Anthropic, and native).
    let messages_url = format!("{base}/v1/messages");
    let messages = |model: &str, stream: bool| {
        format!(
            r#"{{"model":"{model}","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        )
    };
    for (what, url, body) in [
        ("echo 2xx json", &chat_url, common::chat("echo/fine")),
        ("echo 2xx stream", &chat_url, common::chat_stream("echo/fine")),
        ("echo 2xx translated json", &chat_url, common::chat("echoan/fine")),
        ("echo 2xx translated stream", &chat_url, common::chat_stream("echoan/fine")),
        ("echo 2xx messages json", &messages_url, messages("echo/fine", false)),
        ("echo 2xx messages stream", &messages_url, messages("echo/fine", true)),
        ("echo 2xx messages native stream", &messages_url, messages("echoan/fine", true)),
    ] {
        let a =
            send("POST", url, &[json, ("authorization", &front), ("anthropic-version", "2023-06-01")], &body)
                .await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        assert!(a.text().contains("you sent") && a.text().contains("[redacted"), "{what}: {}", a.text());
        got.add(what, &a);
    }
    // Keys refused (401/403) or limited (429) rest, so those come last.
    let a = send("POST", &chat_url, &[json, ("authorization", &front)], &common::chat("echo/echo400")).await;
    assert!(a.text().contains("[redacted"), "the echoed key was not redacted: {}", a.text());
    got.add("echo400", &a);
    for model in [
        "echo/echo400",
        "az/echo400",
        "az/echo500",
        "echo/echo500",
        "echo/echo503",
        "echo-chain",
        "echo/echo429",
        "echo/echo403",
        "echo/echo401",
    ] {
        for body in [common::chat(model), common::chat_stream(model)] {
            let a = send("POST", &chat_url, &[json, ("authorization", &front)], &body).await;
            assert_ne!(a.status, 200, "{model}: {}", a.text());
            got.add(model, &a);
        }
    }
    let a = send("POST", &chat_url, &[json, ("authorization", &front)], &common::chat("az/fine")).await;
    got.add("azure success, headers echoed", &a);

    // Auth failures, 404s, 405, bad JSON.
    let near = &FRONT_ENV[..FRONT_ENV.len() - 1];
    for (what, headers) in [
        ("no key", vec![json]),
        ("wrong key", vec![json, ("authorization", "Bearer nope")]),
        ("almost the key", vec![json, ("authorization", near)]),
        ("admin key on the API", vec![json, ("authorization", admin.as_str())]),
        ("provider key as bearer", vec![json, ("authorization", OPENAI_A)]),
    ] {
        let a = send("POST", &chat_url, &headers, &common::chat("chat")).await;
        assert_eq!(a.status, 401, "{what}");
        got.add(what, &a);
    }
    for (what, method, path, body) in [
        ("unknown path", "POST", "/v1/nope", "{}".to_owned()),
        ("unknown model", "POST", "/v1/chat/completions", common::chat("no-such-model")),
        ("unknown provider", "POST", "/v1/chat/completions", common::chat("nosuch/x")),
        ("bad JSON", "POST", "/v1/chat/completions", r#"{"model": "chat", "messages": ["#.to_owned()),
        ("wrong types", "POST", "/v1/chat/completions", r#"{"model": 7, "messages": 1}"#.to_owned()),
        ("405", "GET", "/v1/chat/completions", String::new()),
        ("models", "GET", "/v1/models", String::new()),
        ("health", "GET", "/healthz", String::new()),
        ("ready", "GET", "/readyz", String::new()),
    ] {
        let a = send(method, &format!("{base}{path}"), &[json, ("authorization", &front)], &body).await;
        got.add(what, &a);
    }

    // Admin routes: refused without or with a wrong key, then served.
    for (what, auth) in [("admin, no key", None), ("admin, front key", Some(front.as_str()))] {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let a = send("GET", &format!("{base}/admin/config"), &headers, "").await;
        assert!(a.status == 401 || a.status == 403, "{what}: {}", a.status);
        got.add(what, &a);
    }
    let auth = [("authorization", admin.as_str())];
    for (method, path) in [
        ("GET", "/admin/state"),
        ("GET", "/admin/config"),
        ("POST", "/admin/breakers/reset"),
        ("GET", "/metrics"),
    ] {
        let a = send(method, &format!("{base}{path}"), &auth, "").await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        got.add(path, &a);
    }

    // Reloads: a good change (admin API, then SIGHUP), and a broken file whose bad line holds a
    // literal secret (parse errors quote the line).
    dir.write_atomic("tier1.toml", &config(&mock.url(), &echo.url(), &key_file, "gpt-4o-mini"));
    let a = send("POST", &format!("{base}/admin/reload"), &auth, "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    got.add("reload", &a);
    let good = config(&mock.url(), &echo.url(), &key_file, "gpt-4o");
    dir.write_atomic("tier1.toml", &good);
    common::signal(&child, "-HUP");
    let broken = good.replace(
        &format!("api_keys = [\"env:FRONT_KEY\", \"{FRONT_LITERAL}\"]"),
        &format!("api_keys = [\"env:FRONT_KEY\", \"{FRONT_LITERAL}\" \"{GEMINI_LITERAL}\"]"),
    );
    assert_ne!(broken, good);
    dir.write_atomic("tier1.toml", &broken);
    let a = send("POST", &format!("{base}/admin/reload"), &auth, "").await;
    assert_eq!(a.status, 422, "{}", a.text());
    got.add("broken reload", &a);
    let a = send("GET", &format!("{base}/admin/config"), &auth, "").await;
    assert!(!a.json()["last_reload_error"].is_null(), "{}", a.text());
    got.add("config after a broken reload", &a);
    dir.write_atomic("tier1.toml", &good);
    let a = send("POST", &format!("{base}/admin/reload"), &auth, "").await;
    got.add("reload back", &a);

    // Redis goes away: errors are logged and counted, with no URL in them.
    redis.kill();
    let down = common::within(Duration::from_secs(10), || async {
        common::metric(&common::get(&format!("{base}/metrics")).await.text(), "tier1_redis_up") == Some(0.0)
    })
    .await;
    assert!(down.is_some(), "tier1 did not notice Redis going away");
    let a = send("POST", &chat_url, &[json, ("authorization", &front)], &common::chat("chat")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    got.add("chat without redis", &a);
    let a = common::get(&format!("{base}/metrics")).await;
    got.add("metrics at the end", &a);

    // Drain and collect every log line to the end.
    common::sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    for r in readers {
        tokio::time::timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
    }
    let logs = logs.lock().unwrap().clone();

    // The test could fail: the upstreams really received the keys, and the logs are verbose.
    let seen = echo.seen.lock().unwrap().clone();
    let sent: String = seen
        .iter()
        .flat_map(|(_, h)| h.iter().map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    for s in [AZURE, ECHO_A, ECHO_B, ORG_HEADER] {
        assert!(sent.contains(s), "the echo upstream never received {s}");
    }
    let mock_keys: String = mock
        .stats
        .requests()
        .iter()
        .flat_map(|r| r.headers.iter().map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    for s in [OPENAI_A, OPENAI_B_FILE, ANTHROPIC, GEMINI_LITERAL] {
        assert!(mock_keys.contains(s), "the mock never received {s}");
    }
    assert!(logs.lines().count() > 60, "too few log lines: {logs}");
    for level in ["\"level\":\"DEBUG\"", "\"level\":\"WARN\"", "config reload refused", "\"status\":401"] {
        assert!(logs.contains(level), "no {level} in the logs");
    }
    assert!(got.count >= 50, "{}", got.count);

    let mut found = leaks(&got.responses, "response");
    found.extend(leaks(&logs, "log"));
    assert!(found.is_empty(), "{} leaks:\n{}", found.len(), found.join("\n"));
    every_log_line_is_strict_json_joined_by_request_id(&logs);
}

/// Issue 22, item 3: every line of a JSON-format run parses with a strict parser that refuses a
/// key twice in one object (log parsers keep the last one), and every warning that names a
/// request joins the access line of that request by a plain-string `request_id`.
fn every_log_line_is_strict_json_joined_by_request_id(logs: &str) {
    let mut access = std::collections::HashSet::new();
    let mut named = Vec::new();
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let v: Strict = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let id = |v: &serde_json::Value| {
            v.get("request_id").or_else(|| v.get("fields").and_then(|f| f.get("request_id"))).cloned()
        };
        match id(&v.0) {
            Some(serde_json::Value::String(id)) if v.0["target"] == "tier1::access" => {
                access.insert(id);
            }
            Some(serde_json::Value::String(id)) => named.push((id, line.to_owned())),
            Some(other) => panic!("request_id is not a plain string: {other} in {line}"),
            None => {}
        }
    }
    assert!(!access.is_empty(), "no access lines");
    assert!(!named.is_empty(), "no warning named a request");
    for (id, line) in &named {
        assert!(!id.starts_with('"'), "a quoted request_id: {line}");
        assert!(access.contains(id), "no access line for request {id}: {line}");
    }
}

/// A JSON value whose objects hold each key once.
struct Strict(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(out.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some((k, Strict(v))) = map.next_entry::<String, Strict>()? {
            if out.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!("key {k:?} twice")));
            }
        }
        Ok(out.into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_input_never_picks_the_upstream_host_or_path() {
    let echo = EchoUpstream::start().await;
    let counting = Counting::start().await;
    let evil = counting.addr.to_string();
    let tier1 = common::Tier1::start(&format!(
        r#"
[providers.up]
kind = "openai"
base_url = "{echo}/v1"
[[providers.up.keys]]
name = "k"
secret = "env:UPSTREAM_KEY"
[providers.az]
kind = "azure"
base_url = "{echo}"
[[providers.az.keys]]
name = "k"
secret = "env:UPSTREAM_KEY"
[[routes]]
name = "smart"
targets = [{{ provider = "up", model = "gpt-4o" }}]
"#,
        echo = echo.url()
    ))
    .await;
    let url = tier1.url("/v1/chat/completions");
    let models = [
        format!("http://{evil}/v1"),
        format!("https://{evil}/v1"),
        format!("{evil}/v1"),
        format!("//{evil}/x"),
        format!("up@{evil}/x"),
        format!("http:/{evil}"),
        format!("nosuch/http://{evil}/x"),
        format!("up/http://{evil}/x"),
        format!("up/../../{evil}"),
        format!("az/@{evil}/x"),
        format!("az/..%2F..%2F{evil}"),
        format!("az/http://{evil}/x"),
        "az/../../../evil?x=".to_owned(),
        "az/..".to_owned(),
        "az/a/../../b".to_owned(),
        "az/a#b".to_owned(),
        "az/a?b".to_owned(),
        "az/a%2e%2e".to_owned(),
    ];
    let mut answers = Vec::new();
    for m in &models {
        let a = common::post(&url, &[], &common::chat(m)).await;
        answers.push(format!("{m}: {} {}", a.status, a.text()));
        let fallbacks = format!(
            r#"{{"model":"smart","fallbacks":["{m}"],"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let a = common::post(&url, &[("x-tier1-fallbacks", m.as_str())], &fallbacks).await;
        answers.push(format!("fallback {m}: {} {}", a.status, a.text()));
    }
    // Host and forwarding headers are the client's business, never the upstream's address.
    for (k, v) in [("host", evil.as_str()), ("x-forwarded-host", evil.as_str()), ("forwarded", "host=evil")] {
        let a = common::post(&url, &[(k, v)], &common::chat("smart")).await;
        assert_eq!(a.status, 200, "{k}: {}", a.text());
    }
    assert_eq!(
        counting.accepted.load(Ordering::SeqCst),
        0,
        "a client reached an unconfigured host: {answers:#?}"
    );
    // Everything that reached the configured upstream stayed on its configured paths.
    let seen = echo.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (uri, _) in &seen {
        let ok = uri == "/v1/chat/completions"
            || uri.strip_prefix("/openai/deployments/").is_some_and(|rest| {
                rest.split_once("/chat/completions?api-version=").is_some_and(|(dep, _)| {
                    !dep.is_empty()
                        && dep != "."
                        && dep != ".."
                        && dep.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                })
            });
        assert!(ok, "a client-chosen model walked out of the configured path: {uri}; answers {answers:#?}");
    }
}
