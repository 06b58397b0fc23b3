//! The config file as written: serde types with `deny_unknown_fields`, durations and secrets as
//! strings, and their decoding, where a type error names its key path (`limits[0].rpm`) and a
//! TOML file's structural errors are all reported at once. Nothing here is trusted; `validate`
//! turns it into [`super::Config`] (and runs only once the structure is sound).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeArray, DeString, DeTable, DeValue};

use super::{ConfigError, ConfigErrors, RawBehavior, toml_error, without_values};

/// Decodes a TOML file. A sound file is decoded in one pass; a file with structural errors is
/// decoded again part by part, so that one run lists every error (see [`toml_errors`]).
pub(super) fn from_toml(text: &str) -> Result<RawConfig, ConfigErrors> {
    let doc = DeTable::parse(text).map_err(|e| ConfigErrors::one("", toml_error(text, &e)))?;
    let whole = serde_path_to_error::deserialize(toml::de::Deserializer::from(doc.clone()));
    whole.map_err(|first| {
        let errors = toml_errors(text, doc.into_inner());
        if errors.is_empty() {
            // Not expected (the parts hold the whole file), but never an error without a message.
            ConfigErrors::one(&key_path(first.path(), None), toml_error(text, first.inner()))
        } else {
            ConfigErrors(errors)
        }
    })
}

/// Every structural error of a TOML file, in file order, at most one per part. serde stops at
/// the first error, so each top-level key is decoded again as a file of its own (see [`parts`]).
fn toml_errors(text: &str, doc: DeTable<'_>) -> Vec<ConfigError> {
    let mut found: Vec<(usize, ConfigError)> = Vec::new();
    for (key, value) in doc {
        for (index, part) in parts(text, &key, value) {
            found.extend(part_error(text, &key, part, index));
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, e)| e).collect()
}

/// A top-level value cut into the parts decoded on their own, each with its index in the file's
/// array: one per element of an array (`routes[2]`) or key of a table (`server.listen`,
/// `providers.openai`), when the schema takes an empty array or table there (so a part never
/// lacks a required sibling, nor is a struct read positionally from one element); else the
/// value whole.
fn parts<'i>(
    text: &str,
    key: &Spanned<DeString<'i>>,
    value: Spanned<DeValue<'i>>,
) -> Vec<(Option<usize>, Spanned<DeValue<'i>>)> {
    let span = value.span();
    let spanned = |value: DeValue<'i>| Spanned::new(span.clone(), value);
    let takes = |empty: DeValue<'i>| part_error(text, key, spanned(empty), None).is_none();
    match value.into_inner() {
        DeValue::Array(items) if takes(DeValue::Array(DeArray::new())) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (Some(i), spanned(DeValue::Array(std::iter::once(item).collect()))))
            .collect(),
        DeValue::Table(entries) if takes(DeValue::Table(DeTable::new())) => entries
            .into_iter()
            .map(|entry| (None, spanned(DeValue::Table(std::iter::once(entry).collect()))))
            .collect(),
        whole => vec![(None, spanned(whole))],
    }
}

/// The error of a file holding only `key = value`, with its position; `index`: the position of
/// the one element `value` holds in the file's array.
fn part_error(
    text: &str,
    key: &Spanned<DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    index: Option<usize>,
) -> Option<(usize, ConfigError)> {
    let mut part = DeTable::new();
    part.insert(key.clone(), value);
    let de = toml::de::Deserializer::from(Spanned::new(0..text.len(), part));
    let e = serde_path_to_error::deserialize::<_, RawConfig>(de).err()?;
    let at = e.inner().span().map_or(usize::MAX, |s| s.start);
    Some((at, ConfigError { path: key_path(e.path(), index), message: toml_error(text, e.inner()) }))
}

/// Decodes a JSON file. Only its first structural error is reported: cutting JSON into parts
/// goes through `serde_json::Value`, which keeps no positions to name or sort the errors by.
pub(super) fn from_json(text: &str) -> Result<RawConfig, ConfigErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ConfigErrors::one(&key_path(e.path(), None), without_values(&e.inner().to_string())))?;
    de.end().map_err(|e| ConfigErrors::one("", without_values(&e.to_string())))?;
    Ok(raw)
}

