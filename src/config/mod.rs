//! Configuration: a TOML (or JSON, same schema) file parsed into [`raw`] types, then validated
//! into [`Config`], which reports *every* problem with its key path
//! (`routes[2].targets[0].provider: unknown provider "opneai"`). Secrets are resolved here, once,
//! and from then on travel only as [`Secret`].

mod raw;
mod redact;
mod secret;
mod settings;
mod validate;

pub(crate) use validate::Problems;
pub use validate::open_surfaces;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

pub use redact::Redactor;
pub(crate) use redact::{Mint, StreamRedactor};
pub(crate) use secret::resolve as resolve_secret;
pub use secret::{Env, ProcessEnv, Secret};

pub(crate) use crate::providers::ProviderKind;
pub(crate) use settings::{
    Adaptive, Affinity, BreakerConfig, BudgetConfig, Concurrency, CooldownConfig, FirstTokenTimeout,
    RawBehavior, RetryPolicy, SessionFrom, Strategy, Then, is_glob,
};
pub use settings::{Behavior, DEFAULT_REPLY, Quota, Taken};

/// The demo config embedded in the binary: routes served by the built-in mock provider, so that
/// `tier1` with no arguments answers offline.
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// Providers, in name order; targets refer to them by index.
    pub providers: Vec<ProviderConfig>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// `[resilience]`.
    pub resilience: ResilienceConfig,
    /// `[reload]`.
    pub reload: ReloadConfig,
    /// `[redis]`, when replicas share state.
    pub redis: Option<RedisConfig>,
    /// `[[limits]]`, plus one per key with `rpm`/`tpm`.
    pub limits: Vec<LimitConfig>,
    /// `[[budgets]]`: spend limits (USD and/or tokens) over long fixed windows, as limits.
    pub budgets: Vec<LimitConfig>,
    /// `[front]`.
    pub front: FrontConfig,
    /// `[observability]`.
    pub observability: ObservabilityConfig,
}

/// `[observability]`, validated.
#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// `Server-Timing` on every proxied answer.
    pub server_timing: bool,
    /// `[observability.otlp]`: traces exported over OTLP/HTTP; `None`: off.
    pub otlp: Option<OtlpConfig>,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self { server_timing: true, otlp: None }
    }
}

/// `[observability.otlp]`, validated (read at start: changing it needs a restart).
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Where spans are posted: the endpoint's `/v1/traces`.
    pub endpoint: Uri,
    /// Share of the traces tier1 starts that are sampled.
    pub sample_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// Headers sent to the collector (secrets: never logged).
    pub headers: Vec<(HeaderName, Secret)>,
    /// Deadline of one export request.
    pub timeout: Duration,
    /// Export interval.
    pub interval: Duration,
    /// Spans buffered at most.
    pub max_queue: usize,
}

/// `[front]`, validated: the front's provider manifest ([`crate::manifest`]), opt-in.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Where the manifest is fetched (`http` or `https`); `None`: no manifest.
    pub manifest_url: Option<Uri>,
    /// Fetch interval.
    pub manifest_refresh: Duration,
    /// Without `manifest_url`: learn it from the first `X-OmniRoute-Provider-Manifest-Url` of an
    /// authenticated request (needs `server.api_keys`: only a front holding a key names it).
    pub manifest_from_header: bool,
}

/// Whether `uri` is an absolute `http` or `https` URL with a host (a manifest URL, configured or
/// learned from the front's header).
pub(crate) fn is_fetchable(uri: &Uri) -> bool {
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty())
}

impl Default for FrontConfig {
    fn default() -> Self {
        Self { manifest_url: None, manifest_refresh: Duration::from_secs(60), manifest_from_header: false }
    }
}

/// `[redis]`, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Connection URL (may hold a password: never logged).
    pub url: Secret,
    /// Key prefix, without braces.
    pub key_prefix: String,
    /// Flush and refresh period.
    pub sync_interval: Duration,
    /// Refuse limited requests while Redis is down.
    pub fail_closed: bool,
    /// A Redis Cluster.
    pub cluster: bool,
    /// Connect and command deadline.
    pub timeout: Duration,
    /// `rediss://` certificates, read and checked when the config loads.
    pub tls: Option<std::sync::Arc<RedisTls>>,
}

