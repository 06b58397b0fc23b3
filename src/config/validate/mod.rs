//! Raw config → [`Config`]: checks every field, collects every problem with its key path, and
//! resolves secrets. Nothing stops at the first error, so an operator fixes a file in one pass.
//! Providers and routes have files of their own.

mod observability;
mod provider;
mod routes;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::raw::{RawConfig, RawResilience, RawRetry, RawTls};
use super::secret::{Env, resolve};
use super::{BreakerConfig, BudgetConfig, CooldownConfig, RetryPolicy, Then};
use super::{
    Config, ConfigError, ConfigErrors, FrontConfig, LimitConfig, LogConfig, ProviderConfig, RedisConfig,
    RedisTls, ReloadConfig, ResilienceConfig, Scope, Secret, ServerConfig, TlsConfig,
};
use provider::provider;
use routes::routes;

/// The default listen address: loopback, as a sidecar wants it.
pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }

    /// `Ok` when nothing was pushed.
    pub(crate) fn finish(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(ConfigErrors(self.0)) }
    }

    /// Parses a humantime duration (`250ms`, `2s`, `5m`), or returns the default.
    pub(crate) fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.push(path, format!("invalid duration {s:?}: {e}"));
                    default
                }
            },
        }
    }
}

pub(super) fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let mut p = Problems::default();
    let server = server(&raw, env, &mut p);
    for e in open_surfaces(&server, server.listen, server.admin_listen) {
        p.push(e.path, e.message);
    }
    let json = match raw.log.format.as_deref() {
        None | Some("pretty") => false,
        Some("json") => true,
        Some(other) => {
            p.push("log.format", format!("unknown format {other:?} (json or pretty)"));
            false
        }
    };
    let sample = raw.log.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        p.push("log.sample", "must be between 0 and 1");
    }
    let log = LogConfig { level: raw.log.level.clone().unwrap_or_else(|| "info".to_owned()), json, sample };
    if log.level.parse::<tracing_subscriber::filter::Targets>().is_err() {
        p.push("log.level", format!("invalid log filter {:?}", log.level));
    }
    let providers: Vec<ProviderConfig> =
        raw.providers.iter().map(|(name, rp)| provider(name, rp, env, &mut p)).collect();
    let names: BTreeMap<&str, usize> =
        providers.iter().enumerate().map(|(i, pc)| (pc.name.as_str(), i)).collect();
    let resilience = resilience(&raw.resilience, &mut p);
    let reload = ReloadConfig {
        poll_interval: p.duration("reload.poll_interval", raw.reload.poll_interval.as_deref(), secs(2)),
    };
    let routes = routes(&raw.routes, &names, &resilience, &mut p);
    let redis = raw.redis.as_ref().map(|r| redis(r, env, &mut p));
    let mut limits = limits(&raw.limits, &mut p);
    for pc in &providers {
        for k in pc.keys.iter().filter(|k| k.rpm.is_some() || k.tpm.is_some()) {
            limits.push(LimitConfig {
                name: format!("key:{}/{}", pc.name, k.name),
                scope: Scope::ProviderKey,
                requests: k.rpm,
                tokens: k.tpm,
                per: secs(60),
                max_inflight: None,
                models: Vec::new(),
                routes: Vec::new(),
                strict: false,
                key: Some((pc.name.clone(), k.name.clone())),
                max_keys: super::DEFAULT_MAX_KEYS,
                micro_usd: None,
                budget: false,
            });
        }
    }
    let budgets = budgets(&raw.budgets, &limits, &mut p);
    let front = front(&raw.front, &mut p);
    if front.manifest_from_header && server.api_keys.is_empty() {
        p.push(
            "front.manifest_from_header",
            "needs server.api_keys: only a front that holds a key may name the manifest (or set front.manifest_url)",
        );
    }
    let observability = observability::observability(&raw.observability, env, &mut p);
    p.finish()?;
    Ok(Config {
        server,
        log,
        providers,
        routes,
        resilience,
        reload,
        redis,
        limits,
        budgets,
        front,
        observability,
    })
}

