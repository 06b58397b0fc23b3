//! The forwarding steps for `chat/completions`, `embeddings`, `messages` and `responses`, in order: read the
//! body (capped, under a deadline) → scan it → `route`: the candidates, in strategy order, then
//! request-level fallbacks → `admit`: the caller's rate limits → run the attempt loop
//! ([`super::attempt`]) → `answer` with what it ended with, or with the one error that sums
//! up every failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::attempt::{self, Answer, Answered, Candidate, Job, Resume, Success, WonBody};
use super::body::{Body, full, read_limited};
use super::ctx::{End, RequestCtx, RouteLabel};
use super::headers;
use super::respond::{self, Dialect};
use super::timing::Timing;
use crate::error::{Class, ProxyError};
use crate::json::{self, Scanned, Schema};
use crate::manifest::Catalog;
use crate::metrics::labels::WaitKind;
use crate::providers::Operation;
use crate::ratelimit::{Facts, Rejection, Spend, Ticket};
use crate::resilience::RetryBudget;
use crate::routing::{Resolved, Route, Target};
use crate::snapshot::Live;
use crate::state::AppState;

/// Request-level fallbacks as a header: comma-separated model names.
pub(crate) const X_TIER1_FALLBACKS: HeaderName = HeaderName::from_static("x-tier1-fallbacks");
/// Classification of the first failure, when another attempt answered.
pub(crate) const X_TIER1_FALLBACK_REASON: HeaderName = HeaderName::from_static("x-tier1-fallback-reason");

/// Proxies one API request: read, scan, route, admit, attempt, answer.
pub(crate) async fn forward(
    state: &AppState,
    live: &Arc<Live>,
    req: Request<Incoming>,
    op: Operation,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = req.into_parts();
    let timing = ctx.timing.clone();
    let read = read_limited(body, &parts.headers, live.server.max_body_bytes, live.server.body_timeout);
    let bytes = timing.during(WaitKind::Body, read).await?;
    let scanned = json::scan_capped(&bytes, schema(op), live.server.max_request_fallbacks)?;
    let routed = route(state, live, (&scanned, &bytes), &parts.headers, op, ctx)?;
    let estimate = Spend::estimate(bytes.len(), scanned.max_tokens, routed.cands.iter().map(|c| c.costs));
    let tokens = estimate.tokens;
    let facts = Facts {
        route: ctx.route.as_str(),
        model: &scanned.model,
        api_key: headers::key_index(&parts.headers, &live.api_keys),
        headers: &parts.headers,
        tokens,
        micro_usd: estimate.micro_usd,
    };
    let ticket = admit(state, live, &facts, &timing).await.map_err(|r| refused(state, r))?;
    // The tickets settle when the request ends: with the usage, or refunded for an error.
    if let Some(r) = ctx.record.as_mut() {
        r.keep(ticket);
    }
    let wants_sse = op == Operation::Chat && headers::accepts_sse(&parts.headers);
    let stream = match op {
        Operation::Chat => scanned.stream.unwrap_or(wants_sse),
        Operation::Messages | Operation::Responses => scanned.stream == Some(true),
        Operation::Embeddings => false,
    };
    let route_label = ctx.route.clone();
    let trace = ctx.record.as_mut().and_then(|r| r.requested(&scanned.model, scanned.max_tokens));
    let job = Job {
        live,
        operation: op,
        stream,
        force_stream: op == Operation::Chat && stream && scanned.stream.is_none(),
        scanned: &scanned,
        body: &bytes,
        request_id: &ctx.request_id,
        correlation_id: headers::correlation_id(&parts.headers),
        clock: state.registry.clock,
        started: AtomicU32::new(0),
        metrics: &state.metrics,
        route: route_label.as_str(),
        timing: &timing,
        limiter: &state.ratelimit,
        shared: &state.shared,
        tokens,
        resume: (routed.stream_resume && stream && op == Operation::Chat).then(|| {
            let cands = routed.cands.iter().map(|c| (c.provider.index, c.model, c.deployment, c.costs));
            let handles = (state.metrics.clone(), state.registry.clock);
            Arc::new(Resume::new(
                live.clone(),
                bytes.clone(),
                cands,
                ctx.request_id.clone(),
                handles,
                route_label.as_str(),
            ))
        }),
        waiters: &state.cooldown_waiters,
        trace,
    };
    let result = attempt::run(&job, &routed.cands, routed.budget, routed.extras).await;
    ctx.attempts = job.started.load(Ordering::Acquire);
    let answered = result.map_err(|e| ProxyError::Exhausted(Box::new(e)))?;
    Ok(answer(answered, op, stream, ctx))
}

