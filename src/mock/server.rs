//! `tier1 mock-upstream`: a standalone HTTP server speaking the OpenAI wire format, with fault
//! injection from its config file or per request through `x-mock-*` headers, and counters
//! (calls, connections, completed and cancelled streams) that tests await instead of sleeping.
//!
//! Headers: `x-mock-status`, `x-mock-retry-after`, `x-mock-latency`, `x-mock-ttft`,
//! `x-mock-tokens-per-second`, `x-mock-abort-after`, `x-mock-fail-first`, `x-mock-reply`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::{Behavior, MockBody, MockEndpoint, RawBehavior, StreamObserver, json_response};
use crate::config::{ConfigErrors, Problems};

/// The mock server's config file: a default behaviour and per-model overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMockConfig {
    /// Behaviour for every model without its own entry.
    #[serde(default)]
    pub default: RawBehavior,
    /// Behaviour per requested model name.
    #[serde(default)]
    pub models: BTreeMap<String, RawBehavior>,
    /// Behaviour per API key (the bearer token sent), checked before models: one key out of
    /// quota, another refused.
    #[serde(default)]
    pub keys: BTreeMap<String, RawBehavior>,
    /// AWS credentials the Bedrock routes accept: access key id → secret access key. A Bedrock
    /// request's SigV4 signature is checked against them (a 403 when it does not hold).
    #[serde(default)]
    pub aws_keys: BTreeMap<String, String>,
    /// The region Bedrock requests must be signed for (default `us-east-1`).
    pub aws_region: Option<String>,
}

/// Validated mock server config.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Behaviour for every model without its own entry.
    pub default: Behavior,
    /// Behaviour per requested model name.
    pub models: HashMap<String, Behavior>,
    /// Behaviour per bearer token, checked before models (for Bedrock: per access key id).
    pub keys: HashMap<String, Behavior>,
    /// Access key id → secret access key, for the Bedrock routes' SigV4 check.
    pub aws_keys: HashMap<String, String>,
    /// The region Bedrock requests are signed for (empty: `us-east-1`).
    pub aws_region: String,
    /// An STS that exchanges this web-identity token for these credentials (token, access key
    /// id, secret), at `POST /` with `Action=AssumeRoleWithWebIdentity`.
    pub sts: Option<(String, String, String)>,
    /// The session token each temporary access key id must come with (STS, container and
    /// instance credentials): a Bedrock request signed by one without it is a 403.
    pub aws_session_tokens: HashMap<String, String>,
    /// The container credentials endpoint and the instance metadata, when they answer.
    pub aws_metadata: super::aws::AwsMetadataMock,
    /// The Vertex AI routes' tokens, the token endpoint's service accounts, the metadata server.
    pub google: super::vertex::GoogleMock,
}

impl MockConfig {
    /// One behaviour for everything.
    pub fn with_default(default: Behavior) -> Self {
        Self { default, ..Self::default() }
    }

    /// Adds a behaviour for requests carrying `Authorization: Bearer {key}`.
    pub fn key(mut self, key: &str, behavior: Behavior) -> Self {
        self.keys.insert(key.to_owned(), behavior);
        self
    }

    /// Accepts SigV4 signatures of access key `id` with `secret` on the Bedrock routes.
    pub fn aws_key(mut self, id: &str, secret: &str) -> Self {
        self.aws_keys.insert(id.to_owned(), secret.to_owned());
        self
    }

    /// Answers `AssumeRoleWithWebIdentity` for `token` with credentials `id`/`secret` (which
    /// the Bedrock routes then accept), valid for an hour.
    pub fn sts(mut self, token: &str, id: &str, secret: &str) -> Self {
        self.sts = Some((token.to_owned(), id.to_owned(), secret.to_owned()));
        self.aws_session_tokens.insert(id.to_owned(), "mock-session-token".to_owned());
        self.aws_key(id, secret)
    }

    /// Serves container credentials `id`/`secret` (session token
    /// [`super::aws::CONTAINER_SESSION_TOKEN`]) at [`super::aws::CONTAINER_PATH`] to a GET whose
    /// `Authorization` is one of `tokens` (with none, to any GET); the Bedrock routes accept them.
    pub fn container_credentials(mut self, tokens: &[&str], id: &str, secret: &str) -> Self {
        let tokens = tokens.iter().map(|t| (*t).to_owned()).collect();
        self.aws_metadata.container = Some((tokens, id.to_owned()));
        self.aws_session_tokens.insert(id.to_owned(), super::aws::CONTAINER_SESSION_TOKEN.to_owned());
        self.aws_key(id, secret)
    }

