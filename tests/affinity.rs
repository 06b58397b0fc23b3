//! Prompt-cache affinity over real sockets, with no shared state between replicas: three tier1
//! instances agree on the key of 1,000 sessions; a resting key moves only its own sessions; a
//! hot session spills over to its next choices within the load bound. The mock records the
//! bearer token of every call, so each test asserts which key served which session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use http::StatusCode;

const KEYS: usize = 4;

/// Provider `up` with four keys on `mock`; route `sticky` with `affinity`.
fn cfg(mock: &MockUpstream, affinity: &str) -> String {
    let keys: String = (0..KEYS)
        .map(|k| format!("[[providers.up.keys]]\nname = \"k{k}\"\nsecret = \"sk-affinity-{k}\"\n"))
        .collect();
    format!(
        r#"
[providers.up]
kind = "openai"
base_url = "{url}"
request_timeout = "5s"
{keys}
[[routes]]
name = "sticky"
affinity = {affinity}
targets = [{{ provider = "up", model = "m" }}]
"#,
        url = mock.url()
    )
}

/// A chat request of session `s`; the session is in the body too, for the mock's record.
async fn ask(t: &Tier1, s: &str) -> Answer {
    let body = format!(r#"{{"model":"sticky","messages":[{{"role":"user","content":"{s}"}}]}}"#);
    post(&t.url("/v1/chat/completions"), &[("x-claude-code-session-id", s)], &body).await
}

/// Session → the keys (bearer tokens) that served it, from the mock's record.
fn served(mock: &MockUpstream) -> BTreeMap<String, Vec<String>> {
    let mut by_session: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in mock.stats.requests() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let session = body["messages"][0]["content"].as_str().unwrap().to_owned();
        let key = r.headers["authorization"].to_str().unwrap().trim_start_matches("Bearer ").to_owned();
        by_session.entry(session).or_default().push(key);
    }
    by_session
}

async fn metrics(t: &Tier1) -> String {
    get(&t.url("/metrics")).await.text()
}