/// `[front]`: the manifest URL must be an absolute `http` or `https` URL with a host.
fn front(f: &super::raw::RawFront, p: &mut Problems) -> FrontConfig {
    let manifest_refresh = positive(
        p,
        "front.manifest_refresh",
        f.manifest_refresh.as_deref(),
        FrontConfig::default().manifest_refresh,
    );
    let manifest_url = f.manifest_url.as_deref().and_then(|raw| match raw.parse::<http::Uri>() {
        Ok(u) if super::is_fetchable(&u) => Some(u),
        Ok(_) => {
            p.push("front.manifest_url", format!("{raw:?} is not an http:// or https:// URL with a host"));
            None
        }
        Err(e) => {
            p.push("front.manifest_url", format!("invalid URL {raw:?}: {e}"));
            None
        }
    });
    FrontConfig { manifest_url, manifest_refresh, manifest_from_header: f.manifest_from_header }
}

fn server(raw: &RawConfig, env: &dyn Env, p: &mut Problems) -> ServerConfig {
    let s = &raw.server;
    let listen_raw = s.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_raw.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.push("server.listen", format!("invalid socket address {listen_raw:?} (want IP:PORT)"));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let secrets = |list: &[String], field: &str, p: &mut Problems| -> Vec<_> {
        list.iter()
            .enumerate()
            .filter_map(|(i, r)| resolve(r, env).map_err(|e| p.push(format!("server.{field}[{i}]"), e)).ok())
            .collect()
    };
    let api_keys = secrets(&s.api_keys, "api_keys", p);
    let admin_keys = secrets(&s.admin_keys, "admin_keys", p);
    let mut address = |field: &str, raw: &Option<String>| {
        raw.as_deref().and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| {
                    p.push(format!("server.{field}"), format!("invalid socket address {a:?} (want IP:PORT)"))
                })
                .ok()
        })
    };
    let admin_listen = address("admin_listen", &s.admin_listen);
    let probe_listen = address("probe_listen", &s.probe_listen);
    let max_body_bytes = match s.max_body_bytes {
        None => 16 * 1024 * 1024,
        Some(0) => {
            p.push("server.max_body_bytes", "must be greater than 0");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let header_timeout = positive(p, "server.header_timeout", s.header_timeout.as_deref(), secs(10));
    ServerConfig {
        listen,
        api_keys,
        max_body_bytes,
        shutdown_delay: p.duration("server.shutdown_delay", s.shutdown_delay.as_deref(), Duration::ZERO),
        drain_timeout: p.duration("server.drain_timeout", s.drain_timeout.as_deref(), secs(30)),
        header_timeout,
        body_timeout: positive(p, "server.body_timeout", s.body_timeout.as_deref(), secs(60)),
        admin_listen,
        probe_listen,
        admin_keys,
        reuse_port: s.reuse_port.unwrap_or(false),
        max_connections: at_least(p, "server.max_connections", s.max_connections, 1, 16_384),
        max_inflight: s.max_inflight.map(|n| at_least(p, "server.max_inflight", Some(n), 1, n)),
        // hyper's HTTP/1.1 read buffer cannot be smaller than 8 KiB.
        max_header_bytes: at_least(p, "server.max_header_bytes", s.max_header_bytes, 8192, 64 * 1024),
        max_headers: at_least(p, "server.max_headers", s.max_headers, 1, 100),
        http2_max_concurrent_streams: at_least(
            p,
            "server.http2_max_concurrent_streams",
            s.http2_max_concurrent_streams,
            1,
            256,
        ),
        // Unset: as long as an idle HTTP/1.1 keep-alive connection is kept.
        http2_idle_timeout: positive(
            p,
            "server.http2_idle_timeout",
            s.http2_idle_timeout.as_deref(),
            header_timeout,
        ),
        max_request_fallbacks: s.max_request_fallbacks.unwrap_or(8),
        tls: s.tls.as_ref().and_then(|t| tls(t, p)),
        allow_unauthenticated: s.allow_unauthenticated.unwrap_or(false),
    }
}

/// Every surface `server` would serve without authentication on a non-loopback address, with the
/// addresses it is actually bound to (`listen`, and the admin listener if separate): an API
/// without `api_keys` (mTLS with `tls.client_ca` counts as keys), admin routes without
/// `admin_keys`. A loopback peer proves nothing there: a local reverse proxy, another container
/// of the pod, or a forwarded connection all arrive from loopback. Empty when
/// `allow_unauthenticated` is set. Checked by validation (the file's addresses), at start and on
/// every reload (the bound ones, which `--listen` may have changed).
pub fn open_surfaces(
    server: &ServerConfig,
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
) -> Vec<ConfigError> {
    if server.allow_unauthenticated {
        return Vec::new();
    }
    let local = |a: SocketAddr| a.ip().to_canonical().is_loopback();
    let fix = "set keys, listen on loopback, or set server.allow_unauthenticated = true";
    let mut out = Vec::new();
    let mtls = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if server.api_keys.is_empty() && !mtls && !local(listen) {
        out.push(ConfigError {
            path: "server.api_keys".to_owned(),
            message: format!("empty while listening on non-loopback {listen}: anyone who reaches it may use every provider key ({fix})"),
        });
    }
    let admin = admin_listen.unwrap_or(listen);
    if server.admin_keys.is_empty() && !local(admin) {
        out.push(ConfigError {
            path: "server.admin_keys".to_owned(),
            message: format!("empty while the admin routes listen on non-loopback {admin}: a proxy or pod neighbour on loopback could use them (set admin_keys, admin_listen on loopback, or server.allow_unauthenticated = true)"),
        });
    }
    out
}

/// `value`, or `default` when unset; below `min`, a problem (and `min`, so validation goes on).
fn at_least<T: Copy + PartialOrd + std::fmt::Display>(
    p: &mut Problems,
    path: &str,
    value: Option<T>,
    min: T,
    default: T,
) -> T {
    match value {
        Some(n) if n < min => {
            p.push(path, format!("must be at least {min}"));
            min
        }
        Some(n) => n,
        None => default,
    }
}

/// `[server.tls]`: both files named, and they load into a working server config, so `tier1 check`
/// catches a wrong path or a mismatched key before a deploy does.
fn tls(t: &RawTls, p: &mut Problems) -> Option<TlsConfig> {
    let mut path = |field: &str, raw: &Option<String>| {
        let v = raw.as_deref().map(PathBuf::from);
        if v.is_none() {
            p.push(format!("server.tls.{field}"), "is required");
        }
        v
    };
    let (cert, key) = (path("cert", &t.cert), path("key", &t.key));
    let reload_interval = p.duration("server.tls.reload_interval", t.reload_interval.as_deref(), secs(10));
    let tls = TlsConfig {
        cert: cert?,
        key: key?,
        client_ca: t.client_ca.as_deref().map(PathBuf::from),
        reload_interval,
    };
    match crate::pem::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref()) {
        Ok(_) => Some(tls),
        Err(e) => {
            p.push("server.tls", e.to_string());
            None
        }
    }
}

