//! The admin view: `GET /admin/state` shows breakers, cooldowns with their remaining time, EWMA
//! latencies and in-flight counts, keys by name only.
//!
//! Admin auth ([`authorize`]), the same for every `/admin/*` route:
//! - with `server.admin_keys`: the bearer must be one of them (401 otherwise). A browser cannot
//!   forge an `Authorization` it does not know, so nothing else is asked.
//! - without: the request must come (1) from a loopback peer, (2) for a loopback authority, every
//!   one it names: the `Host` header and, in HTTP/2 or an HTTP/1.1 absolute-form target, the
//!   URI's authority, each `localhost`, `127.0.0.0/8` or `[::1]`, any port, so a DNS-rebinding
//!   page (whose Host is its own name) gets nothing, (3) with the `x-tier1-admin` header (any
//!   value), which no cross-site form or simple `fetch` can send without a CORS preflight tier1
//!   never grants, and (4) without forwarding headers (`forwarded`, `x-forwarded-for`,
//!   `x-forwarded-host`, `x-real-ip`, `via`): a reverse proxy on loopback is not the operator.
//!   Otherwise 403. The marker is required on GETs too: one rule for every route, and
//!   `/admin/config` is no less sensitive than a mutation. An operator's curl:
//!   `curl -H 'x-tier1-admin: 1' http://127.0.0.1:8080/admin/state`.
//!
//! Loopback trust holds only where the listener itself is loopback: config validation refuses
//! admin routes without `admin_keys` on a non-loopback address ([`crate::config::open_surfaces`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::resilience::Clock;
use crate::snapshot::Live;

/// The header that marks an admin request as not a browser's simple request.
pub(crate) const X_TIER1_ADMIN: &str = "x-tier1-admin";

/// Headers a reverse proxy adds: their presence means the loopback peer is relaying someone else.
const FORWARDING: [&str; 5] = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via"];

/// Whether `peer` is loopback (an IPv4-mapped `::ffff:127.x` included: a dual-stack listener).
pub(crate) fn allowed(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// Whether an authority (`host[:port]`) names loopback: `localhost`, `127.0.0.0/8` or `[::1]`,
/// with any port (digits only). No other spelling: a name that merely resolves to loopback could
/// be an attacker's (DNS rebinding).
fn loopback_authority(authority: &[u8]) -> bool {
    let Ok(a) = std::str::from_utf8(authority) else { return false };
    let (host_ok, rest) = match a.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) => (ip.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()), rest),
            None => return false,
        },
        None => {
            let (host, rest) = a.find(':').map_or((a, ""), |i| a.split_at(i));
            let ok = host.eq_ignore_ascii_case("localhost")
                || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
            (ok, rest)
        }
    };
    let port_ok = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Rules (2) to (4) of the module doc, for a request from a loopback peer without admin keys.