/// The body schema of `op`.
fn schema(op: Operation) -> Schema {
    match op {
        Operation::Chat => Schema::Chat,
        Operation::Embeddings => Schema::Embeddings,
        Operation::Messages => Schema::Messages,
        Operation::Responses => Schema::Responses,
    }
}

/// Where a request may go: its candidates in order, and the route's retry budget and hedge.
struct Routed<'a> {
    cands: Vec<Candidate<'a>>,
    budget: &'a RetryBudget,
    extras: attempt::Extras,
    stream_resume: bool,
}

/// The candidates: the model's route targets in strategy order (or its direct
/// `provider/model`), then the request-level fallbacks', without repeats, among providers that
/// speak the request's format.
#[inline]
fn route<'a>(
    state: &AppState,
    live: &'a Live,
    (scanned, body): (&'a Scanned, &[u8]),
    headers: &'a http::HeaderMap,
    op: Operation,
    ctx: &mut RequestCtx,
) -> Result<Routed<'a>, ProxyError> {
    let now = state.registry.clock.now();
    state.manifest.learn(&live.front, headers);
    // One atomic load: the front's manifest, if one is configured and fetched.
    let manifest = state.manifest.load();
    let catalog = manifest.as_deref();
    let max_fallbacks = live.server.max_request_fallbacks;
    let header_fallbacks = headers.get(&X_TIER1_FALLBACKS).and_then(|v| v.to_str().ok()).unwrap_or("");
    let header_fallbacks = || header_fallbacks.split(',').map(str::trim).filter(|m| !m.is_empty());
    // Counted before any is resolved: each costs a lookup and candidates to de-duplicate.
    let given = scanned.fallbacks.len() + header_fallbacks().count();
    if given > max_fallbacks {
        return Err(json::ScanError::TooManyFallbacks { given, max: max_fallbacks }.into());
    }
    let mut cands: Vec<Candidate<'_>> = Vec::new();
    // A route with affinity orders its targets and keys for the request's session, if it has one.
    let push = |cands: &mut Vec<Candidate<'a>>, route: &'a Route| match route.affinity.as_deref() {
        Some(a) => match super::affinity::session(&a.config.session, headers, scanned, body) {
            Some(session) => super::affinity::push(cands, live, route, a, session, (now, &state.metrics)),
            None => push_route(cands, live, route, now),
        },
        None => push_route(cands, live, route, now),
    };
    let (budget, extras, stream_resume) = match resolve(live, catalog, &scanned.model) {
        Some(Resolved::Route(route)) => {
            ctx.route = RouteLabel::Named(route.name.clone());
            push(&mut cands, route);
            let extras = attempt::Extras {
                hedge_after: route.hedge_after,
                wait_for_cooldown: route.wait_for_cooldown,
            };
            (&route.state.budget, extras, route.stream_resume)
        }
        Some(Resolved::Direct { provider, model }) => {
            ctx.route = RouteLabel::Direct;
            push_direct(&mut cands, live, provider, model, now);
            let p = live.providers.get(provider).ok_or_else(|| unknown(&scanned.model))?;
            let extras =
                attempt::Extras { hedge_after: None, wait_for_cooldown: live.resilience.wait_for_cooldown };
            (&p.state.budget, extras, false)
        }
        None => return Err(unknown(&scanned.model)),
    };
    let fallbacks = scanned.fallbacks.iter().map(String::as_str).chain(header_fallbacks());
    for model in fallbacks {
        match resolve(live, catalog, model) {
            Some(Resolved::Route(route)) => push(&mut cands, route),
            Some(Resolved::Direct { provider, model }) => push_direct(&mut cands, live, provider, model, now),
            None => return Err(unknown(model)),
        }
    }
    dedupe(&mut cands);
    eligible(&mut cands, catalog, &scanned.model)?;
    // Only providers that speak the request's format, natively or translated, are tried.
    let before = cands.len();
    cands.retain(|c| c.provider.speaks(op, c.deployment));
    if cands.is_empty() && before > 0 {
        return Err(ProxyError::WrongFormat {
            model: scanned.model.as_str().into(),
            served_by: served_by(op),
        });
    }
    Ok(Routed { cands, budget, extras, stream_resume })
}

