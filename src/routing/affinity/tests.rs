use std::collections::HashMap;

use super::*;
use crate::config::{Format, parse};

/// Provider `p` with keys k0..k3 (k3 weighs 3), provider `q` with no keys; a route over both.
const CONFIG: &str = r#"
[providers.p]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[providers.p.keys]]
name = "k0"
secret = "sk-0"
[[providers.p.keys]]
name = "k1"
secret = "sk-1"
[[providers.p.keys]]
name = "k2"
secret = "sk-2"
[[providers.p.keys]]
name = "k3"
secret = "sk-3"
weight = 3
[[providers.p.keys]]
name = "other-model"
secret = "sk-4"
models = ["o-*"]

[providers.q]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[routes]]
name = "r"
affinity = { session = "session" }
targets = [{ provider = "p", model = "m" }, { provider = "q", model = "m" }]
"#;

/// The route's affinity, built from the config text as a replica would at startup.
fn replica() -> RouteAffinity {
    let config = parse(CONFIG, Format::Toml, &HashMap::<String, String>::new()).expect("a valid config");
    let affinity = config.routes[0].affinity.clone().expect("affinity on");
    RouteAffinity::new(&config, 0, &affinity)
}

fn session(i: usize) -> u64 {
    hash(format!("session-{i}").as_bytes())
}

#[test]
fn the_choices_are_the_keys_that_serve_the_model_and_a_keyless_target() {
    let a = replica();
    let pairs: Vec<(usize, Option<usize>)> = a.choices.iter().map(|c| (c.target, c.key)).collect();
    assert_eq!(pairs, [(0, Some(0)), (0, Some(1)), (0, Some(2)), (0, Some(3)), (1, None)]);
    assert_eq!(a.config.load_bound, 1.25);
}

#[test]
fn the_hash_is_fixed_across_processes_and_parts_are_delimited() {
    // Pinned: a per-process random state (std's RandomState) would break this, and with it the
    // agreement between replicas.
    assert_eq!(hash(b"abc"), hash(b"abc"));
    assert_eq!(hash(b""), 0x0eef_7064_0671_4b9e, "{:#x}", hash(b""));
    let two = |a: &[u8], b: &[u8]| {
        let mut h = Hasher::default();
        h.write(a);
        h.write(b);
        h.finish()
    };
    assert_ne!(two(b"ab", b"c"), two(b"a", b"bc"));
    assert_ne!(hash(b"abcdefgh1"), hash(b"abcdefgh2"), "the tail past eight bytes counts");
}

#[test]
fn three_replicas_rank_1000_sessions_the_same_way() {
    let (a, b, c) = (replica(), replica(), replica());
    for i in 0..1000 {
        let s = session(i);
        let ra = rank(s, &a.choices);
        assert_eq!(ra, rank(s, &b.choices), "session {i}");
        assert_eq!(ra, rank(s, &c.choices), "session {i}");
        assert_eq!(ra.len(), a.choices.len());
    }
}

#[test]
fn sessions_spread_by_weight() {
    let a = replica();
    let mut firsts = [0usize; 5];
    for i in 0..7000 {
        firsts[rank(session(i), &a.choices)[0]] += 1;
    }
    // Weights 1, 1, 1, 3 and 1 of 7: 1000, 1000, 1000, 3000, 1000.
    for (i, &n) in firsts.iter().enumerate() {
        let want = if i == 3 { 3000 } else { 1000 };
        assert!(n.abs_diff(want) < want / 7, "choice {i}: {n} of 7000 ({firsts:?})");
    }
}

#[test]
fn a_resting_choice_moves_only_its_own_sessions_each_to_its_next_choice() {
    let a = replica();
    let (mut moved, mut kept) = (0, 0);
    for i in 0..1000 {
        let ranked = rank(session(i), &a.choices);
        let state = |c: usize| if c == 2 { State::Resting } else { State::Free };
        let (chosen, why) = pick(&ranked, state);
        if ranked[0] == 2 {
            assert_eq!(chosen, Some(ranked[1]), "session {i} went elsewhere than its second choice");
            assert_eq!(why, Some(Move::Resting));
            moved += 1;
        } else {
            assert_eq!(chosen, Some(ranked[0]), "session {i} moved though its choice did not rest");
            assert_eq!(why, None);
            kept += 1;
        }
    }
    assert!(moved > 100 && kept > 700, "moved {moved}, kept {kept}");
}

#[test]
fn the_load_bound_spills_and_never_refuses() {
    assert_eq!(bound(1.25, 0, 4), 1);
    assert_eq!(bound(1.25, 99, 4), 32);
    assert_eq!(bound(1.0, 7, 4), 2);
    assert_eq!(bound(2.0, 0, 0), 2, "no available choice counts as one");
    let ranked = [3, 1, 0];
    let over = |c: usize| if c == 3 { State::OverLoad } else { State::Free };
    assert_eq!(pick(&ranked, over), (Some(1), Some(Move::OverLoad)));
    let all_over = |_| State::OverLoad;
    assert_eq!(pick(&ranked, all_over), (Some(3), None), "every choice over its bound: the top one");
    let open_then_over = |c: usize| if c == 3 { State::Open } else { State::OverLoad };
    assert_eq!(pick(&ranked, open_then_over), (Some(1), Some(Move::Open)));
    let none = |_| State::Resting;
    assert_eq!(pick(&ranked, none), (None, None), "nothing to move to");
    assert_eq!(pick(&[], |_| State::Free), (None, None));
}

#[test]
fn targets_follow_their_best_choice_and_keys_their_ranking() {
    let a = replica();
    // A session whose top choice is the keyless target q.
    let s = (0..).map(session).find(|&s| rank(s, &a.choices)[0] == 4).expect("some session");
    let ranked = rank(s, &a.choices);
    let plan = order(&a.choices, &ranked, |_| State::Free, 2);
    assert_eq!(plan[0], (1, vec![]));
    let keys: Vec<usize> = ranked.iter().filter_map(|&i| a.choices[i].key).collect();
    assert_eq!(plan[1], (0, keys));
    // q open: p first, whatever the ranking.
    let plan = order(&a.choices, &ranked, |c| if c == 4 { State::Open } else { State::Free }, 2);
    assert_eq!(plan.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [0, 1]);
    // q over its bound while a key of p is free: p first too.
    let plan = order(&a.choices, &ranked, |c| if c == 4 { State::OverLoad } else { State::Free }, 2);
    assert_eq!(plan[0].0, 0);
}
