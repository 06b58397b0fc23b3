//! Prompt-cache affinity on the request path: the session key of a request on a route with
//! `affinity`, and the route's candidates in that session's order ([`crate::routing::affinity`]
//! ranks and picks; this reads the live states it needs). A route without affinity never comes
//! here: no hashing and no allocation.

use std::sync::atomic::Ordering;

use http::HeaderMap;

use super::attempt::Candidate;
use crate::config::SessionFrom;
use crate::json::Scanned;
use crate::metrics::Metrics;
use crate::routing::Route;
use crate::routing::affinity::{self, Affine, Choice, Hasher, RouteAffinity, State};
use crate::snapshot::Live;

/// The session headers agent clients send on every request, first match wins: Claude Code's
/// `X-Claude-Code-Session-Id`, and Codex CLI's `session_id` (older releases also
/// `conversation_id`, the same value).
pub(crate) const SESSION_HEADERS: [&str; 3] = ["x-claude-code-session-id", "session_id", "conversation_id"];

/// The session hash of a request, `None` when it carries no session key (the route's strategy
/// decides then, as without affinity).
pub(super) fn session(
    from: &SessionFrom,
    headers: &HeaderMap,
    scanned: &Scanned,
    body: &[u8],
) -> Option<u64> {
    let value = match from {
        SessionFrom::Header(name) => headers.get(name),
        SessionFrom::Session => SESSION_HEADERS.iter().find_map(|h| headers.get(*h)),
        SessionFrom::Prompt { messages } => {
            let p = scanned.prompt(body, *messages);
            if p.system.is_empty() && p.messages.len() <= 1 {
                return None;
            }
            let mut h = Hasher::default();
            h.write(p.system);
            h.write(p.messages);
            return Some(h.finish());
        }
    };
    value.filter(|v| !v.is_empty()).map(|v| affinity::hash(v.as_bytes()))
}

/// A choice's availability now, and its load (its key's requests in flight, or the target's for
/// a provider without keys).
fn live_state(live: &Live, route: &Route, c: &Choice, now: u64) -> (State, u32) {
    let Some(target) = route.targets.get(c.target) else { return (State::Open, 0) };
    let Some(p) = live.providers.get(target.provider) else { return (State::Open, 0) };
    if p.state.breaker.blocks(now) || target.state.breaker.blocks(now) {
        return (State::Open, 0);
    }
    if target.state.cooldown.remaining(now).is_some() {
        return (State::Resting, 0);
    }
    match c.key.and_then(|k| p.keys.get(k)) {
        Some(k) if k.state.resting_for(&target.model, now).is_some() => (State::Resting, 0),
        Some(k) => (State::Free, k.state.inflight.load(Ordering::Acquire)),
        None => (State::Free, target.state.inflight.load(Ordering::Acquire)),
    }
}

/// The route's candidates in the order of `session`'s ranking, each with its keys ranked and
/// the load bound; a move off the session's top choice is counted by reason.
pub(super) fn push<'a>(
    cands: &mut Vec<Candidate<'a>>,
    live: &'a Live,
    route: &'a Route,
    a: &RouteAffinity,
    session: u64,
    (now, metrics): (u64, &Metrics),
) {
    let ranked = affinity::rank(session, &a.choices);
    let states: Vec<(State, u32)> = a.choices.iter().map(|c| live_state(live, route, c, now)).collect();
    let available = states.iter().filter(|(s, _)| *s == State::Free);
    let (n, total) = available.fold((0usize, 0u64), |(n, t), (_, load)| (n + 1, t + u64::from(*load)));
    let bound = affinity::bound(a.config.load_bound, total, n);
    let state = |i: usize| match states.get(i) {
        Some(&(State::Free, load)) if load >= bound => State::OverLoad,
        Some(&(s, _)) => s,
        None => State::Open,
    };
    if let (_, Some(why)) = affinity::pick(&ranked, state) {
        metrics
            .affinity_moves_total
            .get(crate::metrics::labels::AffinityMove { route: &route.name, reason: why.as_str() })
            .inc();
    }
    for (t, keys) in affinity::order(&a.choices, &ranked, state, route.targets.len()) {
        let Some(target) = route.targets.get(t) else { continue };
        if let Some(mut c) = super::forward::route_candidate(live, route, target) {
            c.affinity = Some(Affine { keys, bound });
            cands.push(c);
        }
    }
}
