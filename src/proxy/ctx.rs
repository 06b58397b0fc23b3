//! A request's context and its record. [`RequestCtx`] is what the steps learn on the way (route,
//! attempts, who answered, where the time went) for the response headers and the metrics.
//! [`RequestRecord`] is what ends with the request, whenever that is: in the handler for an
//! answer sent whole, in the relay when a relayed body ends. Its one [`RequestRecord::finish`]
//! observes the duration, records the provider's usage and its cost, settles the rate-limit
//! tickets and writes the access-log line.
//!
//! A record dropped unfinished belongs to a request whose client left before its end (hyper
//! drops the handler's future, or the relayed body): its `Drop` finishes it as such, and does
//! nothing else.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use crate::metrics::{Metrics, TargetMetrics};
use crate::ratelimit::{Spend, Ticket};

/// Labels of the route a request took, for metrics (bounded: configured names or two constants).
#[derive(Debug, Clone)]
pub(crate) enum RouteLabel {
    /// A configured route.
    Named(Arc<str>),
    /// `provider/model`.
    Direct,
    /// Not routed.
    Unmatched,
}

impl RouteLabel {
    /// The label value.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Named(n) => n,
            Self::Direct => crate::metrics::ROUTE_DIRECT,
            Self::Unmatched => crate::metrics::ROUTE_UNMATCHED,
        }
    }
}

/// What the steps learnt, for the response headers and the metrics.
pub(crate) struct RequestCtx {
    /// The request id (client's or generated).
    pub request_id: HeaderValue,
    /// Upstream attempts started.
    pub attempts: u32,
    /// Provider that answered (or failed last).
    pub provider: Option<HeaderValue>,
    /// Upstream model name.
    pub model: Option<HeaderValue>,
    /// Route label for metrics.
    pub route: RouteLabel,
    /// Classification of the first failure, when another attempt answered.
    pub fallback_reason: Option<&'static str>,
    /// The record of a counted endpoint; moved into a relayed body so it ends with the stream.
    pub record: Option<RequestRecord>,
    /// How the request ends if its answer is sent whole and is not an error (which refunds).
    pub end: End,
    /// What the answer was, for `tier1_requests_total`'s `code` when it is not an error of
    /// tier1's own (a provider's refusal relayed is one of the caller's codes).
    pub code: super::respond::Code,
    /// Where its time to the response head goes (waits by kind; the rest is tier1's work).
    pub timing: Arc<super::timing::Timing>,
}

impl RequestCtx {
    /// A request with id `request_id`, counted when `record` is given, started at `started`.
    #[inline]
    pub(crate) fn new(request_id: HeaderValue, record: Option<RequestRecord>, started: Instant) -> Self {
        Self {
            request_id,
            attempts: 0,
            provider: None,
            model: None,
            route: RouteLabel::Unmatched,
            fallback_reason: None,
            record,
            end: End::Done(None),
            code: super::respond::Code::Ok,
            timing: super::timing::Timing::new(started),
        }
    }

    /// The record filled with what the request learnt and its answer's `status`, to end with the
    /// relayed body that takes it (a stream's header values copied out of hyper's buffer).
    #[inline]
    pub(crate) fn hand_over(
        &mut self,
        status: u16,
        stream: bool,
        ttft: Option<Duration>,
    ) -> Option<RequestRecord> {
        let mut record = self.record.take()?;
        self.fill(&mut record, status);
        record.stream = stream;
        if stream {
            record.detach();
        }
        record.ttft = ttft;
        Some(record)
    }

    /// The request ends here, with an answer of `status` sent whole: an error refunds the token
    /// estimates; any other ends as the steps said ([`Self::end`]).
    pub(crate) fn finish(&mut self, status: u16) {
        if let Some(mut record) = self.record.take() {
            self.fill(&mut record, status);
            record.finish(if status >= 400 { End::Refund } else { self.end });
        }
    }

