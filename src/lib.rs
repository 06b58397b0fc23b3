//! tier1: a lean Tier-1 LLM router. It sits between an API gateway front and the LLM providers
//! (`client → front → tier1 → OpenAI, Anthropic, Gemini, Azure, any OpenAI-compatible API`), as a
//! localhost sidecar or as a central tier of replicas.
//!
//! A request goes through these steps, in the order the code runs them:
//! 1. **accept** ([`proxy::server`]): hyper 1 over HTTP/1.1 or h2c, or TLS with HTTP/2 by ALPN
//!    ([`tls`], certificates rotated live); connection limits and deadlines, drain.
//! 2. **dispatch** ([`proxy::handler`]): one immutable [`snapshot::Live`] loaded for the whole
//!    request; the endpoint; the request's context and record ([`proxy::ctx`]).
//! 3. **authenticate** ([`proxy::headers`]): the inbound bearer, compared in constant time.
//! 4. **read** ([`proxy::body`]): the body under `max_body_bytes` and `body_timeout`.
//! 5. **scan** ([`json`]): simd-json validation; spans of `model`, `stream` and fallbacks.
//! 6. **route** ([`proxy::forward`], [`routing`]): exact name, glob, then `provider/model`; the
//!    candidates in strategy order (a route with `affinity`: in the session's rendezvous order,
//!    [`proxy::affinity`]), then the request-level fallbacks.
//! 7. **admit** ([`proxy::forward`], [`ratelimit`]): the caller's rate limits and budgets,
//!    locally; a strict limit asks Redis ([`shared`]) with one atomic call.
//! 8. **plan** ([`proxy::attempt`] `plan`): which candidate and key next, or how long to wait.
//! 9. **attempt**, once per try ([`proxy::attempt`] `run` and `exchange`; hedges race here):
//!    the breakers' gates and the concurrency permits; **splice** the upstream model into the
//!    client's bytes ([`json`]) or **translate** the request ([`translate`]) for the provider's
//!    format ([`providers`]); **send** through tier1's own pooled client ([`upstream`]) or the
//!    in-process mock ([`mock`]); **commit**: a stream is read to its first content
//!    ([`proxy::sse`]) before it counts as answered. What the outcome teaches (breakers,
//!    cooldowns, the other replicas through [`shared`]) is recorded in `outcome`.
//! 10. **relay** ([`proxy::relay`]): the answer chunk by chunk, translated back and redacted,
//!     under the request deadline and a stream's idle timeout.
//! 11. **record** ([`proxy::ctx`]): when the answer ends, its duration, the usage and its cost,
//!     the rate-limit tickets settled, and the access-log line ([`metrics`] for the counters).
//!
//! Errors of every step are data ([`error::ProxyError`]); what the client sees of them, error
//! bodies and in-band error events alike, is written in one place ([`proxy::respond`]), in the
//! client's format.

#![deny(unreachable_pub)]

pub mod access;
mod admin;
pub mod check;
pub mod cli;
mod config;
mod error;
mod eventstream;
mod health;
mod json;
mod manifest;
mod metrics;
mod mock;
mod operation;
mod otel;
mod pem;
mod providers;
mod proxy;
mod ratelimit;
mod reload;
mod resilience;
mod routing;
mod shared;
mod snapshot;
mod sse;
mod state;
mod tls;
mod tracked;
mod translate;
mod upstream;

pub use config::{Config, ConfigErrors, DEMO_TOML, Env, Format, ProcessEnv, parse as parse_config};
pub use health::check as health_check;
pub use mock::server as mock_server;
pub use reload::{Overrides, Source};

/// What the integration tests, the fuzz targets and the benches reach inside the crate, and
/// nothing more; not an API.
#[doc(hidden)]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::proxy::handler::Listener;
use crate::resilience::Registry;
use crate::snapshot::Snapshot;
use crate::state::AppState;

