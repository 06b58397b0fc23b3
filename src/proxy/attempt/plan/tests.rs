use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::config::Then;
use crate::config::{Format, parse};
use crate::resilience::{Registry, RetryPolicy};
use crate::routing::affinity::Affine;
use crate::snapshot::Live;

/// Provider `a` (two keys, weights 1 and 3), `b` (one key), `c` (no keys).
const CONFIG: &str = r#"
[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[providers.a.keys]]
name = "light"
secret = "env:K1"
[[providers.a.keys]]
name = "heavy"
secret = "env:K2"
weight = 3

[providers.b]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[providers.b.keys]]
name = "only"
secret = "env:K3"

[providers.c]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
"#;

fn live() -> Live {
    let env: HashMap<String, String> =
        [("K1", "sk-1"), ("K2", "sk-2"), ("K3", "sk-3")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
    let config = parse(CONFIG, Format::Toml, &env).expect("a valid config");
    Live::build(&config, &Registry::default(), &crate::upstream::Pools::default()).expect("a snapshot")
}

/// Two tries per target, and every retryable class retried on the same target first.
const POLICY: RetryPolicy = RetryPolicy {
    attempts: 2,
    backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(2),
    on_timeout: Then::Retry,
    on_connect: Then::Retry,
    on_server: Then::Retry,
};

/// One candidate per provider name, in order, each with [`POLICY`].
fn cands<'a>(live: &'a Live, names: &[&str]) -> Vec<Candidate<'a>> {
    names
        .iter()
        .map(|n| {
            let provider = live.providers.iter().find(|p| &*p.name == *n).expect("a configured provider");
            Candidate {
                provider,
                model: "m",
                target: provider.target_state("m", 0),
                policy: POLICY,
                model_label: "m",
                costs: (0.0, 0.0),
                deployment: "m",
                context_window: None,
                first_token: None,
                affinity: None,
            }
        })
        .collect()
}

fn open(_: &Candidate<'_>, _: &Key) -> bool {
    true
}

fn fail(class: Class, retry_after: Option<Duration>) -> Failure {
    Failure { class, status: None, retry_after, key_wide: false }
}

fn start(step: Step) -> (usize, Option<usize>) {
    match step {
        Step::Start { cand, key } => (cand, key),
        other => panic!("expected a start, got {other:?}"),
    }
}

#[test]
fn each_target_gets_its_tries_with_a_backoff_between_then_the_next_one_starts_at_once() {
    let live = live();
    let cands = cands(&live, &["c", "c"]);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    plan.failed(0, None, &fail(Class::Server, None), 0);
    match plan.next(0) {
        // Full jitter under the first retry's ceiling (the backoff itself).
        Step::Wait(d) => assert!(d <= POLICY.backoff, "{d:?}"),
        other => panic!("expected a backoff, got {other:?}"),
    }
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    plan.failed(0, None, &fail(Class::Timeout, None), 0);
    // Out of tries: the next target, with no wait.
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
    plan.failed(1, None, &fail(Class::Connect, None), 0);
    assert!(matches!(plan.next(0), Step::Wait(_)));
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
    plan.failed(1, None, &fail(Class::Connect, None), 0);
    assert_eq!(plan.next(0), Step::Done);
}

#[test]
fn a_retry_after_within_the_ceiling_is_waited_for_and_beyond_it_moves_on() {
    let live = live();
    let cands = cands(&live, &["c", "c"]);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(2), 0);
    plan.next(0);
    plan.failed(0, None, &fail(Class::Overloaded, Some(Duration::from_millis(700))), 0);
    assert_eq!(plan.next(0), Step::Wait(Duration::from_millis(700)));
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(2), 0);
    plan.next(0);
    plan.failed(0, None, &fail(Class::Server, Some(Duration::from_secs(30))), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
}

#[test]
fn a_refused_key_gives_way_to_another_of_the_same_provider_without_spending_a_try() {
    let live = live();
    let cands = cands(&live, &["a", "c"]);
    for class in [Class::RateLimited, Class::Auth] {
        let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(3), 0);
        let (cand, first) = start(plan.next(0));
        assert_eq!(cand, 0);
        plan.failed(0, first, &fail(class, None), 0);
        let (cand, second) = start(plan.next(0));
        assert_eq!(cand, 0, "{class:?}");
        assert!(second.is_some() && second != first, "{class:?}: {first:?} then {second:?}");
        // The rotation was free: the second key still has the target's second try after it.
        plan.failed(0, second, &fail(Class::Server, None), 0);
        assert!(matches!(plan.next(0), Step::Wait(_)), "{class:?}");
        let (cand, third) = start(plan.next(0));
        assert_eq!(cand, 0);
        assert_eq!(third, second, "{class:?}: the refused key is not tried again in this request");
        // Every key refused: the next provider.
        plan.failed(0, third, &fail(class, None), 0);
        assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "{class:?}");
    }
}