/// A CA to trust and a client certificate to present on `rediss://` connections, as PEM.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// The CA bundle (trusted instead of the web PKI roots).
    pub ca: Option<Vec<u8>>,
    /// The client certificate chain and its key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates and a private key: never printed.
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// What a limit counts per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything that matches the filters.
    Global,
    /// Per route.
    Route,
    /// Per provider key (the provider's own quota).
    ProviderKey,
    /// Per inbound API key.
    ApiKey,
    /// Per value of a request header (missing: one shared bucket).
    Header(HeaderName),
}

/// One limit, validated.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Name.
    pub name: String,
    /// What it counts per.
    pub scope: Scope,
    /// Requests per window.
    pub requests: Option<u64>,
    /// Tokens per window.
    pub tokens: Option<u64>,
    /// The window.
    pub per: Duration,
    /// Concurrent requests.
    pub max_inflight: Option<u32>,
    /// Only these models (globs); empty: all.
    pub models: Vec<String>,
    /// Only these routes; empty: all.
    pub routes: Vec<String>,
    /// One atomic Redis call per request instead of the async sync.
    pub strict: bool,
    /// For a key's own `rpm`/`tpm`: (provider, key) it applies to.
    pub key: Option<(String, String)>,
    /// Distinct scope values with their own counters; new ones past it share one overflow bucket.
    pub max_keys: usize,
    /// A budget's spend per window, in micro-USD (`usd` × 10⁶).
    pub micro_usd: Option<u64>,
    /// A `[[budgets]]` entry: counted in fixed windows aligned on unix-epoch multiples of `per`
    /// (every replica agrees on the reset), refused with `budget_exceeded`.
    pub budget: bool,
}

/// `max_keys` when a limit does not set it.
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

/// `[reload]`, validated.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// File check interval; zero: no file watching (SIGHUP and `POST /admin/reload` still work).
    pub poll_interval: Duration,
}

/// `[resilience]`, validated.
#[derive(Debug, Clone)]
pub struct ResilienceConfig {
    /// Breaker settings, for every provider and target.
    pub breaker: BreakerConfig,
    /// Cooldown settings.
    pub cooldown: CooldownConfig,
    /// Retry budget, per route.
    pub retry_budget: BudgetConfig,
    /// Retry policy of direct requests and routes without their own.
    pub default_retry: RetryPolicy,
    /// A request whose every candidate rests for less than this waits for the first to come
    /// back instead of a 429 (zero: never).
    pub wait_for_cooldown: Duration,
    /// Requests waiting that way at once, at most (the rest get their 429 at once).
    pub max_cooldown_waiters: usize,
    /// Whether providers' rate-limit headers steer key choice (see `resilience::headroom`).
    pub headroom: bool,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            cooldown: CooldownConfig::default(),
            retry_budget: BudgetConfig::default(),
            default_retry: RetryPolicy::default(),
            wait_for_cooldown: Duration::ZERO,
            // Enough for a burst, bounded.
            max_cooldown_waiters: 256,
            headroom: true,
        }
    }
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Accepted inbound bearer tokens; empty means open.
    pub api_keys: Vec<Secret>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Lame-duck period: after SIGTERM `/readyz` fails but connections are still accepted.
    pub shutdown_delay: Duration,
    /// Deadline for in-flight requests once the listener has closed.
    pub drain_timeout: Duration,
    /// Deadline for a client's request headers.
    pub header_timeout: Duration,
    /// Deadline for a client's request body.
    pub body_timeout: Duration,
    /// Separate admin listener, if any.
    pub admin_listen: Option<SocketAddr>,
    /// Probe listener, if any: `/health`, `/healthz`, `/readyz` and `/metrics` only, no keys
    /// (they hold no secret; the main listener serves them without keys too).
    pub probe_listen: Option<SocketAddr>,
    /// Admin bearer tokens; empty: loopback operators only (see [`crate::admin`]).
    pub admin_keys: Vec<Secret>,
    /// Bind with SO_REUSEPORT (zero-downtime upgrade of a single sidecar).
    pub reuse_port: bool,
    /// Open connections; above it, accepting pauses (restart to change).
    pub max_connections: usize,
    /// API requests in flight; beyond it, 503 at once (restart to change).
    pub max_inflight: Option<usize>,
    /// Largest request head; beyond it, 431 (restart to change).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request; beyond it, 431 (restart to change).
    pub max_headers: usize,
    /// Concurrent streams per HTTP/2 connection (restart to change).
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 connection with no open stream this long gets GOAWAY, pings or not (restart to
    /// change).
    pub http2_idle_timeout: Duration,
    /// Most request-level fallbacks, the body's `fallbacks` and `x-tier1-fallbacks` together;
    /// beyond it, 400.
    pub max_request_fallbacks: usize,
    /// TLS on the main listener; turning it on or off needs a restart, the files rotate live.
    pub tls: Option<TlsConfig>,
    /// An open API or admin surface on a non-loopback address was asked for explicitly.
    pub allow_unauthenticated: bool,
}

