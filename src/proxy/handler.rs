//! Endpoint dispatch. [`handle`] wraps [`handle_inner`] and is where a [`ProxyError`] becomes
//! a response (rendered by [`super::respond`] in the client's format); it also sets the headers
//! every answer carries (`x-request-id`, `x-tier1-*`, `Server-Timing` on proxied ones), counts
//! the request and observes where its time to the head went ([`super::timing`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{Body, full};
use super::ctx::{RequestCtx, RequestRecord};
use super::forward;
use super::headers::{self, X_TIER1_ATTEMPTS, X_TIER1_MODEL, X_TIER1_PROVIDER};
use super::respond::{self, Dialect};
use super::timing::{Timed, Waits};
use crate::error::ProxyError;
use crate::metrics::labels::WaitKind;
use crate::metrics::status_class;
use crate::providers::Operation;
use crate::snapshot::Live;
use crate::state::AppState;

/// The endpoints tier1 serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /v1/chat/completions`, `POST /openai/v1/chat/completions`.
    Chat,
    /// `POST /v1/embeddings`, `POST /openai/v1/embeddings`.
    Embeddings,
    /// `POST /anthropic/v1/messages`, `POST /v1/messages`: Anthropic Messages bodies.
    Messages,
    /// `POST /v1/responses`, `POST /openai/v1/responses`: the OpenAI Responses API.
    Responses,
    /// `GET /v1/models`, `GET /openai/v1/models`.
    Models,
    /// `GET /health`, `GET /healthz`: liveness.
    Health,
    /// `GET /readyz`: readiness.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /admin/state`.
    AdminState,
    /// `GET /admin/config`.
    AdminConfig,
    /// `POST /admin/reload`.
    AdminReload,
    /// `POST /admin/breakers/reset`.
    AdminReset,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The main listener; it serves the admin routes too unless `server.admin_listen` is set.
    Main,
    /// `server.admin_listen`: admin routes, health and metrics only.
    Admin,
    /// `server.probe_listen`: health and metrics only, for a kubelet and a scraper that reach the
    /// pod's address while the API listens on loopback.
    Probe,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        let api = path.strip_prefix("/openai").unwrap_or(path);
        Some(match (path, api) {
            (_, "/v1/chat/completions") => Self::Chat,
            (_, "/v1/embeddings") => Self::Embeddings,
            (_, "/v1/responses") => Self::Responses,
            ("/anthropic/v1/messages" | "/v1/messages", _) => Self::Messages,
            (_, "/v1/models") => Self::Models,
            ("/health" | "/healthz", _) => Self::Health,
            ("/readyz", _) => Self::Ready,
            ("/metrics", _) => Self::Metrics,
            ("/admin/state", _) => Self::AdminState,
            ("/admin/config", _) => Self::AdminConfig,
            ("/admin/reload", _) => Self::AdminReload,
            ("/admin/breakers/reset", _) => Self::AdminReset,
            _ => return None,
        })
    }

    fn method(self) -> (Method, &'static str) {
        match self {
            Self::Chat
            | Self::Embeddings
            | Self::Messages
            | Self::Responses
            | Self::AdminReload
            | Self::AdminReset => (Method::POST, "POST"),
            Self::Models
            | Self::Health
            | Self::Ready
            | Self::Metrics
            | Self::AdminState
            | Self::AdminConfig => (Method::GET, "GET, HEAD"),
        }
    }

    /// The metric label; `None` for the operational endpoints, which are not counted as traffic.
    fn is_admin(self) -> bool {
        matches!(self, Self::AdminState | Self::AdminConfig | Self::AdminReload | Self::AdminReset)
    }

    /// Whether `listener` serves this endpoint.
    fn served_on(self, listener: Listener, admin_listen: bool) -> bool {
        match listener {
            Listener::Main => !self.is_admin() || !admin_listen,
            Listener::Admin => self.is_admin() || self.is_probe(),
            Listener::Probe => self.is_probe(),
        }
    }

    /// Health, readiness and metrics: what every listener serves, without keys.
    fn is_probe(self) -> bool {
        matches!(self, Self::Health | Self::Ready | Self::Metrics)
    }

    /// The endpoints forwarded to providers.
    fn is_proxied(self) -> bool {
        matches!(self, Self::Chat | Self::Embeddings | Self::Messages | Self::Responses)
    }

    fn label(self) -> Option<&'static str> {
        match self {
            Self::Chat => Some("chat"),
            Self::Embeddings => Some("embeddings"),
            Self::Messages => Some("messages"),
            Self::Responses => Some("responses"),
            Self::Models => Some("models"),
            Self::Health
            | Self::Ready
            | Self::Metrics
            | Self::AdminState
            | Self::AdminConfig
            | Self::AdminReload
            | Self::AdminReset => None,
        }
    }
}