    /// Serves the instance metadata (IMDSv2 only) of a role whose credentials are
    /// `id`/`secret` (session token [`super::aws::INSTANCE_SESSION_TOKEN`]); the Bedrock routes
    /// accept them.
    pub fn instance_metadata(mut self, id: &str, secret: &str) -> Self {
        self.aws_metadata.instance = Some(id.to_owned());
        self.aws_session_tokens.insert(id.to_owned(), super::aws::INSTANCE_SESSION_TOKEN.to_owned());
        self.aws_key(id, secret)
    }

    /// Accepts the access token `token` on the Vertex AI routes (besides the minted ones).
    pub fn vertex_token(mut self, token: &str) -> Self {
        self.google.tokens.insert(token.to_owned());
        self
    }

    /// Mints access tokens at `POST /token` for JWTs of `email` signed by the key whose public
    /// half is `public_key` (PKCS#1 `RSAPublicKey` DER), valid `lifetime` seconds (0: 3600).
    pub fn service_account(mut self, email: &str, public_key: &[u8], lifetime: u64) -> Self {
        self.google.accounts.insert(email.to_owned(), public_key.to_vec());
        self.google.lifetime = lifetime;
        self
    }

    /// Answers the metadata server's token route (GKE workload identity).
    pub fn metadata_server(mut self) -> Self {
        self.google.metadata = true;
        self
    }

    /// Adds a behaviour for one model.
    pub fn model(mut self, name: &str, behavior: Behavior) -> Self {
        self.models.insert(name.to_owned(), behavior);
        self
    }

    /// Parses a TOML mock config.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let raw: RawMockConfig = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![crate::config::ConfigError { path: String::new(), message: e.to_string() }])
        })?;
        let mut p = Problems::default();
        let default = raw.default.validate("default", &mut p);
        let models =
            raw.models.iter().map(|(m, b)| (m.clone(), b.validate(&format!("models.{m}"), &mut p))).collect();
        let keys =
            raw.keys.iter().map(|(k, b)| (k.clone(), b.validate(&format!("keys.{k}"), &mut p))).collect();
        p.finish()?;
        let aws_keys = raw.aws_keys.into_iter().collect();
        Ok(Self {
            default,
            models,
            keys,
            aws_keys,
            aws_region: raw.aws_region.unwrap_or_default(),
            sts: None,
            aws_session_tokens: HashMap::new(),
            aws_metadata: super::aws::AwsMetadataMock::default(),
            google: super::vertex::GoogleMock::default(),
        })
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
    /// Body bytes as received.
    pub body: Bytes,
}

/// Counters, readable at any time and awaitable through [`MockStats::wait_until`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Requests received (any path).
    pub requests: u64,
    /// Connections accepted.
    pub connections_opened: u64,
    /// Connections closed (by either side).
    pub connections_closed: u64,
    /// Streams started.
    pub streams_started: u64,
    /// Streams sent to the end.
    pub streams_completed: u64,
    /// Streams whose reader went away before the end.
    pub streams_cancelled: u64,
    /// Access tokens minted (Vertex AI token endpoint and metadata server).
    pub tokens_minted: u64,
    /// AWS credentials handed out by the container endpoint and the instance metadata.
    pub aws_credentials_served: u64,
}

/// The mock server's counters and request log, and the models a test has taken down.
#[derive(Debug)]
pub struct MockStats {
    /// Models answering this status to every request, whatever their behaviour: an outage a
    /// test starts and ends while the mock runs.
    down: Mutex<HashMap<String, StatusCode>>,
    requests: AtomicU64,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    aws_credentials_served: AtomicU64,
    log: Mutex<Vec<RecordedRequest>>,
    changed: watch::Sender<()>,
    /// The access tokens minted, which the Vertex AI routes accept until they expire.
    minted: super::vertex::Minted,
}

/// How many requests the log keeps (load tests send many more; counters still count them all).
const LOG_LIMIT: usize = 10_000;

impl Default for MockStats {
    fn default() -> Self {
        Self {
            down: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            aws_credentials_served: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            changed: watch::channel(()).0,
            minted: super::vertex::Minted::default(),
        }
    }
}

impl MockStats {
    /// Takes `model` down (every request answered `status`), or back up with `None`;
    /// [`super::aws::METADATA`] takes the AWS credential endpoints down (503).
    pub fn set_down(&self, model: &str, status: Option<StatusCode>) {
        if let Ok(mut down) = self.down.lock() {
            match status {
                Some(s) => down.insert(model.to_owned(), s),
                None => down.remove(model),
            };
        }
    }