/// `[server.tls]`, validated: the files were readable and formed a working server config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA bundle.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for rotation; zero: never.
    pub reload_interval: Duration,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `info,tier1=debug`.
    pub level: String,
    /// Structured JSON lines, or human-readable lines.
    pub json: bool,
    /// Fraction of successful requests in the access log.
    pub sample: f64,
}

/// One provider, validated.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Config name, used in `provider/model` and metrics.
    pub name: String,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL (no trailing slash); `None` for the in-process mock.
    pub base_url: Option<Uri>,
    /// TCP + TLS connect deadline.
    pub connect_timeout: Duration,
    /// Total deadline of one upstream request, stream included.
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections per host.
    pub max_idle_connections: usize,
    /// Extra trusted CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key presented upstream (mTLS to the provider).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Extra headers for every upstream request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Catalog of models listed by `/v1/models`.
    pub models: Vec<String>,
    /// API keys, in file order.
    pub keys: Vec<KeyConfig>,
    /// Mock behaviour (only used by `kind = "mock"`).
    pub mock: Behavior,
    /// Concurrent requests to this provider: `max_inflight`, or adaptive.
    pub concurrency: Option<Concurrency>,
    /// Wait for a free slot before moving on.
    pub queue_timeout: Duration,
    /// Deadline for response headers (streams: the first event).
    pub first_byte_timeout: Duration,
    /// Deadline for a stream's first content (its commit point), scaled to the prompt.
    pub first_token_timeout: Option<FirstTokenTimeout>,
    /// Longest gap between stream chunks.
    pub idle_timeout: Duration,
    /// Largest single upstream event of a translated stream (a translation reads events whole).
    pub max_event_bytes: usize,
    /// `anthropic-version` sent to an `anthropic` provider.
    pub anthropic_version: String,
    /// `max_tokens` for translated requests that have none.
    pub default_max_tokens: u32,
    /// An OpenAI-format provider that continues a trailing assistant message (Anthropic and
    /// Gemini always do): it may carry on a broken stream (`stream_resume`).
    pub prefill: bool,
    /// `api-version` query parameter of an `azure` provider.
    pub api_version: String,
    /// The AWS region of a `bedrock` provider.
    pub region: Option<String>,
    /// The Google Cloud project of a `vertex` provider.
    pub project: Option<String>,
    /// The Vertex AI location of a `vertex` provider, or `global`.
    pub location: Option<String>,
}

/// One provider key.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// The key.
    pub secret: Secret,
    /// Share of traffic among available keys.
    pub weight: u32,
    /// Models this key may serve (globs); empty: all.
    pub models: Vec<String>,
    /// Concurrent requests on this key: `max_inflight`, or adaptive.
    pub concurrency: Option<Concurrency>,
    /// Requests per minute the provider allows this key.
    pub rpm: Option<u64>,
    /// Tokens per minute the provider allows this key.
    pub tpm: Option<u64>,
    /// A `bedrock` key's AWS access key id (`secret` is the secret access key).
    pub access_key_id: Option<String>,
    /// A `bedrock` key's session token (temporary credentials).
    pub session_token: Option<Secret>,
    /// A `bedrock` key whose temporary credentials come from a web identity (EKS IRSA), the
    /// container credentials endpoint (ECS, EKS Pod Identity) or the instance metadata (EC2),
    /// refreshed in the background; then `secret` and `access_key_id` are unused.
    pub aws: Option<AwsAuth>,
    /// A `vertex` key whose access tokens are minted (a service account's key file, its
    /// `secret`) or fetched (workload identity), kept fresh in the background; without it a
    /// `vertex` key's `secret` is an access token sent as it is.
    pub google: Option<GoogleAuth>,
}