fn resilience(r: &RawResilience, p: &mut Problems) -> ResilienceConfig {
    let d = BreakerConfig::default();
    let b = &r.breaker;
    let failure_rate = b.failure_rate.unwrap_or(d.failure_rate);
    if !(failure_rate > 0.0 && failure_rate <= 1.0) {
        p.push("resilience.breaker.failure_rate", "must be in (0, 1]");
    }
    let open_for = positive(p, "resilience.breaker.open_for", b.open_for.as_deref(), d.open_for);
    let open_for_max = positive(p, "resilience.breaker.open_for_max", b.open_for_max.as_deref(), open_for);
    if open_for_max < open_for {
        p.push("resilience.breaker.open_for_max", "must be at least open_for");
    }
    let breaker = BreakerConfig {
        failure_threshold: b.failure_threshold.unwrap_or(d.failure_threshold).max(1),
        failure_rate,
        min_requests: b.min_requests.unwrap_or(d.min_requests),
        window: positive(p, "resilience.breaker.window", b.window.as_deref(), d.window),
        open_for,
        open_for_max: open_for_max.max(open_for),
        half_open_probes: b.half_open_probes.unwrap_or(d.half_open_probes).max(1),
    };
    let dc = CooldownConfig::default();
    let c = &r.cooldown;
    let cooldown = CooldownConfig {
        default: positive(p, "resilience.cooldown.default", c.default.as_deref(), dc.default),
        max: positive(p, "resilience.cooldown.max", c.max.as_deref(), dc.max),
        on_auth_error: positive(
            p,
            "resilience.cooldown.on_auth_error",
            c.on_auth_error.as_deref(),
            dc.on_auth_error,
        ),
    };
    let db = BudgetConfig::default();
    let rb = &r.retry_budget;
    let retry_budget = BudgetConfig {
        ratio: rb.ratio.unwrap_or(db.ratio),
        min_per_second: rb.min_per_second.unwrap_or(db.min_per_second),
        window: positive(p, "resilience.retry_budget.window", rb.window.as_deref(), db.window),
    };
    if retry_budget.ratio < 0.0 || retry_budget.min_per_second < 0.0 {
        p.push("resilience.retry_budget", "ratio and min_per_second must be >= 0");
    }
    let default_retry =
        retry(r.default_retry.as_ref(), "resilience.default_retry", &RetryPolicy::default(), p);
    let wait_for_cooldown =
        p.duration("resilience.wait_for_cooldown", r.wait_for_cooldown.as_deref(), Duration::ZERO);
    let max_cooldown_waiters =
        r.max_cooldown_waiters.unwrap_or(ResilienceConfig::default().max_cooldown_waiters);
    ResilienceConfig {
        breaker,
        cooldown,
        retry_budget,
        default_retry,
        wait_for_cooldown,
        max_cooldown_waiters,
        headroom: r.headroom.unwrap_or(true),
    }
}

