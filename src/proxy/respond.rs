//! What the client sees when something goes wrong, in the client's own format: every error
//! response ([`error`]) and every in-band error event ([`stream_error`]) tier1 writes. OpenAI
//! clients get `{"error":{"message","type","param","code"}}` (with the failed `attempts` when
//! every candidate failed); Anthropic Messages clients get `{"type":"error","error":{"type",
//! "message"}}` with the same status and headers. A provider's own error bodies are not written
//! here: they are translated ([`crate::translate`]) and redacted on their way through.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::body::{Body, full};
use crate::error::{Class, Exhausted, ProxyError, RelayError};
use crate::providers::Operation;
use crate::translate::messages::anthropic_error_type;

/// The error format a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI's, on every endpoint but Messages.
    OpenAi,
    /// Anthropic's, on the Messages endpoint.
    Anthropic,
    /// OpenAI's Responses API: OpenAI's error bodies, its own typed stream events.
    Responses,
}

impl Dialect {
    /// The format of a client calling `op`.
    pub(crate) fn of(op: Operation) -> Self {
        match op {
            Operation::Messages => Self::Anthropic,
            Operation::Responses => Self::Responses,
            Operation::Chat | Operation::Embeddings => Self::OpenAi,
        }
    }
}

/// What a client's answer was, as the bounded `code` label of `tier1_requests_total`. Each code
/// is one status (`overloaded` and `no_target` split the 503s by cause), so a ratio of codes is a
/// ratio of what clients saw; why an upstream failed is `tier1_upstream_requests_total`'s
/// `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// A success (2xx).
    Ok,
    /// 429: a caller limit or budget, or every upstream is rate limited, overloaded or resting
    /// (come back after `Retry-After`).
    RateLimited,
    /// 503: tier1 cannot take the request now (`server.max_inflight` reached, or a fail-closed
    /// strict limit cannot reach Redis).
    Overloaded,
    /// 503: no target could be tried (their breakers are open).
    NoTarget,
    /// 504: every attempt timed out.
    Timeout,
    /// 502: the upstreams failed (errors, broken answers, unreachable, tier1's key refused).
    UpstreamError,
    /// 401 or 403: the caller's key.
    Unauthorized,
    /// 400, 405, 408, 409, 422: the request as sent (a provider's refusal of it included).
    Invalid,
    /// 404: no such model or path.
    NotFound,
    /// 413: the body is over `server.max_body_bytes` (or the provider's limit).
    TooLarge,
}

impl Code {
    /// Every code, in the README's order.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 10] = [
        Self::Ok,
        Self::RateLimited,
        Self::Overloaded,
        Self::NoTarget,
        Self::Timeout,
        Self::UpstreamError,
        Self::Unauthorized,
        Self::Invalid,
        Self::NotFound,
        Self::TooLarge,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::NoTarget => "no_target",
            Self::Timeout => "timeout",
            Self::UpstreamError => "upstream_error",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
        }
    }

    /// The code of a provider's refusal relayed to the client (its status is the provider's).
    pub(crate) fn of_refusal(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            _ => Self::Invalid,
        }
    }
}

/// What an error is rendered as: status, OpenAI error `type`, `code` and `param`, and the
/// metric's [`Code`].
struct Rendering {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    param: Option<&'static str>,
    label: Code,
}

