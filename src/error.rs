//! What goes wrong, as data: [`ProxyError`] (everything that can end a request early),
//! [`Class`] (why an upstream attempt failed), [`Exhausted`] (every candidate failed) and
//! [`RelayError`] (a relayed body ended early). What the client sees of them is rendered in one
//! place, [`crate::proxy::respond`]. Messages never carry a secret: upstream bodies are redacted
//! before they reach one, and provider keys are referred to by name only.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::json::ScanError;

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
    /// A stream's headers came but its first content did not by its `first_token_timeout`.
    FirstToken,
    /// The upstream could not be reached.
    Connect,
    /// The request is longer than the target's context window (the provider said so, or its
    /// `context_window` did): the caller's request, but another target may take it.
    ContextLength,
    /// The provider's content filter refused the request (OpenAI's and Azure's
    /// `content_filter`): another provider's policy may take it.
    ContentFilter,
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
            Self::FirstToken => "first_token_timeout",
            Self::Connect => "connect",
            Self::ContextLength => "context_length",
            Self::ContentFilter => "content_filter",
        }
    }

    /// A deadline passed: the same retry and breaker rules for both, counted apart.
    pub fn is_timeout(self) -> bool {
        matches!(self, Self::Timeout | Self::FirstToken)
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
pub(crate) struct AttemptRecord {
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
pub(crate) struct Exhausted {
    /// The failed attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Attempts that reached an upstream.
    pub started: u32,
    /// When the soonest key, model or target becomes available again, if known.
    pub retry_after: Option<Duration>,
    /// A candidate was skipped for a rest or a full limit (not for a breaker).
    pub resting: bool,
}

impl Exhausted {
    /// The most frequent classification (ties: the later one).
    pub(crate) fn dominant(&self) -> Option<Class> {
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

/// Why a relayed body ended early (non-stream responses: the client sees a truncated body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RelayError {
    /// The upstream connection broke.
    #[error("upstream body failed")]
    Upstream,
    /// The request deadline or the stream's idle timeout passed.
    #[error("upstream request timed out")]
    Timeout,
    /// One provider event was larger than the provider's `max_event_bytes`.
    #[error("upstream event too large")]
    EventTooLarge,
}

/// Everything that ends a request with an error response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The body is not a valid request.
    #[error("{0}")]
    BadRequest(#[from] ScanError),
    /// Missing or wrong bearer token. A front that forwards its caller's own key (OmniRoute does
    /// when `BIFROST_API_KEY` is unset) is told what to send.
    #[error(
        "missing or invalid API key: send one of tier1's server.api_keys as the bearer (a front such as OmniRoute sends it when BIFROST_API_KEY is set; without it, the front forwards its caller's own key, which tier1 does not accept)"
    )]
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
    /// `server.max_inflight` requests are already in flight; a slot is likely free after this.
    #[error("tier1 is at its concurrency limit; retry shortly")]
    Busy(std::time::Duration),
    /// A caller rate limit or budget refused the request.
    #[error("{0}")]
    Limited(Box<crate::ratelimit::Rejection>),
    /// The model's providers do not speak the request's format (embeddings to Anthropic, say:
    /// Anthropic has no embeddings API to translate to).
    #[error(
        "model '{model}' is served only by providers that do not speak this API format; \
         it goes to {served_by} providers"
    )]
    WrongFormat {
        /// The client's model name.
        model: Box<str>,
        /// The provider kinds that serve this API, as a list for the message.
        served_by: Box<str>,
    },
    /// Every provider of the model is marked `sidecar.eligible: false` in the front's manifest.
    #[error(
        "model '{model}' goes to provider '{provider}', which the front's provider manifest marks not eligible for the sidecar: serve it on the front's own path"
    )]
    NotEligible {
        /// The client's model name.
        model: Box<str>,
        /// The first refused provider's config name.
        provider: Arc<str>,
    },
    /// The request cannot be written in the format of the provider chosen for it.
    #[error("cannot translate the request for {provider}: {why}")]
    Untranslatable {
        /// The provider's config name.
        provider: Arc<str>,
        /// What could not be translated.
        why: String,
        /// The request parameter at fault, if one is (the error body's `param`).
        param: Option<&'static str>,
    },
    /// Every candidate failed or was unavailable.
    #[error("{}", exhausted_message(.0))]
    Exhausted(Box<Exhausted>),
}

fn exhausted_message(e: &Exhausted) -> String {
    if e.attempts.is_empty() {
        return "no target could be tried now (breakers open, keys cooling or limits full)".to_owned();
    }
    if e.attempts.iter().all(|a| a.class == Class::ContextLength) {
        return "the request is longer than the context window of every target".to_owned();
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
}
