//! The forwarding steps for `chat/completions` and `embeddings`, in order: read the body (capped,
//! under a deadline) → scan it → route: the candidates, in strategy order, then request-level
//! fallbacks → run the attempt loop → answer with the winner, or with the one error that sums up
//! every failure.

use std::sync::atomic::{AtomicU32, Ordering};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::attempt::{self, Candidate, Job, WonBody};
use super::body::{Body, RouteLabel, full, read_limited};
use super::handler::RequestCtx;
use super::headers::{self, X_CORRELATION_ID};
use crate::error::ProxyError;
use crate::json::{self, Schema};
use crate::providers::Operation;
use crate::resilience::Clock;
use crate::routing::{Resolved, Route};
use crate::snapshot::Live;

/// Request-level fallbacks as a header: comma-separated model names.
pub const X_TIER1_FALLBACKS: &str = "x-tier1-fallbacks";
/// Classification of the first failure, when another attempt answered.
pub const X_TIER1_FALLBACK_REASON: &str = "x-tier1-fallback-reason";

/// Proxies one API request.
pub async fn forward(
    live: &Live,
    clock: Clock,
    req: Request<Incoming>,
    op: Operation,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = req.into_parts();
    let wants_sse = op == Operation::Chat && headers::accepts_sse(&parts.headers);
    let bytes =
        read_limited(body, &parts.headers, live.server.max_body_bytes, live.server.body_timeout).await?;
    let schema = match op {
        Operation::Chat => Schema::Chat,
        Operation::Embeddings => Schema::Embeddings,
    };
    let scanned = json::scan(&bytes, schema)?;
    let now = clock.now();
    let mut cands: Vec<Candidate<'_>> = Vec::new();
    let (budget, hedge_after) = match live.table.resolve(&scanned.model) {
        Some(Resolved::Route(route)) => {
            ctx.route = RouteLabel::Named(route.name.clone());
            push_route(&mut cands, live, route, now);
            (&route.state.budget, route.hedge_after)
        }
        Some(Resolved::Direct { provider, model }) => {
            ctx.route = RouteLabel::Direct;
            push_direct(&mut cands, live, provider, model);
            let p = live.providers.get(provider).ok_or_else(|| unknown(&scanned.model))?;
            (&p.state.budget, None)
        }
        None => return Err(unknown(&scanned.model)),
    };
    let header_fallbacks = parts.headers.get(X_TIER1_FALLBACKS).and_then(|v| v.to_str().ok()).unwrap_or("");
    let fallbacks = scanned
        .fallbacks
        .iter()
        .map(String::as_str)
        .chain(header_fallbacks.split(',').map(str::trim).filter(|m| !m.is_empty()));
    for model in fallbacks {
        match live.table.resolve(model) {
            Some(Resolved::Route(route)) => push_route(&mut cands, live, route, now),
            Some(Resolved::Direct { provider, model }) => push_direct(&mut cands, live, provider, model),
            None => return Err(unknown(model)),
        }
    }
    dedupe(&mut cands);

    let stream = op == Operation::Chat && scanned.stream.unwrap_or(wants_sse);
    let job = Job {
        live,
        operation: op,
        stream,
        force_stream: stream && scanned.stream.is_none(),
        scanned: &scanned,
        body: &bytes,
        request_id: &ctx.request_id,
        correlation_id: parts.headers.get(X_CORRELATION_ID),
        clock,
        started: AtomicU32::new(0),
    };
    let result = attempt::run(&job, &cands, budget, hedge_after).await;
    ctx.attempts = job.started.load(Ordering::Acquire);
    let won = result.map_err(|e| ProxyError::Exhausted(Box::new(e)))?;
    ctx.provider = Some(won.provider);
    ctx.model = won.model;
    let body = match won.body {
        WonBody::Full(bytes) => full(bytes),
        WonBody::Relay(relay) => {
            let relay = *relay;
            let mut record = ctx.record.take();
            if let Some(r) = record.as_mut() {
                r.route = ctx.route.clone();
                r.stream = stream;
            }
            Body::new(relay.record(record))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = won.status;
    *resp.headers_mut() = won.headers;
    if let Some(reason) = won.fallback_reason {
        resp.headers_mut().insert(X_TIER1_FALLBACK_REASON, HeaderValue::from_static(reason.as_str()));
    }
    Ok(resp)
}

fn unknown(model: &str) -> ProxyError {
    ProxyError::UnknownModel(model.into())
}

/// The route's targets in its strategy's order (healthy first).
fn push_route<'a>(cands: &mut Vec<Candidate<'a>>, live: &'a Live, route: &'a Route, now: u64) {
    let candidate = |i: usize| {
        let t = route.targets.get(i)?;
        let provider = live.providers.get(t.provider)?;
        Some(Candidate { provider, model: &t.model, target: &t.state, policy: route.retry })
    };
    let order = route.strategy.order(route, |t| {
        live.providers
            .get(t.provider)
            .map(|provider| Candidate { provider, model: &t.model, target: &t.state, policy: route.retry })
            .is_some_and(|c| c.unavailable(now).is_none())
    });
    cands.extend(order.into_iter().filter_map(candidate));
}

/// One `provider/model` target, with the default retry policy.
fn push_direct<'a>(cands: &mut Vec<Candidate<'a>>, live: &'a Live, provider: usize, model: &'a str) {
    if let Some(p) = live.providers.get(provider) {
        cands.push(Candidate {
            provider: p,
            model,
            target: p.target_state(model),
            policy: live.resilience.default_retry,
        });
    }
}

/// Keeps the first occurrence of each provider/model pair.
fn dedupe(cands: &mut Vec<Candidate<'_>>) {
    let mut seen: Vec<(usize, &str)> = Vec::with_capacity(cands.len());
    cands.retain(|c| {
        let id = (std::ptr::from_ref(c.provider) as usize, c.model);
        if seen.contains(&id) {
            false
        } else {
            seen.push(id);
            true
        }
    });
}
