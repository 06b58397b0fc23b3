//! Endpoint dispatch. [`handle`] wraps [`handle_inner`] and is the one place where a
//! [`ProxyError`] becomes a response; it also sets the headers every answer carries
//! (`x-request-id`, `x-tier1-*`) and counts the request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::AppState;
use super::body::{Body, RequestRecord, RouteLabel, full};
use super::forward;
use super::headers::{self, X_TIER1_ATTEMPTS, X_TIER1_MODEL, X_TIER1_PROVIDER};
use crate::error::ProxyError;
use crate::metrics::status_class;
use crate::providers::Operation;
use crate::snapshot::Live;

/// The endpoints tier1 serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`, `POST /openai/v1/chat/completions`.
    Chat,
    /// `POST /v1/embeddings`, `POST /openai/v1/embeddings`.
    Embeddings,
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
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        let api = path.strip_prefix("/openai").unwrap_or(path);
        Some(match (path, api) {
            (_, "/v1/chat/completions") => Self::Chat,
            (_, "/v1/embeddings") => Self::Embeddings,
            (_, "/v1/models") => Self::Models,
            ("/health" | "/healthz", _) => Self::Health,
            ("/readyz", _) => Self::Ready,
            ("/metrics", _) => Self::Metrics,
            ("/admin/state", _) => Self::AdminState,
            _ => return None,
        })
    }

    fn method(self) -> (Method, &'static str) {
        match self {
            Self::Chat | Self::Embeddings => (Method::POST, "POST"),
            Self::Models | Self::Health | Self::Ready | Self::Metrics | Self::AdminState => {
                (Method::GET, "GET, HEAD")
            }
        }
    }

    /// The metric label; `None` for the operational endpoints, which are not counted as traffic.
    fn label(self) -> Option<&'static str> {
        match self {
            Self::Chat => Some("chat"),
            Self::Embeddings => Some("embeddings"),
            Self::Models => Some("models"),
            Self::Health | Self::Ready | Self::Metrics | Self::AdminState => None,
        }
    }
}

/// What the forwarding steps learned, for the response headers and the metrics.
pub struct RequestCtx {
    /// The request id (client's or generated).
    pub request_id: HeaderValue,
    /// Upstream attempts started.
    pub attempts: u32,
    /// Provider that answered (or failed last).
    pub provider: Option<HeaderValue>,
    /// Upstream model name.
    pub model: Option<HeaderValue>,
    /// Route label for metrics.
    pub route: RouteLabel,
    /// In-flight and duration record; moved into a relayed body so it ends with the stream.
    pub record: Option<RequestRecord>,
}

/// Serves one request. Never fails: every error becomes an OpenAI-shaped response here.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let live = state.live.load();
    let endpoint = Endpoint::from_path(req.uri().path());
    let label = endpoint.and_then(Endpoint::label);
    let mut ctx = RequestCtx {
        request_id: headers::request_id(req.headers()),
        attempts: 0,
        provider: None,
        model: None,
        route: RouteLabel::Unmatched,
        record: label.map(|l| RequestRecord::start(state.metrics.clone(), l)),
    };
    let mut resp = match handle_inner(&state, &live, endpoint, req, peer, &mut ctx).await {
        Ok(resp) => resp,
        Err(e) => {
            if matches!(e, ProxyError::Exhausted(_)) {
                tracing::warn!(request_id = ?ctx.request_id, error = %e, "request failed upstream");
            }
            e.into_response()
        }
    };
    if let Some(label) = label {
        let route = ctx.route.as_str();
        state.metrics.requests_total.with_label_values(&[route, label, status_class(resp.status())]).inc();
    }
    if let Some(mut record) = ctx.record.take() {
        // Not relayed (an error, or a full body): the request ends now.
        record.route = ctx.route.clone();
    }
    let h = resp.headers_mut();
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

/// Dispatches to the endpoint; any error is mapped by [`handle`].
async fn handle_inner(
    state: &AppState,
    live: &Live,
    endpoint: Option<Endpoint>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, ProxyError> {
    // Everything under the API prefixes needs the key except the model list (fronts health-check
    // it without one); checked before 404/405 so unauthenticated callers learn nothing.
    if endpoint != Some(Endpoint::Models)
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
            let mut resp = Response::new(full(Bytes::from(state.metrics.encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Endpoint::Models => json(StatusCode::OK, live.models_body.clone()),
        Endpoint::AdminState if !crate::admin::allowed(peer) => return Err(ProxyError::Forbidden),
        Endpoint::AdminState => json(StatusCode::OK, crate::admin::state(live, state.registry.clock)),
        Endpoint::Chat | Endpoint::Embeddings => {
            let op = if endpoint == Endpoint::Chat { Operation::Chat } else { Operation::Embeddings };
            return forward::forward(live, state.registry.clock, req, op, ctx).await;
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

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