fn local_operator(uri: &http::Uri, headers: &http::HeaderMap) -> bool {
    let hosts = headers.get_all(http::header::HOST);
    let named = uri.authority().is_some() || hosts.iter().next().is_some();
    named
        && uri.authority().is_none_or(|a| loopback_authority(a.as_str().as_bytes()))
        && hosts.iter().all(|h| loopback_authority(h.as_bytes()))
        && headers.contains_key(X_TIER1_ADMIN)
        && !FORWARDING.iter().any(|h| headers.contains_key(*h))
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A key's known headroom: per level, what is left, of how much, and the time to its reset.
fn headroom(h: &crate::resilience::Headroom, now: u64) -> serde_json::Value {
    let Some(k) = h.known(now) else { return serde_json::Value::Null };
    let level = |w: Option<crate::resilience::headroom::Window>| {
        w.map(|w| serde_json::json!({"remaining": w.remaining, "limit": w.limit, "reset_ms": ms(Some(w.left(now)))}))
    };
    serde_json::json!({"at_ms": k.at_ms, "requests": level(k.requests), "tokens": level(k.tokens)})
}

/// The state document, with the fleet as this replica last saw it.
pub(crate) fn state(live: &Live, clock: Clock, app: &crate::state::AppState) -> Bytes {
    let now = clock.now();
    let providers: Vec<serde_json::Value> = live
        .providers
        .iter()
        .map(|p| {
            let keys: Vec<serde_json::Value> = p
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "name": &*k.name,
                        "weight": k.weight,
                        "cooldown_ms": ms(k.state.cooldown.remaining(now)),
                        // Rests of single models on this key (a model's 429): the rest of the
                        // key serves on.
                        "model_cooldowns_ms": k.state.models.resting(now).into_iter()
                            .map(|(m, d)| (m, serde_json::json!(ms(Some(d)))))
                            .collect::<serde_json::Map<_, _>>(),
                        "inflight": k.state.inflight.load(Ordering::Relaxed),
                        // What its provider last said is left of its quota (fresh levels only).
                        "headroom": headroom(&k.state.headroom, now),
                    })
                })
                .collect();
            serde_json::json!({
                "name": &*p.name,
                "kind": p.kind.as_str(),
                "breaker": p.state.breaker.state(now).as_str(),
                "breaker_open_ms": ms(p.state.breaker.remaining(now)),
                "inflight": p.limit.as_ref().map(|l| l.in_use()),
                "max_inflight": p.limit.as_ref().map(|l| l.capacity()),
                "keys": keys,
            })
        })
        .collect();
    let routes: Vec<serde_json::Value> = live
        .table
        .routes()
        .iter()
        .map(|r| {
            let targets: Vec<serde_json::Value> = r
                .targets
                .iter()
                .map(|t| {
                    let s = &t.state;
                    serde_json::json!({
                        "provider": live.providers.get(t.provider).map(|p| &*p.name),
                        "model": &*t.model,
                        "breaker": s.breaker.state(now).as_str(),
                        "breaker_open_ms": ms(s.breaker.remaining(now)),
                        "cooldown_ms": ms(s.cooldown.remaining(now)),
                        "ewma_ms": s.ewma.get() * 1000.0,
                        "inflight": s.inflight.load(Ordering::Relaxed),
                    })
                })
                .collect();
            serde_json::json!({"name": &*r.name, "strategy": format!("{:?}", r.strategy), "targets": targets})
        })
        .collect();
    let fleet = &app.shared.fleet;
    let members = app.shared.members.lock().map(|m| m.clone()).unwrap_or_default();
    let fleet = serde_json::json!({
        "redis": fleet.configured,
        "redis_up": fleet.up.load(std::sync::atomic::Ordering::Acquire),
        "replica": app.shared.replica,
        "replicas": fleet.replicas.load(std::sync::atomic::Ordering::Acquire),
        "members": members,
    });
    Bytes::from(serde_json::json!({"providers": providers, "routes": routes, "fleet": fleet}).to_string())
}

/// Admin auth (see the module doc): with `server.admin_keys`, the bearer must be one of them
/// (401 otherwise); without, a loopback peer, loopback authority, the `x-tier1-admin` marker and
/// no forwarding headers (403 otherwise).
pub(crate) fn authorize(
    live: &Live,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    peer: SocketAddr,
) -> Result<(), crate::error::ProxyError> {
    if live.server.admin_keys.is_empty() {
        return if allowed(peer) && local_operator(uri, headers) {
            Ok(())
        } else {
            Err(crate::error::ProxyError::Forbidden)
        };
    }
    if crate::proxy::headers::authorized(headers, &live.server.admin_keys) {
        Ok(())
    } else {
        Err(crate::error::ProxyError::Unauthorized)
    }
}

/// The config as a JSON value with every secret-bearing field replaced by `[redacted]`:
/// `server.api_keys`, `server.admin_keys`, every key's `secret` and every extra header value.
pub(crate) fn redacted_config(text: &str, format: crate::config::Format) -> serde_json::Value {
    let mut v: serde_json::Value = match format {
        crate::config::Format::Json => serde_json::from_str(text).unwrap_or_default(),
        crate::config::Format::Toml => toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_default(),
    };
    let hide = |x: &mut serde_json::Value| *x = serde_json::Value::String("[redacted]".to_owned());
    if let Some(server) = v.get_mut("server") {
        for field in ["api_keys", "admin_keys"] {
            if let Some(list) = server.get_mut(field).and_then(|l| l.as_array_mut()) {
                list.iter_mut().for_each(hide);
            }
        }
    }
    if let Some(providers) = v.get_mut("providers").and_then(|p| p.as_object_mut()) {
        for p in providers.values_mut() {
            if let Some(keys) = p.get_mut("keys").and_then(|k| k.as_array_mut()) {
                for k in keys {
                    if let Some(s) = k.get_mut("secret") {
                        hide(s);
                    }
                }
            }
            if let Some(headers) = p.get_mut("headers").and_then(|h| h.as_object_mut()) {
                headers.values_mut().for_each(hide);
            }
        }
    }
    v
}

