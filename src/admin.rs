//! The admin view: `GET /admin/state` shows breakers, cooldowns with their remaining time, EWMA
//! latencies and in-flight counts, keys by name only. Until admin keys exist, admin routes
//! answer only to loopback clients.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::resilience::Clock;
use crate::snapshot::Live;

/// Whether `peer` may use the admin routes.
pub fn allowed(peer: SocketAddr) -> bool {
    peer.ip().is_loopback()
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The state document.
pub fn state(live: &Live, clock: Clock) -> Bytes {
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
                        "inflight": k.state.inflight.load(Ordering::Relaxed),
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
    Bytes::from(serde_json::json!({"providers": providers, "routes": routes}).to_string())
}