    #[inline]
    fn fill(&self, record: &mut RequestRecord, status: u16) {
        record.route = self.route.clone();
        record.status = status;
        record.provider = self.provider.clone();
        record.model = self.model.clone();
        record.attempts = self.attempts;
        record.fallback_reason = self.fallback_reason;
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The answer went out whole; the provider's usage when it reported one (else the token
    /// estimates stand).
    Done(Option<(u64, u64)>),
    /// An error answer, which consumed no tokens: the estimates are refunded.
    Refund,
    /// A relayed body broke after it began; the usage read up to the break.
    Broken(Option<(u64, u64)>),
    /// The client left before the end.
    Gone,
}

/// Where a provider's usage is counted: the answering target's metrics, at its prices (USD per
/// million input and output tokens).
pub(crate) struct Meter {
    /// The answering target's metrics.
    pub metrics: Arc<TargetMetrics>,
    /// USD per million input and output tokens.
    pub costs: (f64, f64),
}

/// One request's record: counts it in flight from creation to its end, then ends it once (see
/// [`RequestRecord::finish`]): one structured access-log line per request, never content,
/// never a secret.
pub(crate) struct RequestRecord {
    metrics: Arc<Metrics>,
    start: Instant,
    endpoint: &'static str,
    /// Fraction of successful requests to log.
    sample: f64,
    route: RouteLabel,
    stream: bool,
    request_id: HeaderValue,
    provider: Option<HeaderValue>,
    model: Option<HeaderValue>,
    attempts: u32,
    fallback_reason: Option<&'static str>,
    status: u16,
    ttft: Option<Duration>,
    /// `x-relay-token-id` of the front (a token id, not a secret).
    token_id: Option<HeaderValue>,
    /// `x-relay-client-ip` of the front (logged, never trusted).
    client_ip: Option<HeaderValue>,
    /// Rate-limit admissions (the caller's, the key's): token estimates settled at the end.
    /// Two slots, so that no request allocates for them.
    tickets: [Option<Ticket>; 2],
    /// Where the usage is counted, once a provider answered.
    meter: Option<Meter>,
    /// The usage of a resumed stream's earlier leg, already metered on its own target, and its
    /// cost there (micro-USD).
    carried: Option<(u64, u64, f64)>,
    /// The `server.max_inflight` slot, released with the record (at the end of the response).
    permit: Option<crate::resilience::Permit>,
    /// The request's span, when traces are exported.
    span: Option<Box<crate::otel::ServerSpan>>,
    finished: bool,
}

impl RequestRecord {
    /// Starts counting a request to `endpoint` (its metric label).
    #[inline]
    pub(crate) fn start(
        metrics: Arc<Metrics>,
        endpoint: &'static str,
        request_id: HeaderValue,
        headers: &http::HeaderMap,
        sample: f64,
    ) -> Self {
        metrics.inflight.inc();
        Self {
            metrics,
            start: Instant::now(),
            endpoint,
            sample,
            route: RouteLabel::Unmatched,
            stream: false,
            request_id,
            provider: None,
            model: None,
            attempts: 0,
            fallback_reason: None,
            status: 0,
            ttft: None,
            token_id: headers.get(&super::headers::X_RELAY_TOKEN_ID).cloned(),
            client_ip: headers.get(&super::headers::X_RELAY_CLIENT_IP).cloned(),
            tickets: [None, None],
            meter: None,
            carried: None,
            permit: None,
            span: None,
            finished: false,
        }
    }

    /// Traced with `otel` (traces on): the request's span starts, child of the trace context
    /// `headers` carry.
    #[inline]
    pub(crate) fn traced(mut self, otel: Option<&crate::otel::Otel>, headers: &http::HeaderMap) -> Self {
        if let Some(o) = otel {
            self.span = Some(Box::new(o.server(headers, self.endpoint)));
        }
        self
    }

    /// The request asked for `model` (at most `max_tokens` out): what its attempts' spans start
    /// from, when it is traced.
    #[inline]
    pub(crate) fn requested(&mut self, model: &str, max_tokens: Option<u64>) -> Option<crate::otel::Parent> {
        let span = self.span.as_mut()?;
        span.requested(model, max_tokens);
        Some(span.parent())
    }

    /// Whether the request has a span (traces on): what [`RequestRecord::answered`] is for.
    #[inline]
    pub(crate) fn traced_span(&self) -> bool {
        self.span.is_some()
    }

    /// A traced request's answer: its cached input tokens and finish reasons.
    pub(crate) fn answered(&mut self, cached: u64, finish_reasons: &[&str]) {
        if let Some(span) = self.span.as_mut() {
            span.answered(cached, finish_reasons);
        }
    }

    /// Keeps the `server.max_inflight` slot to the end.
    pub(crate) fn hold(&mut self, permit: crate::resilience::Permit) {
        self.permit = Some(permit);
    }

    /// Keeps a rate-limit ticket (the caller's, then the key's), to settle at the end.
    pub(crate) fn keep(&mut self, ticket: Ticket) {
        match self.tickets.iter_mut().find(|t| t.is_none()) {
            Some(slot) => *slot = Some(ticket),
            // There are two at most (the caller's and the key's); a third would keep its estimate.
            None => drop(ticket),
        }
    }

    /// Counts the usage at the end on `meter`.
    pub(crate) fn meter(&mut self, meter: Meter) {
        self.meter = Some(meter);
    }

    /// A resumed stream's leg ended with `usage` (its provider's report): metered now on its own
    /// target, carried into the request's total; the next leg is metered on `next`.
    pub(crate) fn next_leg(&mut self, usage: Option<(u64, u64)>, next: Meter) {
        if let (Some(m), Some((input, output))) = (&self.meter, usage) {
            m.metrics.usage(input, output, m.costs);
        }
        if let Some((i, o)) = usage {
            let cost = self.meter.as_ref().map_or(0.0, |m| Spend::priced(i, o, m.costs));
            let (ci, co, cc) = self.carried.unwrap_or((0, 0, 0.0));
            self.carried = Some((ci + i, co + o, cc + cost));
        }
        self.meter = Some(next);
    }