fn retry(raw: Option<&RawRetry>, path: &str, default: &RetryPolicy, p: &mut Problems) -> RetryPolicy {
    let Some(r) = raw else { return *default };
    let attempts = r.attempts.unwrap_or(default.attempts);
    if attempts == 0 {
        p.push(format!("{path}.attempts"), "must be at least 1 (the first try counts)");
    }
    let mut then = |key: &str, raw: Option<&str>, default: Then| match raw {
        None => default,
        Some(s) => Then::parse(s).unwrap_or_else(|| {
            p.push(format!("{path}.{key}"), format!("unknown value {s:?} (want {})", Then::NAMES));
            default
        }),
    };
    let on_timeout = then("on_timeout", r.on_timeout.as_deref(), default.on_timeout);
    let on_connect = then("on_connect", r.on_connect.as_deref(), default.on_connect);
    let on_server = then("on_server", r.on_server.as_deref(), default.on_server);
    RetryPolicy {
        attempts: attempts.max(1),
        backoff: p.duration(&format!("{path}.backoff"), r.backoff.as_deref(), default.backoff),
        max_backoff: p.duration(
            &format!("{path}.max_backoff"),
            r.max_backoff.as_deref(),
            default.max_backoff,
        ),
        on_timeout,
        on_connect,
        on_server,
    }
}

fn redis(r: &super::raw::RawRedis, env: &dyn Env, p: &mut Problems) -> RedisConfig {
    let url = match r.url.as_deref().map(|u| resolve(u, env)) {
        Some(Ok(url)) => {
            let u = url.expose();
            if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
                p.push("redis.url", "must start with redis://, rediss:// or unix://");
            }
            url
        }
        Some(Err(e)) => {
            p.push("redis.url", e);
            Secret::new("redis://127.0.0.1:6379")
        }
        None => {
            p.push("redis.url", "missing");
            Secret::new("redis://127.0.0.1:6379")
        }
    };
    let rediss = url.expose().starts_with("rediss://");
    let key_prefix = r.key_prefix.clone().unwrap_or_else(|| "tier1".to_owned());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
        p.push("redis.key_prefix", "must be non-empty, without braces or spaces");
    }
    let fail_closed = match r.on_failure.as_deref() {
        None | Some("local") => false,
        Some("closed") => true,
        Some(other) => {
            p.push("redis.on_failure", format!("unknown value {other:?} (local or closed)"));
            false
        }
    };
    RedisConfig {
        url,
        key_prefix,
        sync_interval: positive(
            p,
            "redis.sync_interval",
            r.sync_interval.as_deref(),
            Duration::from_millis(50),
        ),
        fail_closed,
        cluster: r.cluster.unwrap_or(false),
        timeout: positive(p, "redis.timeout", r.timeout.as_deref(), secs(1)),
        tls: redis_tls(r, rediss, p),
    }
}