#[test]
fn the_only_key_is_waited_for_when_it_returns_within_the_backoff_ceiling() {
    let live = live();
    let cands = cands(&live, &["b", "c"]);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(4), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
    plan.failed(0, Some(0), &fail(Class::RateLimited, Some(Duration::from_millis(500))), 0);
    assert_eq!(plan.next(0), Step::Wait(Duration::from_millis(500)));
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
    // Beyond the ceiling, or without a Retry-After, or after an auth refusal: move on.
    for f in [
        fail(Class::RateLimited, Some(Duration::from_secs(3))),
        fail(Class::RateLimited, None),
        fail(Class::Auth, Some(Duration::from_millis(500))),
    ] {
        let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(4), 0);
        plan.next(0);
        plan.failed(0, Some(0), &f, 0);
        assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "{f:?}");
    }
}

#[test]
fn the_callers_fault_moves_on_without_a_retry() {
    let live = live();
    let cands = cands(&live, &["c", "c"]);
    for class in [Class::InvalidRequest, Class::NotFound] {
        let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(5), 0);
        plan.next(0);
        plan.failed(0, None, &fail(class, None), 0);
        assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "{class:?}");
    }
}

#[test]
fn blocked_targets_and_resting_keys_are_skipped_and_their_return_is_noted() {
    let live = live();
    let cands = cands(&live, &["a", "b", "c"]);
    let now = 1_000_000;
    cands[0].target.breaker.force_open(now, Duration::from_secs(30));
    cands[1].provider.keys[0].state.cooldown.cool_for(now, Duration::from_secs(7));
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(6), 0);
    assert_eq!(plan.next(now), Step::Start { cand: 2, key: None });
    let soonest = plan.soonest.expect("a time to come back");
    assert!(soonest > Duration::from_secs(6) && soonest <= Duration::from_secs(7), "{soonest:?}");
}

#[test]
fn keys_are_picked_at_random_by_weight_among_those_with_quota() {
    let live = live();
    let cands = cands(&live, &["a"]);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut heavy = 0;
    for _ in 0..4000 {
        let mut plan = Planner::new(&cands, &open, rng.fork(), 0);
        if start(plan.next(0)).1 == Some(1) {
            heavy += 1;
        }
    }
    // Weight 3 of 4: about 3000 of 4000.
    assert!((2800..=3200).contains(&heavy), "{heavy}");
    // A key whose own quota is full is not picked; none with quota: the target is left.
    let light_only = |_: &Candidate<'_>, k: &Key| &*k.name == "light";
    for _ in 0..50 {
        let mut plan = Planner::new(&cands, &light_only, rng.fork(), 0);
        assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
    }
    let none = |_: &Candidate<'_>, _: &Key| false;
    assert_eq!(Planner::new(&cands, &none, rng.fork(), 0).next(0), Step::Done);
}

#[test]
fn a_failure_on_a_candidate_left_behind_by_a_hedge_changes_nothing() {
    let live = live();
    let cands = cands(&live, &["c", "c"]);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(8), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    // The hedge timer fired: the next candidate starts beside the first.
    plan.advance();
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
    plan.failed(0, None, &fail(Class::Server, Some(Duration::from_secs(1))), 0);
    // No wait was planned for the loser's failure; the hedge's own target has its second try.
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
    plan.skipped(0, Some(Duration::from_secs(5)), false);
    assert_eq!(plan.soonest, Some(Duration::from_secs(5)));
    assert_eq!(plan.next(0), Step::Done);
}

/// The default policy: a timeout or a connect error says nothing will come from that target
/// soon, so the next target starts at once; a 5xx gets the target's own retry first.
#[test]
fn by_default_timeouts_and_connect_errors_move_on_at_once_and_a_5xx_retries_first() {
    let live = live();
    let mut cands = cands(&live, &["c", "c", "c", "c"]);
    for c in &mut cands {
        c.policy = RetryPolicy::default();
    }
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(3), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    plan.failed(0, None, &fail(Class::Timeout, None), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "a timeout was retried on its target");
    plan.failed(1, None, &fail(Class::Connect, None), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 2, key: None }, "a connect error was retried on its target");
    plan.failed(2, None, &fail(Class::Server, None), 0);
    assert!(matches!(plan.next(0), Step::Wait(_)), "a 5xx moved on without its retry");
    assert_eq!(plan.next(0), Step::Start { cand: 2, key: None });
    // `on_server = "next"` moves on from a 5xx too.
    cands[3].policy.on_server = Then::Next;
    let mut plan = Planner::new(&cands[3..], &open, fastrand::Rng::with_seed(4), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    plan.failed(0, None, &fail(Class::Overloaded, None), 0);
    assert_eq!(plan.next(0), Step::Done);
}