/// `routes[2].targets[0].provider`, the form `validate` writes; empty for the whole file. With
/// `index`, the path's first index is that (the part held one element of a longer array).
fn key_path(path: &serde_path_to_error::Path, mut index: Option<usize>) -> String {
    let mut out = String::new();
    for segment in path {
        let name = match segment {
            Segment::Seq { index: at } => {
                let _ = write!(out, "[{}]", index.take().unwrap_or(*at));
                continue;
            }
            Segment::Map { key } | Segment::Enum { variant: key } => key.as_str(),
            Segment::Unknown => "?",
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Listener, inbound auth and limits.
    #[serde(default)]
    pub server: RawServer,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// Providers by name; the name is what `provider/model` and route targets refer to.
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Named routes: client-facing model names mapped to targets.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Breakers, cooldowns, retry budget and the default retry policy.
    #[serde(default)]
    pub resilience: RawResilience,
    /// How config changes are picked up.
    #[serde(default)]
    pub reload: RawReload,
    /// Shared state across replicas.
    pub redis: Option<RawRedis>,
    /// Rate limits.
    #[serde(default)]
    pub limits: Vec<RawLimit>,
    /// Spend limits per caller.
    #[serde(default)]
    pub budgets: Vec<RawSpendBudget>,
    /// What tier1 learns from the front (OmniRoute) beyond its requests.
    #[serde(default)]
    pub front: RawFront,
    /// What tier1 tells about itself beyond metrics and logs: Server-Timing, traces.
    #[serde(default)]
    pub observability: RawObservability,
}

/// `[observability]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObservability {
    /// `Server-Timing` on every proxied answer (default on).
    pub server_timing: Option<bool>,
    /// `[observability.otlp]`: OpenTelemetry traces over OTLP/HTTP (off without it).
    pub otlp: Option<RawOtlp>,
}

/// `[observability.otlp]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces`.
    pub endpoint: Option<String>,
    /// Share of the traces tier1 starts that are kept (default 1); a parent's decision is followed.
    pub sample_ratio: Option<f64>,
    /// `service.name` (default `tier1`).
    pub service_name: Option<String>,
    /// Headers sent to the collector (values may be secret references: `env:`, `file:`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export request (default 10s).
    pub timeout: Option<String>,
    /// How often buffered spans are sent (default 2s; sooner when a batch is full).
    pub interval: Option<String>,
    /// Spans buffered at most; beyond, new spans are dropped and counted (default 4096).
    pub max_queue: Option<usize>,
}

/// `[front]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFront {
    /// The front's provider manifest (`http(s)://…/api/v1/provider-plugin-manifest`).
    pub manifest_url: Option<String>,
    /// How often the manifest is fetched again (default 60s).
    pub manifest_refresh: Option<String>,
    /// Learn the URL from the first authenticated `X-OmniRoute-Provider-Manifest-Url`.
    #[serde(default)]
    pub manifest_from_header: bool,
}

/// `[redis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    /// `redis://`, `rediss://` (a secret reference is allowed: the URL may hold a password).
    pub url: Option<String>,
    /// Prefix of every key (hash-tagged, so one script touches one cluster slot).
    pub key_prefix: Option<String>,
    /// How often counters are flushed and fleet totals refreshed.
    pub sync_interval: Option<String>,
    /// `local` (keep serving with per-replica shares) or `closed` (refuse limited requests).
    pub on_failure: Option<String>,
    /// The URL names a Redis Cluster node.
    pub cluster: Option<bool>,
    /// Connect and command deadline.
    pub timeout: Option<String>,
    /// `rediss://`: a PEM CA bundle to trust instead of the web PKI roots (a private CA).
    pub ca_file: Option<String>,
    /// `rediss://`: a client certificate (PEM), for servers that require one (Redis's default
    /// `tls-auth-clients yes`).
    pub client_cert: Option<String>,
    /// Its key (PEM).
    pub client_key: Option<String>,
}

