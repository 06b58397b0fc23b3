//! The running provider: what a snapshot holds per configured provider (client, keys, URLs,
//! timeouts) and the one operation the proxy needs, [`Provider::send`]. What differs between
//! kinds comes from the kind's [`Kind`](super::Kind); this file matches on no kind.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, header};
use tokio::time::Instant;

use super::{Endpoints, Operation, ProviderKind, Settings, UpstreamBody, Wire};
use crate::config::{Config, ProviderConfig};
use crate::mock::{Behavior, MockEndpoint};
use crate::resilience::{KeyState, Limit, ProviderState, Registry, TargetState};
use crate::routing::{Glob, is_glob};
use crate::translate::Dialect;
use crate::upstream;

use super::bedrock::sigv4::AwsKey;
use super::refresh::{self, Current};

/// One upstream call.
pub(crate) struct Call<'a> {
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
    /// The model for the URL: the Azure deployment, the Gemini model (ignored by other kinds).
    pub deployment: &'a str,
    /// `traceparent` and `tracestate`, when the request is traced.
    pub trace: Option<crate::otel::Propagated>,
}

/// Why an upstream call failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
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
pub(crate) struct Provider {
    /// Position in the snapshot's `providers` (and the config's): the provider's identity
    /// within one snapshot.
    pub index: usize,
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
    /// Deadline to a stream's first content, scaled to the prompt (`None`: only the others).
    pub first_token_timeout: Option<crate::config::FirstTokenTimeout>,
    /// Longest gap between stream chunks.
    pub idle_timeout: Duration,
    /// Largest single upstream event of a translated stream.
    pub max_event_bytes: usize,
    /// Wait for a free slot before moving on.
    pub queue_timeout: Duration,
    /// `max_tokens` for translated requests that have none.
    pub default_max_tokens: u32,
    /// Whether it continues a trailing assistant message (a stream's continuation).
    pub prefill: bool,
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
pub(crate) struct Key {
    /// Config name (logs, metrics, admin view).
    pub name: Arc<str>,
    /// How the key authenticates a request.
    auth: Auth,
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
    pub(crate) fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| g.matches(model))
    }
}

/// How a key authenticates a request.
enum Auth {
    /// Its header (`Authorization: Bearer ...` or `x-api-key`), marked sensitive.
    Header(HeaderName, HeaderValue),
    /// A SigV4 signature of the request by its credential set, for the provider's region.
    SigV4(Box<AwsKey>),
    /// A SigV4 signature by the temporary credentials last fetched in the background.
    Temporary(Arc<Current<AwsKey>>),
    /// `Authorization: Bearer` with the OAuth2 access token last minted or fetched for it.
    Bearer(Arc<Current<super::vertex::token::AccessToken>>),
}

enum Backend {
    Http(Box<HttpBackend>),
    Mock { behavior: Behavior, served: AtomicU64, cache: Box<crate::mock::cache::PromptCache> },
}

struct HttpBackend {
    client: upstream::Client,
    /// The kind's URLs.
    endpoints: Box<dyn Endpoints>,
    /// The configured headers, then the kind's own.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The region requests are signed for (a signed kind's).
    region: Option<Box<str>>,
    /// Whether a stream answers in the AWS event-stream framing, and its largest message.
    event_stream: Option<usize>,
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
    /// The provider is not one of the config's own.
    #[error("providers.{0}: not in the config it is built with")]
    Unlisted(String),
}

static USER_AGENT: HeaderValue = HeaderValue::from_static(concat!("tier1/", env!("CARGO_PKG_VERSION")));