#[test]
fn a_context_window_refusal_moves_on_at_once_and_a_small_window_is_skipped_up_front() {
    let live = live();
    let three = cands(&live, &["c", "c", "c"]);
    let mut plan = Planner::new(&three, &open, fastrand::Rng::with_seed(7), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None });
    plan.failed(0, None, &fail(Class::ContextLength, None), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "retried a target that refused the length");
    // A request estimated above a target's window never goes to it.
    let mut small = cands(&live, &["c", "c"]);
    small[0].context_window = Some(100);
    let mut plan = Planner::new(&small, &open, fastrand::Rng::with_seed(7), 101);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None });
    assert_eq!(plan.outgrown, [0]);
    let mut plan = Planner::new(&small, &open, fastrand::Rng::with_seed(7), 100);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: None }, "a request that fits was skipped");
}

#[test]
fn a_models_429_burns_the_key_for_that_model_only_and_a_refusal_for_all() {
    let live = live();
    let mut two = cands(&live, &["b", "b"]);
    two[1].model = "other";
    two[1].target = two[1].provider.target_state("other", 0);
    // b's only key: rate limited on m (beyond the ceiling), it still serves `other`.
    let mut plan = Planner::new(&two, &open, fastrand::Rng::with_seed(8), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
    plan.failed(0, Some(0), &fail(Class::RateLimited, Some(Duration::from_secs(60))), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: Some(0) }, "a model's 429 burned the key");
    // Out of quota (the whole key), or refused: not for `other` either.
    for f in [Failure { key_wide: true, ..fail(Class::RateLimited, None) }, fail(Class::Auth, None)] {
        let mut plan = Planner::new(&two, &open, fastrand::Rng::with_seed(8), 0);
        assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
        plan.failed(0, Some(0), &f, 0);
        assert_eq!(plan.next(0), Step::Done, "{f:?}");
    }
}

const SEC: u64 = 1_000_000_000;

/// What a provider's headers said of `key` of provider `p`: requests and tokens left, each of
/// 100, refilling at 10 s on the gates' clock.
fn said(live: &Live, p: &str, key: &str, requests: Option<u64>, tokens: Option<u64>) {
    let p = live.providers.iter().find(|x| &*x.name == p).unwrap();
    let k = p.keys.iter().find(|k| &*k.name == key).unwrap();
    let w = |r: Option<u64>| r.map(|remaining| Window { remaining, limit: Some(100), reset: 10 * SEC });
    assert!(k.state.headroom.merge(1, w(requests), w(tokens)));
}

use crate::resilience::Skip;
use crate::resilience::headroom::Window;

#[test]
fn a_key_with_nothing_left_rests_before_its_429_until_the_reset() {
    let live = live();
    let cands = cands(&live, &["b", "c"]);
    said(&live, "b", "only", Some(0), None);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(11), 0);
    // Skipped without an attempt: the next provider, and the reset noted for the client.
    assert_eq!(plan.next(SEC), Step::Start { cand: 1, key: None });
    assert_eq!(plan.soonest, Some(Duration::from_secs(9)));
    assert!(plan.resting);
    assert_eq!(plan.preempted, [(cands[0].provider.index, 0, Skip::Requests)]);
    // No tokens left skips as well.
    said(&live, "b", "only", Some(5), Some(0));
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(11), 0);
    assert_eq!(plan.next(SEC), Step::Start { cand: 1, key: None });
    assert_eq!(plan.preempted, [(cands[0].provider.index, 0, Skip::Tokens)]);
}

#[test]
fn a_request_larger_than_what_is_left_skips_the_key() {
    let live = live();
    let cands = cands(&live, &["a"]);
    said(&live, "a", "heavy", Some(50), Some(40));
    for _ in 0..20 {
        let mut plan = Planner::new(&cands, &open, fastrand::Rng::new(), 41);
        assert_eq!(plan.next(SEC), Step::Start { cand: 0, key: Some(0) }, "heavy has 40 tokens left");
        assert_eq!(plan.preempted, [(cands[0].provider.index, 1, Skip::Estimate)]);
    }
    // Both keys too small: nothing to try, and the client told when the first one refills.
    said(&live, "a", "light", None, Some(10));
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::new(), 41);
    assert_eq!(plan.next(SEC), Step::Done);
    assert_eq!(plan.soonest, Some(Duration::from_secs(9)));
    // A request that fits goes through.
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::new(), 10);
    assert!(matches!(plan.next(SEC), Step::Start { cand: 0, key: Some(_) }));
}