/// `[redis]`'s certificate files: read and parsed now, so a bad file fails the load (or the
/// reload, or `tier1 check`), not every connection attempt later.
fn redis_tls(r: &super::raw::RawRedis, rediss: bool, p: &mut Problems) -> Option<std::sync::Arc<RedisTls>> {
    if r.ca_file.is_none() && r.client_cert.is_none() && r.client_key.is_none() {
        return None;
    }
    if !rediss {
        p.push("redis.ca_file", "certificates need a rediss:// url");
        return None;
    }
    let read = |key: &str, path: &str, p: &mut Problems| match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            p.push(key, format!("cannot read {path}: {e}"));
            None
        }
    };
    let mut tls = RedisTls::default();
    if let Some(path) = &r.ca_file {
        if let Err(e) = crate::pem::load_certs(std::path::Path::new(path)) {
            p.push("redis.ca_file", e.to_string());
        }
        tls.ca = read("redis.ca_file", path, p);
    }
    match (&r.client_cert, &r.client_key) {
        (Some(cert), Some(key)) => {
            if let Err(e) = crate::pem::certified_key(std::path::Path::new(cert), std::path::Path::new(key)) {
                p.push("redis.client_cert", e.to_string());
            }
            tls.client = read("redis.client_cert", cert, p).zip(read("redis.client_key", key, p));
        }
        (None, None) => {}
        _ => p.push("redis.client_cert", "client_cert and client_key go together"),
    }
    Some(std::sync::Arc::new(tls))
}

fn limits(raw: &[super::raw::RawLimit], p: &mut Problems) -> Vec<LimitConfig> {
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, l)| {
            let at = format!("limits[{i}]");
            let name = l.name.clone().unwrap_or_default();
            if name.is_empty() {
                p.push(format!("{at}.name"), "missing");
            } else if !names.insert(name.clone()) {
                p.push(format!("{at}.name"), format!("duplicate limit name {name:?}"));
            }
            let scope = scope(l.scope.as_deref(), &at, p);
            let mut per = p.duration(&format!("{at}.per"), l.per.as_deref(), secs(60));
            let (mut requests, mut tokens) = (l.requests, l.tokens);
            if l.rpm.is_some() || l.tpm.is_some() {
                if l.requests.is_some() || l.tokens.is_some() || l.per.is_some() {
                    p.push(&at, "use rpm/tpm or requests/tokens with per, not both");
                }
                per = secs(60);
                requests = l.rpm;
                tokens = l.tpm;
            }
            if per.is_zero() {
                p.push(format!("{at}.per"), "must be greater than 0");
                per = secs(60);
            }
            if requests.is_none() && tokens.is_none() && l.max_inflight.is_none() {
                p.push(&at, "a limit needs requests, tokens, rpm, tpm or max_inflight");
            }
            let strict = strict(l.mode.as_deref(), &at, p);
            let max_keys = l.max_keys.unwrap_or(super::DEFAULT_MAX_KEYS);
            if max_keys == 0 {
                p.push(format!("{at}.max_keys"), "must be greater than 0");
            }
            LimitConfig {
                name,
                scope,
                requests,
                tokens,
                per,
                max_inflight: l.max_inflight,
                models: l.models.clone(),
                routes: l.routes.clone(),
                strict,
                key: None,
                max_keys,
                micro_usd: None,
                budget: false,
            }
        })
        .collect()
}

/// A limit's `scope`: global (default), route, provider_key, api_key or header:NAME.
fn scope(raw: Option<&str>, at: &str, p: &mut Problems) -> Scope {
    match raw {
        None | Some("global") => Scope::Global,
        Some("route") => Scope::Route,
        Some("provider_key") => Scope::ProviderKey,
        Some("api_key") => Scope::ApiKey,
        Some(s) => match s.strip_prefix("header:").map(|h| HeaderName::from_bytes(h.as_bytes())) {
            Some(Ok(h)) => Scope::Header(h),
            _ => {
                p.push(
                    format!("{at}.scope"),
                    format!("unknown scope {s:?} (global, route, provider_key, api_key, header:NAME)"),
                );
                Scope::Global
            }
        },
    }
}