impl Provider {
    /// Builds a provider from config: its client from `pools`, its keys' and targets' state from
    /// `registry`.
    pub(crate) fn build(
        p: &ProviderConfig,
        config: &Config,
        registry: &Registry,
        pools: &upstream::Pools,
    ) -> Result<Self, BuildError> {
        let index = config.provider_index(&p.name).ok_or_else(|| BuildError::Unlisted(p.name.clone()))?;
        let spec = p.kind.spec();
        let backend = if p.kind.in_process() {
            Backend::Mock { behavior: p.mock.clone(), served: AtomicU64::new(0), cache: Default::default() }
        } else {
            let bad_url = || BuildError::BaseUrl(p.name.clone());
            let base = p.base_url.as_ref().ok_or_else(bad_url)?;
            let settings = Settings {
                api_version: &p.api_version,
                anthropic_version: &p.anthropic_version,
                project: p.project.as_deref().unwrap_or_default(),
                location: p.location.as_deref().unwrap_or_default(),
            };
            let client = pools.client(p)?;
            let endpoints = spec.endpoints(base, &settings).map_err(|_| bad_url())?;
            let mut headers = p.headers.clone();
            headers.extend(spec.headers(&settings).map_err(|_| bad_url())?);
            let region = p.region.as_deref().map(Box::from);
            let event_stream = spec.event_stream().then_some(p.max_event_bytes);
            Backend::Http(Box::new(HttpBackend { client, endpoints, headers, region, event_stream }))
        };
        let name_header = HeaderValue::from_str(&p.name).map_err(|_| BuildError::BaseUrl(p.name.clone()))?;
        let keys = p
            .keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let bad_key = || BuildError::Key { provider: p.name.clone(), index };
                let auth = match (&k.aws, &k.google) {
                    (Some(a), _) => Auth::Temporary(super::bedrock::credentials::start(a, pools.client(p)?)),
                    (None, Some(g)) => {
                        let tokens = super::vertex::token::Tokens::new(g).ok_or_else(bad_key)?;
                        Auth::Bearer(refresh::start(tokens, pools.client(p)?))
                    }
                    (None, None) => auth(spec, k).ok_or_else(bad_key)?,
                };
                Ok(Key {
                    name: Arc::from(k.name.as_str()),
                    auth,
                    weight: k.weight,
                    models: k.models.iter().map(|m| Glob::new(m)).collect(),
                    state: registry.key(&p.name, &k.name),
                    limit: k.concurrency.map(|c| registry.limit(&format!("key:{}/{}", p.name, k.name), c)),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let breaker = config.resilience.breaker;
        let routed = config.routes.iter().flat_map(|r| &r.targets).filter(|t| t.provider == index);
        let targets = routed
            .map(|t| t.model.as_str())
            .chain(p.models.iter().map(String::as_str).filter(|m| !is_glob(m)))
            .map(|m| (Box::from(m), registry.target(&p.name, m, breaker)))
            .collect();
        Ok(Self {
            index,
            name: Arc::from(p.name.as_str()),
            name_header,
            kind: p.kind,
            request_timeout: p.request_timeout,
            first_byte_timeout: p.first_byte_timeout,
            first_token_timeout: p.first_token_timeout,
            idle_timeout: p.idle_timeout,
            max_event_bytes: p.max_event_bytes,
            queue_timeout: p.queue_timeout,
            default_max_tokens: p.default_max_tokens,
            prefill: p.prefill || matches!(spec.wire(), Wire::Anthropic | Wire::Gemini),
            keys,
            state: registry.provider(&p.name, breaker, config.resilience.retry_budget),
            limit: p.concurrency.map(|c| registry.limit(&format!("provider:{}", p.name), c)),
            targets,
            direct: registry.target(&p.name, "(direct)", breaker),
            backend,
        })
    }

    /// The format a request of `op` for `model` (the URL's: the target's model or deployment)
    /// must be translated into for this provider, if any.
    pub(crate) fn dialect(&self, op: Operation, model: &str) -> Option<Dialect> {
        dialect(self.kind.spec().wire_for(model), op)
    }

    /// Whether this provider serves requests of `op` for `model`, natively or translated.
    pub(crate) fn speaks(&self, op: Operation, model: &str) -> bool {
        self.kind.spec().serves(op, model)
    }

    /// `model` as a metric label: its name if configured for this provider, else `other` (a model
    /// name a client made up never becomes a label).
    pub(crate) fn model_label<'m>(&self, model: &'m str) -> &'m str {
        if self.targets.contains_key(model) { model } else { crate::metrics::MODEL_OTHER }
    }