/// Sessions 0..1000, one request each, one after the other.
async fn sessions(t: &Tier1) {
    for i in 0..1000 {
        let a = ask(t, &format!("session-{i}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
}

#[tokio::test]
async fn three_replicas_without_shared_state_send_each_of_1000_sessions_to_the_same_key() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let config = cfg(&mock, r#"{ session = "session" }"#);
    let replicas = [Tier1::start(&config).await, Tier1::start(&config).await, Tier1::start(&config).await];
    // Each replica takes the 1,000 sessions one after the other (no load to spill), the three
    // side by side.
    tokio::join!(sessions(&replicas[0]), sessions(&replicas[1]), sessions(&replicas[2]));
    let by_session = served(&mock);
    assert_eq!(by_session.len(), 1000);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for (session, keys) in &by_session {
        assert_eq!(keys.len(), 3, "{session}: {keys:?}");
        assert!(keys.iter().all(|k| *k == keys[0]), "{session} went to different keys: {keys:?}");
        *per_key.entry(keys[0].clone()).or_default() += 1;
    }
    // Spread over every key (1000 / 4 each, give or take).
    assert_eq!(per_key.len(), KEYS, "{per_key:?}");
    assert!(per_key.values().all(|&n| (150..=350).contains(&n)), "{per_key:?}");
    for t in &replicas {
        let text = metrics(t).await;
        assert!(!text.contains("tier1_affinity_moves_total{"), "a session moved with nothing resting");
    }
}

#[tokio::test]
async fn a_resting_key_moves_only_its_own_sessions() {
    // Replica `calm` sees four healthy keys; replica `rested` sees k1 answer 429 with a long
    // Retry-After, so k1 rests after its first 429.
    let healthy = MockUpstream::start(MockConfig::default()).await.unwrap();
    let limited = Behavior {
        status: Some(StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("60")),
        ..Behavior::default()
    };
    let throttled = MockUpstream::start(MockConfig::default().key("sk-affinity-1", limited)).await.unwrap();
    let affinity = r#"{ session = "header:x-claude-code-session-id" }"#;
    let calm = Tier1::start(&cfg(&healthy, affinity)).await;
    let rested = Tier1::start(&cfg(&throttled, affinity)).await;
    for i in 0..300 {
        let s = format!("s{i}");
        assert_eq!(ask(&calm, &s).await.status, StatusCode::OK);
        assert_eq!(ask(&rested, &s).await.status, StatusCode::OK);
    }
    let before = served(&healthy);
    let after = served(&throttled);
    let (mut kept, mut moved) = (0, 0);
    let mut moved_to = BTreeSet::new();
    for (session, keys) in &before {
        let first = &keys[0];
        // The key that answered on the rested replica (after a 429 on k1, if it met one).
        let answered = after[session].last().unwrap();
        if first == "sk-affinity-1" {
            assert_ne!(answered, "sk-affinity-1");
            moved_to.insert(answered.clone());
            moved += 1;
        } else {
            assert_eq!(answered, first, "{session} moved though its key did not rest");
            assert_eq!(after[session].len(), 1, "{session}: {:?}", after[session]);
            kept += 1;
        }
    }
    assert!(moved > 30 && kept > 150, "moved {moved}, kept {kept}");
    // Each moved session goes to its own next choice, so they spread over the other keys.
    assert!(moved_to.len() >= 2, "{moved_to:?}");
    // The first session to meet k1's 429 failed over within its request; every later one of
    // k1's sessions was moved before its attempt, counted as a move for a rest.
    let k1_calls = after.values().flatten().filter(|k| *k == "sk-affinity-1").count();
    assert_eq!(k1_calls, 1, "k1 was called again while it rested");
    let text = metrics(&rested).await;
    let moves = metric(&text, r#"tier1_affinity_moves_total{reason="resting",route="sticky"}"#);
    assert_eq!(moves, Some((moved - 1) as f64), "{text}");
}

#[tokio::test]
async fn a_hot_session_spills_over_within_the_load_bound() {
    let slow = Behavior { latency: Duration::from_millis(400), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let t = Tier1::start(&cfg(&mock, r#"{ session = "session", load_bound = 1.25 }"#)).await;
    // One session, 20 requests at once.
    const N: usize = 20;
    let url = t.url("/v1/chat/completions");
    let body = r#"{"model":"sticky","messages":[{"role":"user","content":"hot"}]}"#;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..N {
        let url = url.clone();
        all.spawn(async move { post(&url, &[("x-claude-code-session-id", "hot")], body).await.status });
    }
    while let Some(status) = all.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let keys = &served(&mock)["hot"];
    assert_eq!(keys.len(), N);
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        *per_key.entry(k).or_default() += 1;
    }
    // No key holds more than ceil(1.25 × 20 / 4) = 7 of them at once; the session's own key
    // fills to the bound, the spill reaches every other key in turn.
    let bound = (1.25 * N as f64 / KEYS as f64).ceil() as usize;
    assert!(per_key.values().all(|&n| n <= bound), "{per_key:?}");
    assert_eq!(per_key.len(), KEYS, "the spill reached every key: {per_key:?}");
    let (top, most) = per_key.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.to_string(), *n)).unwrap();
    assert_eq!(most, bound, "{per_key:?}");
    let text = metrics(&t).await;
    let spills = metric(&text, r#"tier1_affinity_moves_total{reason="over_load",route="sticky"}"#);
    assert_eq!(spills, Some((N - bound) as f64), "{text}");
    // Once the burst is over the session is back on its own key.
    assert_eq!(ask(&t, "hot").await.status, StatusCode::OK);
    assert_eq!(served(&mock)["hot"].last(), Some(&top));
}

#[tokio::test]
async fn cached_tokens_are_counted_beside_the_input_tokens_for_the_hit_ratio() {
    let answer = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_tokens_details":{"cached_tokens":80}}}"#;
    let up = MockUpstream::fixed(Fixed::json(answer)).await;
    let t = Tier1::start(&cfg(&up, r#"{ session = "session" }"#)).await;
    for s in ["a", "a", "b"] {
        assert_eq!(ask(&t, s).await.status, StatusCode::OK);
    }
    let m = metrics(&t).await;
    let cached = metric(&m, r#"tier1_cached_tokens_total{model="m",provider="up"}"#);
    let input = metric(&m, r#"tier1_tokens_total{direction="input",model="m",provider="up"}"#);
    assert_eq!((cached, input), (Some(240.0), Some(300.0)), "{m}");
}

/// Provider `up` with `keys` keys on `mock`; route `sticky` with the `extra` line (`affinity`).
fn cfg_keys(mock: &MockUpstream, keys: usize, extra: &str) -> String {
    let keys: String = (0..keys)
        .map(|k| format!("[[providers.up.keys]]\nname = \"k{k}\"\nsecret = \"sk-affinity-{k}\"\n"))
        .collect();
    format!(
        "[providers.up]\nkind = \"openai\"\nbase_url = \"{}\"\nrequest_timeout = \"5s\"\n{keys}\n\
         [[routes]]\nname = \"sticky\"\n{extra}\ntargets = [{{ provider = \"up\", model = \"m\" }}]\n",
        mock.url()
    )
}

/// `sessions` agent conversations of `turns` turns, taken in turns (every session's first turn,
/// then every second...), each turn resending the conversation so far plus a new user message.
/// Returns tier1's hit ratio: cached / input tokens, from its `/metrics`.
async fn conversations(t: &Tier1, sessions: usize, turns: usize) -> f64 {
    let system =
        serde_json::json!({"role": "system", "content": "You are a careful coding agent. Answer briefly."});
    let mut histories: Vec<Vec<serde_json::Value>> = vec![vec![system]; sessions];
    for turn in 0..turns {
        for (s, history) in histories.iter_mut().enumerate() {
            let ask =
                format!("Session {s}, turn {turn}: please look at file src/module_{s}_{turn}.rs and fix it.");
            history.push(serde_json::json!({"role": "user", "content": ask}));
            let body = serde_json::json!({"model": "sticky", "messages": history}).to_string();
            let a = post(&t.url("/v1/chat/completions"), &[("session_id", &format!("s{s}"))], &body).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            let v: serde_json::Value = serde_json::from_str(&a.text()).unwrap();
            history.push(v["choices"][0]["message"].clone());
        }
    }
    let m = metrics(t).await;
    let cached = metric(&m, r#"tier1_cached_tokens_total{model="m",provider="up"}"#).unwrap_or(0.0);
    let input = metric(&m, r#"tier1_tokens_total{direction="input",model="m",provider="up"}"#).unwrap();
    cached / input
}

#[tokio::test]
async fn affinity_keeps_the_prompt_cache_hit_ratio_of_a_single_key() {
    const SESSIONS: usize = 50;
    const TURNS: usize = 5;
    let cache = || MockConfig::with_default(Behavior { prompt_cache: true, ..Behavior::default() });
    let mut ratios = Vec::new();
    for (keys, extra) in
        [(1, ""), (KEYS, r#"affinity = { session = "session" }"#), (KEYS, r#"strategy = "priority""#)]
    {
        let mock = MockUpstream::start(cache()).await.unwrap();
        let t = Tier1::start(&cfg_keys(&mock, keys, extra)).await;
        ratios.push(conversations(&t, SESSIONS, TURNS).await);
    }
    let [single, sticky, spread] = ratios[..] else { unreachable!() };
    eprintln!("hit ratio: one key {single:.3}, 4 keys with affinity {sticky:.3}, 4 keys without {spread:.3}");
    // With affinity every session keeps its key: the hits of a single key.
    assert!(sticky > 0.95 * single, "with affinity {sticky:.3}, one key {single:.3}");
    // Without, a turn finds its conversation's cache only on the key that served the last turn.
    assert!(spread < 0.6 * single, "without affinity {spread:.3}, one key {single:.3}");
}
