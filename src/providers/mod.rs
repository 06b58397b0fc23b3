//! Providers: what a snapshot holds per configured provider (client, keys, URLs, timeouts) and
//! the one operation the proxy needs, [`Provider::send`]. `openai` kind speaks HTTP to any
//! OpenAI-compatible API, `azure` the same with Azure's URLs; `anthropic` and `gemini` speak
//! their own formats (see [`crate::translate`]); `mock` answers in process.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::config::{Config, ProviderConfig, ProviderKind};
use crate::mock::{Behavior, MockBody, MockEndpoint};
use crate::resilience::{KeyState, Limit, ProviderState, Registry, TargetState};
use crate::routing::{Glob, is_glob};
use crate::translate::Dialect;
use crate::upstream;

/// Which API operation is being proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions.
    Chat,
    /// Embeddings.
    Embeddings,
    /// Anthropic Messages (the Anthropic-format ingress, relayed natively).
    Messages,
}

/// One upstream call.
pub struct Call<'a> {
    /// What to call.
    pub operation: Operation,
    /// The body to send (already spliced).
    pub body: Bytes,
    /// Whether an SSE answer is expected.
    pub stream: bool,
    /// The request id, forwarded.
    pub request_id: &'a HeaderValue,
    /// The correlation id, forwarded when the client sent one.
    pub correlation_id: Option<&'a HeaderValue>,
    /// When the response head must have arrived.
    pub deadline: Instant,
    /// The key to send, if the provider has keys.
    pub key: Option<&'a Key>,
    /// The Azure deployment (ignored by other kinds).
    pub deployment: &'a str,
}

/// Why an upstream call failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// TCP/TLS connection could not be established (refused, unreachable, connect timeout).
    #[error("connect failed")]
    Connect,
    /// The response head did not arrive before the deadline.
    #[error("timed out")]
    Timeout,
    /// The connection broke, or the answer was not HTTP.
    #[error("request failed")]
    Failed,
}

/// A provider as the running snapshot holds it.
pub struct Provider {
    /// Config name.
    pub name: Arc<str>,
    /// The name as a response header value (`x-tier1-provider`), built once.
    pub name_header: HeaderValue,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Total deadline of one upstream request.
    pub request_timeout: Duration,
    /// Deadline for the response head (streams: the first event).
    pub first_byte_timeout: Duration,
    /// Longest gap between stream chunks.
    pub idle_timeout: Duration,
    /// Largest single upstream event of a translated stream.
    pub max_event_bytes: usize,
    /// Wait for a free slot before moving on.
    pub queue_timeout: Duration,
    /// `max_tokens` for translated requests that have none.
    pub default_max_tokens: u32,
    /// Keys in config order.
    pub keys: Vec<Key>,
    /// Breaker and direct-traffic budget.
    pub state: Arc<ProviderState>,
    /// `max_inflight` of the provider.
    pub limit: Option<Arc<Limit>>,
    /// State of the models configured for this provider (route targets and catalog).
    targets: std::collections::HashMap<Box<str>, Arc<TargetState>>,
    /// State shared by direct requests for models not configured anywhere, once the provider's
    /// bounded per-model map ([`crate::resilience::DirectTargets`]) is full.
    direct: Arc<TargetState>,
    backend: Backend,
}

/// One provider key.
pub struct Key {
    /// Config name (logs, metrics, admin view).
    pub name: Arc<str>,
    /// The key's header (`Authorization: Bearer ...` or `x-api-key`), marked sensitive.
    auth: Option<(HeaderName, HeaderValue)>,
    /// Share of traffic among available keys.
    pub weight: u32,
    /// Models this key may serve; empty: all.
    models: Vec<Glob>,
    /// Cooldown and in-flight count.
    pub state: Arc<KeyState>,
    /// `max_inflight` of the key.
    pub limit: Option<Arc<Limit>>,
}

impl Key {
    /// Whether this key may be used for `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| g.matches(model))
    }
}

