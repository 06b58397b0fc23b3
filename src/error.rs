//! [`ProxyError`]: everything that can end a request early, and its one mapping to an HTTP
//! status and an OpenAI-shaped JSON body (`{"error":{"message","type","param","code"}}`).
//! Messages never carry a secret: upstream bodies are redacted before they reach one, and
//! provider keys are referred to by name only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::json::ScanError;
use crate::proxy::body::{Body, full};

/// Why an upstream attempt failed, in the classification the resilience layer decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 429, or a provider's rate-limit error.
    RateLimited,
    /// 503, 529, or a provider's `overloaded` error.
    Overloaded,
    /// 401/403: tier1's own key was refused.
    Auth,
    /// The caller's request was refused (400, 409, 413, 422...).
    InvalidRequest,
    /// 404 from the provider.
    NotFound,
    /// Any other 5xx, or a malformed upstream answer.
    Server,
    /// A deadline passed (connect excluded).
    Timeout,
    /// The upstream could not be reached.
    Connect,
}

impl Class {
    /// The bounded label used in metrics and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Auth => "auth",
            Self::InvalidRequest => "invalid_request",
            Self::NotFound => "not_found",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
        }
    }

    /// The class of an upstream HTTP status that is not a success.
    pub fn of_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 | 403 => Self::Auth,
            404 => Self::NotFound,
            408 => Self::Timeout,
            429 => Self::RateLimited,
            503 | 529 => Self::Overloaded,
            400..=499 => Self::InvalidRequest,
            _ => Self::Server,
        }
    }
}

/// One failed upstream attempt, as the client's error body lists it (never a secret: the key is
/// named, the provider by its config name).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRecord {
    /// Provider name.
    pub provider: Arc<str>,
    /// Upstream model.
    pub model: String,
    /// Key name, when the provider has keys.
    pub key: Option<Arc<str>>,
    /// Classification.
    #[serde(rename = "classification", serialize_with = "class_str")]
    pub class: Class,
    /// Upstream status, when it answered.
    pub status: Option<u16>,
}

fn class_str<S: serde::Serializer>(c: &Class, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

/// Every candidate failed or could not be tried.
#[derive(Debug, Clone)]
pub struct Exhausted {
    /// The failed attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Attempts that reached an upstream.
    pub started: u32,
    /// When the soonest key, model or target becomes available again, if known.
    pub retry_after: Option<Duration>,
}

impl Exhausted {
    /// The most frequent classification (ties: the later one).
    fn dominant(&self) -> Option<Class> {
        let mut best: Option<(Class, usize)> = None;
        for a in &self.attempts {
            let n = self.attempts.iter().filter(|b| b.class == a.class).count();
            if best.is_none_or(|(_, m)| n >= m) {
                best = Some((a.class, n));
            }
        }
        best.map(|(c, _)| c)
    }
}

/// Everything that ends a request with an error response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The body is not a valid request.
    #[error("{0}")]
    BadRequest(#[from] ScanError),
    /// Missing or wrong bearer token.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// An admin route from a client that may not use it.
    #[error(
        "without admin_keys, admin routes answer only a loopback client that names a loopback Host and sends x-tier1-admin"
    )]
    Forbidden,
    /// No route or provider serves this model.
    #[error("model '{0}' is not served by this router")]
    UnknownModel(Box<str>),
    /// No such path.
    #[error("no such endpoint")]
    NoSuchPath,
    /// Known path, wrong method; carries the `Allow` value.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Body over `server.max_body_bytes`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Body not received within `server.body_timeout`.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// The client's body stream failed.
    #[error("request body could not be read")]
    BodyRead,
    /// `server.max_inflight` requests are already in flight.
    #[error("tier1 is at its concurrency limit; retry shortly")]
    Busy,
    /// A caller rate limit refused the request.
    #[error("rate limit '{}' exceeded", .0.limit)]
    Limited(Box<crate::ratelimit::Rejection>),
    /// The model's providers do not speak the request's format (translation between formats is
    /// not built yet).
    #[error("model '{0}' is served by providers that do not speak this API format")]
    WrongFormat(Box<str>),
    /// Every candidate failed or was unavailable.
    #[error("{}", exhausted_message(.0))]
    Exhausted(Box<Exhausted>),
}

impl ProxyError {
    /// The response for this error. The `match` is exhaustive on purpose: a new variant must be
    /// given its status here.
    #[deny(clippy::wildcard_enum_match_arm)]
    pub fn into_response(self) -> Response<Body> {
        let message = self.to_string();
        let (status, kind, code, param): (StatusCode, &str, &str, Option<&str>) = match &self {
            Self::BadRequest(e) => (StatusCode::BAD_REQUEST, "invalid_request_error", e.code(), e.param()),
            Self::Unauthorized => {
                (StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", None)
            }
            Self::UnknownModel(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found", Some("model"))
            }
            Self::Forbidden => (StatusCode::FORBIDDEN, "invalid_request_error", "forbidden", None),
            Self::NoSuchPath => (StatusCode::NOT_FOUND, "invalid_request_error", "unknown_url", None),
            Self::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed", None)
            }
            Self::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large", None)
            }
            Self::BodyTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "invalid_request_error", "request_timeout", None)
            }
            Self::BodyRead => (StatusCode::BAD_REQUEST, "invalid_request_error", "body_read_error", None),
            Self::Exhausted(e) => exhausted_status(e),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "server_busy", None),
            Self::WrongFormat(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unsupported_provider_format",
                Some("model"),
            ),
            Self::Limited(r) if r.unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "rate_limit_error", "rate_limit_unavailable", None)
            }
            Self::Limited(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded", None)
            }
        };
        let mut resp = if let Self::Exhausted(e) = &self {
            let body = serde_json::json!({"error": {
                "message": message, "type": kind, "param": null, "code": code, "attempts": e.attempts,
            }});
            let mut r = Response::new(full(Bytes::from(body.to_string())));
            *r.status_mut() = status;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        } else {
            json_error(status, &message, kind, code, param)
        };
        let headers = resp.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::PayloadTooLarge(_) => {
                // The rest of the body is never read, so the connection cannot be reused.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::Exhausted(e)
                if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                // Whole seconds, rounded up, at least 1.
                let secs = e.retry_after.map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Self::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Limited(r) => {
                let d = r.retry_after;
                let secs = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                if let Ok(v) = HeaderValue::from_str(&r.limit) {
                    headers.insert("x-tier1-limit", v);
                }
            }
            Self::Exhausted(_)
            | Self::WrongFormat(_)
            | Self::BadRequest(_)
            | Self::Forbidden
            | Self::UnknownModel(_)
            | Self::NoSuchPath
            | Self::BodyTimeout
            | Self::BodyRead => {}
        }
        resp
    }
}

