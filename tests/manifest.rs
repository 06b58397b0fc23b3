//! The front's provider manifest as a catalog source (`[front] manifest_url`): fetched in the
//! background from a stand-in for OmniRoute's `GET /api/v1/provider-plugin-manifest` (the
//! documented schema-1 shape), the last good copy kept through bad fetches and 304s, the front's
//! aliases mapped onto configured providers, ineligible providers refused, and nothing taken from
//! the manifest's hosts or auth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the stand-in front answers.
#[derive(Clone)]
enum Mode {
    /// 200 with the manifest (and this ETag, answering 304 to it).
    Good(Option<&'static str>),
    /// 200 with a body that is not a schema-1 manifest.
    Bad,
    /// 500.
    Fail,
    /// 200 with a schema-1 manifest over 1 MiB.
    Huge,
}

/// The stand-in front: counts requests and 304s, records `If-None-Match`.
struct Front {
    addr: SocketAddr,
    mode: Mutex<Mode>,
    body: String,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
    if_none_match: Mutex<Vec<String>>,
}

impl Front {
    async fn start(mode: Mode, body: String) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            mode: Mutex::new(mode),
            body,
            requests: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            if_none_match: Mutex::new(Vec::new()),
        });
        let f = front.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let f = f.clone();
                let service = hyper::service::service_fn(move |req| {
                    let f = f.clone();
                    async move { Ok::<_, Infallible>(f.answer(&req)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        front
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let inm = req.headers().get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(v) = &inm {
            self.if_none_match.lock().unwrap().push(v.clone());
        }
        let mode = self.mode.lock().unwrap().clone();
        let (status, etag, body) = match mode {
            Mode::Good(Some(etag)) if inm.as_deref() == Some(etag) => {
                self.not_modified.fetch_add(1, Ordering::SeqCst);
                (304, Some(etag), String::new())
            }
            Mode::Good(etag) => (200, etag, self.body.clone()),
            Mode::Bad => (200, None, r#"{"schemaVersion":2,"providers":[]}"#.to_owned()),
            Mode::Fail => (500, None, "oops".to_owned()),
            Mode::Huge => {
                let pad = "x".repeat(1 << 20);
                (200, None, format!(r#"{{"schemaVersion":1,"providers":[],"pad":"{pad}"}}"#))
            }
        };
        let mut b = Response::builder().status(status).header("content-type", "application/json");
        if let Some(e) = etag {
            b = b.header("etag", e);
        }
        b.body(Full::new(Bytes::from(body))).unwrap()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A listener standing for a host the manifest names: counts connections, answers nothing.
async fn elsewhere() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
        }
    });
    (addr, count)
}

/// A manifest in OmniRoute's schema-1 shape: `openai` (alias `oa`), `claude` (alias `cc`, not
/// eligible), and `evil` (alias `ev`), which tier1 does not configure. Every base URL points at
/// `elsewhere`, and each entry carries auth settings.
fn manifest(elsewhere: SocketAddr) -> String {
    let entry = |id: &str, alias: &str, model: &str, eligible: bool, passthrough: bool| {
        serde_json::json!({
            "id": id, "alias": alias, "format": "openai", "executor": "default",
            "auth": {"type": "apikey", "header": "authorization", "prefix": "Bearer "},
            "endpoints": {"baseUrl": format!("http://{elsewhere}/v1"), "chatPath": "/chat/completions"},
            "capabilities": ["apikey"], "passthroughModels": passthrough,
            "models": [{"id": model, "name": model, "contextLength": 128000}],
            "sidecar": {"eligible": eligible, "reasons": if eligible { vec![] } else { vec!["custom-executor"] }},
        })
    };
    serde_json::json!({
        "schemaVersion": 1,
        "generatedFrom": "open-sse/config/providers",
        "providers": [
            entry("openai", "oa", "gpt-4o", true, false),
            entry("claude", "cc", "claude-x", false, false),
            entry("evil", "ev", "m", true, true),
        ],
    })
    .to_string()
}

/// tier1 with providers `openai` and `claude` (both the mock upstream) and the front's manifest.
fn tier1_config(upstream: &str, front: SocketAddr) -> String {
    let provider = |name: &str| {
        format!(
            "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{upstream}/v1\"\nrequest_timeout = \"2s\"\n\
             [[providers.{name}.keys]]\nname = \"primary\"\nsecret = \"env:UPSTREAM_KEY\"\n"
        )
    };
    format!(
        "{}{}[front]\nmanifest_url = \"http://{front}/api/v1/provider-plugin-manifest\"\nmanifest_refresh = \"50ms\"\n",
        provider("openai"),
        provider("claude"),
    )
}

/// Everything one test needs.
struct Setup {
    tier1: Tier1,
    front: Arc<Front>,
    up: MockUpstream,
    elsewhere: Arc<AtomicUsize>,
}

async fn setup(mode: Mode) -> Setup {
    let (addr, elsewhere) = elsewhere().await;
    let front = Front::start(mode, manifest(addr)).await;
    let up = MockUpstream::start(MockConfig::default()).await.unwrap();
    let tier1 = Tier1::start(&tier1_config(&up.url(), front.addr)).await;
    Setup { tier1, front, up, elsewhere }
}

impl Setup {
    async fn chat(&self, model: &str) -> Answer {
        post(&self.tier1.url("/v1/chat/completions"), &[], &chat(model)).await
    }

    /// Waits until the front's alias `oa/gpt-4o` is served (the manifest is loaded).
    async fn loaded(&self) {
        let ok =
            wait_until(Duration::from_secs(5), || async { self.chat("oa/gpt-4o").await.status == 200 }).await;
        assert!(ok, "the alias never resolved; front saw {} requests", self.front.requests());
    }

    /// Waits until the front has seen `n` more requests than now.
    async fn fetches(&self, n: usize) {
        let base = self.front.requests();
        let ok = wait_until(Duration::from_secs(5), || async { self.front.requests() >= base + n }).await;
        assert!(ok, "tier1 stopped fetching the manifest");
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        metric(&get(&self.tier1.url("/metrics")).await.text(), series)
    }
}

#[tokio::test]
async fn a_front_alias_reaches_the_configured_provider_with_the_upstream_model() {
    let s = setup(Mode::Fail).await;
    s.fetches(1).await;
    // Without a manifest the front's alias is no name tier1 knows.
    let a = s.chat("oa/gpt-4o").await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (404, "model_not_found"), "{}", a.text());
    assert_eq!(s.up.stats.snapshot().requests, 0);

    s.front.set(Mode::Good(None));
    s.loaded().await;
    let a = s.chat("oa/gpt-4o").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-provider"), Some("openai"));
    assert_eq!(a.header("x-tier1-model"), Some("gpt-4o"));
    // The front's provider id works as well as its alias.
    assert_eq!(s.chat("openai/gpt-4o").await.status, 200);
    let reqs = s.up.stats.requests();
    let last = reqs.last().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(last.headers["authorization"], "Bearer sk-upstream-secret-0001");
    assert_eq!(s.elsewhere.load(Ordering::SeqCst), 0, "a request went to the manifest's baseUrl");
    let age = s.metric("tier1_manifest_age_seconds").await.unwrap();
    assert!((0.0..5.0).contains(&age), "age {age}");
    assert!(s.metric("tier1_manifest_fetch_errors_total{reason=\"status\"}").await.unwrap() >= 1.0);
}

#[tokio::test]
async fn a_bad_fetch_keeps_the_last_good_copy() {
    let s = setup(Mode::Good(None)).await;
    s.loaded().await;
    s.front.set(Mode::Bad);
    s.fetches(2).await;
    assert_eq!(s.chat("oa/gpt-4o").await.status, 200, "an invalid manifest replaced the good one");
    assert!(s.metric("tier1_manifest_fetch_errors_total{reason=\"invalid\"}").await.unwrap() >= 1.0);
    s.front.set(Mode::Fail);
    s.fetches(2).await;
    assert_eq!(s.chat("oa/gpt-4o").await.status, 200, "a 500 dropped the good copy");
    assert!(s.metric("tier1_manifest_fetch_errors_total{reason=\"status\"}").await.unwrap() >= 1.0);
    s.front.set(Mode::Huge);
    s.fetches(2).await;
    assert_eq!(s.chat("oa/gpt-4o").await.status, 200, "an oversized manifest replaced the good one");
    assert!(s.metric("tier1_manifest_fetch_errors_total{reason=\"too_large\"}").await.unwrap() >= 1.0);
}

#[tokio::test]
async fn an_etag_gets_304s_that_keep_the_copy() {
    let s = setup(Mode::Good(Some("\"v1\""))).await;
    s.loaded().await;
    let ok =
        wait_until(Duration::from_secs(5), || async { s.front.not_modified.load(Ordering::SeqCst) >= 2 })
            .await;
    assert!(ok, "no conditional fetch: If-None-Match sent {:?}", s.front.if_none_match.lock().unwrap());
    assert_eq!(s.chat("oa/gpt-4o").await.status, 200, "a 304 dropped the copy");
    for reason in ["status", "invalid", "timeout", "connect", "too_large"] {
        let series = format!("tier1_manifest_fetch_errors_total{{reason=\"{reason}\"}}");
        assert_eq!(s.metric(&series).await, Some(0.0), "{series}");
    }
}

#[tokio::test]
async fn a_provider_the_manifest_marks_ineligible_is_refused_with_404() {
    let s = setup(Mode::Good(None)).await;
    s.loaded().await;
    let before = s.up.stats.snapshot().requests;
    // By the front's alias and by tier1's own provider name alike.
    for model in ["cc/claude-x", "claude/claude-x"] {
        let a = s.chat(model).await;
        assert_eq!(
            (a.status.as_u16(), a.code().as_str()),
            (404, "provider_not_eligible"),
            "{model}: {}",
            a.text()
        );
    }
    assert_eq!(s.up.stats.snapshot().requests, before, "an ineligible provider was called");
}

#[tokio::test]
async fn a_manifest_adds_no_provider_host_or_credential() {
    let s = setup(Mode::Good(None)).await;
    s.loaded().await;
    let before = s.up.stats.snapshot().requests;
    for model in ["ev/m", "evil/m"] {
        let a = s.chat(model).await;
        assert_eq!((a.status.as_u16(), a.code().as_str()), (404, "model_not_found"), "{model}: {}", a.text());
    }
    // A model the entry does not list is not mapped either.
    assert_eq!(s.chat("oa/gpt-5").await.code(), "model_not_found");
    assert_eq!(s.up.stats.snapshot().requests, before);
    assert_eq!(s.elsewhere.load(Ordering::SeqCst), 0, "tier1 connected to a host from the manifest");
}

#[tokio::test]
async fn a_config_reload_keeps_the_copy() {
    let (addr, elsewhere) = elsewhere().await;
    // The front stops answering after the first good fetch: only the copy held can serve the alias.
    let front = Front::start(Mode::Good(None), manifest(addr)).await;
    let up = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("manifest-reload");
    let text = tier1_config(&up.url(), front.addr).replace("\"50ms\"", "\"1h\"");
    let path = dir.write_atomic("tier1.toml", &text);
    let tier1 = Tier1::start_file(&path, false).await;
    let s = Setup { tier1, front, up, elsewhere };
    s.loaded().await;
    s.front.set(Mode::Fail);
    dir.write_atomic("tier1.toml", &format!("{text}\n[[routes]]\nname = \"extra\"\ntargets = [{{ provider = \"openai\", model = \"gpt-4o\" }}]\n"));
    let reloaded = wait_until(Duration::from_secs(5), || async { s.chat("extra").await.status == 200 }).await;
    assert!(reloaded, "the config did not reload");
    assert_eq!(s.front.requests(), 1, "the reload fetched the manifest again");
    assert_eq!(s.chat("oa/gpt-4o").await.status, 200, "the reload dropped the manifest's copy");
}

#[tokio::test]
async fn with_manifest_from_header_the_first_authenticated_request_names_the_url() {
    let (addr, elsewhere) = elsewhere().await;
    let front = Front::start(Mode::Good(None), manifest(addr)).await;
    let up = MockUpstream::start(MockConfig::default()).await.unwrap();
    let text = tier1_config(&up.url(), front.addr)
        .replace("manifest_url = ", "manifest_from_header = true\n# manifest_url = ")
        .replace("\"50ms\"", "\"1h\"");
    let text = format!("[server]\napi_keys = [\"env:FRONT_KEY\"]\n{text}");
    let tier1 = Tier1::start(&text).await;
    let s = Setup { tier1, front, up, elsewhere };
    let url = format!("http://{}/api/v1/provider-plugin-manifest", s.front.addr);
    let chat = |key: &'static str, header: Option<String>| {
        let url = s.tier1.url("/v1/chat/completions");
        async move {
            let auth = format!("Bearer {key}");
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(h) = &header {
                headers.push(("x-omniroute-provider-manifest-url", h.as_str()));
            }
            post(&url, &headers, &chat("oa/gpt-4o")).await
        }
    };
    // No header yet: nothing fetched, the alias unknown.
    assert_eq!(chat("front-key-0001", None).await.code(), "model_not_found");
    // A request that does not authenticate names nothing.
    assert_eq!(chat("someone-else", Some(url.clone())).await.status, 401);
    assert_eq!(s.front.requests(), 0, "an unauthenticated header was followed");
    // The front's own request does.
    chat("front-key-0001", Some(url.clone())).await;
    let ok =
        wait_until(Duration::from_secs(5), || async { chat("front-key-0001", None).await.status == 200 })
            .await;
    assert!(ok, "the learned URL was not fetched; front saw {}", s.front.requests());
    // Later headers are ignored: only the first is learned.
    let other = format!("http://{addr}/api/v1/provider-plugin-manifest");
    assert_eq!(chat("front-key-0001", Some(other)).await.status, 200);
    assert_eq!(s.front.requests(), 1);
    assert_eq!(s.elsewhere.load(Ordering::SeqCst), 0, "a second header's URL was fetched");
    let reqs = s.up.stats.requests();
    assert!(
        reqs.iter().all(|r| !r.headers.contains_key("x-omniroute-provider-manifest-url")),
        "the header reached the provider"
    );
}

/// The front's model sync reads `GET /v1/models`: with the manifest loaded it lists the front's
/// names for what tier1 serves (`oa/gpt-4o`), never an ineligible provider's (`cc/...`) nor one
/// tier1 does not have (`ev/...`).
#[tokio::test]
async fn v1_models_lists_the_fronts_names_for_what_tier1_serves() {
    let s = setup(Mode::Good(None)).await;
    s.loaded().await;
    let list = get(&s.tier1.url("/v1/models")).await.json();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"oa/gpt-4o"), "{ids:?}");
    assert!(!ids.iter().any(|i| i.starts_with("cc/") || i.starts_with("ev/")), "{ids:?}");
    let oa = list["data"].as_array().unwrap().iter().find(|m| m["id"] == "oa/gpt-4o").unwrap().clone();
    assert_eq!((oa["object"].as_str(), oa["owned_by"].as_str()), (Some("model"), Some("openai")), "{oa}");
}
