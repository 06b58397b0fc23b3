//! Headroom-aware routing across a fleet: two replicas sharing a real Redis, one provider with
//! two keys on a mock that counts its own quota down in rate-limit headers. With headroom, no
//! request reaches the mock past a key's quota (0 upstream 429s: the replicas rest each key when
//! its headers say 0 left, whichever replica read them); without, the quota is found by 429s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;

/// Requests per key in the mock's window (60 s: no refill during the test).
const QUOTA: u64 = 5;
/// Requests sent, alternating between the replicas: more than both keys' quota.
const REQUESTS: usize = 16;

const MOCK: &str = r#"
[keys.sk-hr-k1]
quota = 5
quota_window = "60s"
[keys.sk-hr-k2]
quota = 5
quota_window = "60s"
"#;

/// How the replicas of a run know what the mock's headers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Headroom on, shared through Redis.
    Shared,
    /// Headroom on, no Redis: each replica knows only the answers it got itself.
    Local,
    /// Headroom off (`[resilience] headroom = false`): as tier1 was before it.
    Off,
}

fn replica(redis: &str, mock: &MockUpstream, mode: Mode) -> String {
    let url = mock.url();
    let headroom = mode != Mode::Off;
    let redis = if mode == Mode::Local {
        String::new()
    } else {
        format!(
            "[redis]\nurl = \"{redis}\"\nkey_prefix = \"t1headroom\"\nsync_interval = \"10ms\"\ntimeout = \"300ms\"\n"
        )
    };
    format!(
        r#"
{redis}
[resilience]
headroom = {headroom}

[providers.a]
kind = "openai"
base_url = "{url}"
[[providers.a.keys]]
name = "k1"
secret = "sk-hr-k1"
[[providers.a.keys]]
name = "k2"
secret = "sk-hr-k2"
"#
    )
}

async fn state(t: &Tier1) -> serde_json::Value {
    get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()
}

/// Requests left per key as this replica knows it.
async fn left(t: &Tier1) -> Vec<Option<u64>> {
    let s = state(t).await;
    let keys = s["providers"][0]["keys"].as_array().unwrap().clone();
    keys.iter().map(|k| k["headroom"]["requests"]["remaining"].as_u64()).collect()
}

/// What a run of [`REQUESTS`] gives: the client's statuses, the mock's 429s, one of tier1's own
/// 429s (if any) and the preemptive skips counted by the fleet.
struct Run {
    ok: usize,
    limited: usize,
    upstream_429s: u64,
    retry_after: Option<u64>,
    skips: f64,
}

async fn run(mode: Mode) -> Run {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::from_toml(MOCK).unwrap()).await.unwrap();
    let fleet = [
        Tier1::start(&replica(&redis.url(), &mock, mode)).await,
        Tier1::start(&replica(&redis.url(), &mock, mode)).await,
    ];
    for t in fleet.iter().filter(|_| mode != Mode::Local) {
        let ok = wait_until(Duration::from_secs(5), || async {
            state(t).await["fleet"]["replicas"].as_u64() == Some(2)
        })
        .await;
        assert!(ok, "a replica never saw the fleet of 2");
    }
    let (mut ok, mut limited, mut retry_after) = (0, 0, None);
    for i in 0..REQUESTS {
        let (here, there) = (&fleet[i % 2], &fleet[(i + 1) % 2]);
        let a = post(&here.url("/v1/chat/completions"), &[], &chat("a/m")).await;
        match a.status.as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                retry_after = a.header("retry-after").and_then(|v| v.parse().ok());
            }
            other => panic!("request {i}: status {other}: {}", a.text()),
        }
        if mode == Mode::Shared {
            // The next request goes to the other replica: it has seen this answer's headers by
            // then (through Redis), as a replica behind a balancer would a sync interval later.
            let mine = left(here).await;
            let shared = wait_until(Duration::from_secs(5), || async { left(there).await == mine }).await;
            assert!(shared, "request {i}: {mine:?} never reached the other replica");
        }
    }
    let served = mock.stats.snapshot().requests;
    let mut skips = 0.0;
    for t in &fleet {
        let text = get(&t.url("/metrics")).await.text();
        skips +=
            metric(&text, r#"tier1_preemptive_skips_total{provider="a",reason="requests"}"#).unwrap_or(0.0);
    }
    Run { ok, limited, upstream_429s: served.saturating_sub(2 * QUOTA), retry_after, skips }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_headroom_send_no_request_past_a_keys_quota() {
    let with = run(Mode::Shared).await;
    assert_eq!((with.ok, with.limited), (10, REQUESTS - 10), "both keys' quota served, then 429");
    assert_eq!(with.upstream_429s, 0, "no request reached the mock past a key's quota");
    // tier1's own 429 says when the first key refills (the mock's 60 s window).
    let ra = with.retry_after.expect("tier1's 429 has a Retry-After");
    assert!((50..=61).contains(&ra), "Retry-After {ra}");
    assert!(with.skips >= 2.0, "preemptive skips counted: {}", with.skips);

    // The same traffic with headroom off (as before it existed): the quota is found by 429s.
    let without = run(Mode::Off).await;
    assert_eq!((without.ok, without.limited), (10, REQUESTS - 10));
    assert!(without.upstream_429s > 0, "headroom off sent nothing past the quota?");
    assert_eq!(without.skips, 0.0);
    // Headroom without the fleet's: a replica that did not read a key's last answer sends to it.
    let local = run(Mode::Local).await;
    assert_eq!((local.ok, local.limited), (10, REQUESTS - 10));
    assert!(local.upstream_429s > 0, "each replica sees only its own answers' headers");
    eprintln!(
        "upstream 429s: {} shared, {} per replica only, {} without headroom",
        with.upstream_429s, local.upstream_429s, without.upstream_429s
    );
}

#[tokio::test]
async fn the_mock_counts_its_quota_down_in_both_header_formats() {
    let mock = MockUpstream::start(MockConfig::from_toml(MOCK).unwrap()).await.unwrap();
    let openai = |n: usize| {
        let url = mock.url();
        async move {
            let mut last = None;
            for _ in 0..n {
                last = Some(
                    post(
                        &format!("{url}/v1/chat/completions"),
                        &[("authorization", "Bearer sk-hr-k1")],
                        &chat("m"),
                    )
                    .await,
                );
            }
            last.unwrap()
        }
    };
    let a = openai(1).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("4"));
    assert!(a.header("x-ratelimit-reset-requests").unwrap().ends_with("ms"));
    let a = openai(4).await;
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    let a = openai(1).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    let ra: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");
    // Anthropic's format on its endpoint (the other key: its own quota).
    let body = r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&format!("{}/v1/messages", mock.url()), &[("x-api-key", "sk-hr-k2")], body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("anthropic-ratelimit-requests-remaining"), Some("4"));
    let reset = a.header("anthropic-ratelimit-requests-reset").unwrap();
    assert!(humantime::parse_rfc3339_weak(reset).is_ok(), "{reset}");
}