impl KeyConfig {
    /// A key tier1 makes itself from the environment (`env`, `web-identity`, `container`,
    /// `instance`, `workload-identity`): weight 1, every model, no limit of its own, no credentials yet.
    pub(crate) fn derived(name: &str, secret: Secret) -> Self {
        Self {
            name: name.to_owned(),
            secret,
            weight: 1,
            models: Vec::new(),
            concurrency: None,
            rpm: None,
            tpm: None,
            access_key_id: None,
            session_token: None,
            aws: None,
            google: None,
        }
    }
}

/// Where a `vertex` key's access tokens come from.
#[derive(Debug, Clone)]
pub enum GoogleAuth {
    /// A service account's key file: a JWT signed with its key, exchanged at its `token_uri`.
    ServiceAccount(ServiceAccount),
    /// GKE workload identity (or any Google Cloud machine): the metadata server's token URL.
    Metadata(String),
}

/// What tier1 reads of a service account's key file.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// `client_email`: the JWT's issuer.
    pub client_email: String,
    /// `private_key_id`: the JWT header's `kid`, when the file names one.
    pub private_key_id: Option<String>,
    /// `private_key`: PKCS#8 PEM, checked to be an RSA key at load.
    pub private_key: Secret,
    /// `token_uri`: where the JWT is exchanged (and the JWT's audience).
    pub token_uri: String,
}

/// Whether `id` is an AWS access key id: upper-case letters and digits (`AKIA...`, `ASIA...`);
/// what goes in the signature's credential scope must hold no `/`, space or newline.
pub(crate) fn valid_access_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Where a `bedrock` key's temporary credentials come from.
#[derive(Debug, Clone)]
pub enum AwsAuth {
    /// A web identity exchanged with STS (key `web-identity`).
    WebIdentity(WebIdentity),
    /// The container credentials endpoint of ECS or EKS Pod Identity (key `container`).
    Container(ContainerCredentials),
    /// The EC2 instance metadata service, IMDSv2 (key `instance`).
    Instance(InstanceMetadata),
}

/// The container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` under
/// `http://169.254.170.2`, or `AWS_CONTAINER_CREDENTIALS_FULL_URI`, its host checked at load).
#[derive(Debug, Clone)]
pub struct ContainerCredentials {
    /// The URL credentials are fetched from (GET).
    pub url: String,
    /// What goes in the `Authorization` header, if anything.
    pub authorization: Option<ContainerToken>,
}

/// The container endpoint's `Authorization` value.
#[derive(Debug, Clone)]
pub enum ContainerToken {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at every fetch (EKS rotates it).
    File(std::path::PathBuf),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, checked at load to be a header value.
    Value(Secret),
}

/// The EC2 instance metadata service, spoken in IMDSv2 only (a session token first).
#[derive(Debug, Clone)]
pub struct InstanceMetadata {
    /// `http://169.254.169.254`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT` (no trailing `/`).
    pub endpoint: String,
}

/// A web identity to exchange with STS for temporary credentials.
#[derive(Debug, Clone)]
pub struct WebIdentity {
    /// `AWS_ROLE_ARN`.
    pub role_arn: String,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, read at every exchange.
    pub token_file: std::path::PathBuf,
    /// `AWS_ROLE_SESSION_NAME`, default `tier1`.
    pub session_name: String,
    /// STS: `AWS_ENDPOINT_URL_STS`, default `https://sts.{region}.amazonaws.com/`.
    pub sts_url: String,
}

