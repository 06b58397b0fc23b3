//! The config file as written: serde types with `deny_unknown_fields`, durations and secrets as
//! strings. Nothing here is trusted; `validate` turns it into [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mock::RawBehavior;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
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
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
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
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug` or `trace`, optionally with per-target directives.
    pub level: Option<String>,
}

/// `[providers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
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
}

/// `[[providers.NAME.keys]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Name used in logs and metrics; never the secret.
    pub name: Option<String>,
    /// `env:NAME`, `file:PATH` or a literal.
    pub secret: Option<String>,
}

/// `[[routes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Route name (also a model name clients may ask for).
    pub name: Option<String>,
    /// Client-facing model names; `*` and `?` globs allowed.
    #[serde(default)]
    pub models: Vec<String>,
    /// Where requests go, in order.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
}

/// One route target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Provider name.
    pub provider: Option<String>,
    /// Upstream model name.
    pub model: Option<String>,
}
