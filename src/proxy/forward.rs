//! The forwarding steps for `chat/completions` and `embeddings`, in order: read the body
//! (capped, under a deadline) → scan it → route → splice the upstream model → send → relay the
//! answer or classify the failure.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{Body, Relay, RouteLabel, read_limited};
use super::handler::RequestCtx;
use super::headers::{self, X_CORRELATION_ID};
use crate::error::{Class, ProxyError, UpstreamFailure};
use crate::json::{self, Schema};
use crate::providers::{Call, Operation, Provider, SendError, UpstreamBody};
use crate::routing::Resolved;
use crate::snapshot::Live;

/// Largest upstream error body tier1 reads to pass on (longer ones are cut).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Proxies one API request.
pub async fn forward(
    live: &Live,
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
    let (provider, model) = match live.table.resolve(&scanned.model) {
        Some(Resolved::Route(route)) => {
            ctx.route = RouteLabel::Named(route.name.clone());
            let target = route
                .targets
                .first()
                .ok_or_else(|| ProxyError::UnknownModel(scanned.model.as_str().into()))?;
            (target.provider, &*target.model)
        }
        Some(Resolved::Direct { provider, model }) => {
            ctx.route = RouteLabel::Direct;
            (provider, model)
        }
        None => return Err(ProxyError::UnknownModel(scanned.model.as_str().into())),
    };
    let provider = live
        .providers
        .get(provider)
        .ok_or_else(|| ProxyError::UnknownModel(scanned.model.as_str().into()))?;
    let stream = op == Operation::Chat && scanned.stream.unwrap_or(wants_sse);
    let upstream_body = scanned.splice(&bytes, model, stream && scanned.stream.is_none());
    ctx.attempts += 1;
    ctx.provider = Some(provider.name_header.clone());
    ctx.model = HeaderValue::from_str(model).ok();
    let deadline = Instant::now() + provider.request_timeout;
    let call = Call {
        operation: op,
        body: upstream_body,
        stream,
        request_id: &ctx.request_id,
        correlation_id: parts.headers.get(X_CORRELATION_ID),
        deadline,
    };
    let resp = provider.send(call).await.map_err(|e| {
        let class = match e {
            SendError::Connect => Class::Connect,
            SendError::Timeout => Class::Timeout,
            SendError::Failed => Class::Server,
        };
        failure(provider, class, None, None)
    })?;
    respond(live, provider, resp, stream, deadline, ctx).await
}

fn failure(
    provider: &Provider,
    class: Class,
    status: Option<StatusCode>,
    retry_after: Option<HeaderValue>,
) -> ProxyError {
    ProxyError::Upstream(Box::new(UpstreamFailure {
        provider: provider.name.clone(),
        class,
        status,
        retry_after,
    }))
}

/// Turns the upstream response head into the client's response.
async fn respond(
    live: &Live,
    provider: &Provider,
    resp: Response<UpstreamBody>,
    stream: bool,
    deadline: Instant,
    ctx: &mut RequestCtx,
) -> Result<Response<Body>, ProxyError> {
    let status = resp.status();
    if status.is_success() {
        let (parts, body) = resp.into_parts();
        let is_sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut record = ctx.record.take();
        if let Some(r) = record.as_mut() {
            r.route = ctx.route.clone();
            r.stream = stream;
        }
        let mut out = Response::new(Body::new(Relay::new(body, deadline, stream || is_sse, record)));
        *out.status_mut() = status;
        copy_headers(&parts.headers, out.headers_mut(), !(stream || is_sse));
        return Ok(out);
    }
    let class = Class::of_status(status);
    match class {
        // The caller's fault: pass the provider's answer on, with the status it chose.
        Class::InvalidRequest | Class::NotFound => {
            let (parts, body) = resp.into_parts();
            let bytes = read_error_body(body, deadline).await;
            let mut out =
                Response::new(super::body::full(Bytes::from(live.redactor.redact(&bytes).into_owned())));
            *out.status_mut() = status;
            copy_headers(&parts.headers, out.headers_mut(), false);
            out.headers_mut().remove(header::CONTENT_LENGTH);
            Ok(out)
        }
        Class::RateLimited
        | Class::Overloaded
        | Class::Auth
        | Class::Server
        | Class::Timeout
        | Class::Connect => {
            let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
            Err(failure(provider, class, Some(status), retry_after))
        }
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an upstream error body before the deadline.
async fn read_error_body(mut body: UpstreamBody, deadline: Instant) -> Bytes {
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if buf.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
    Bytes::from(buf)
}

/// The upstream headers a client may see: content type (and length, for bodies passed through
/// unchanged), caching and rate-limit hints. Nothing else crosses, so no upstream cookie, server
/// detail or organisation header leaks to the caller.
fn copy_headers(from: &http::HeaderMap, to: &mut http::HeaderMap, keep_length: bool) {
    for (name, value) in from {
        let keep = name == header::CONTENT_TYPE
            || name == header::CACHE_CONTROL
            || name == header::RETRY_AFTER
            || (keep_length && name == header::CONTENT_LENGTH)
            || name.as_str().starts_with("x-ratelimit-");
        if keep {
            to.append(name.clone(), value.clone());
        }
    }
    if !keep_length {
        to.remove(header::CONTENT_LENGTH);
    }
}