    fn is_down(&self, model: &str) -> Option<StatusCode> {
        self.down.lock().ok()?.get(model).copied()
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::SeqCst),
            connections_opened: self.connections_opened.load(Ordering::SeqCst),
            connections_closed: self.connections_closed.load(Ordering::SeqCst),
            streams_started: self.streams_started.load(Ordering::SeqCst),
            streams_completed: self.streams_completed.load(Ordering::SeqCst),
            streams_cancelled: self.streams_cancelled.load(Ordering::SeqCst),
            tokens_minted: self.minted.count(),
            aws_credentials_served: self.aws_credentials_served.load(Ordering::SeqCst),
        }
    }

    /// Every request received so far (up to the first 10,000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until `cond` holds, or `timeout` passes; returns the last snapshot either way.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&StatsSnapshot) -> bool,
    ) -> Result<StatsSnapshot, StatsSnapshot> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snap = self.snapshot();
            if cond(&snap) {
                return Ok(snap);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                let snap = self.snapshot();
                return if cond(&snap) { Ok(snap) } else { Err(snap) };
            }
        }
    }

    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.send_replace(());
    }

    fn record(&self, req: RecordedRequest) {
        if let Ok(mut log) = self.log.lock()
            && log.len() < LOG_LIMIT
        {
            log.push(req);
        }
        self.bump(&self.requests);
    }
}

impl StreamObserver for MockStats {
    fn completed(&self) {
        self.bump(&self.streams_completed);
    }

    fn cancelled(&self) {
        self.bump(&self.streams_cancelled);
    }
}

/// A running mock server; stops when dropped.
pub struct MockUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<MockStats>,
    stop: Option<oneshot::Sender<()>>,
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` and serves `config` on a background task.
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let (stop, stopped) = oneshot::channel();
        let task_stats = stats.clone();
        tokio::spawn(async move {
            serve(listener, config, task_stats, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self { addr, stats, stop: Some(stop) })
    }

    /// `http://ADDR`, to use as a provider's `base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Shared {
    config: MockConfig,
    /// Requests served per model with its own behaviour, for `fail_first`.
    served: HashMap<String, AtomicU64>,
    /// Requests served per key with its own behaviour.
    served_keys: HashMap<String, AtomicU64>,
    /// Requests served with the default behaviour.
    default_served: AtomicU64,
    stats: Arc<MockStats>,
    /// The prompt cache of `prompt_cache = true`, per key.
    prompt_cache: super::cache::PromptCache,
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: MockConfig,
    stats: Arc<MockStats>,
    shutdown: impl Future<Output = ()>,
) {
    let served = config.models.keys().map(|k| (k.clone(), AtomicU64::new(0))).collect();
    let served_keys = config.keys.keys().map(|k| (k.clone(), AtomicU64::new(0))).collect();
    let shared = Arc::new(Shared {
        config,
        served,
        served_keys,
        default_served: AtomicU64::new(0),
        stats,
        prompt_cache: super::cache::PromptCache::default(),
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        shared.stats.bump(&shared.stats.connections_opened);
        let shared = shared.clone();
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn({
                    let shared = shared.clone();
                    move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    }
                }),
            )
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
            shared.stats.bump(&shared.stats.connections_closed);
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                super::error_json("mock: body read failed", "invalid_request_error"),
            );
        }
    };
    let path = parts.uri.path().to_owned();
    if parts.method == Method::GET && path == "/_mock/stats" {
        // Control traffic: answered, not counted.
        let stats = serde_json::to_string(&shared.stats.snapshot()).unwrap_or_default();
        return json_response(StatusCode::OK, Bytes::from(stats));
    }
    shared.stats.record(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path_and_query().map_or_else(|| path.clone(), ToString::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let gemini = |method: &str| {
        path.strip_suffix(method).and_then(|p| p.rsplit_once("/models/")).map(|(_, model)| model.to_owned())
    };
    if parts.method == Method::POST && path == "/" && body.starts_with(b"Action=AssumeRoleWithWebIdentity") {
        return super::bedrock::sts_answer(shared.config.sts.as_ref(), &body);
    }
    let down = shared.stats.is_down(super::aws::METADATA).is_some();
    let secret_of = |id: &str| shared.config.aws_keys.get(id).map(String::as_str);
    let request = (&parts.method, path.as_str(), &parts.headers);
    if let Some((resp, served)) = super::aws::answer(&shared.config.aws_metadata, request, down, secret_of) {
        if served {
            shared.stats.bump(&shared.stats.aws_credentials_served);
        }
        return resp;
    }
    if let Some(resp) = google(shared, &parts, &body).await {
        return resp;
    }
    if parts.method == Method::POST
        && let Some((model, stream)) = converse_route(&path)
    {
        return converse_call(shared, &parts, &body, model, stream).await;
    }
    let endpoint = match (&parts.method, path.as_str()) {
        (&Method::POST, _) if let Some(model) = gemini(":generateContent") => {
            MockEndpoint::Generate { model, stream: false }
        }
        (&Method::POST, _) if let Some(model) = gemini(":streamGenerateContent") => {
            MockEndpoint::Generate { model, stream: true }
        }
        (&Method::POST, p) if p.ends_with(":batchEmbedContents") => MockEndpoint::BatchEmbed,
        (&Method::POST, p) if p.ends_with("/chat/completions") => MockEndpoint::Chat,
        (&Method::POST, p) if p.ends_with("/embeddings") => MockEndpoint::Embeddings,
        (&Method::POST, p) if p.ends_with("/v1/messages") => MockEndpoint::Messages,
        (&Method::POST, p) if p.ends_with("/responses") => MockEndpoint::Responses,
        (&Method::GET, p) if p.ends_with("/models") => return models(shared),
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                super::error_json("mock: no such route", "invalid_request_error"),
            );
        }
    };
    let model = match &endpoint {
        MockEndpoint::Generate { model, .. } => model.clone(),
        _ => serde_json::from_slice::<ModelOnly>(&body).map(|m| m.model).unwrap_or_default(),
    };
    // The key, however the provider kind sends it.
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .or_else(|| header("api-key"))
        .or_else(|| header("x-goog-api-key"))
        .unwrap_or_default();
    serve_call(shared, &parts.headers, endpoint, &body, (&model, bearer)).await
}