/// `[[limits]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    /// Name (metric label and `x-tier1-limit`).
    pub name: Option<String>,
    /// global, route, provider_key, api_key or header:NAME.
    pub scope: Option<String>,
    /// Requests per `per`.
    pub requests: Option<u64>,
    /// Tokens per `per`.
    pub tokens: Option<u64>,
    /// The window (default 1m).
    pub per: Option<String>,
    /// Requests per minute (shorthand).
    pub rpm: Option<u64>,
    /// Tokens per minute (shorthand).
    pub tpm: Option<u64>,
    /// Concurrent requests.
    pub max_inflight: Option<u32>,
    /// Only these models (globs).
    #[serde(default)]
    pub models: Vec<String>,
    /// Only these routes.
    #[serde(default)]
    pub routes: Vec<String>,
    /// `async` (default) or `strict` (one atomic Redis call per request).
    pub mode: Option<String>,
    /// Distinct scope values counted on their own (default 100000); past it, new ones share one
    /// overflow bucket.
    pub max_keys: Option<usize>,
}

/// `[[budgets]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpendBudget {
    /// Name (metric label and `x-tier1-budget`).
    pub name: Option<String>,
    /// global, route, provider_key, api_key or header:NAME.
    pub scope: Option<String>,
    /// USD per `per`, priced from the targets' `input_cost`/`output_cost`.
    pub usd: Option<f64>,
    /// Tokens (input + output) per `per`.
    pub tokens: Option<u64>,
    /// The window, at least 1h (default 1d), aligned on unix-epoch multiples of itself.
    pub per: Option<String>,
    /// Only these models (globs).
    #[serde(default)]
    pub models: Vec<String>,
    /// Only these routes.
    #[serde(default)]
    pub routes: Vec<String>,
    /// `async` (default) or `strict` (one atomic Redis call per request).
    pub mode: Option<String>,
    /// Distinct scope values counted on their own (default 100000).
    pub max_keys: Option<usize>,
}

/// `[reload]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    /// How often the config file is checked for changes (0 turns file watching off).
    pub poll_interval: Option<String>,
}

/// `[resilience]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResilience {
    /// Circuit breaker settings (per provider and per target).
    #[serde(default)]
    pub breaker: RawBreaker,
    /// Key and model cooldowns.
    #[serde(default)]
    pub cooldown: RawCooldown,
    /// Cap on extra attempts.
    #[serde(default)]
    pub retry_budget: RawBudget,
    /// Retry policy of direct `provider/model` requests and routes without their own.
    pub default_retry: Option<RawRetry>,
    /// Hold a request whose every candidate rests for less than this, instead of a 429.
    pub wait_for_cooldown: Option<String>,
    /// Requests held that way at once, at most.
    pub max_cooldown_waiters: Option<usize>,
    /// Providers' rate-limit headers steer key choice (default true).
    pub headroom: Option<bool>,
}

/// `[resilience.breaker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    /// Consecutive failures that open it.
    pub failure_threshold: Option<u32>,
    /// Failure ratio that opens it.
    pub failure_rate: Option<f64>,
    /// Requests in the window before the ratio counts.
    pub min_requests: Option<u32>,
    /// The ratio's window.
    pub window: Option<String>,
    /// Open time before trial requests.
    pub open_for: Option<String>,
    /// The longest re-opening after failed trials (default: `open_for`).
    pub open_for_max: Option<String>,
    /// Trial requests while half-open.
    pub half_open_probes: Option<u32>,
}

/// `[resilience.cooldown]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCooldown {
    /// First cooldown without `Retry-After`.
    pub default: Option<String>,
    /// Ceiling.
    pub max: Option<String>,
    /// Cooldown of a refused key.
    pub on_auth_error: Option<String>,
}

/// `[resilience.retry_budget]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    /// Extra attempts per request.
    pub ratio: Option<f64>,
    /// Floor, per second of window.
    pub min_per_second: Option<f64>,
    /// Sliding window.
    pub window: Option<String>,
}