/// The `/admin/config` document: the active config (redacted), its hash, load time and the last
/// reload error. The final text also goes through the redactor, for any secret value that sits
/// elsewhere in the file.
pub(crate) fn config(live: &Live, status: &crate::reload::Status) -> Bytes {
    let loaded_at = status.loaded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let doc = serde_json::json!({
        "hash": status.hash,
        "loaded_at": loaded_at,
        "last_reload_error": status.last_error,
        "config": redacted_config(&status.text, status.format),
    });
    Bytes::from(live.redactor.redact(doc.to_string().as_bytes()).into_owned())
}

/// A summary of what differs between two redacted configs: providers and routes added (`+`),
/// removed (`-`) and changed (`~`), and other top-level sections changed.
pub(crate) fn diff(running: &serde_json::Value, local: &serde_json::Value) -> Vec<String> {
    fn named(v: &serde_json::Value, section: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
        match v.get(section) {
            Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .map(|r| (r.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_owned(), r.clone()))
                .collect(),
            _ => Default::default(),
        }
    }
    let mut out = Vec::new();
    for section in ["providers", "routes"] {
        let (old, new) = (named(running, section), named(local, section));
        for (name, v) in &new {
            match old.get(name) {
                None => out.push(format!("+ {section}.{name}")),
                Some(o) if o != v => out.push(format!("~ {section}.{name}")),
                Some(_) => {}
            }
        }
        out.extend(old.keys().filter(|n| !new.contains_key(*n)).map(|n| format!("- {section}.{n}")));
    }
    let sections: std::collections::BTreeSet<&String> = running
        .as_object()
        .into_iter()
        .chain(local.as_object())
        .flat_map(|m| m.keys())
        .filter(|k| !matches!(k.as_str(), "providers" | "routes"))
        .collect();
    for s in sections {
        if running.get(s) != local.get(s) {
            out.push(format!("~ {s}"));
        }
    }
    out
}

/// `tier1_concurrency_limit` of `p`'s own limit (`key="*"`) and its keys'.
fn concurrency_limits(metrics: &crate::metrics::Metrics, p: &crate::providers::Provider) {
    let keys = p.keys.iter().filter_map(|k| Some((&*k.name, k.limit.as_ref()?)));
    for (key, limit) in p.limit.iter().map(|l| ("*", l)).chain(keys) {
        let labels = crate::metrics::labels::KeyLimit { provider: &p.name, key };
        metrics.concurrency_limit.get(labels).set(i64::from(limit.capacity()));
    }
}

/// `tier1_key_headroom` of `p`'s keys: fresh levels that came with a limit.
fn key_headroom(metrics: &crate::metrics::Metrics, p: &crate::providers::Provider, now: u64) {
    for k in &p.keys {
        let Some(known) = k.state.headroom.known(now) else { continue };
        for (kind, w) in [("requests", known.requests), ("tokens", known.tokens)] {
            if let Some(w) = w.filter(|w| w.limit.is_some()) {
                let labels = crate::metrics::labels::KeyHeadroom { provider: &p.name, key: &k.name, kind };
                metrics.key_headroom.get(labels).set(w.fraction());
            }
        }
    }
}

/// Sets the state gauges (breakers, available keys, headroom) from the live snapshot, right before a
/// scrape. Series follow the config: what a reload removed disappears.
pub(crate) fn refresh_gauges(metrics: &crate::metrics::Metrics, live: &Live, clock: Clock) {
    let now = clock.now();
    metrics.breaker_state.vector().reset();
    metrics.breaker_status.vector().reset();
    metrics.keys_available.vector().reset();
    metrics.concurrency_limit.vector().reset();
    metrics.key_headroom.vector().reset();
    for p in &live.providers {
        key_headroom(metrics, p, now);
        concurrency_limits(metrics, p);
        breaker(metrics, &p.name, crate::metrics::TARGET_PROVIDER, p.state.breaker.state(now));
        // Providers that need no key (local model servers) have no series: nothing can run out.
        if !p.keys.is_empty() {
            let available = p.keys.iter().filter(|k| !k.state.cooldown.is_cooling(now)).count();
            metrics
                .keys_available
                .get(crate::metrics::labels::Provider { provider: &p.name })
                .set(i64::try_from(available).unwrap_or(i64::MAX));
        }
    }
    for r in live.table.routes() {
        for t in &r.targets {
            if let Some(p) = live.providers.get(t.provider) {
                breaker(metrics, &p.name, &t.model, t.state.breaker.state(now));
            }
        }
    }
}