/// Answers one call of `endpoint` for `model` with the behaviour of its key (`bearer`), its
/// model, or the default; a model taken down answers its status.
async fn serve_call(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: MockEndpoint,
    body: &Bytes,
    (model, bearer): (&str, &str),
) -> Response<MockBody> {
    let (behavior, served) = match (shared.config.keys.get(bearer), shared.config.models.get(model)) {
        (Some(b), _) => (b, shared.served_keys.get(bearer).unwrap_or(&shared.default_served)),
        (None, Some(b)) => (b, shared.served.get(model).unwrap_or(&shared.default_served)),
        (None, None) => (&shared.config.default, &shared.default_served),
    };
    let overridden = match shared.stats.is_down(model) {
        Some(status) => {
            Some(Behavior { status: Some(status), fail_first: None, fail_rate: 0.0, ..behavior.clone() })
        }
        None => overrides(behavior, headers),
    };
    let behavior = overridden.as_ref().unwrap_or(behavior);
    let observer: Arc<dyn StreamObserver> = shared.stats.clone();
    let resp =
        super::answer(behavior, served, endpoint, body, Some(observer), (&shared.prompt_cache, bearer)).await;
    if matches!(resp.body(), MockBody::Stream(_)) {
        shared.stats.bump(&shared.stats.streams_started);
    }
    resp
}

/// A Bedrock route's model (percent-decoded) and whether it streams:
/// `/model/{modelId}/converse` or `/model/{modelId}/converse-stream`.
fn converse_route(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, method) = rest.split_once('/')?;
    let stream = match method {
        "converse" => false,
        "converse-stream" => true,
        _ => return None,
    };
    Some((super::sigv4::percent_decode(model), stream))
}

/// A Bedrock Converse call: its SigV4 signature checked (a 403 in Bedrock's shape when it does
/// not hold), then answered like any call, the access key id standing for the bearer.
async fn converse_call(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &Bytes,
    model: String,
    stream: bool,
) -> Response<MockBody> {
    let signed = super::sigv4::Signed {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body,
    };
    let region = if shared.config.aws_region.is_empty() { "us-east-1" } else { &shared.config.aws_region };
    let key = match super::sigv4::verify(&signed, (region, "bedrock"), |id| {
        shared.config.aws_keys.get(id).map(String::as_str)
    }) {
        Ok(key) => key,
        Err(e) => return super::bedrock::error_response(StatusCode::FORBIDDEN, &format!("mock: {e}")),
    };
    if let Some(want) = shared.config.aws_session_tokens.get(&key) {
        let sent = parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
        let signed = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|a| {
            a.split(',').any(|f| {
                f.trim()
                    .strip_prefix("SignedHeaders=")
                    .is_some_and(|h| h.split(';').any(|h| h == "x-amz-security-token"))
            })
        });
        if sent != Some(want.as_str()) || !signed {
            let message = "mock: The security token included in the request is invalid.";
            return super::bedrock::error_response(StatusCode::FORBIDDEN, message);
        }
    }
    serve_call(shared, &parts.headers, MockEndpoint::Converse { stream }, body, (&model, &key)).await
}