/// A retry policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    /// Tries per target, the first included.
    pub attempts: Option<u32>,
    /// Backoff base.
    pub backoff: Option<String>,
    /// Backoff ceiling.
    pub max_backoff: Option<String>,
    /// `retry` or `next` after a timeout.
    pub on_timeout: Option<String>,
    /// `retry` or `next` after a connect error.
    pub on_connect: Option<String>,
    /// `retry` or `next` after a 5xx or an overloaded answer.
    pub on_server: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    /// Socket address to bind, e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Bearer tokens the front must send; empty means open.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: Option<u64>,
    /// Lame-duck period after SIGTERM during which connections are still accepted.
    pub shutdown_delay: Option<String>,
    /// How long in-flight requests may take to finish after the listener closes.
    pub drain_timeout: Option<String>,
    /// Time allowed for a client to send request headers.
    pub header_timeout: Option<String>,
    /// Time allowed for a client to send the request body.
    pub body_timeout: Option<String>,
    /// A separate listener for the admin routes (default: the main listener serves them).
    pub admin_listen: Option<String>,
    /// A listener for the health routes and `/metrics` only, for probes and scrapes that reach
    /// the pod's address while the API stays on loopback (a sidecar).
    pub probe_listen: Option<String>,
    /// Bearer tokens for the admin routes; none: only a loopback operator (see `crate::admin`).
    #[serde(default)]
    pub admin_keys: Vec<String>,
    /// Bind with SO_REUSEPORT, so a new process can take over the address while the old drains.
    pub reuse_port: Option<bool>,
    /// Open connections; above it, accepting pauses.
    pub max_connections: Option<usize>,
    /// API requests in flight; beyond it, 503 with Retry-After at once.
    pub max_inflight: Option<usize>,
    /// Largest request head (request line and headers, or an HTTP/2 header list).
    pub max_header_bytes: Option<usize>,
    /// Most header fields in one HTTP/1.1 request.
    pub max_headers: Option<usize>,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: Option<u32>,
    /// How long an HTTP/2 connection with no open stream is kept (default: `header_timeout`).
    pub http2_idle_timeout: Option<String>,
    /// Most request-level fallbacks (the body's `fallbacks` and `x-tier1-fallbacks` together).
    pub max_request_fallbacks: Option<usize>,
    /// TLS on the main listener (plain HTTP without it).
    pub tls: Option<RawTls>,
    /// Serve an API without `api_keys`, or admin routes without `admin_keys`, on a non-loopback
    /// address (refused without it).
    pub allow_unauthenticated: Option<bool>,
}

/// `[server.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<String>,
    /// How often the files are checked for rotation (0 turns it off).
    pub reload_interval: Option<String>,
}

/// `first_token_timeout = { base, per_1k_input_tokens, max }` of a provider or a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirstToken {
    /// The deadline of an empty prompt.
    pub base: Option<String>,
    /// Added per 1,000 estimated input tokens.
    pub per_1k_input_tokens: Option<String>,
    /// The longest deadline.
    pub max: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `error`, `warn`, `info`, `debug` or `trace`, optionally with per-target directives.
    pub level: Option<String>,
    /// `json` or `pretty`.
    pub format: Option<String>,
    /// Fraction of successful requests written to the access log (errors are always written).
    pub sample: Option<f64>,
}

/// `[providers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    /// `openai` or `mock`.
    pub kind: Option<String>,
    /// Base URL; tier1 appends `/chat/completions`, `/embeddings`.
    pub base_url: Option<String>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Option<String>,
    /// Total time for one upstream request, stream included.
    pub request_timeout: Option<String>,
    /// Idle keep-alive connections kept per upstream host.
    pub max_idle_connections: Option<usize>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Option<String>,
    /// Extra PEM CA bundle trusted for this provider (besides the built-in web roots).
    pub ca_file: Option<String>,
    /// PEM client certificate chain presented to this provider (with `client_key`).
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<String>,
    /// Extra headers sent upstream (values may be secret references).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Models this provider offers, listed by `/v1/models` as `provider/model`.
    #[serde(default)]
    pub models: Vec<String>,
    /// API keys.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Behaviour of a `kind = "mock"` provider.
    pub mock: Option<RawBehavior>,
    /// Concurrent requests to this provider; beyond it, the next target is tried.
    pub max_inflight: Option<u32>,
    /// `"adaptive"` (or `{ mode, min, max }`): a limit that follows the provider's capacity.
    pub concurrency: Option<RawConcurrency>,
    /// How long a request may wait for a free slot before moving on.
    pub queue_timeout: Option<String>,
    /// Deadline for response headers (and, for streams, the first event).
    pub first_byte_timeout: Option<String>,
    /// Deadline for a stream's first content, scaled to the prompt.
    pub first_token_timeout: Option<RawFirstToken>,
    /// Longest gap between stream chunks.
    pub idle_timeout: Option<String>,
    /// Largest single event of a translated stream.
    pub max_event_bytes: Option<usize>,
    /// `anthropic-version` header of an `anthropic` provider.
    pub anthropic_version: Option<String>,
    /// `max_tokens` sent to Anthropic when an OpenAI request has none (Anthropic requires one).
    pub default_max_tokens: Option<u32>,
    /// The provider continues a trailing assistant message.
    pub prefill: Option<bool>,
    /// `api-version` of an `azure` provider.
    pub api_version: Option<String>,
    /// The AWS region of a `bedrock` provider (its URL and its signatures).
    pub region: Option<String>,
    /// The Google Cloud project of a `vertex` provider.
    pub project: Option<String>,
    /// The Vertex AI location of a `vertex` provider (`us-east5`, `global`, ...).
    pub location: Option<String>,
    /// A `vertex` provider with no keys gets its access tokens from the metadata server (GKE
    /// workload identity).
    pub workload_identity: Option<bool>,
    /// A `bedrock` provider with no keys may take its credentials from the EC2 instance
    /// metadata service (IMDSv2), the last link of its chain.
    pub instance_metadata: Option<bool>,
}