/// The provider kinds that serve `op`, for the error that none of a model's providers does:
/// `openai, azure or mock`.
fn served_by(op: Operation) -> Box<str> {
    use crate::providers::ProviderKind;
    let kinds: Vec<&str> =
        ProviderKind::ALL.iter().filter(|k| k.spec().serves(op, "")).map(|k| k.as_str()).collect();
    match kinds.split_last() {
        Some((last, [])) => (*last).into(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")).into(),
        None => "none".into(),
    }
}

/// The response for what the attempt loop ended with; the record learns how the request ends.
#[inline]
fn answer(answered: Answered, op: Operation, stream: bool, ctx: &mut RequestCtx) -> Response<Body> {
    ctx.provider = Some(answered.provider);
    ctx.model = answered.model;
    ctx.fallback_reason = answered.fallback_reason.map(Class::as_str);
    let (status, headers, body) = match answered.answer {
        Answer::Success(Success { status, headers, body, ttft, tokens, meter, ticket }) => {
            if let Some(r) = ctx.record.as_mut() {
                r.meter(meter);
                if let Some(t) = ticket {
                    r.keep(t);
                }
            }
            match body {
                // A translated answer's tokens are what the provider reported (none reported:
                // the estimates stand).
                WonBody::Full(bytes) => {
                    ctx.end = End::Done(tokens);
                    (status, headers, full(bytes))
                }
                WonBody::Relay(relay) => {
                    let record = ctx.hand_over(status.as_u16(), stream, ttft);
                    (status, headers, Body::new(relay.record(record)))
                }
                WonBody::Resumed(resumed) => {
                    let record = ctx.hand_over(status.as_u16(), stream, ttft);
                    (status, headers, Body::new(resumed.record(record)))
                }
            }
        }
        // An error body consumed nothing: the estimates are refunded.
        Answer::CallerFault { status, headers, body } => {
            ctx.end = End::Refund;
            ctx.code = respond::Code::of_refusal(status);
            (status, headers, full(body))
        }
        Answer::Untranslatable { provider, why, param } => {
            ctx.end = End::Refund;
            let e = ProxyError::Untranslatable { provider, why, param };
            ctx.code = respond::code(&e);
            let (parts, body) = respond::error(&e, Dialect::of(op)).into_parts();
            (parts.status, parts.headers, body)
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    if let Some(reason) = ctx.fallback_reason {
        resp.headers_mut().insert(X_TIER1_FALLBACK_REASON, HeaderValue::from_static(reason));
    }
    resp
}

/// A refusal by a caller limit or budget, counted in its family.
fn refused(state: &AppState, r: Rejection) -> ProxyError {
    if r.is_budget() {
        state.metrics.budget_rejections_total.get(crate::metrics::labels::Budget { budget: &r.limit }).inc();
    } else {
        state.metrics.ratelimit_rejections_total.get(crate::metrics::labels::Limit { limit: &r.limit }).inc();
    }
    ProxyError::Limited(Box::new(r))
}

/// Caller rate limits: the async ones locally; the strict ones through Redis, one atomic call
/// each, or locally when Redis cannot answer and the limit does not fail closed.
async fn admit(
    state: &AppState,
    live: &Live,
    facts: &Facts<'_>,
    timing: &Timing,
) -> Result<Ticket, Rejection> {
    if live.limits.is_empty() {
        return state.ratelimit.admit(&live.limits, facts, false);
    }
    let mut ticket = state.ratelimit.admit(&live.limits, facts, false)?;
    let strict = live.limits.strict(facts);
    let mut local = false;
    for (name, id, limit, cost) in strict {
        let strict = state.shared.strict(&id, limit, cost, state.ratelimit.now_ms());
        match timing.during(WaitKind::Limit, strict).await {
            // Its token or cost estimate settles like the others' (the correction reaches Redis
            // through the sync, onto the same key).
            Some(true) => ticket.reserved(id, cost),
            Some(false) => {
                ticket.settle(Some(Spend::ZERO));
                return Err(Rejection::strict(name, &id, state.ratelimit.now_ms()));
            }
            None => {
                state.metrics.redis_errors_total.get(crate::metrics::labels::RedisOp { op: "strict" }).inc();
                if state.shared.fleet.fail_closed.load(Ordering::Acquire) {
                    return Err(Rejection::unavailable(name));
                }
                local = true;
            }
        }
    }
    if local {
        ticket.merge(state.ratelimit.admit(&live.limits, facts, true)?);
    }
    Ok(ticket)
}

/// Drops the candidates whose provider the front's manifest marks not eligible; none left (and
/// some dropped): the request is refused for the front to serve it itself.
fn eligible(
    cands: &mut Vec<Candidate<'_>>,
    catalog: Option<&Catalog>,
    model: &str,
) -> Result<(), ProxyError> {
    let Some(catalog) = catalog else { return Ok(()) };
    let refused =
        cands.iter().find(|c| catalog.ineligible(&c.provider.name)).map(|c| c.provider.name.clone());
    cands.retain(|c| !catalog.ineligible(&c.provider.name));
    match refused {
        Some(provider) if cands.is_empty() => Err(ProxyError::NotEligible { model: model.into(), provider }),
        _ => Ok(()),
    }
}

/// Resolves a client's model name: tier1's own names first, then the front's manifest names
/// (`alias/model`) mapped onto a configured provider ([`crate::manifest`]). A direct
/// `provider/model` must pass the kind's model-name rule: Azure puts the model in the URL path
/// (it names the deployment), so `az/../../x` or `az/a?b`, which would reach other paths of the
/// provider's host with its key, are unknown models.
fn resolve<'a>(live: &'a Live, catalog: Option<&Catalog>, model: &'a str) -> Option<Resolved<'a>> {
    let resolved = live.table.resolve(model).or_else(|| {
        let (name, rest) = catalog?.map(model, |n| live.table.provider(n).is_some())?;
        Some(Resolved::Direct { provider: live.table.provider(name)?, model: rest })
    });
    match resolved? {
        Resolved::Direct { provider, model }
            if live.providers.get(provider).is_some_and(|p| !p.kind.spec().direct_model(model)) =>
        {
            None
        }
        resolved => Some(resolved),
    }
}

fn unknown(model: &str) -> ProxyError {
    ProxyError::UnknownModel(model.into())
}

/// A route target as a candidate.
pub(super) fn route_candidate<'a>(live: &'a Live, route: &'a Route, t: &'a Target) -> Option<Candidate<'a>> {
    let provider = live.providers.get(t.provider)?;
    Some(Candidate {
        provider,
        model: &t.model,
        target: std::borrow::Cow::Borrowed(&t.state),
        policy: route.retry,
        model_label: &t.model,
        costs: (t.input_cost, t.output_cost),
        deployment: &t.deployment,
        context_window: t.context_window,
        first_token: route.first_token_timeout.as_ref().or(provider.first_token_timeout.as_ref()),
        affinity: None,
    })
}

/// The route's targets in its strategy's order (healthy first).
fn push_route<'a>(cands: &mut Vec<Candidate<'a>>, live: &'a Live, route: &'a Route, now: u64) {
    let order = route
        .strategy
        .order(route, |t| route_candidate(live, route, t).is_some_and(|c| c.unavailable(now).is_none()));
    cands.extend(order.into_iter().filter_map(|i| route_candidate(live, route, route.targets.get(i)?)));
}