/// The mock's Google routes (see [`super::vertex`]), when the request is for one.
async fn google(shared: &Shared, parts: &http::request::Parts, body: &Bytes) -> Option<Response<MockBody>> {
    use super::vertex;
    let (google, minted) = (&shared.config.google, &shared.stats.minted);
    let path = parts.uri.path();
    if parts.method == Method::POST && path == "/token" {
        let resp = vertex::token_answer(google, minted, body);
        shared.stats.changed.send_replace(());
        return Some(resp);
    }
    if parts.method == Method::GET && path == vertex::METADATA_PATH {
        let resp = vertex::metadata_answer(google, minted, &parts.headers);
        shared.stats.changed.send_replace(());
        return Some(resp);
    }
    let route = vertex::route(path).filter(|_| parts.method == Method::POST)?;
    let Some(token) = vertex::authorized(google, minted, &parts.headers) else {
        let message = "mock: Request had invalid authentication credentials.";
        return Some(vertex::google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message));
    };
    let sse = parts.uri.query() == Some("alt=sse");
    let (endpoint, body) = match (route.publisher.as_str(), route.method.as_str()) {
        ("google", "generateContent") => {
            (MockEndpoint::Generate { model: route.model.clone(), stream: false }, body.clone())
        }
        ("google", "streamGenerateContent") if sse => {
            (MockEndpoint::Generate { model: route.model.clone(), stream: true }, body.clone())
        }
        ("anthropic", method @ ("rawPredict" | "streamRawPredict")) => {
            match vertex::claude_body(body, &route.model, method == "streamRawPredict") {
                Ok(body) => (MockEndpoint::Messages, body),
                Err(why) => return Some(vertex::anthropic_invalid(why)),
            }
        }
        _ => return Some(vertex::google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "mock: no such method")),
    };
    Some(serve_call(shared, &parts.headers, endpoint, &body, (&route.model, token)).await)
}

#[derive(Deserialize)]
struct ModelOnly {
    #[serde(default)]
    model: String,
}

fn models(shared: &Shared) -> Response<MockBody> {
    let mut ids: Vec<&str> = shared.config.models.keys().map(String::as_str).collect();
    if ids.is_empty() {
        ids.push("mock-model");
    }
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "mock"}))
        .collect();
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string()),
    )
}

/// Applies `x-mock-*` request headers on top of a behaviour; `None` when there are none.
fn overrides(base: &Behavior, headers: &HeaderMap) -> Option<Behavior> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !headers.keys().any(|k| k.as_str().starts_with("x-mock-")) {
        return None;
    }
    let dur = |name: &str| get(name).and_then(|v| humantime::parse_duration(v).ok());
    let mut b = base.clone();
    if let Some(s) =
        get("x-mock-status").and_then(|v| v.parse::<u16>().ok()).and_then(|s| StatusCode::from_u16(s).ok())
    {
        b.status = Some(s);
    }
    if let Some(v) = get("x-mock-retry-after").and_then(|v| http::HeaderValue::from_str(v).ok()) {
        b.retry_after = Some(v);
    }
    if let Some(d) = dur("x-mock-latency") {
        b.latency = d;
    }
    if let Some(d) = dur("x-mock-ttft") {
        b.ttft = d;
    }
    if let Some(t) = get("x-mock-tokens-per-second")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| *t > 0.0 && t.is_finite())
    {
        b.chunk_interval = Duration::from_secs_f64(1.0 / t);
    }
    if let Some(n) = get("x-mock-abort-after").and_then(|v| v.parse().ok()) {
        b.abort_after = Some(n);
    }
    if let Some(n) = get("x-mock-fail-first").and_then(|v| v.parse().ok()) {
        b.fail_first = Some(n);
    }
    if let Some(r) = get("x-mock-reply") {
        b.reply = Arc::from(r);
    }
    Some(b)
}