/// A limit's `mode`: `async` (default, false) or `strict` (true).
fn strict(raw: Option<&str>, at: &str, p: &mut Problems) -> bool {
    match raw {
        None | Some("async") => false,
        Some("strict") => true,
        Some(other) => {
            p.push(format!("{at}.mode"), format!("unknown mode {other:?} (async or strict)"));
            false
        }
    }
}

/// `[[budgets]]`: names unique among limits and budgets (they share the limiter's counters), `usd`
/// and/or `tokens`, `per` of at least 1h (default 1d).
fn budgets(raw: &[super::raw::RawSpendBudget], limits: &[LimitConfig], p: &mut Problems) -> Vec<LimitConfig> {
    let mut names: HashSet<String> = limits.iter().map(|l| l.name.clone()).collect();
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            let at = format!("budgets[{i}]");
            let name = b.name.clone().unwrap_or_default();
            if name.is_empty() {
                p.push(format!("{at}.name"), "missing");
            } else if !names.insert(name.clone()) {
                p.push(format!("{at}.name"), format!("duplicate limit or budget name {name:?}"));
            }
            let mut per = p.duration(&format!("{at}.per"), b.per.as_deref(), secs(86_400));
            if per < secs(3600) {
                p.push(format!("{at}.per"), "must be at least 1h");
                per = secs(86_400);
            }
            let micro_usd = b.usd.and_then(|usd| {
                if usd.is_finite() && usd > 0.0 {
                    Some((usd * 1e6).round() as u64)
                } else {
                    p.push(format!("{at}.usd"), "must be a positive number");
                    None
                }
            });
            if b.tokens == Some(0) {
                p.push(format!("{at}.tokens"), "must be greater than 0");
            }
            if b.usd.is_none() && b.tokens.is_none() {
                p.push(&at, "a budget needs usd or tokens");
            }
            let max_keys = b.max_keys.unwrap_or(super::DEFAULT_MAX_KEYS);
            if max_keys == 0 {
                p.push(format!("{at}.max_keys"), "must be greater than 0");
            }
            LimitConfig {
                name,
                scope: scope(b.scope.as_deref(), &at, p),
                requests: None,
                tokens: b.tokens,
                per,
                max_inflight: None,
                models: b.models.clone(),
                routes: b.routes.clone(),
                strict: strict(b.mode.as_deref(), &at, p),
                key: None,
                max_keys,
                micro_usd,
                budget: true,
            }
        })
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn positive(p: &mut Problems, path: &str, raw: Option<&str>, default: Duration) -> Duration {
    let d = p.duration(path, raw, default);
    if d.is_zero() {
        p.push(path, "must be greater than 0");
        return default;
    }
    d
}

/// `first_token_timeout` at `at`: `base` and `max` over 0, `per_1k_input_tokens` 0 or more; `max`
/// defaults to `default_max` and never passes `ceiling` (a provider's `request_timeout`; a route's
/// has none, as each attempt stops at its own provider's anyway).
fn first_token(
    p: &mut Problems,
    at: &str,
    f: &super::raw::RawFirstToken,
    default_max: Duration,
    ceiling: Duration,
) -> super::FirstTokenTimeout {
    let path = format!("{at}.first_token_timeout");
    let base = positive(p, &format!("{path}.base"), f.base.as_deref(), Duration::from_secs(10));
    let per_1k =
        p.duration(&format!("{path}.per_1k_input_tokens"), f.per_1k_input_tokens.as_deref(), Duration::ZERO);
    let max = positive(p, &format!("{path}.max"), f.max.as_deref(), default_max).min(ceiling);
    if max < base {
        p.push(format!("{path}.max"), "must be at least base");
    }
    super::FirstTokenTimeout { base, per_1k_input_tokens: per_1k, max: max.max(base) }
}
