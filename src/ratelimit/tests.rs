use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::watch;

use super::limits::scope_value;
use super::*;
use crate::config::{Format, parse};

/// 2026-01-01T00:00:00Z: a whole number of every window length the tests use, so window `n`
/// starts `n` windows after it.
const EPOCH: u64 = 1_767_225_600_000;

/// The limiter's clock in tests: reads [`EPOCH`] at the start and moves with tokio's paused time.
fn clock() -> WallClock {
    WallClock::tokio(EPOCH)
}

fn limits(text: &str) -> Limits {
    let c = parse(text, Format::Toml, &HashMap::<String, String>::new()).unwrap();
    Limits::new(&c.limits)
}

fn facts<'a>(headers: &'a HeaderMap, tokens: u64) -> Facts<'a> {
    Facts { route: "r", model: "m", api_key: None, headers, tokens, micro_usd: 0.0 }
}

fn standalone() -> Arc<Limiter> {
    Arc::new(Limiter::new(Arc::new(Fleet::standalone())).with_clock(clock()))
}

#[tokio::test(start_paused = true)]
async fn requests_per_window_per_header_value() {
    let l = limits(
        "[[limits]]\nname = \"u\"\nscope = \"header:x-relay-token-id\"\nrequests = 3\nper = \"60s\"\n",
    );
    let lim = standalone();
    let mut a = HeaderMap::new();
    a.insert("x-relay-token-id", "alice".parse().unwrap());
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(lim.admit(&l, &facts(&a, 0), false).unwrap());
    }
    let r = lim.admit(&l, &facts(&a, 0), false).unwrap_err();
    assert_eq!(&*r.limit, "u");
    assert!(r.retry_after >= Duration::from_secs(1));
    // Another user has their own window; a request without the header shares one bucket.
    let mut b = HeaderMap::new();
    b.insert("x-relay-token-id", "bob".parse().unwrap());
    assert!(lim.admit(&l, &facts(&b, 0), false).is_ok());
    let none = HeaderMap::new();
    for _ in 0..3 {
        assert!(lim.admit(&l, &facts(&none, 0), false).is_ok());
    }
    assert!(lim.admit(&l, &facts(&none, 0), false).is_err(), "missing header is never unlimited");
}