enum Backend {
    Http(Box<HttpBackend>),
    Mock { behavior: Behavior, served: AtomicU64 },
}

struct HttpBackend {
    client: upstream::Client,
    chat: Uri,
    embeddings: Uri,
    messages: Uri,
    /// Azure: (base URL, api-version); URLs are per deployment.
    azure: Option<(String, String)>,
    /// Gemini: the base URL; URLs are per model.
    gemini: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] upstream::BuildError),
    /// A key holds characters that cannot go in a header.
    #[error("providers.{provider}.keys[{index}].secret: not a valid header value")]
    Key {
        /// Provider name.
        provider: String,
        /// Key index.
        index: usize,
    },
    /// The base URL plus an endpoint path is not a URI.
    #[error("providers.{0}.base_url: cannot append the endpoint path")]
    BaseUrl(String),
}

static USER_AGENT: HeaderValue = HeaderValue::from_static(concat!("tier1/", env!("CARGO_PKG_VERSION")));

impl Provider {
    /// Builds a provider (its connection pool, keys and state) from config.
    pub fn build(p: &ProviderConfig, config: &Config, registry: &Registry) -> Result<Self, BuildError> {
        let backend = match p.kind {
            ProviderKind::Mock => Backend::Mock { behavior: p.mock.clone(), served: AtomicU64::new(0) },
            ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::Azure | ProviderKind::Gemini => {
                let base = p.base_url.as_ref().ok_or_else(|| BuildError::BaseUrl(p.name.clone()))?;
                let join = |path: &str| -> Result<Uri, BuildError> {
                    format!("{}{path}", base.to_string().trim_end_matches('/'))
                        .parse()
                        .map_err(|_| BuildError::BaseUrl(p.name.clone()))
                };
                Backend::Http(Box::new(HttpBackend {
                    client: registry.pool(&p.name, upstream::settings(p), || upstream::build(p))?,
                    chat: join("/chat/completions")?,
                    embeddings: join("/embeddings")?,
                    messages: join("/v1/messages")?,
                    azure: (p.kind == ProviderKind::Azure)
                        .then(|| (base.to_string().trim_end_matches('/').to_owned(), p.api_version.clone())),
                    gemini: (p.kind == ProviderKind::Gemini).then(|| gemini_base(base)),
                    headers: {
                        let mut h = p.headers.clone();
                        if p.kind == ProviderKind::Anthropic {
                            let version = HeaderValue::from_str(&p.anthropic_version)
                                .map_err(|_| BuildError::BaseUrl(p.name.clone()))?;
                            h.push((HeaderName::from_static("anthropic-version"), version));
                        }
                        h
                    },
                }))
            }
        };
        let name_header = HeaderValue::from_str(&p.name).map_err(|_| BuildError::BaseUrl(p.name.clone()))?;
        let keys = p
            .keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let (name, value) = match p.kind {
                    ProviderKind::Anthropic => {
                        (HeaderName::from_static("x-api-key"), k.secret.expose().to_owned())
                    }
                    ProviderKind::Azure => (HeaderName::from_static("api-key"), k.secret.expose().to_owned()),
                    ProviderKind::Gemini => {
                        (HeaderName::from_static("x-goog-api-key"), k.secret.expose().to_owned())
                    }
                    ProviderKind::OpenAi | ProviderKind::Mock => {
                        (header::AUTHORIZATION, format!("Bearer {}", k.secret.expose()))
                    }
                };
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| BuildError::Key { provider: p.name.clone(), index })?;
                value.set_sensitive(true);
                let auth = (name, value);
                Ok(Key {
                    name: Arc::from(k.name.as_str()),
                    auth: Some(auth),
                    weight: k.weight,
                    models: k.models.iter().map(|m| Glob::new(m)).collect(),
                    state: registry.key(&p.name, &k.name),
                    limit: k.max_inflight.map(|n| registry.limit(&format!("key:{}/{}", p.name, k.name), n)),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let breaker = config.resilience.breaker;
        let index = config.provider_index(&p.name);
        let routed = config.routes.iter().flat_map(|r| &r.targets).filter(|t| Some(t.provider) == index);
        let targets = routed
            .map(|t| t.model.as_str())
            .chain(p.models.iter().map(String::as_str).filter(|m| !is_glob(m)))
            .map(|m| (Box::from(m), registry.target(&p.name, m, breaker)))
            .collect();
        Ok(Self {
            name: Arc::from(p.name.as_str()),
            name_header,
            kind: p.kind,
            request_timeout: p.request_timeout,
            first_byte_timeout: p.first_byte_timeout,
            idle_timeout: p.idle_timeout,
            max_event_bytes: p.max_event_bytes,
            queue_timeout: p.queue_timeout,
            default_max_tokens: p.default_max_tokens,
            keys,
            state: registry.provider(&p.name, breaker, config.resilience.retry_budget),
            limit: p.max_inflight.map(|n| registry.limit(&format!("provider:{}", p.name), n)),
            targets,
            direct: registry.target(&p.name, "(direct)", breaker),
            backend,
        })
    }

    /// The format a request of `op` must be translated into for this provider, if any.
    pub fn dialect(&self, op: Operation) -> Option<Dialect> {
        match (self.kind, op) {
            (ProviderKind::Anthropic, Operation::Chat) => Some(Dialect::Anthropic),
            (ProviderKind::Gemini, Operation::Chat | Operation::Embeddings) => Some(Dialect::Gemini),
            (ProviderKind::OpenAi | ProviderKind::Azure, Operation::Messages) => Some(Dialect::OpenAi),
            (ProviderKind::Gemini, Operation::Messages) => Some(Dialect::GeminiMessages),
            _ => None,
        }
    }

    /// Whether this provider speaks the request format of `op`.
    pub fn speaks(&self, op: Operation) -> bool {
        match self.kind {
            // Anthropic messages are translated to OpenAI chat (or on to Gemini) and back.
            ProviderKind::OpenAi | ProviderKind::Azure | ProviderKind::Gemini => true,
            // OpenAI chat is translated to Messages and back.
            ProviderKind::Anthropic => matches!(op, Operation::Messages | Operation::Chat),
            ProviderKind::Mock => true,
        }
    }

    /// `model` as a metric label: its name if configured for this provider, else `other` (a model
    /// name a client made up never becomes a label).
    pub fn model_label<'m>(&self, model: &'m str) -> &'m str {
        if self.targets.contains_key(model) { model } else { crate::metrics::MODEL_OTHER }
    }

    /// The state of `model` on this provider: its own if configured; else, for a direct request,
    /// its own within the provider's bound on made-up models, past it the shared direct one.
    pub fn target_state(&self, model: &str, now: u64) -> Cow<'_, Arc<TargetState>> {
        if let Some(t) = self.targets.get(model) {
            return Cow::Borrowed(t);
        }
        match self.state.direct.get(model, self.state.breaker.config(), now) {
            Some(t) => Cow::Owned(t),
            None => Cow::Borrowed(&self.direct),
        }
    }

    /// Sends one call and waits for the response head (not the body).
    pub async fn send(&self, call: Call<'_>) -> Result<Response<UpstreamBody>, SendError> {
        match &self.backend {
            Backend::Mock { behavior, served } => {
                let endpoint = match call.operation {
                    Operation::Chat => MockEndpoint::Chat,
                    Operation::Embeddings => MockEndpoint::Embeddings,
                    Operation::Messages => MockEndpoint::Messages,
                };
                let answer = crate::mock::answer(behavior, served, endpoint, &call.body, None);
                let resp =
                    tokio::time::timeout_at(call.deadline, answer).await.map_err(|_| SendError::Timeout)?;
                Ok(resp.map(UpstreamBody::Mock))
            }
            Backend::Http(http) => {
                let req = http.request(&call).map_err(|_| SendError::Failed)?;
                match tokio::time::timeout_at(call.deadline, http.client.send(req)).await {
                    Err(_) => Err(SendError::Timeout),
                    Ok(Err(upstream::Error::Connect(_))) => Err(SendError::Connect),
                    Ok(Err(_)) => Err(SendError::Failed),
                    Ok(Ok(resp)) => Ok(resp.map(UpstreamBody::Http)),
                }
            }
        }
    }
}