/// One `provider/model` target, with the default retry policy.
fn push_direct<'a>(
    cands: &mut Vec<Candidate<'a>>,
    live: &'a Live,
    provider: usize,
    model: &'a str,
    now: u64,
) {
    if let Some(p) = live.providers.get(provider) {
        cands.push(Candidate {
            provider: p,
            model,
            target: p.target_state(model, now),
            policy: live.resilience.default_retry,
            model_label: p.model_label(model),
            costs: (0.0, 0.0),
            deployment: model,
            context_window: None,
            first_token: p.first_token_timeout.as_ref(),
            affinity: None,
        });
    }
}

/// Keeps the first occurrence of each provider/model pair, in linear time: a few candidates
/// (the common case) are compared pairwise, which beats hashing them; more go through a set.
fn dedupe<'a>(cands: &mut Vec<Candidate<'a>>) {
    const PAIRWISE: usize = 16;
    fn id<'a>(c: &Candidate<'a>) -> (usize, &'a str) {
        (c.provider.index, c.model)
    }
    if cands.len() <= PAIRWISE {
        let mut seen: [(usize, &str); PAIRWISE] = [(0, ""); PAIRWISE];
        let mut n = 0;
        cands.retain(|c| {
            let id = id(c);
            if seen[..n].contains(&id) {
                false
            } else {
                seen[n] = id;
                n += 1;
                true
            }
        });
    } else {
        let mut seen = std::collections::HashSet::with_capacity(cands.len());
        cands.retain(|c| seen.insert(id(c)));
    }
}