/// `[[providers.NAME.keys]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// Name used in logs and metrics; never the secret.
    pub name: Option<String>,
    /// `env:NAME`, `file:PATH` or a literal.
    pub secret: Option<String>,
    /// Relative share of traffic among available keys.
    pub weight: Option<u32>,
    /// Models this key may be used for (globs allowed); empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Concurrent requests on this key.
    pub max_inflight: Option<u32>,
    /// As the provider's `concurrency`, for this key.
    pub concurrency: Option<RawConcurrency>,
    /// The provider's request quota for this key, per minute.
    pub rpm: Option<u64>,
    /// The provider's token quota for this key, per minute.
    pub tpm: Option<u64>,
    /// A `bedrock` key's AWS access key id (`env:NAME` or a literal); `secret` is its secret.
    pub access_key_id: Option<String>,
    /// A `bedrock` key's session token, for temporary credentials (`env:`/`file:` or a literal).
    pub session_token: Option<String>,
}

/// `[[routes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    /// Route name (also a model name clients may ask for).
    pub name: Option<String>,
    /// Client-facing model names; `*` and `?` globs allowed.
    #[serde(default)]
    pub models: Vec<String>,
    /// Where requests go.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// How targets are ordered: priority, weighted, round_robin, least_latency, p2c, least_used, cost.
    pub strategy: Option<String>,
    /// Retry policy of this route.
    pub retry: Option<RawRetry>,
    /// Start the next attempt in parallel when no first byte arrived by then.
    pub hedge_after: Option<String>,
    /// Continue a committed stream that breaks on the next target that takes a prefill.
    pub stream_resume: Option<bool>,
    /// The first-token deadline of this route's targets (over their providers' own).
    pub first_token_timeout: Option<RawFirstToken>,
    /// `[resilience] wait_for_cooldown` for this route.
    pub wait_for_cooldown: Option<String>,
    /// Prompt-cache affinity: a session keeps its target and key.
    pub affinity: Option<RawAffinity>,
}

/// `affinity = { session = "...", messages = N, load_bound = F }` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAffinity {
    /// Where the session key comes from: `session`, `prompt` or `header:NAME`.
    pub session: Option<String>,
    /// `prompt`: how many messages after the system prompt are hashed.
    pub messages: Option<usize>,
    /// A choice takes a session while its in-flight count is under this factor times the mean.
    pub load_bound: Option<f64>,
}

/// One route target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    /// Provider name.
    pub provider: Option<String>,
    /// Upstream model name.
    pub model: Option<String>,
    /// Weight for the `weighted` strategy.
    pub weight: Option<u32>,
    /// USD per million input tokens, for the `cost` strategy.
    pub input_cost: Option<f64>,
    /// USD per million output tokens.
    pub output_cost: Option<f64>,
    /// Azure deployment name (default: the model).
    pub deployment: Option<String>,
    /// The model's context window, in tokens.
    pub context_window: Option<u64>,
}

/// `concurrency = "adaptive"`, or `{ mode = "adaptive", min, max }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawConcurrency {
    /// `"adaptive"` or `"fixed"`.
    Mode(String),
    /// With bounds.
    Table(RawAdaptive),
}

/// `concurrency = { mode, min, max }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptive {
    /// `"adaptive"` (the default of a table) or `"fixed"`.
    pub mode: Option<String>,
    /// The lowest limit (default 1).
    pub min: Option<u32>,
    /// The highest (default `max_inflight`, else 256).
    pub max: Option<u32>,
}