const fn rendering(
    (status, kind, code, param): (StatusCode, &'static str, &'static str, Option<&'static str>),
    label: Code,
) -> Rendering {
    Rendering { status, kind, code, param, label }
}

/// The rendering of an error. The `match` is exhaustive on purpose: a new variant must be given
/// its status and code here.
#[deny(clippy::wildcard_enum_match_arm)]
fn status_of(e: &ProxyError) -> Rendering {
    const INVALID: &str = "invalid_request_error";
    let limited = |(status, code), label| rendering((status, "rate_limit_error", code, None), label);
    match e {
        ProxyError::BadRequest(e) => {
            rendering((StatusCode::BAD_REQUEST, INVALID, e.code(), e.param()), Code::Invalid)
        }
        ProxyError::Unauthorized => {
            rendering((StatusCode::UNAUTHORIZED, INVALID, "invalid_api_key", None), Code::Unauthorized)
        }
        ProxyError::UnknownModel(_) => {
            rendering((StatusCode::NOT_FOUND, INVALID, "model_not_found", Some("model")), Code::NotFound)
        }
        ProxyError::Forbidden => {
            rendering((StatusCode::FORBIDDEN, INVALID, "forbidden", None), Code::Unauthorized)
        }
        ProxyError::NoSuchPath => {
            rendering((StatusCode::NOT_FOUND, INVALID, "unknown_url", None), Code::NotFound)
        }
        ProxyError::MethodNotAllowed(_) => {
            rendering((StatusCode::METHOD_NOT_ALLOWED, INVALID, "method_not_allowed", None), Code::Invalid)
        }
        ProxyError::PayloadTooLarge(_) => {
            rendering((StatusCode::PAYLOAD_TOO_LARGE, INVALID, "request_too_large", None), Code::TooLarge)
        }
        // The client's own slowness: the caller's request, not an upstream timeout.
        ProxyError::BodyTimeout => {
            rendering((StatusCode::REQUEST_TIMEOUT, INVALID, "request_timeout", None), Code::Invalid)
        }
        ProxyError::BodyRead => {
            rendering((StatusCode::BAD_REQUEST, INVALID, "body_read_error", None), Code::Invalid)
        }
        ProxyError::Exhausted(e) => exhausted_status(e),
        ProxyError::Busy(_) => rendering(
            (StatusCode::SERVICE_UNAVAILABLE, "server_error", "server_busy", None),
            Code::Overloaded,
        ),
        ProxyError::WrongFormat { .. } => rendering(
            (StatusCode::BAD_REQUEST, INVALID, "unsupported_provider_format", Some("model")),
            Code::Invalid,
        ),
        ProxyError::Untranslatable { param, .. } => {
            rendering((StatusCode::BAD_REQUEST, INVALID, "untranslatable_request", *param), Code::Invalid)
        }
        // A 4xx, never a 5xx: the front rests the sidecar for every provider on a 5xx. 404 is what
        // a model the sidecar does not serve gets, so the front's model sync stays consistent.
        ProxyError::NotEligible { .. } => rendering(
            (StatusCode::NOT_FOUND, INVALID, "provider_not_eligible", Some("model")),
            Code::NotFound,
        ),
        ProxyError::Limited(r) if r.unavailable => {
            limited((StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable"), Code::Overloaded)
        }
        ProxyError::Limited(r) if r.is_budget() => {
            limited((StatusCode::TOO_MANY_REQUESTS, "budget_exceeded"), Code::RateLimited)
        }
        ProxyError::Limited(_) => {
            limited((StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"), Code::RateLimited)
        }
    }
}

/// The `code` label of the answer to `e`.
pub(crate) fn code(e: &ProxyError) -> Code {
    status_of(e).label
}

/// The response for `e`, in `dialect`.
pub(crate) fn error(e: &ProxyError, dialect: Dialect) -> Response<Body> {
    let message = e.to_string();
    let Rendering { status, kind, code, param, .. } = status_of(e);
    let mut body = match (dialect, e) {
        (Dialect::Anthropic, _) => {
            serde_json::json!({"type": "error", "error": {"type": anthropic_error_type(status.as_u16()), "message": message}})
        }
        (Dialect::OpenAi | Dialect::Responses, ProxyError::Exhausted(x)) => serde_json::json!({"error": {
            "message": message, "type": kind, "param": null, "code": code, "attempts": x.attempts,
        }}),
        (Dialect::OpenAi | Dialect::Responses, _) => {
            serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
        }
    };
    // A budget says when it resets (unix seconds), in either format's `error` object.
    if let ProxyError::Limited(r) = e
        && let (Some(at), Some(err)) = (r.resets_at_ms, body.get_mut("error"))
    {
        err["resets_at"] = serde_json::Value::from(at / 1000);
    }
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    error_headers(e, status, resp.headers_mut());
    resp
}

/// The headers an error adds: how to authenticate, what is allowed, when to come back.
fn error_headers(e: &ProxyError, status: StatusCode, headers: &mut HeaderMap) {
    match e {
        ProxyError::Unauthorized => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ProxyError::MethodNotAllowed(allow) => {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        ProxyError::PayloadTooLarge(_) => {
            // The rest of the body is never read, so the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        ProxyError::Exhausted(e)
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE =>
        {
            // Whole seconds, rounded up, at least 1.
            let secs = e.retry_after.map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        ProxyError::Busy(d) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
        }
        ProxyError::Limited(r) => {
            let d = r.retry_after;
            let secs = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            let name = if r.is_budget() { "x-tier1-budget" } else { "x-tier1-limit" };
            if let Ok(v) = HeaderValue::from_str(&r.limit) {
                headers.insert(name, v);
            }
        }
        ProxyError::Exhausted(_)
        | ProxyError::WrongFormat { .. }
        | ProxyError::NotEligible { .. }
        | ProxyError::Untranslatable { .. }
        | ProxyError::BadRequest(_)
        | ProxyError::Forbidden
        | ProxyError::UnknownModel(_)
        | ProxyError::NoSuchPath
        | ProxyError::BodyTimeout
        | ProxyError::BodyRead => {}
    }
}

/// What the client sees when every candidate failed. A 5xx means tier1 itself failed or every
/// target truly did: the front rests the sidecar for *every* provider on a 5xx, so anything that
/// only has to wait is a 429 with `Retry-After`.
/// - 400 when the request is longer than every target's context window;
/// - 429 when any target was rate limited or overloaded, or skipped for a rest (its keys or its
///   model cooling) or a full limit;
/// - 503 when none could be tried because their breakers are open;
/// - 504 when every attempt timed out; 502 otherwise.
///
/// The code is the dominant classification.
fn exhausted_status(e: &Exhausted) -> Rendering {
    let all = |f: fn(Class) -> bool| !e.attempts.is_empty() && e.attempts.iter().all(|a| f(a.class));
    let waits =
        e.resting || e.attempts.iter().any(|a| matches!(a.class, Class::RateLimited | Class::Overloaded));
    let code = match e.dominant() {
        None if e.resting => "rate_limited",
        None => "no_target_available",
        Some(Class::Connect) => "upstream_unreachable",
        Some(Class::Timeout | Class::FirstToken) => "upstream_timeout",
        Some(Class::Auth) => "upstream_auth",
        Some(Class::Server | Class::InvalidRequest | Class::NotFound) => "upstream_error",
        Some(c @ (Class::RateLimited | Class::Overloaded)) => c.as_str(),
        Some(Class::ContextLength) => "context_length_exceeded",
        Some(Class::ContentFilter) => "content_filter",
    };
    const UPSTREAM: &str = "upstream_error";
    if all(|c| matches!(c, Class::ContextLength | Class::ContentFilter)) {
        // Longer than every target's window: the caller's request, not tier1's failure.
        rendering((StatusCode::BAD_REQUEST, "invalid_request_error", code, Some("messages")), Code::Invalid)
    } else if waits {
        rendering((StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", code, None), Code::RateLimited)
    } else if e.started == 0 && e.attempts.is_empty() {
        rendering((StatusCode::SERVICE_UNAVAILABLE, UPSTREAM, code, None), Code::NoTarget)
    } else if all(Class::is_timeout) {
        rendering((StatusCode::GATEWAY_TIMEOUT, UPSTREAM, code, None), Code::Timeout)
    } else {
        rendering((StatusCode::BAD_GATEWAY, UPSTREAM, code, None), Code::UpstreamError)
    }
}

/// The SSE error event that ends a relayed stream which broke after it began, in `dialect`.
pub(crate) fn stream_error(err: RelayError, dialect: Dialect) -> Vec<u8> {
    let (message, code) = match err {
        RelayError::Upstream => {
            ("upstream stream ended before the answer was complete", "upstream_stream_error")
        }
        RelayError::Timeout => ("upstream stream timed out", "upstream_timeout"),
        RelayError::EventTooLarge => {
            ("upstream sent an event larger than the configured limit", "upstream_event_too_large")
        }
    };
    match dialect {
        Dialect::Anthropic => {
            let v = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}});
            format!("event: error\ndata: {v}\n\n").into_bytes()
        }
        // The Responses API's `error` event. Its `sequence_number` is the provider's count,
        // which a relayed stream does not track: 0 (the SDKs read it, none orders by it).
        Dialect::Responses => {
            let v = serde_json::json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": 0});
            format!("event: error\ndata: {v}\n\n").into_bytes()
        }
        Dialect::OpenAi => {
            let v = serde_json::json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}});
            format!("data: {v}\n\n").into_bytes()
        }
    }
}

#[cfg(test)]
mod tests;