/// Why tier1 could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A provider (client, TLS, key) could not be built.
    #[error(transparent)]
    Provider(#[from] providers::BuildError),
    /// The OTLP exporter could not be built.
    #[error(transparent)]
    Otel(#[from] otel::BuildError),
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `server.tls` could not be loaded.
    #[error("server.tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// `server.admin_listen` or `server.probe_listen` could not be bound.
    #[error("cannot listen on {1} (server.{0}): {2}")]
    Listen(&'static str, std::net::SocketAddr, std::io::Error),
    /// An API or admin surface would be open on a non-loopback address (see
    /// [`config::open_surfaces`]).
    #[error("refusing to start: {0}")]
    Open(config::ConfigErrors),
}

/// How to run tier1 beyond its config.
pub struct Options {
    /// The validated config.
    pub config: Config,
    /// The file it came from, for hot reload (`None`: built-in config, no reload).
    pub source: Option<reload::Source>,
    /// The config text, as loaded (for `/admin/config`).
    pub text: String,
    /// A bound admin listener; when `None` and `server.admin_listen` is set, it is bound here.
    pub admin_listener: Option<TcpListener>,
    /// A bound probe listener; when `None` and `server.probe_listen` is set, it is bound here.
    pub probe_listener: Option<TcpListener>,
}

/// `listener` if the caller bound it, else `addr` bound here (`field` names it in the error).
async fn bound_or_bind(
    listener: Option<TcpListener>,
    addr: Option<std::net::SocketAddr>,
    field: &'static str,
) -> Result<Option<TcpListener>, StartError> {
    match (listener, addr) {
        (Some(l), _) => Ok(Some(l)),
        (None, Some(addr)) => {
            TcpListener::bind(addr).await.map(Some).map_err(|e| StartError::Listen(field, addr, e))
        }
        (None, None) => Ok(None),
    }
}

/// Serves tier1 on `listener` with `config` (no config file: no reload) until `shutdown`
/// resolves, then drains and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let options =
        Options { config, source: None, text: String::new(), admin_listener: None, probe_listener: None };
    serve(listener, options, shutdown).await
}

/// Serves tier1 on `listener` until `shutdown` resolves, with hot reload from the config file,
/// SIGHUP, and the admin listener when configured; then drains and returns.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let Options { config, source, text, admin_listener, probe_listener } = options;
    let metrics = Arc::new(Metrics::new()?);
    if config.redis.is_some() {
        metrics.enable_redis()?;
    }
    metrics.limits_configured(config.limits.iter().map(|l| &l.name));
    metrics.budgets_configured(&config.budgets);
    let registry = Arc::new(Registry::default());
    let live = Snapshot::build(&config, &registry)?;
    let admin_listener = bound_or_bind(admin_listener, config.server.admin_listen, "admin_listen").await?;
    let probe_listener = bound_or_bind(probe_listener, config.server.probe_listen, "probe_listen").await?;
    // The addresses actually bound (`--listen` may differ from the file), checked once here and
    // again on every reload.
    let bound = (
        listener.local_addr().unwrap_or(config.server.listen),
        admin_listener.as_ref().map(|l| l.local_addr().unwrap_or(config.server.listen)),
    );
    let open = config::open_surfaces(&config.server, bound.0, bound.1);
    if !open.is_empty() {
        return Err(StartError::Open(config::ConfigErrors(open)));
    }
    warn_if_open(&config.server, bound);
    let tls = acceptor(&config.server, &metrics)?;
    let reloader = Arc::new(reload::Reloader::new(source, text.clone(), &config));
    reloader.set_bound(bound.0, bound.1);
    let (fleet, shared, events) = fleet(&config);
    metrics.config_loaded(&reload::hash(&text));
    let limiter = Arc::new(ratelimit::Limiter::new(fleet).with_metrics(metrics.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let otel = tracer(&config, &metrics, &mut tasks, &stop_rx)?;
    let state = Arc::new(AppState {
        live,
        metrics,
        draining: AtomicBool::new(false),
        registry,
        reloader: reloader.clone(),
        separate_admin: admin_listener.is_some(),
        ratelimit: limiter,
        shared: Arc::new(shared),
        inflight_limit: config.server.max_inflight.map(|n| {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            Arc::new(resilience::Limit::new(resilience::Shape::Fixed(n)))
        }),
        tls: tls.clone(),
        manifest: Arc::new(manifest::Manifest::default()),
        cooldown_waiters: std::sync::atomic::AtomicUsize::new(0),
        otel,
    });

    // Idle rate-limit state expires with or without Redis.
    tasks.spawn(ratelimit::sweeper(state.ratelimit.clone(), stop_rx.clone()));
    if reloader.source().is_some() {
        tasks.spawn(reloader.clone().watch(state.clone(), stop_rx.clone()));
        tasks.spawn(reload_on_sighup(reloader.clone(), state.clone(), stop_rx.clone()));
    }
    if let Some((events, redis)) = events {
        tracing::info!(replica = %state.shared.replica, prefix = %redis.key_prefix, "sharing limits and state through redis");
        tasks.spawn(shared::run(state.shared_handles(), redis.clone(), events, stop_rx.clone()));
        tasks.spawn(shared::subscribe(state.shared_handles(), redis, stop_rx.clone()));
    }
    spawn_manifest(&state, &mut tasks, &stop_rx);
    if let Some(tls) = tls {
        tasks.spawn(tls.watch(state.metrics.clone(), stopped(stop_rx.clone())));
    }
    spawn_listeners(&state, &mut tasks, &stop_rx, [admin_listener, probe_listener]);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    proxy::server::serve(listener, state, Listener::Main, shutdown).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The tracer and its export task, with `[observability.otlp]` (read at start, like the
/// listeners).
fn tracer(
    config: &Config,
    metrics: &Arc<Metrics>,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Arc<otel::Otel>>, StartError> {
    let Some(o) = &config.observability.otlp else { return Ok(None) };
    let (otel, export) = otel::start(o, metrics.clone(), stop.clone())?;
    tracing::info!(sample_ratio = o.sample_ratio, "exporting traces over OTLP/HTTP");
    tasks.spawn(export);
    Ok(Some(otel))
}

/// The admin and probe listeners, each when bound.
fn spawn_listeners(
    state: &Arc<AppState>,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
    [admin, probe]: [Option<TcpListener>; 2],
) {
    for (l, role, what) in
        [(admin, Listener::Admin, "admin routes"), (probe, Listener::Probe, "health and metrics")]
    {
        if let Some(l) = l {
            if let Ok(addr) = l.local_addr() {
                tracing::info!("{what} on http://{addr}");
            }
            tasks.spawn(proxy::server::serve(l, state.clone(), role, stopped(stop.clone())));
        }
    }
}

/// The front's manifest task, when `[front] manifest_url` or `manifest_from_header` is set at
/// start (its URL and interval then follow reloads).
fn spawn_manifest(
    state: &Arc<AppState>,
    tasks: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let front = state.live.load().front.clone();
    if front.manifest_url.is_some() || front.manifest_from_header {
        let live = state.clone();
        let front = move || live.live.load().front.clone();
        tasks.spawn(manifest::watch(state.manifest.clone(), state.metrics.clone(), front, stop.clone()));
    }
}

/// The main listener's TLS acceptor, if it serves TLS.
fn acceptor(
    server: &config::ServerConfig,
    metrics: &Metrics,
) -> Result<Option<Arc<tls::Acceptor>>, StartError> {
    Ok(match &server.tls {
        Some(files) => {
            metrics.enable_tls()?;
            Some(Arc::new(tls::Acceptor::new(files.clone())?))
        }
        None => None,
    })
}

/// The queue of state changes for the other replicas, and the Redis settings to send them with.
type RedisEvents = (tokio::sync::mpsc::UnboundedReceiver<shared::Event>, config::RedisConfig);

/// The fleet view, this replica's shared-state handle and, with Redis, its event queue and
/// settings. Redis settings are read at start (changing them needs a restart, like the
/// listeners).
fn fleet(config: &Config) -> (Arc<ratelimit::Fleet>, shared::Shared, Option<RedisEvents>) {
    match &config.redis {
        Some(r) => {
            let fleet = Arc::new(ratelimit::Fleet::shared(r.fail_closed, r.sync_interval));
            let (shared, events) = shared::Shared::with_redis(fleet.clone(), r);
            (fleet, shared, Some((events, r.clone())))
        }
        None => {
            let fleet = Arc::new(ratelimit::Fleet::standalone());
            (fleet.clone(), shared::Shared::standalone(fleet), None)
        }
    }
}

/// One warning for a config that serves without keys: on a non-loopback address only because
/// `server.allow_unauthenticated` says so, or on loopback (a sidecar) without `api_keys`. Logged
/// at start and by every reload that applies such a config.
pub fn warn_if_open(
    server: &config::ServerConfig,
    bound: (std::net::SocketAddr, Option<std::net::SocketAddr>),
) {
    let strict = config::ServerConfig { allow_unauthenticated: false, ..server.clone() };
    let open = config::open_surfaces(&strict, bound.0, bound.1);
    if !open.is_empty() {
        let problems: Vec<String> = open.iter().map(ToString::to_string).collect();
        tracing::warn!(
            ?problems,
            "server.allow_unauthenticated = true: serving without authentication on a non-loopback address"
        );
    } else if server.api_keys.is_empty() {
        tracing::warn!(
            "server.api_keys is empty: every client that reaches this loopback listener may use this router"
        );
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Reloads the config on every SIGHUP until `stop`.
async fn reload_on_sighup(
    reloader: Arc<reload::Reloader>,
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload through the file watcher or POST /admin/reload");
        return;
    };
    loop {
        let got = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            got = hup.recv() => got,
        };
        if got.is_none() {
            return;
        }
        tracing::info!("SIGHUP: reloading the config");
        reloader.reload(state.as_ref()).await;
    }
}