#[tokio::test(start_paused = true)]
async fn tokens_are_estimated_then_settled() {
    let l = limits("[[limits]]\nname = \"t\"\ntokens = 1000\nper = \"60s\"\n");
    let lim = standalone();
    let h = HeaderMap::new();
    let mut t = lim.admit(&l, &facts(&h, 900), false).unwrap();
    assert!(lim.admit(&l, &facts(&h, 200), false).is_err());
    // The answer used 100 tokens: 800 come back.
    t.settle(Some(Spend { tokens: 100, micro_usd: 0.0 }));
    assert!(lim.admit(&l, &facts(&h, 800), false).is_ok());
    assert!(lim.admit(&l, &facts(&h, 200), false).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_huge_max_tokens_saturates_the_estimate_and_is_refused() {
    assert_eq!(estimate_tokens(400, Some(10)), 110);
    // Near u64::MAX the sum overflowed (a panic in debug, a wrap to ~0 in release).
    assert_eq!(estimate_tokens(400, Some(u64::MAX - 10)), u64::MAX);
    assert_eq!(estimate_tokens(usize::MAX, Some(u64::MAX)), u64::MAX);
    let l = limits("[[limits]]\nname = \"t\"\ntokens = 1000\nper = \"60s\"\n");
    let lim = standalone();
    let h = HeaderMap::new();
    assert!(lim.admit(&l, &facts(&h, estimate_tokens(400, Some(u64::MAX - 10))), false).is_err());
    assert!(lim.admit(&l, &facts(&h, 900), false).is_ok(), "the refused estimate was not charged");
}

#[tokio::test(start_paused = true)]
async fn max_inflight_releases_on_drop_and_filters_apply() {
    let l = limits("[[limits]]\nname = \"c\"\nmax_inflight = 2\nmodels = [\"m*\"]\nroutes = [\"r\"]\n");
    let lim = standalone();
    let h = HeaderMap::new();
    let a = lim.admit(&l, &facts(&h, 0), false).unwrap();
    let _b = lim.admit(&l, &facts(&h, 0), false).unwrap();
    assert!(lim.admit(&l, &facts(&h, 0), false).is_err());
    drop(a);
    assert!(lim.admit(&l, &facts(&h, 0), false).is_ok());
    // Another route is not limited.
    let other = Facts { route: "x", model: "m", api_key: None, headers: &h, tokens: 0, micro_usd: 0.0 };
    for _ in 0..5 {
        assert!(lim.admit(&l, &other, false).is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn with_redis_down_each_replica_gets_its_share() {
    let l = limits("[[limits]]\nname = \"g\"\nrequests = 90\nper = \"60s\"\n");
    let fleet = Arc::new(Fleet::shared(false, Duration::from_millis(50)));
    fleet.replicas.store(3, Ordering::Release);
    let lim = Arc::new(Limiter::new(fleet.clone()).with_clock(clock()));
    let h = HeaderMap::new();
    let admitted = (0..100).filter(|_| lim.admit(&l, &facts(&h, 0), false).is_ok()).count();
    assert_eq!(admitted, 30);
    // Closed mode refuses at once, with the 503 marker.
    fleet.fail_closed.store(true, Ordering::Release);
    let r = lim.admit(&l, &facts(&h, 0), false).unwrap_err();
    assert!(r.unavailable);
}

#[tokio::test(start_paused = true)]
async fn fleet_totals_count_once_synced() {
    let l = limits("[[limits]]\nname = \"g\"\nrequests = 10\nper = \"60s\"\n");
    let fleet = Arc::new(Fleet::shared(false, Duration::from_millis(50)));
    let lim = Arc::new(Limiter::new(fleet.clone()).with_clock(clock()));
    let h = HeaderMap::new();
    fleet.up.store(true, Ordering::Release);
    // First sync: the key exists with nothing counted; then the fleet says 8 were used elsewhere.
    assert!(lim.admit(&l, &facts(&h, 0), false).is_ok());
    let now = lim.now_ms();
    let (items, inflight) = lim.take_batch(now);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].delta, 1.0);
    lim.apply_batch(&items, &[(9.0, 0.0)], &inflight, &[], now);
    // 9 in the fleet (our 1 included): one more fits, then none.
    assert!(lim.admit(&l, &facts(&h, 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&h, 0), false).is_err());
    // A failed sync sends the same delta again next time.
    let (items, _) = lim.take_batch(now);
    assert_eq!(items[0].delta, 1.0);
    lim.restore_batch();
    let (items, _) = lim.take_batch(now);
    assert_eq!(items[0].delta, 1.0);
}

#[tokio::test(start_paused = true)]
async fn provider_keys_have_their_own_quota() {
    let text =
        "[providers.p]\nkind = \"mock\"\n[[providers.p.keys]]\nname = \"k\"\nsecret = \"s-123\"\nrpm = 2\n";
    let l = limits(text);
    let lim = standalone();
    assert!(lim.key_open(&l, "p", "k", "m", Spend::ZERO));
    let _t1 = lim.charge_key(&l, "p", "k", "m", Spend::ZERO);
    let _t2 = lim.charge_key(&l, "p", "k", "m", Spend::ZERO);
    assert!(!lim.key_open(&l, "p", "k", "m", Spend::ZERO));
    assert!(lim.key_open(&l, "p", "other", "m", Spend::ZERO));
}

#[test]
fn odd_header_values_are_hashed() {
    assert_eq!(scope_value(Some(&"user-1".parse().unwrap())), "user-1");
    let long = "x".repeat(100);
    assert!(scope_value(Some(&long.parse().unwrap())).starts_with('h'));
    assert!(scope_value(Some(&"a b:c".parse().unwrap())).starts_with('h'));
    assert_eq!(scope_value(None), "_missing");
}

fn user(id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-relay-token-id", id.parse().unwrap());
    h
}

fn count(lim: &Limiter, name: &str) -> usize {
    lim.key_counts().into_iter().find(|(n, _)| &**n == name).map_or(0, |(_, n)| n)
}

#[tokio::test(start_paused = true)]
async fn idle_keys_expire_after_two_windows_without_redis() {
    let l = limits(
        "[[limits]]\nname = \"u\"\nscope = \"header:x-relay-token-id\"\nrequests = 5\ntokens = 1000\nper = \"60s\"\nmax_inflight = 3\n",
    );
    let lim = standalone();
    let now = lim.now_ms();
    for i in 0..200 {
        drop(lim.admit(&l, &facts(&user(&format!("id{i}")), 10), false).unwrap());
    }
    // One key per value (the tokens counter and the concurrency cell do not count twice).
    assert_eq!(count(&lim, "u"), 200);
    // Within two windows the counts still matter: kept.
    lim.sweep(now + 60_000);
    assert_eq!(count(&lim, "u"), 200);
    lim.sweep(now + 2 * 60_000 + 1_000);
    assert_eq!(count(&lim, "u"), 0);
    let counters = lim.counters.lock().unwrap();
    assert!(counters.map.is_empty() && counters.keys.is_empty() && counters.sync.is_empty());
    drop(counters);
    assert!(lim.inflight.lock().unwrap().map.is_empty(), "idle concurrency cells expire too");
}

#[tokio::test(start_paused = true)]
async fn past_max_keys_new_values_share_the_overflow_bucket() {
    let l = limits(
        "[[limits]]\nname = \"u\"\nscope = \"header:x-relay-token-id\"\nrequests = 2\nper = \"60s\"\nmax_keys = 2\n",
    );
    let lim = standalone();
    assert!(lim.admit(&l, &facts(&user("a"), 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&user("b"), 0), false).is_ok());
    // New values past the cap: one shared bucket, limited like any key (2 per window).
    assert!(lim.admit(&l, &facts(&user("c"), 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&user("d"), 0), false).is_ok());
    assert_eq!(&*lim.admit(&l, &facts(&user("e"), 0), false).unwrap_err().limit, "u");
    // Known values keep their own quota.
    assert!(lim.admit(&l, &facts(&user("a"), 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&user("a"), 0), false).is_err());
    assert!(lim.admit(&l, &facts(&user("b"), 0), false).is_ok());
    assert_eq!(count(&lim, "u"), 2, "the overflow bucket is not one of the keys");
    // Once the known ones expire, new values get their own buckets again.
    lim.sweep(lim.now_ms() + 3 * 60_000);
    assert!(lim.admit(&l, &facts(&user("e"), 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&user("e"), 0), false).is_ok());
    assert!(lim.admit(&l, &facts(&user("f"), 0), false).is_ok());
    assert_eq!(count(&lim, "u"), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrency_cells_are_capped_too() {
    let l = limits(
        "[[limits]]\nname = \"c\"\nscope = \"header:x-relay-token-id\"\nmax_inflight = 1\nmax_keys = 1\n",
    );
    let lim = standalone();
    let _a = lim.admit(&l, &facts(&user("a"), 0), false).unwrap();
    let _b = lim.admit(&l, &facts(&user("b"), 0), false).unwrap();
    assert!(lim.admit(&l, &facts(&user("c"), 0), false).is_err(), "b and c share the overflow cell");
    assert_eq!(count(&lim, "c"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_replica_syncs_nothing_and_a_batch_follows_the_traffic() {
    let l = limits(
        "[[limits]]\nname = \"u\"\nscope = \"header:x-relay-token-id\"\nrequests = 5\nper = \"60s\"\n",
    );
    let fleet = Arc::new(Fleet::shared(false, Duration::from_millis(50)));
    fleet.up.store(true, Ordering::Release);
    let lim = Arc::new(Limiter::new(fleet.clone()).with_clock(clock()));
    for i in 0..1000 {
        lim.admit(&l, &facts(&user(&format!("id{i}")), 0), false).unwrap();
    }
    let now = lim.now_ms();
    let (items, inflight) = lim.take_batch(now);
    assert_eq!(items.len(), 1000);
    lim.apply_batch(&items, &vec![(1.0, 0.0); items.len()], &inflight, &[], now);
    // Still fresh: refreshed (read only) while the fleet view would be used.
    let (items, _) = lim.take_batch(now + 100);
    assert!(items.len() == 1000 && items.iter().all(|i| i.delta == 0.0));
    lim.apply_batch(&items, &vec![(1.0, 0.0); items.len()], &[], &[], now + 100);
    // Past the freshness tail (5 × 50 ms): nothing to send, though the 1000 keys are kept.
    let later = now + 300;
    assert!(lim.take_batch(later).0.is_empty());
    assert!(lim.take_batch(later + 50).0.is_empty());
    assert_eq!(count(&lim, "u"), 1000);
    // One request: a batch of one.
    lim.admit(&l, &facts(&user("id7"), 0), false).unwrap();
    let (items, _) = lim.take_batch(lim.now_ms());
    assert_eq!(items.len(), 1);
    assert_eq!((&*items[0].id.key, items[0].delta), ("id7", 1.0));
    // A failed sync keeps the delta for the next one.
    lim.restore_batch();
    let (items, _) = lim.take_batch(lim.now_ms());
    assert_eq!(items[0].delta, 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_keeps_no_stale_deltas() {
    let l = limits("[[limits]]\nname = \"g\"\nrequests = 1000\nper = \"1s\"\n");
    let fleet = Arc::new(Fleet::shared(false, Duration::from_millis(50)));
    let lim = Arc::new(Limiter::new(fleet).with_clock(clock()));
    lim.admit(&l, &facts(&HeaderMap::new(), 0), false).unwrap();
    // Redis never answered: the delta is unsendable once its window is two behind, then dropped.
    lim.sweep(lim.now_ms() + 10_000);
    let counters = lim.counters.lock().unwrap();
    assert!(counters.map.is_empty() && counters.sync.is_empty());
}

#[test]
fn max_keys_defaults_and_must_be_positive() {
    let c =
        parse("[[limits]]\nname = \"u\"\nrequests = 1\n", Format::Toml, &HashMap::<String, String>::new())
            .unwrap();
    assert_eq!(c.limits[0].max_keys, 100_000);
    let e = parse(
        "[[limits]]\nname = \"u\"\nrequests = 1\nmax_keys = 0\n",
        Format::Toml,
        &HashMap::<String, String>::new(),
    );
    assert!(e.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_is_admitted_exactly_when_told_and_not_a_millisecond_before() {
    let l = limits("[[limits]]\nname = \"g\"\nrequests = 2\nper = \"10s\"\n");
    let lim = standalone();
    let h = HeaderMap::new();
    // Two requests halfway into window 0 fill it; the third waits for the window to end.
    tokio::time::advance(Duration::from_millis(5_000)).await;
    let _a = lim.admit(&l, &facts(&h, 0), false).unwrap();
    let _b = lim.admit(&l, &facts(&h, 0), false).unwrap();
    assert_eq!(lim.admit(&l, &facts(&h, 0), false).unwrap_err().retry_after, Duration::from_secs(5));
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(lim.admit(&l, &facts(&h, 0), false).is_err(), "1 ms before the boundary");
    // At the boundary window 0 is the previous one and still counts whole: room for one more
    // comes when its weight is down to a half, 5 s later.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(lim.now_ms(), EPOCH + 10_000);
    assert_eq!(lim.admit(&l, &facts(&h, 0), false).unwrap_err().retry_after, Duration::from_secs(5));
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(lim.admit(&l, &facts(&h, 0), false).is_err(), "1 ms early");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(lim.admit(&l, &facts(&h, 0), false).is_ok(), "exactly on time");
    assert!(lim.admit(&l, &facts(&h, 0), false).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_drops_idle_keys_two_windows_after_their_last_use() {
    let l = limits(
        "[[limits]]\nname = \"u\"\nscope = \"header:x-relay-token-id\"\nrequests = 5\nper = \"60s\"\n",
    );
    let lim = standalone();
    for i in 0..10 {
        lim.admit(&l, &facts(&user(&format!("id{i}")), 0), false).unwrap();
    }
    // id0 is used again a window later: it outlives the others by that window.
    tokio::time::sleep(Duration::from_millis(60_000)).await;
    lim.admit(&l, &facts(&user("id0"), 0), false).unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let sweeper = tokio::spawn(sweeper(lim.clone(), stop));
    // The sweeper runs every second on tokio's clock, and reads the limiter's: at 120 s the keys
    // have been idle for exactly two windows (kept), at 121 s for longer (dropped).
    tokio::time::sleep(Duration::from_millis(60_500)).await;
    assert_eq!(count(&lim, "u"), 10);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(count(&lim, "u"), 1);
    tokio::time::sleep(Duration::from_millis(60_000)).await;
    assert_eq!(count(&lim, "u"), 0);
    stop_tx.send(true).unwrap();
    sweeper.await.unwrap();
}

mod budgets;