    /// The state of `model` on this provider: its own if configured; else, for a direct request,
    /// its own within the provider's bound on made-up models, past it the shared direct one.
    pub(crate) fn target_state(&self, model: &str, now: u64) -> Cow<'_, Arc<TargetState>> {
        if let Some(t) = self.targets.get(model) {
            return Cow::Borrowed(t);
        }
        match self.state.direct.get(model, self.state.breaker.config(), now) {
            Some(t) => Cow::Owned(t),
            None => Cow::Borrowed(&self.direct),
        }
    }

    /// Sends one call and waits for the response head (not the body).
    pub(crate) async fn send(&self, mut call: Call<'_>) -> Result<Response<UpstreamBody>, SendError> {
        match &self.backend {
            Backend::Mock { behavior, served, cache } => {
                let endpoint = match call.operation {
                    Operation::Chat => MockEndpoint::Chat,
                    Operation::Embeddings => MockEndpoint::Embeddings,
                    Operation::Messages => MockEndpoint::Messages,
                    Operation::Responses => MockEndpoint::Responses,
                };
                // The in-process mock's prompt cache is per key name.
                let key = call.key.map_or("", |k| &*k.name);
                let answer =
                    crate::mock::answer(behavior, served, endpoint, &call.body, None, (&**cache, key));
                let resp =
                    tokio::time::timeout_at(call.deadline, answer).await.map_err(|_| SendError::Timeout)?;
                Ok(resp.map(UpstreamBody::Mock))
            }
            Backend::Http(http) => {
                let trace = call.trace.take();
                let req = http.request(&call, trace).ok_or(SendError::Failed)?;
                match tokio::time::timeout_at(call.deadline, http.client.send(req)).await {
                    Err(_) => Err(SendError::Timeout),
                    Ok(Err(upstream::Error::Connect(_))) => Err(SendError::Connect),
                    Ok(Err(_)) => Err(SendError::Failed),
                    Ok(Ok(resp)) => Ok(http.body(resp)),
                }
            }
        }
    }
}

/// How key `k` authenticates for a kind: signed by its credential set, or in a header; `None`
/// when the key's secret cannot go in a header (or a signed kind's key has no access key id).
fn auth(spec: &dyn super::Kind, k: &crate::config::KeyConfig) -> Option<Auth> {
    if spec.signed() {
        return Some(Auth::SigV4(Box::new(AwsKey {
            access_key_id: k.access_key_id.clone()?,
            secret: k.secret.clone(),
            session_token: k.session_token.clone(),
        })));
    }
    let (name, value) = spec.auth(k.secret.expose());
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some(Auth::Header(name, value))
}

impl HttpBackend {
    /// The request of `call` (its trace context, taken out of it, moved into the headers: a
    /// clone would make each value's bytes shared, an allocation); `None` when the call has no
    /// URL, or its parts no request.
    fn request(&self, call: &Call<'_>, trace: Option<crate::otel::Propagated>) -> Option<Request<Bytes>> {
        let uri = self.endpoints.uri(call.operation, call.stream, call.deployment)?;
        let accept = if call.stream { "text/event-stream" } else { "application/json" };
        let body = self.endpoints.body(call.deployment, call.body.clone())?;
        // Built in place, not through `Request::builder`: each builder step moves the whole
        // request head (15 copies of it a request in callgrind).
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        // Room for them all from the start: a map's first insert makes room for six headers, and
        // a seventh (the trace context's, a correlation id, a configured one) moved them all.
        h.try_reserve(12 + self.headers.len()).ok()?;
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::ACCEPT, HeaderValue::from_static(accept));
        h.insert(header::USER_AGENT, USER_AGENT.clone());
        // tier1 reads answers (usage, translation, redaction): no content coding, please.
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        h.insert(crate::proxy::headers::X_REQUEST_ID, call.request_id.clone());
        if let Some(c) = call.correlation_id {
            h.insert(crate::proxy::headers::X_CORRELATION_ID, c.clone());
        }
        if let Some((parent, state)) = trace {
            let [parent_name, state_name] = crate::otel::context::HEADERS;
            for (name, value) in [(parent_name, parent), (state_name, state)] {
                if let Some(v) = value {
                    h.insert(name, v);
                }
            }
        }
        match call.key.map(|k| &k.auth) {
            Some(Auth::Header(name, value)) => {
                h.insert(name.clone(), value.clone());
            }
            // Before the first token answered, the request cannot be sent: it fails over.
            Some(Auth::Bearer(current)) => {
                h.insert(header::AUTHORIZATION, current.get()?.header.clone());
            }
            _ => {}
        }
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        // Signed last: the signature covers the headers as sent.
        let exchanged;
        let key: Option<&AwsKey> = match call.key.map(|k| &k.auth) {
            Some(Auth::SigV4(key)) => Some(key),
            // Before the first fetch answered, the request cannot be signed: it fails over.
            Some(Auth::Temporary(current)) => {
                exchanged = current.get()?;
                Some(&exchanged)
            }
            _ => None,
        };
        if let (Some(key), Some(region)) = (key, self.region.as_deref()) {
            let scope = (region, super::bedrock::sigv4::SERVICE);
            super::bedrock::sigv4::sign_request(&mut req, key, scope, std::time::SystemTime::now()).ok()?;
        }
        Some(req)
    }

    /// The answer's body as the proxy reads it: an event stream as SSE (see
    /// [`super::bedrock::stream`]), anything else as it came.
    fn body(&self, resp: Response<upstream::Body>) -> Response<UpstreamBody> {
        let event_stream = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(super::bedrock::stream::CONTENT_TYPE.as_bytes()));
        match self.event_stream {
            Some(max) if event_stream && resp.status().is_success() => {
                let (mut parts, body) = resp.into_parts();
                parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                parts.headers.remove(header::CONTENT_LENGTH);
                let body = super::bedrock::stream::Transcoded::new(body, max);
                Response::from_parts(parts, UpstreamBody::Events(Box::new(body)))
            }
            _ => resp.map(UpstreamBody::Http),
        }
    }
}

