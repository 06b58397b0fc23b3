use std::collections::HashMap;

use http::HeaderMap;

use super::*;
use crate::config::{Format, parse};
use crate::ratelimit::{Facts, Fleet, Limiter, Limits};

/// A token limit of 1000 per minute, and a ticket holding an estimate of 900 of it.
fn limited() -> (Arc<Limiter>, Limits) {
    let c = parse(
        "[[limits]]\nname = \"t\"\ntokens = 1000\nper = \"60s\"\n",
        Format::Toml,
        &HashMap::<String, String>::new(),
    )
    .expect("a valid config");
    (Arc::new(Limiter::new(Arc::new(Fleet::standalone()))), Limits::new(&c.limits))
}

fn admit(lim: &Arc<Limiter>, limits: &Limits, tokens: u64) -> Option<Ticket> {
    let h = HeaderMap::new();
    lim.admit(
        limits,
        &Facts { route: "r", model: "m", api_key: None, headers: &h, tokens, micro_usd: 0.0 },
        false,
    )
    .ok()
}

fn record(metrics: &Arc<Metrics>) -> RequestRecord {
    let mut headers = HeaderMap::new();
    headers.insert("x-relay-token-id", HeaderValue::from_static("tok-1"));
    RequestRecord::start(metrics.clone(), "chat", HeaderValue::from_static("req-1"), &headers, 1.0)
}

fn metered(metrics: &Arc<Metrics>) -> Meter {
    Meter { metrics: Arc::new(metrics.target("p", "m")), costs: (2.0, 10.0) }
}

fn durations(metrics: &Metrics) -> u64 {
    metrics
        .request_duration
        .get(crate::metrics::labels::Duration { route: "unmatched", endpoint: "chat", stream: "false" })
        .get_sample_count()
}

#[test]
fn a_request_is_in_flight_until_it_ends_and_ends_once() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let r = record(&metrics);
    assert_eq!(metrics.inflight.get(), 1);
    r.finish(End::Done(None));
    assert_eq!(metrics.inflight.get(), 0);
    // The finished record was dropped too: still one end, one duration.
    assert_eq!(durations(&metrics), 1);
    // A record dropped unfinished (the client left) ends as well, once.
    drop(record(&metrics));
    assert_eq!(metrics.inflight.get(), 0);
    assert_eq!(durations(&metrics), 2);
}

#[test]
fn the_usage_and_its_cost_are_counted_at_the_end_of_an_answer_and_of_a_broken_one() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let target = metrics.target("p", "m");
    let mut r = record(&metrics);
    r.meter(metered(&metrics));
    r.finish(End::Done(Some((1_000, 100))));
    assert_eq!((target.tokens_in.get(), target.tokens_out.get()), (1_000, 100));
    // 1000 in at $2/M and 100 out at $10/M.
    assert!((target.cost.get() - 0.003).abs() < 1e-12, "{}", target.cost.get());
    let mut r = record(&metrics);
    r.meter(metered(&metrics));
    r.finish(End::Broken(Some((5, 5))));
    assert_eq!((target.tokens_in.get(), target.tokens_out.get()), (1_005, 105));
    // Refunded or gone: no usage to count.
    for end in [End::Refund, End::Gone] {
        let mut r = record(&metrics);
        r.meter(metered(&metrics));
        r.finish(end);
    }
    assert_eq!((target.tokens_in.get(), target.tokens_out.get()), (1_005, 105));
}

#[test]
fn tickets_settle_with_the_usage_are_refunded_for_an_error_and_keep_their_estimate_otherwise() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    // (how it ended, tokens a second request may then take out of the 1000)
    let cases = [
        (End::Done(Some((60, 40))), 900),
        (End::Refund, 1000),
        (End::Done(None), 100),
        (End::Broken(Some((60, 40))), 100),
        (End::Gone, 100),
    ];
    for (end, room) in cases {
        let (lim, limits) = limited();
        let mut r = record(&metrics);
        r.keep(admit(&lim, &limits, 900).expect("room for the estimate"));
        assert!(admit(&lim, &limits, 101).is_none(), "{end:?}: the estimate is held");
        r.finish(end);
        assert!(admit(&lim, &limits, room).is_some(), "{end:?}: {room} tokens free");
        assert!(admit(&lim, &limits, 1).is_none(), "{end:?}: not more than {room}");
    }
}

#[test]
fn the_context_fills_the_record_and_an_error_answer_refunds() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let (lim, limits) = limited();
    let mut ctx = RequestCtx::new(HeaderValue::from_static("req-1"), Some(record(&metrics)), Instant::now());
    ctx.route = RouteLabel::Direct;
    ctx.end = End::Done(Some((1, 1)));
    if let Some(r) = ctx.record.as_mut() {
        r.keep(admit(&lim, &limits, 900).expect("room"));
    }
    // A 502 refunds whatever the steps said.
    ctx.finish(502);
    assert!(ctx.record.is_none());
    assert!(admit(&lim, &limits, 1000).is_some());
    assert_eq!(
        metrics
            .request_duration
            .get(crate::metrics::labels::Duration { route: "direct", endpoint: "chat", stream: "false" })
            .get_sample_count(),
        1
    );
    // A relayed body takes the record, filled and (for a stream) detached.
    let mut ctx = RequestCtx::new(HeaderValue::from_static("req-2"), Some(record(&metrics)), Instant::now());
    ctx.attempts = 2;
    let handed = ctx.hand_over(200, true, Some(Duration::from_millis(5))).expect("a record");
    assert!(ctx.record.is_none());
    assert_eq!((handed.status, handed.attempts, handed.stream), (200, 2, true));
    assert_eq!(handed.ttft, Some(Duration::from_millis(5)));
    assert_eq!(handed.token_id.as_ref().map(|v| v.as_bytes()), Some(&b"tok-1"[..]));
}