impl HttpBackend {
    fn request(&self, call: &Call<'_>) -> Result<Request<Bytes>, http::Error> {
        let uri = match (&self.azure, &self.gemini, call.operation) {
            // The model was checked to be URL-safe when the request was translated.
            (_, Some(base), op) => {
                let method = match op {
                    Operation::Embeddings => "batchEmbedContents",
                    _ if call.stream => "streamGenerateContent?alt=sse",
                    _ => "generateContent",
                };
                Uri::try_from(format!("{base}/models/{}:{method}", call.deployment))?
            }
            (Some((base, version)), None, op) => {
                let path = if op == Operation::Embeddings { "embeddings" } else { "chat/completions" };
                let deployment = call.deployment;
                Uri::try_from(format!("{base}/openai/deployments/{deployment}/{path}?api-version={version}"))?
            }
            (None, None, Operation::Chat) => self.chat.clone(),
            (None, None, Operation::Embeddings) => self.embeddings.clone(),
            (None, None, Operation::Messages) => self.messages.clone(),
        };
        let accept = if call.stream { "text/event-stream" } else { "application/json" };
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::ACCEPT, HeaderValue::from_static(accept))
            .header(header::USER_AGENT, USER_AGENT.clone())
            // tier1 reads answers (usage, translation, redaction): no content coding, please.
            .header(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"))
            .header(crate::proxy::headers::X_REQUEST_ID, call.request_id.clone())
            .body(call.body.clone())?;
        let h = req.headers_mut();
        if let Some(c) = call.correlation_id {
            h.insert(crate::proxy::headers::X_CORRELATION_ID, c.clone());
        }
        if let Some((name, value)) = call.key.and_then(|k| k.auth.as_ref()) {
            h.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        Ok(req)
    }
}

/// Gemini's API root: `base_url` plus `/v1beta`, unless it already names a version.
fn gemini_base(base: &Uri) -> String {
    let last = base.path().trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    let versioned = last.strip_prefix('v').is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let base = base.to_string();
    let base = base.trim_end_matches('/');
    if versioned { base.to_owned() } else { format!("{base}/v1beta") }
}

/// An upstream response body: from the network, or from the in-process mock.
pub enum UpstreamBody {
    /// From a provider.
    Http(upstream::Body),
    /// From the mock provider.
    Mock(MockBody),
}

/// Why an upstream body stopped early.
#[derive(Debug, thiserror::Error)]
#[error("upstream body failed")]
pub struct BodyFailed;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        match self.get_mut() {
            Self::Http(b) => Pin::new(b).poll_frame(cx).map_err(|_| BodyFailed),
            Self::Mock(b) => Pin::new(b).poll_frame(cx).map_err(|_| BodyFailed),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http(b) => b.is_end_stream(),
            Self::Mock(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http(b) => b.size_hint(),
            Self::Mock(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_base_gets_a_version_only_when_it_has_none() {
        let base = |s: &str| gemini_base(&s.parse().unwrap());
        assert_eq!(
            base("https://generativelanguage.googleapis.com"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            base("https://generativelanguage.googleapis.com/"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            base("https://generativelanguage.googleapis.com/v1"),
            "https://generativelanguage.googleapis.com/v1"
        );
        assert_eq!(base("http://127.0.0.1:9/proxy/v1beta/"), "http://127.0.0.1:9/proxy/v1beta");
        assert_eq!(base("http://127.0.0.1:9/proxy"), "http://127.0.0.1:9/proxy/v1beta");
        assert_eq!(base("https://v1.example.com"), "https://v1.example.com/v1beta");
    }
}