#[test]
fn headroom_is_stale_past_its_reset() {
    let live = live();
    let cands = cands(&live, &["b"]);
    said(&live, "b", "only", Some(0), Some(0));
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(12), 1_000);
    assert_eq!(plan.next(9 * SEC), Step::Done);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(12), 1_000);
    assert_eq!(plan.next(10 * SEC), Step::Start { cand: 0, key: Some(0) }, "refilled");
    assert!(plan.preempted.is_empty());
}

#[test]
fn keys_are_weighted_by_their_headroom() {
    let live = live();
    let cands = cands(&live, &["a"]);
    let share = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let heavy = (0..4000)
            .filter(|_| {
                let mut plan = Planner::new(&cands, &open, rng.fork(), 0);
                plan.next(SEC) == Step::Start { cand: 0, key: Some(1) }
            })
            .count();
        heavy as f64 / 4000.0
    };
    // Nothing known: weights 1 and 3.
    let s = share(13);
    assert!((0.7..0.8).contains(&s), "{s}");
    // heavy (weight 3) has a tenth of its requests left, light (1) all of them: 0.3 against 1.
    said(&live, "a", "heavy", Some(10), None);
    said(&live, "a", "light", Some(100), None);
    let s = share(14);
    assert!((0.19..0.27).contains(&s), "{s}: 0.3 / 1.3");
}

/// `a`'s keys ranked heavy (1) first, then light (0), with room for `bound - 1` in flight.
fn affine(live: &Live, bound: u32) -> Vec<Candidate<'_>> {
    let mut cands = cands(live, &["a", "c"]);
    cands[0].affinity = Some(Affine { keys: vec![1, 0], bound });
    cands
}

#[test]
fn with_affinity_the_key_follows_the_sessions_ranking_and_fails_over_along_it() {
    let live = live();
    let cands = affine(&live, 10);
    for seed in 0..20 {
        // No randomness: every seed picks the session's top key.
        let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(seed), 0);
        assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(1) }, "seed {seed}");
    }
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(1) });
    // Refused: the next key of the ranking, without spending a try.
    plan.failed(0, Some(1), &fail(Class::RateLimited, None), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) });
    plan.failed(0, Some(0), &fail(Class::Server, None), 0);
    assert!(matches!(plan.next(0), Step::Wait(_)));
    assert_eq!(plan.next(0), Step::Start { cand: 0, key: Some(0) }, "the burned key came back");
    plan.failed(0, Some(0), &fail(Class::Auth, None), 0);
    assert_eq!(plan.next(0), Step::Start { cand: 1, key: None }, "every key refused: the next target");
}

#[test]
fn with_affinity_a_resting_key_or_one_at_its_bound_gives_way_to_the_next_in_the_ranking() {
    let live = live();
    let cands = affine(&live, 2);
    let now = 1_000_000;
    let heavy = &cands[0].provider.keys[1].state;
    let light = &cands[0].provider.keys[0].state;
    heavy.inflight.store(2, std::sync::atomic::Ordering::Relaxed);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(now), Step::Start { cand: 0, key: Some(0) }, "the top key is at its bound");
    // Both at their bound: the bound spills, it never refuses; the top key takes it.
    light.inflight.store(2, std::sync::atomic::Ordering::Relaxed);
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(now), Step::Start { cand: 0, key: Some(1) });
    heavy.inflight.store(0, std::sync::atomic::Ordering::Relaxed);
    heavy.cooldown.cool_for(now, Duration::from_secs(5));
    let mut plan = Planner::new(&cands, &open, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(now), Step::Start { cand: 0, key: Some(0) }, "the top key rests");
    // A key outside the ranking (not serving the session's target) is never picked.
    let mut only_light = affine(&live, 10);
    only_light[0].affinity = Some(Affine { keys: vec![0], bound: 10 });
    light.inflight.store(0, std::sync::atomic::Ordering::Relaxed);
    let light_refused = |_: &Candidate<'_>, k: &Key| &*k.name != "light";
    let mut plan = Planner::new(&only_light, &light_refused, fastrand::Rng::with_seed(1), 0);
    assert_eq!(plan.next(now), Step::Start { cand: 1, key: None });
}
