//! The local rate-limit decision (`ratelimit::Limiter::admit`, no Redis) for one request against
//! a couple of limits: a global request and token window, and a per-user header window with a
//! concurrency cap (the front's `x-relay-token-id`). Also the refusal path and the sliding
//! window arithmetic alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use tier1::testing::config::{Format, parse};
use tier1::testing::ratelimit::window::{Window, position, wait_ms};
use tier1::testing::ratelimit::{Facts, Fleet, Limiter, Limits, Spend, estimate_tokens};

fn limits(text: &str) -> Limits {
    let c = parse(text, Format::Toml, &HashMap::<String, String>::new()).expect("bench limits are valid");
    Limits::new(&c.limits)
}

/// Two limits a request passes (generous, so the counters never refuse during a run).
const ADMITTED: &str = "\
[[limits]]\nname = \"global\"\nrequests = 1000000000000\ntokens = 1000000000000000\nper = \"60s\"\n\n\
[[limits]]\nname = \"per-user\"\nscope = \"header:x-relay-token-id\"\nrequests = 1000000000000\nper = \"60s\"\n\
max_inflight = 1000\nmodels = [\"gpt-*\", \"claude-*\"]\n";

/// A limit already spent: every request is refused.
const REFUSED: &str =
    "[[limits]]\nname = \"tiny\"\nscope = \"header:x-relay-token-id\"\nrequests = 1\nper = \"1h\"\n";

fn admit(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("x-relay-token-id", "user-7f3a9c".parse().unwrap());
    let tokens = estimate_tokens(1_800, Some(1024));
    let facts = Facts {
        route: "smart",
        model: "gpt-4o",
        api_key: Some(0),
        headers: &headers,
        tokens,
        micro_usd: 0.0,
    };
    let mut group = c.benchmark_group("ratelimit");

    let admitted = limits(ADMITTED);
    let limiter = Arc::new(Limiter::new(Arc::new(Fleet::standalone())));
    group.bench_function("admit_2_limits", |b| {
        b.iter(|| {
            let mut ticket = limiter.admit(black_box(&admitted), black_box(&facts), false).unwrap();
            ticket.settle(Some(Spend { tokens: 900, micro_usd: 0.0 }));
        });
    });
    group.bench_function("admit_2_limits_no_settle", |b| {
        b.iter(|| limiter.admit(black_box(&admitted), black_box(&facts), false).unwrap());
    });

    let refused = limits(REFUSED);
    let limiter = Arc::new(Limiter::new(Arc::new(Fleet::standalone())));
    let _first = limiter.admit(&refused, &facts, false).unwrap();
    assert!(limiter.admit(&refused, &facts, false).is_err());
    group.bench_function("refuse_over_limit", |b| {
        b.iter(|| limiter.admit(black_box(&refused), black_box(&facts), false).unwrap_err());
    });

    let none = Limits::default();
    group.bench_function("no_limits", |b| {
        b.iter(|| limiter.admit(black_box(&none), black_box(&facts), false).unwrap());
    });

    group.bench_function("window_arithmetic", |b| {
        let w = Window { index: 28_000_000, curr: 40.0, prev: 100.0 };
        b.iter(|| {
            let (index, frac) = position(black_box(1_700_000_012_345), 60_000);
            let mut w = w;
            w.roll(index);
            wait_ms(&w, frac, 60_000, 90.0, 1.0)
        });
    });
    group.finish();
}

criterion_group!(benches, admit);
criterion_main!(benches);