/// What the client sees when every candidate failed: 503 when none could even be tried (breakers
/// open, keys cooling, limits full); 429 when every failure was a rate limit or overload; 504 when
/// every attempt timed out; 502 otherwise. The code is the dominant classification.
fn exhausted_status(e: &Exhausted) -> (StatusCode, &'static str, &'static str, Option<&'static str>) {
    let all = |f: fn(Class) -> bool| !e.attempts.is_empty() && e.attempts.iter().all(|a| f(a.class));
    let code = match e.dominant() {
        None => "no_target_available",
        Some(Class::Connect) => "upstream_unreachable",
        Some(Class::Timeout) => "upstream_timeout",
        Some(Class::Auth) => "upstream_auth",
        Some(Class::Server | Class::InvalidRequest | Class::NotFound) => "upstream_error",
        Some(c @ (Class::RateLimited | Class::Overloaded)) => c.as_str(),
    };
    if e.started == 0 && e.attempts.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_error", code, None)
    } else if all(|c| matches!(c, Class::RateLimited | Class::Overloaded)) {
        (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", code, None)
    } else if all(|c| c == Class::Timeout) {
        (StatusCode::GATEWAY_TIMEOUT, "upstream_error", code, None)
    } else {
        (StatusCode::BAD_GATEWAY, "upstream_error", code, None)
    }
}

fn exhausted_message(e: &Exhausted) -> String {
    if e.attempts.is_empty() {
        return "no target could be tried now (breakers open, keys cooling or limits full)".to_owned();
    }
    let list: Vec<String> = e
        .attempts
        .iter()
        .map(|a| match a.status {
            Some(s) => format!("{}/{}: {} ({s})", a.provider, a.model, a.class.as_str()),
            None => format!("{}/{}: {}", a.provider, a.model, a.class.as_str()),
        })
        .collect();
    format!("all {} upstream attempts failed: {}", e.attempts.len(), list.join(", "))
}

/// Rewrites an OpenAI-shaped error response as Anthropic's
/// (`{"type":"error","error":{"type","message"}}`), for the Anthropic-format ingress: same status,
/// same headers, the type Anthropic uses for that status.
pub fn anthropic_shape(resp: Response<Body>, message: &str) -> Response<Body> {
    let kind = anthropic_error_type(resp.status().as_u16());
    let (parts, _) = resp.into_parts();
    let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut out = Response::from_parts(parts, full(Bytes::from(body.to_string())));
    out.headers_mut().remove(header::CONTENT_LENGTH);
    out
}

/// The error `type` Anthropic uses for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An OpenAI-shaped JSON error response.
pub fn json_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: &str,
    param: Option<&str>,
) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        assert_eq!(Class::of_status(StatusCode::TOO_MANY_REQUESTS), Class::RateLimited);
        assert_eq!(Class::of_status(StatusCode::from_u16(529).unwrap()), Class::Overloaded);
        assert_eq!(Class::of_status(StatusCode::SERVICE_UNAVAILABLE), Class::Overloaded);
        assert_eq!(Class::of_status(StatusCode::BAD_GATEWAY), Class::Server);
        assert_eq!(Class::of_status(StatusCode::FORBIDDEN), Class::Auth);
        assert_eq!(Class::of_status(StatusCode::UNPROCESSABLE_ENTITY), Class::InvalidRequest);
        assert_eq!(Class::of_status(StatusCode::REQUEST_TIMEOUT), Class::Timeout);
    }

    fn record(class: Class) -> AttemptRecord {
        AttemptRecord {
            provider: Arc::from("p"),
            model: "m".into(),
            key: Some(Arc::from("k1")),
            class,
            status: None,
        }
    }

    fn exhausted(classes: &[Class], retry_after: Option<Duration>) -> Response<Body> {
        let e = Exhausted {
            attempts: classes.iter().map(|c| record(*c)).collect(),
            started: classes.len() as u32,
            retry_after,
        };
        ProxyError::Exhausted(Box::new(e)).into_response()
    }

    #[test]
    fn exhausted_maps_to_the_documented_status() {
        let r = exhausted(&[Class::RateLimited, Class::Overloaded], Some(Duration::from_millis(2100)));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(exhausted(&[Class::Timeout, Class::Timeout], None).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(exhausted(&[Class::Timeout, Class::Server], None).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(exhausted(&[Class::Auth], None).status(), StatusCode::BAD_GATEWAY);
        let none = exhausted(&[], Some(Duration::from_secs(4)));
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(none.headers()[header::RETRY_AFTER], "4");
    }
}