    /// Copies the request's header values out of hyper's read buffer: the record of a stream
    /// lives as long as the stream, and would keep that buffer alive with it. Other records end
    /// with their request, so they keep the cheap shared clones.
    fn detach(&mut self) {
        use crate::proxy::headers::detached;
        self.request_id = detached(&self.request_id);
        self.token_id = self.token_id.as_ref().map(detached);
        self.client_ip = self.client_ip.as_ref().map(detached);
    }

    /// Ends the request: its duration, the usage and its cost, the tickets settled (with the
    /// usage, refunded, or left at their estimates), the in-flight count, the access-log line.
    pub(crate) fn finish(mut self, end: End) {
        self.end(end);
    }

    fn end(&mut self, end: End) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.metrics.inflight.dec();
        let elapsed = self.start.elapsed();
        let stream = if self.stream { "true" } else { "false" };
        self.metrics
            .request_duration
            .get(crate::metrics::labels::Duration {
                route: self.route.as_str(),
                endpoint: self.endpoint,
                stream,
            })
            .observe(elapsed.as_secs_f64());
        let (usage, settle) = match end {
            End::Done(usage) => (usage, usage.map(|(i, o)| self.spend(i, o))),
            End::Refund => (None, Some(Spend::ZERO)),
            End::Broken(usage) => (usage, None),
            End::Gone => (None, None),
        };
        if let (Some(m), Some((input, output))) = (&self.meter, usage) {
            m.metrics.usage(input, output, m.costs);
        }
        // A resumed stream: the earlier legs' usage (metered already) joins the total.
        let (usage, settle) = match (self.carried, usage) {
            (None, _) => (usage, settle),
            (Some((ci, co, cc)), Some((i, o))) => (
                Some((ci + i, co + o)),
                settle.map(|s| Spend { tokens: s.tokens + ci + co, micro_usd: s.micro_usd + cc }),
            ),
            (Some((ci, co, _)), None) => (Some((ci, co)), settle),
        };
        for t in self.tickets.iter_mut().flatten() {
            t.settle(settle);
        }
        let broken = matches!(end, End::Broken(_));
        let logged = if matches!(end, End::Done(_)) { usage } else { None };
        if let Some(span) = self.span.take() {
            self.end_span(*span, end, usage);
        }
        self.log(elapsed, broken, logged);
    }

    /// Ends the request's span with what the record knows.
    fn end_span(&self, span: crate::otel::ServerSpan, end: End, usage: Option<(u64, u64)>) {
        span.end(&crate::otel::Ended {
            status: self.status,
            route: self.route.as_str(),
            provider: text(&self.provider),
            model: text(&self.model),
            attempts: self.attempts,
            fallback_reason: self.fallback_reason,
            stream: self.stream,
            ttft: self.ttft,
            usage,
            end: match end {
                End::Done(_) => "done",
                End::Refund => "refund",
                End::Broken(_) => "broken",
                End::Gone => "gone",
            },
        });
    }

    /// What `input` and `output` tokens spent, at the answering target's prices.
    fn spend(&self, input: u64, output: u64) -> Spend {
        let micro_usd = self.meter.as_ref().map_or(0.0, |m| Spend::priced(input, output, m.costs));
        Spend { tokens: input + output, micro_usd }
    }

    /// The access-log line: every failure, and the sampled share of successes.
    fn log(&self, elapsed: Duration, broken: bool, tokens: Option<(u64, u64)>) {
        let failed = broken || self.status >= 400;
        if !failed && (self.sample <= 0.0 || (self.sample < 1.0 && fastrand::f64() >= self.sample)) {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        crate::access::line::Entry {
            request_id: self.request_id.to_str().unwrap_or(""),
            route: self.route.as_str(),
            endpoint: self.endpoint,
            provider: text(&self.provider),
            model: text(&self.model),
            attempts: self.attempts,
            fallback_reason: self.fallback_reason,
            status: self.status,
            stream: self.stream,
            broken,
            duration_ms: ms(elapsed),
            ttft_ms: self.ttft.map(ms),
            tokens_in: tokens.map(|t| t.0),
            tokens_out: tokens.map(|t| t.1),
            token_id: text(&self.token_id),
            client_ip: text(&self.client_ip),
        }
        .log();
    }
}

impl Drop for RequestRecord {
    /// Unfinished: the client left before the end.
    fn drop(&mut self) {
        self.end(End::Gone);
    }
}

/// A header value the record kept, as text (none when absent or not visible ASCII).
fn text(v: &Option<HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests;