/// One breaker's series: the per-state `tier1_breaker_status` and the deprecated numeric
/// `tier1_breaker_state`.
fn breaker(
    metrics: &crate::metrics::Metrics,
    provider: &str,
    model: &str,
    s: crate::resilience::BreakerState,
) {
    use crate::metrics::labels::{Breaker, BreakerStatus};
    let (value, name) = match s {
        crate::resilience::BreakerState::Closed => (0, "closed"),
        crate::resilience::BreakerState::HalfOpen => (1, "half_open"),
        crate::resilience::BreakerState::Open => (2, "open"),
    };
    metrics.breaker_state.get(Breaker { provider, target: model }).set(value);
    for state in crate::metrics::BREAKER_STATES {
        metrics.breaker_status.get(BreakerStatus { provider, model, state }).set(i64::from(state == name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_without_admin_keys() {
        assert!(allowed("127.0.0.1:5".parse().unwrap()));
        assert!(allowed("[::1]:5".parse().unwrap()));
        assert!(!allowed("10.1.2.3:5".parse().unwrap()));
        assert!(!allowed("[2001:db8::1]:5".parse().unwrap()));
        assert!(allowed("[::ffff:127.0.0.1]:5".parse().unwrap()));
    }

    #[test]
    fn loopback_authorities() {
        for ok in ["localhost", "LOCALHOST:80", "127.0.0.1", "127.1.2.3:8080", "[::1]", "[::1]:9"] {
            assert!(loopback_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "127.1",
            "0177.0.0.1",
            "[::2]:1",
            "[::1",
            "localhost:",
            "localhost:80:80",
            "localhost:8x",
            "[::1]x",
            "10.0.0.1:80",
            "::1",
        ] {
            assert!(!loopback_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn local_operator_needs_the_marker_a_loopback_authority_and_no_proxy() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        let path: http::Uri = "/admin/state".parse().unwrap();
        assert!(local_operator(&path, &h(&[("host", "127.0.0.1:8080"), ("x-tier1-admin", "1")])));
        assert!(!local_operator(&path, &h(&[("host", "127.0.0.1:8080")])));
        assert!(!local_operator(&path, &h(&[("x-tier1-admin", "1")])), "no authority at all");
        let two = h(&[("host", "127.0.0.1"), ("host", "evil.example"), ("x-tier1-admin", "1")]);
        assert!(!local_operator(&path, &two));
        let proxied = h(&[("host", "localhost"), ("x-tier1-admin", "1"), ("via", "1.1 caddy")]);
        assert!(!local_operator(&path, &proxied));
        let h2: http::Uri = "http://localhost:1/admin/state".parse().unwrap();
        assert!(local_operator(&h2, &h(&[("x-tier1-admin", "1")])));
        let evil: http::Uri = "http://evil.example/admin/state".parse().unwrap();
        assert!(!local_operator(&evil, &h(&[("host", "localhost"), ("x-tier1-admin", "1")])));
    }

    #[test]
    fn redaction_covers_every_secret_field() {
        let text = r#"
[server]
api_keys = ["front-literal-1"]
admin_keys = ["env:ADMIN"]
[providers.p]
kind = "openai"
headers = { "X-Org" = "literal-org-secret" }
[[providers.p.keys]]
name = "k"
secret = "sk-literal-key"
"#;
        let v = redacted_config(text, crate::config::Format::Toml);
        let s = v.to_string();
        for secret in ["front-literal-1", "env:ADMIN", "literal-org-secret", "sk-literal-key"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["providers"]["p"]["keys"][0]["name"], "k");
    }

    #[test]
    fn diff_names_what_changed() {
        let a = serde_json::json!({"providers": {"x": {"kind": "openai"}, "y": {}}, "routes": [{"name": "r", "targets": [1]}], "server": {}});
        let b = serde_json::json!({"providers": {"x": {"kind": "mock"}, "z": {}}, "routes": [{"name": "r", "targets": [1]}, {"name": "s"}], "server": {"listen": "x"}});
        assert_eq!(
            diff(&a, &b),
            ["~ providers.x", "+ providers.z", "- providers.y", "+ routes.s", "~ server"]
        );
    }
}
