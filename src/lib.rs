//! tier1: a lean Tier-1 LLM router. It sits between an API gateway front and the LLM providers
//! (`client → front → tier1 → OpenAI, Anthropic, Gemini, Azure, any OpenAI-compatible API`), as a
//! localhost sidecar or as a central tier of replicas.
//!
//! A request goes through these steps, in order:
//! 1. **accept** ([`proxy::server`]): hyper 1 over HTTP/1.1 or h2c, header deadline, drain.
//! 2. **snapshot**: the handler loads the one immutable [`snapshot::Live`] and keeps it to the end.
//! 3. **authenticate** ([`proxy::headers`]): the inbound bearer, compared in constant time.
//! 4. **read** ([`proxy::body`]): the body under `max_body_bytes` and `body_timeout`.
//! 5. **scan** ([`json`]): simd-json validation; spans of `model` and `stream`.
//! 6. **route** ([`routing`]): exact name, glob, then `provider/model`.
//! 7. **splice** ([`json`]): the upstream model written into the original bytes.
//! 8. **send** ([`providers`]): pooled rustls client or the in-process mock.
//! 9. **relay** ([`proxy::body`]): the answer chunk by chunk, under the request deadline.
//! 10. **record** ([`metrics`]): request counters and durations, when the body ends.
//!
//! Errors of every step are one enum, [`error::ProxyError`], mapped to an OpenAI-shaped response
//! in exactly one place ([`proxy::handler::handle`]).

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod json;
pub mod metrics;
pub mod mock;
pub mod providers;
pub mod proxy;
pub mod resilience;
pub mod routing;
pub mod snapshot;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::AppState;
use crate::resilience::Registry;
use crate::snapshot::{Live, Snapshot};

/// Why tier1 could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A provider (client, TLS, key) could not be built.
    #[error(transparent)]
    Provider(#[from] providers::BuildError),
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Serves tier1 on `listener` with `config` until `shutdown` resolves, then drains and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let registry = Arc::new(Registry::default());
    let live = Live::build(&config, &registry)?;
    if live.api_keys.is_empty() {
        tracing::warn!("server.api_keys is empty: every client may use this router");
    }
    let state =
        Arc::new(AppState { live: Snapshot::new(live), metrics, draining: AtomicBool::new(false), registry });
    proxy::server::serve(listener, state, shutdown).await;
    Ok(())
}