/// The format a request of `op` is translated into for an upstream speaking `wire`, if any.
fn dialect(wire: Wire, op: Operation) -> Option<Dialect> {
    match (wire, op) {
        (Wire::Anthropic, Operation::Chat) => Some(Dialect::Anthropic),
        (Wire::Gemini, Operation::Chat | Operation::Embeddings) => Some(Dialect::Gemini),
        (Wire::OpenAi, Operation::Messages) => Some(Dialect::OpenAi),
        (Wire::Gemini, Operation::Messages) => Some(Dialect::GeminiMessages),
        (Wire::Anthropic, Operation::Responses) => Some(Dialect::ResponsesAnthropic),
        (Wire::Gemini, Operation::Responses) => Some(Dialect::ResponsesGemini),
        (Wire::Bedrock, Operation::Chat) => Some(Dialect::Bedrock),
        (Wire::Bedrock, Operation::Messages) => Some(Dialect::BedrockMessages),
        (Wire::Bedrock, Operation::Responses) => Some(Dialect::ResponsesBedrock),
        (Wire::OpenAi, Operation::Chat | Operation::Embeddings | Operation::Responses)
        | (Wire::Anthropic, Operation::Messages | Operation::Embeddings)
        | (Wire::Bedrock, Operation::Embeddings)
        | (Wire::Client, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_translated_only_where_the_upstream_speaks_another_format() {
        use Operation::{Chat, Embeddings, Messages, Responses};
        let d = |kind: ProviderKind, op| dialect(kind.spec().wire(), op);
        assert_eq!(d(ProviderKind::OpenAi, Chat), None);
        assert_eq!(d(ProviderKind::OpenAi, Embeddings), None);
        assert_eq!(d(ProviderKind::OpenAi, Messages), Some(Dialect::OpenAi));
        assert_eq!(d(ProviderKind::Azure, Messages), Some(Dialect::OpenAi));
        assert_eq!(d(ProviderKind::Anthropic, Chat), Some(Dialect::Anthropic));
        assert_eq!(d(ProviderKind::Anthropic, Messages), None);
        assert_eq!(d(ProviderKind::Gemini, Chat), Some(Dialect::Gemini));
        assert_eq!(d(ProviderKind::Gemini, Embeddings), Some(Dialect::Gemini));
        assert_eq!(d(ProviderKind::Gemini, Messages), Some(Dialect::GeminiMessages));
        for op in [Chat, Embeddings, Messages, Responses] {
            assert_eq!(d(ProviderKind::Mock, op), None);
        }
        assert_eq!(d(ProviderKind::OpenAi, Responses), None);
        assert_eq!(d(ProviderKind::Azure, Responses), None);
        assert_eq!(d(ProviderKind::Anthropic, Responses), Some(Dialect::ResponsesAnthropic));
        assert_eq!(d(ProviderKind::Gemini, Responses), Some(Dialect::ResponsesGemini));
        assert_eq!(d(ProviderKind::Bedrock, Chat), Some(Dialect::Bedrock));
        assert_eq!(d(ProviderKind::Bedrock, Messages), Some(Dialect::BedrockMessages));
        assert_eq!(d(ProviderKind::Bedrock, Responses), Some(Dialect::ResponsesBedrock));
        assert_eq!(d(ProviderKind::Bedrock, Embeddings), None);
    }
}
