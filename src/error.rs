//! [`ProxyError`]: everything that can end a request early, and its one mapping to an HTTP
//! status and an OpenAI-shaped JSON body (`{"error":{"message","type","param","code"}}`).
//! Messages never carry a secret: upstream bodies are redacted before they reach one, and
//! provider keys are referred to by name only.

use std::sync::Arc;

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

/// A failed upstream attempt.
#[derive(Debug, Clone)]
pub struct UpstreamFailure {
    /// Provider name (a configured name, never a URL or key).
    pub provider: Arc<str>,
    /// Classification.
    pub class: Class,
    /// The upstream status, when it answered.
    pub status: Option<StatusCode>,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<HeaderValue>,
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
    /// The upstream failed.
    #[error("upstream {} failed: {}", .0.provider, .0.class.as_str())]
    Upstream(Box<UpstreamFailure>),
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
            Self::Upstream(f) => match f.class {
                Class::Connect => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_unreachable", None),
                Class::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout", None),
                Class::Auth => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_auth", None),
                Class::RateLimited => {
                    (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited", None)
                }
                Class::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "overloaded", None),
                Class::Server | Class::InvalidRequest | Class::NotFound => {
                    (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_error", None)
                }
            },
        };
        let mut resp = json_error(status, &message, kind, code, param);
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
            Self::Upstream(f) if status == StatusCode::TOO_MANY_REQUESTS => {
                let retry = f.retry_after.clone().unwrap_or(HeaderValue::from_static("1"));
                headers.insert(header::RETRY_AFTER, retry);
            }
            Self::Upstream(_)
            | Self::BadRequest(_)
            | Self::UnknownModel(_)
            | Self::NoSuchPath
            | Self::BodyTimeout
            | Self::BodyRead => {}
        }
        resp
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

    #[test]
    fn upstream_rate_limit_keeps_retry_after() {
        let f = UpstreamFailure {
            provider: Arc::from("p"),
            class: Class::RateLimited,
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            retry_after: Some(HeaderValue::from_static("7")),
        };
        let resp = ProxyError::Upstream(Box::new(f)).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