/// Serves one request. Never fails: every error becomes an OpenAI-shaped response here.
pub(crate) async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    listener: Listener,
) -> Response<Body> {
    let live = state.live.load();
    let http1 = req.version() == http::Version::HTTP_11;
    let endpoint =
        Endpoint::from_path(req.uri().path()).filter(|e| e.served_on(listener, state.separate_admin));
    let label = endpoint.and_then(Endpoint::label);
    let request_id = headers::request_id(req.headers());
    let record = label.map(|l| {
        RequestRecord::start(state.metrics.clone(), l, request_id.clone(), req.headers(), live.log_sample)
            .traced(state.otel.as_deref(), req.headers())
    });
    let started = tokio::time::Instant::now();
    let mut ctx = RequestCtx::new(request_id, record, started);
    let timing = ctx.timing.clone();
    let inner = handle_inner(&state, &live, endpoint, req, peer, listener, &mut ctx);
    let mut resp = match Timed::new(timing, inner).await {
        Ok(resp) => resp,
        Err(e) => {
            if matches!(e, ProxyError::Exhausted(_)) {
                let request_id = ctx.request_id.to_str().unwrap_or("");
                tracing::warn!(request_id, error = %e, "request failed upstream");
            }
            ctx.code = respond::code(&e);
            // An Anthropic-format client gets Anthropic's error shape, same status.
            let dialect =
                if endpoint == Some(Endpoint::Messages) { Dialect::Anthropic } else { Dialect::OpenAi };
            respond::error(&e, dialect)
        }
    };
    if let Some(label) = label {
        let waits = ctx.timing.waits();
        let overhead = started.elapsed().saturating_sub(waits.total());
        observe(&state, &ctx, label, resp.status(), overhead, &waits);
        if live.server_timing && endpoint.is_some_and(Endpoint::is_proxied) {
            let upstream = waits.of(WaitKind::Upstream) + waits.of(WaitKind::Hedge);
            if let Some(v) =
                headers::server_timing(overhead, upstream, waits.total().saturating_sub(upstream))
            {
                resp.headers_mut().insert(headers::SERVER_TIMING, v);
            }
        }
    }
    // Not relayed (an error, or a full body): the request ends now.
    ctx.finish(resp.status().as_u16());
    let h = resp.headers_mut();
    if http1 && state.draining.load(Ordering::Acquire) {
        // Shutting down: ask keep-alive clients (a balancer's pool) not to reuse this connection.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    h.insert(headers::X_REQUEST_ID, ctx.request_id);
    if ctx.attempts > 0 {
        h.insert(X_TIER1_ATTEMPTS, HeaderValue::from(ctx.attempts));
        if let Some(p) = ctx.provider {
            h.insert(X_TIER1_PROVIDER, p);
        }
        if let Some(m) = ctx.model {
            h.insert(X_TIER1_MODEL, m);
        }
    }
    resp
}

/// Counts a request of endpoint `label` answered `status`: its overhead (its time to the head
/// less its `waits`) and each of its waits.
fn observe(
    state: &AppState,
    ctx: &RequestCtx,
    label: &'static str,
    status: StatusCode,
    overhead: Duration,
    waits: &Waits,
) {
    let m = &state.metrics;
    let route = ctx.route.as_str();
    let (code, status_class) = (ctx.code.as_str(), status_class(status));
    m.requests_total
        .get(crate::metrics::labels::Request { route, endpoint: label, code, status_class })
        .inc();
    m.overhead.get(crate::metrics::labels::Endpoint { endpoint: label }).observe(overhead.as_secs_f64());
    for (series, wait) in m.waits.iter().zip(waits.0) {
        if !wait.is_zero() {
            series.observe(wait.as_secs_f64());
        }
    }
}

/// Dispatches to the endpoint; any error is mapped by [`handle`].
async fn handle_inner(
    state: &AppState,
    live: &std::sync::Arc<Live>,
    endpoint: Option<Endpoint>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    listener: Listener,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, ProxyError> {
    // Everything under the API prefixes needs the key except the model list (fronts health-check
    // it without one); checked before 404/405 so unauthenticated callers learn nothing. The probe
    // listener serves no API at all: 404 there, key or not.
    if listener != Listener::Probe
        && endpoint != Some(Endpoint::Models)
        && is_api_path(req.uri().path())
        && !headers::authorized(req.headers(), &live.api_keys)
    {
        return Err(ProxyError::Unauthorized);
    }
    let endpoint = endpoint.ok_or(ProxyError::NoSuchPath)?;
    let (method, allow) = endpoint.method();
    let head = req.method() == Method::HEAD && method == Method::GET;
    if req.method() != method && !head {
        return Err(ProxyError::MethodNotAllowed(allow));
    }
    let resp = match endpoint {
        Endpoint::Health => json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}")),
        Endpoint::Ready if state.draining.load(Ordering::Acquire) => {
            json(StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"{\"status\":\"draining\"}"))
        }
        Endpoint::Ready => json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ready\"}")),
        Endpoint::Metrics => {
            crate::admin::refresh_gauges(&state.metrics, live, state.registry.clock);
            state.metrics.manifest_age_seconds.set(state.manifest.age().unwrap_or(-1.0));
            state.ratelimit.refresh_gauges();
            let mut resp = Response::new(full(Bytes::from(state.metrics.encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Endpoint::Models => {
            // With the front's manifest loaded, its names for what tier1 serves are listed too.
            let body = match state.manifest.load().as_deref() {
                Some(catalog) => crate::manifest::models_body(&live.models_body, catalog, |n| {
                    live.table.provider(n).is_some()
                }),
                None => live.models_body.clone(),
            };
            json(StatusCode::OK, body)
        }
        Endpoint::AdminState | Endpoint::AdminConfig | Endpoint::AdminReload | Endpoint::AdminReset => {
            crate::admin::authorize(live, req.uri(), req.headers(), peer)?;
            admin(state, live, endpoint).await
        }
        Endpoint::Chat | Endpoint::Embeddings | Endpoint::Messages | Endpoint::Responses => {
            if let Some(limit) = &state.inflight_limit {
                // No queue: over the limit, the caller (or its balancer) retries elsewhere at once,
                // or here when a slot is likely free (the mean hold over the slots).
                let ceiling = live.resilience.cooldown.max;
                let permit =
                    limit.try_acquire().ok_or_else(|| ProxyError::Busy(limit.retry_after(ceiling)))?;
                if let Some(r) = ctx.record.as_mut() {
                    r.hold(permit);
                }
            }
            let op = match endpoint {
                Endpoint::Embeddings => Operation::Embeddings,
                Endpoint::Messages => Operation::Messages,
                Endpoint::Responses => Operation::Responses,
                _ => Operation::Chat,
            };
            return forward::forward(state, live, req, op, ctx).await;
        }
    };
    Ok(if head { resp.map(|_| full(Bytes::new())) } else { resp })
}

/// `/v1`, `/openai` and `/anthropic`, and everything below them.
fn is_api_path(path: &str) -> bool {
    ["/v1", "/openai", "/anthropic"]
        .iter()
        .any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// The admin routes, once authorized.
async fn admin(state: &AppState, live: &Live, endpoint: Endpoint) -> Response<Body> {
    match endpoint {
        Endpoint::AdminConfig => match state.reloader.status() {
            Some(status) => json(StatusCode::OK, crate::admin::config(live, &status)),
            None => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"{\"error\":\"status unavailable\"}"),
            ),
        },
        Endpoint::AdminReload => {
            let outcome = state.reloader.reload(state).await;
            let (status, body) = match &outcome {
                crate::reload::Outcome::Applied { hash } | crate::reload::Outcome::Unchanged { hash } => {
                    (StatusCode::OK, serde_json::json!({"result": outcome.label(), "hash": hash}))
                }
                crate::reload::Outcome::Failed { errors } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({"result": "error", "errors": errors}),
                ),
                crate::reload::Outcome::NoFile => (
                    StatusCode::CONFLICT,
                    serde_json::json!({"result": "error", "errors": ["tier1 runs on its built-in config: no file to reload"]}),
                ),
            };
            json(status, Bytes::from(body.to_string()))
        }
        Endpoint::AdminReset => {
            state.registry.reset();
            tracing::info!("breakers and cooldowns reset by the admin API");
            json(StatusCode::OK, Bytes::from_static(b"{\"result\":\"ok\"}"))
        }
        Endpoint::AdminState
        | Endpoint::Chat
        | Endpoint::Embeddings
        | Endpoint::Messages
        | Endpoint::Responses
        | Endpoint::Models
        | Endpoint::Health
        | Endpoint::Ready
        | Endpoint::Metrics => json(StatusCode::OK, crate::admin::state(live, state.registry.clock, state)),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