/// One route, validated.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Route name, itself a model name clients may use.
    pub name: String,
    /// Client-facing model names and globs.
    pub models: Vec<String>,
    /// Targets in order.
    pub targets: Vec<TargetConfig>,
    /// Target ordering strategy.
    pub strategy: Strategy,
    /// Retry policy (the resilience default when not set).
    pub retry: RetryPolicy,
    /// Parallel attempt after this long without a first byte.
    pub hedge_after: Option<Duration>,
    /// A committed stream that breaks is continued on the next target that takes a prefill.
    pub stream_resume: bool,
    /// The first-token deadline of this route's targets, over their providers' own.
    pub first_token_timeout: Option<FirstTokenTimeout>,
    /// `[resilience] wait_for_cooldown`, or the route's own.
    pub wait_for_cooldown: Duration,
    /// Prompt-cache affinity, when set.
    pub affinity: Option<Affinity>,
}

/// One route target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// Upstream model name.
    pub model: String,
    /// Weight for `weighted`.
    pub weight: u32,
    /// USD per million input tokens.
    pub input_cost: f64,
    /// USD per million output tokens.
    pub output_cost: f64,
    /// Azure deployment (default: the model).
    pub deployment: Option<String>,
    /// The model's context window in tokens: a request estimated above it skips this target.
    pub context_window: Option<u64>,
}

impl Config {
    /// Every secret in the config, for the [`Redactor`].
    pub fn secrets(&self) -> Vec<Secret> {
        let keys = self.providers.iter().flat_map(|p| {
            p.keys.iter().flat_map(|k| {
                let private_key = match &k.google {
                    Some(GoogleAuth::ServiceAccount(sa)) => Some(sa.private_key.clone()),
                    _ => None,
                };
                let container_token = match &k.aws {
                    Some(AwsAuth::Container(ContainerCredentials {
                        authorization: Some(ContainerToken::Value(token)),
                        ..
                    })) => Some(token.clone()),
                    _ => None,
                };
                std::iter::once(k.secret.clone())
                    .chain(k.session_token.clone())
                    .chain(private_key)
                    .chain(container_token)
            })
        });
        let headers = self.providers.iter().flat_map(|p| {
            p.headers
                .iter()
                .filter(|(_, v)| v.is_sensitive())
                .filter_map(|(_, v)| v.to_str().ok().map(Secret::new))
        });
        let redis = self.redis.iter().map(|r| r.url.clone());
        let otlp = self.observability.otlp.iter().flat_map(|o| o.headers.iter().map(|(_, v)| v.clone()));
        self.server
            .api_keys
            .iter()
            .chain(&self.server.admin_keys)
            .cloned()
            .chain(redis)
            .chain(otlp)
            .chain(keys)
            .chain(headers)
            .collect()
    }

    /// Index of a provider by name.
    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

/// One problem in a config file, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `routes[2].targets[0].provider`; empty for whole-file errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(path: &str, message: impl Into<String>) -> Self {
        Self(vec![ConfigError { path: path.to_owned(), message: message.into() }])
    }
}

/// The file formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default).
    Toml,
    /// JSON with the same schema.
    Json,
}

impl Format {
    /// JSON for a `.json` file, TOML otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// Parses and validates config text.
pub fn parse(text: &str, format: Format, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let raw = match format {
        Format::Toml => raw::from_toml(text)?,
        Format::Json => raw::from_json(text)?,
    };
    validate::validate(raw, env)
}

/// A TOML error by position only. toml's own rendering quotes the offending line, and that line
/// may hold a literal secret, which would then reach the log and `POST /admin/reload`'s answer.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = without_values(e.message().trim_end());
    match e.span() {
        Some(span) => {
            let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            format!("TOML parse error at line {line}, column {column}: {message}")
        }
        None => format!("TOML parse error: {message}"),
    }
}

/// serde quotes the offending value in type errors (`invalid type: string "sk-…", expected a
/// sequence`), and that value may be a literal secret: only its kind is kept ("a string").
fn without_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(QUOTED) {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let value = &rest[at + QUOTED.len()..];
        // The value ends at the first quote that a backslash does not escape.
        let mut escaped = false;
        let end = value
            .char_indices()
            .find(|&(_, c)| {
                let end = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })
            .map_or(value.len(), |(i, _)| i + 1);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
