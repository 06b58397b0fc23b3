//! Resilience over real sockets against the fault-injecting mock: key rotation and cooldowns,
//! retries and fallbacks, breakers, strategies, stream failover, hedging, the retry budget and
//! concurrency limits. Every test counts upstream calls, not just status codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

/// Providers `a` (keys k1, k2) and `b` (no key) on the same mock; `body` adds routes.
fn cfg(mock: &MockUpstream, body: &str) -> String {
    let url = mock.url();
    format!(
        r#"
[resilience]
breaker = {{ failure_threshold = 3, min_requests = 1000, open_for = "1s" }}
default_retry = {{ attempts = 2, backoff = "5ms", max_backoff = "2s" }}

[providers.a]
kind = "openai"
base_url = "{url}"
request_timeout = "3s"
[[providers.a.keys]]
name = "k1"
secret = "sk-key-one-0001"
[[providers.a.keys]]
name = "k2"
secret = "sk-key-two-0002"

[providers.b]
kind = "openai"
base_url = "{url}"
request_timeout = "3s"
{body}
"#
    )
}

/// Bearer tokens of the calls the mock received, in order.
fn keys_used(mock: &MockUpstream) -> Vec<String> {
    mock.stats
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .map_or("", |v| v.to_str().unwrap())
                .trim_start_matches("Bearer ")
                .to_owned()
        })
        .collect()
}

async fn chat_ok(t: &Tier1, model: &str) -> Answer {
    post(&t.url("/v1/chat/completions"), &[], &chat(model)).await
}

// Paused time: the cooldown (tokio's clock) runs out when the test advances it, not after 2 s.
#[tokio::test(start_paused = true)]
async fn rate_limited_key_is_rotated_and_rests_for_retry_after() {
    let limited = Behavior {
        status: Some(StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("2")),
        fail_first: Some(1),
        ..Behavior::default()
    };
    let mock = MockUpstream::start(MockConfig::default().key("sk-key-one-0001", limited)).await.unwrap();
    let t = Tier1::start(&cfg(&mock, "")).await;
    // Until k1 has been hit once, requests go to either key; the one that meets k1's 429 is
    // answered by k2 in the same request.
    let mut rotated = None;
    for _ in 0..40 {
        let a = chat_ok(&t, "a/m").await;
        assert_eq!(a.status, 200);
        if a.header("x-tier1-attempts") == Some("2") {
            rotated = Some(a);
            break;
        }
    }
    let a = rotated.expect("k1 was never picked in 40 requests");
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("rate_limited"));
    let used = keys_used(&mock);
    assert_eq!(&used[used.len() - 2..], ["sk-key-one-0001", "sk-key-two-0002"]);
    let rested_from = used.len();
    // During the 2 s cooldown every request uses k2.
    for _ in 0..20 {
        assert_eq!(chat_ok(&t, "a/m").await.status, 200);
    }
    assert!(keys_used(&mock)[rested_from..].iter().all(|k| k == "sk-key-two-0002"));
    // After it, k1 is used again (and answers: it failed only once).
    tokio::time::advance(Duration::from_millis(2100)).await;
    let again = keys_used(&mock).len();
    for _ in 0..30 {
        assert_eq!(chat_ok(&t, "a/m").await.status, 200);
    }
    assert!(keys_used(&mock)[again..].iter().any(|k| k == "sk-key-one-0001"), "k1 never came back");
}

#[tokio::test]
async fn refused_key_is_rotated_and_the_401_never_reaches_the_client() {
    let mock = MockUpstream::start(MockConfig::default().key("sk-key-one-0001", fails(401))).await.unwrap();
    let t = Tier1::start(&cfg(&mock, "")).await;
    for _ in 0..20 {
        let a = chat_ok(&t, "a/m").await;
        assert_eq!(a.status, 200);
    }
    // k1 was refused at most once, then rested for on_auth_error (10 min).
    let k1 = keys_used(&mock).iter().filter(|k| *k == "sk-key-one-0001").count();
    assert!(k1 <= 1, "k1 used {k1} times after its 401");
}

#[tokio::test]
async fn server_errors_are_retried_then_fall_back_with_the_reason() {
    let mock = MockUpstream::start(MockConfig::default().model("broken", fails(500))).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 3, backoff = "1ms", max_backoff = "10ms" }
targets = [{ provider = "b", model = "broken" }, { provider = "a", model = "good" }]
"#;
    // Three failures in a row also open b's provider breaker: "good" lives on provider a.
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let a = chat_ok(&t, "r").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("server"));
    assert_eq!(a.header("x-tier1-attempts"), Some("4"));
    assert_eq!(a.header("x-tier1-model"), Some("good"));
    assert_eq!((mock.stats.calls_for("broken"), mock.stats.calls_for("good")), (3, 1));
}

#[tokio::test]
async fn moving_on_to_the_next_target_does_not_wait_out_the_backoff() {
    // The backoff is for trying the same target again: with its one try spent, the fallback
    // starts at once (before, a full-jitter delay of up to max_backoff came first).
    let mock = MockUpstream::start(MockConfig::default().model("broken", fails(503))).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 1, backoff = "60s", max_backoff = "60s" }
targets = [{ provider = "b", model = "broken" }, { provider = "a", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let started = tokio::time::Instant::now();
    let a = chat_ok(&t, "r").await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-attempts")), (200, Some("2")));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn caller_fault_is_not_retried_nor_fallen_back() {
    let mock = MockUpstream::start(MockConfig::default().model("strict", fails(400))).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
targets = [{ provider = "b", model = "strict" }, { provider = "b", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let a = chat_ok(&t, "r").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.header("x-tier1-attempts"), Some("1"));
    assert_eq!((mock.stats.calls_for("strict"), mock.stats.calls_for("good")), (1, 0));
}

// Paused time: `open_for` (tokio's clock) passes when the test advances it.
#[tokio::test(start_paused = true)]
async fn breaker_opens_skips_the_dead_target_then_probes_and_recovers() {
    // "flaky" fails its first 3 calls, then works.
    let flaky = Behavior { fail_first: Some(3), ..fails(503) };
    let mock = MockUpstream::start(MockConfig::default().model("flaky", flaky)).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 1 }
targets = [{ provider = "a", model = "flaky" }, { provider = "b", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    for _ in 0..3 {
        let a = chat_ok(&t, "r").await;
        assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("good")));
    }
    assert_eq!(mock.stats.calls_for("flaky"), 3);
    // Open: the dead target is not contacted at all.
    for _ in 0..5 {
        let a = chat_ok(&t, "r").await;
        assert_eq!(a.header("x-tier1-attempts"), Some("1"));
        assert_eq!(a.header("x-tier1-model"), Some("good"));
    }
    assert_eq!(mock.stats.calls_for("flaky"), 3);
    let state = get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json();
    let target = &state["routes"][0]["targets"][0];
    assert_eq!(target["breaker"], "open");
    assert!(target["breaker_open_ms"].as_u64().unwrap() > 0);
    // After open_for, one trial goes through; it succeeds and closes the breaker.
    tokio::time::advance(Duration::from_millis(1050)).await;
    let a = chat_ok(&t, "r").await;
    assert_eq!(a.header("x-tier1-model"), Some("flaky"));
    assert_eq!(mock.stats.calls_for("flaky"), 4);
    assert_eq!(
        get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["routes"][0]["targets"][0]["breaker"],
        "closed"
    );
}

/// Issue 19: a primary model down for 60 s, a request every 4 s. Before, its failures opened the
/// provider-wide breaker too, so the provider's other models were refused (503
/// `no_target_available`), and each failed trial doubled the opening, so the primary was used
/// again only at about 80 s. Now its own breaker opens, the other models keep answering, and
/// traffic is back on the primary within `open_for` and one request interval of its recovery.
#[tokio::test(start_paused = true)]
async fn a_models_outage_leaves_the_providers_other_models_alone_and_ends_on_time() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 1 }
targets = [{ provider = "a", model = "primary" }, { provider = "b", model = "fallback" }]
"#;
    let config = cfg(&mock, routes).replace(r#"open_for = "1s""#, r#"open_for = "10s""#);
    let t = Tier1::start(&config).await;
    let (interval, open_for, recovery) =
        (Duration::from_secs(4), Duration::from_secs(10), Duration::from_secs(60));
    mock.stats.set_down("primary", Some(503));
    let started = tokio::time::Instant::now();
    let mut back = None;
    while back.is_none() {
        let at = started.elapsed();
        if at >= recovery {
            mock.stats.set_down("primary", None);
        }
        let a = chat_ok(&t, "r").await;
        assert_eq!(a.status, 200, "at {at:?}");
        if a.header("x-tier1-model") == Some("primary") {
            back = Some(at);
        }
        // Once the primary's breaker is open (3 failures, by 8 s), another model of the same
        // provider answers at once throughout.
        if at > Duration::from_secs(8) {
            let other = chat_ok(&t, "a/other").await;
            assert_eq!(
                (other.status.as_u16(), other.header("x-tier1-attempts")),
                (200, Some("1")),
                "at {at:?}"
            );
        }
        assert!(at < Duration::from_secs(120), "the primary never came back");
        tokio::time::advance(interval).await;
    }
    let back = back.unwrap();
    assert!(back >= recovery, "answered by the primary during its outage at {back:?}");
    assert!(back <= recovery + open_for + interval, "primary back at {back:?}");
    // While open, the primary was tried only by trials: 3 failures to open it, then one trial per
    // opening (about 60 s / 10 s), and the one that succeeded.
    let calls = mock.stats.calls_for("primary");
    assert!(calls <= 3 + 7 + 1, "the primary was called {calls} times");
}

#[tokio::test]
async fn weighted_three_to_one_gives_seventy_five_percent() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let routes = r#"
[[routes]]
name = "w"
strategy = "weighted"
targets = [{ provider = "b", model = "heavy", weight = 3 }, { provider = "b", model = "light", weight = 1 }]
"#;
    let t = std::sync::Arc::new(Tier1::start(&cfg(&mock, routes)).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                assert_eq!(chat_ok(&t, "w").await.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let heavy = mock.stats.calls_for("heavy") as f64 / 2000.0;
    assert!((0.70..=0.80).contains(&heavy), "heavy share {heavy}");
    assert_eq!(mock.stats.calls_for("heavy") + mock.stats.calls_for("light"), 2000);
}

#[tokio::test]
async fn stream_failing_before_its_first_content_falls_back_invisibly() {
    // "cut" sends its role preamble, then drops the connection before any content.
    let cut = Behavior { abort_after: Some(0), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("cut", cut)).await.unwrap();
    let routes = r#"
[[routes]]
name = "s"
retry = { attempts = 1 }
targets = [{ provider = "b", model = "cut" }, { provider = "b", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("s")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("server"));
    let text = a.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("\"role\":\"assistant\"").count(), 1, "one preamble only: {text}");
    assert!(!text.contains("\"model\":\"cut\""), "bytes of the failed attempt leaked: {text}");
    assert_eq!((mock.stats.calls_for("cut"), mock.stats.calls_for("good")), (1, 1));
}

#[tokio::test]
async fn stream_failing_after_commit_ends_with_an_error_event_and_never_switches() {
    let cut =
        Behavior { abort_after: Some(2), chunk_interval: Duration::from_millis(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("cut", cut)).await.unwrap();
    let routes = r#"
[[routes]]
name = "s"
targets = [{ provider = "b", model = "cut" }, { provider = "b", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("s")).await;
    let text = a.text();
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(
        text.trim_end().ends_with(r#""type":"upstream_error"}}"#) || text.contains("upstream_stream_error"),
        "{text}"
    );
    assert_eq!((mock.stats.calls_for("cut"), mock.stats.calls_for("good")), (1, 0));
}

#[tokio::test]
async fn first_byte_timeout_falls_back() {
    let slow = Behavior { ttft: Duration::from_secs(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let routes = r#"
[[routes]]
name = "s"
retry = { attempts = 1 }
targets = [{ provider = "b", model = "slow" }, { provider = "a", model = "good" }]
"#;
    let toml = cfg(&mock, routes).replace(
        "[providers.b]\nkind = \"openai\"",
        "[providers.b]\nkind = \"openai\"\nfirst_byte_timeout = \"200ms\"\nidle_timeout = \"200ms\"",
    );
    let t = Tier1::start(&toml).await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("s")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("timeout"));
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn hedge_returns_the_faster_target_and_cancels_the_slower() {
    let slow = Behavior { latency: Duration::from_secs(3), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let routes = r#"
[[routes]]
name = "h"
hedge_after = "100ms"
targets = [{ provider = "b", model = "slow" }, { provider = "a", model = "fast" }]
"#;
    let t = Tier1::start(&cfg(&mock, routes)).await;
    let started = tokio::time::Instant::now();
    let a = chat_ok(&t, "h").await;
    assert_eq!(a.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a.header("x-tier1-model"), Some("fast"));
    assert_eq!(a.header("x-tier1-attempts"), Some("2"));
    assert_eq!((mock.stats.calls_for("slow"), mock.stats.calls_for("fast")), (1, 1));
    // The slow attempt's connection is closed at once, long before its 3 s answer.
    mock.stats
        .wait_until(Duration::from_millis(500), |s| s.connections_closed >= 1)
        .await
        .unwrap_or_else(|s| panic!("slow attempt still open: {s:?}"));
}

#[tokio::test]
async fn retry_budget_caps_the_extra_load_when_everything_fails() {
    let mock = MockUpstream::start(MockConfig::with_default(fails(500))).await.unwrap();
    let routes = r#"
[[routes]]
name = "dead"
retry = { attempts = 3, backoff = "1ms", max_backoff = "1ms" }
targets = [{ provider = "b", model = "x" }, { provider = "b", model = "y" }]
"#;
    let toml = cfg(&mock, routes).replace("failure_threshold = 3", "failure_threshold = 100000").replace(
        "[resilience]",
        "[resilience]\nretry_budget = { ratio = 0.2, min_per_second = 0.1, window = \"10s\" }",
    );
    let t = Tier1::start(&toml).await;
    for _ in 0..50 {
        let a = chat_ok(&t, "dead").await;
        assert_eq!(a.status, 502);
    }
    // Without a budget: 50 × 6 = 300 calls. With it: 50 first tries + 20% + a floor of 1.
    let total = mock.stats.snapshot().requests;
    assert!((50..=61).contains(&total), "{total} upstream calls");
}

#[tokio::test]
async fn full_provider_moves_on_and_all_full_is_429_with_retry_after() {
    let slow = Behavior { latency: Duration::from_millis(800), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("x", slow)).await.unwrap();
    let routes = r#"
[[routes]]
name = "one"
targets = [{ provider = "b", model = "x" }]
[[routes]]
name = "two"
targets = [{ provider = "b", model = "x" }, { provider = "a", model = "y" }]
"#;
    let toml = cfg(&mock, routes)
        .replace("[providers.b]\nkind = \"openai\"", "[providers.b]\nkind = \"openai\"\nmax_inflight = 1");
    let t = std::sync::Arc::new(Tier1::start(&toml).await);
    let busy = {
        let t = t.clone();
        tokio::spawn(async move { chat_ok(&t, "one").await })
    };
    mock.stats.wait_until(Duration::from_secs(2), |s| s.requests == 1).await.unwrap();
    // b is full: a route with another target moves on at once...
    let a = chat_ok(&t, "two").await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("y")));
    // ...and a route with nowhere else to go answers 429 with Retry-After, without waiting (a
    // limit is not tier1 failing: a 5xx would rest the sidecar for every provider at the front).
    let a = chat_ok(&t, "one").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.code(), "rate_limited");
    assert_eq!(busy.await.unwrap().status, 200);
}

#[tokio::test]
async fn request_level_fallbacks_from_body_and_header() {
    let mock = MockUpstream::start(MockConfig::default().model("down", fails(503))).await.unwrap();
    // A high breaker threshold keeps provider b usable for "b/other" after "b/down" failed.
    let t = Tier1::start(&cfg(&mock, "").replace("failure_threshold = 3", "failure_threshold = 100")).await;
    let body = r#"{"model":"b/down","messages":[{"role":"user","content":"hi"}],"fallbacks":["a/backup"]}"#;
    let a = post(&t.url("/v1/chat/completions"), &[], body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-provider"), Some("a"));
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("overloaded"));
    // The fallbacks field is removed before forwarding.
    assert!(mock.stats.requests().iter().all(|r| !String::from_utf8_lossy(&r.body).contains("fallbacks")));
    let a =
        post(&t.url("/v1/chat/completions"), &[("x-tier1-fallbacks", "b/other, a/backup")], &chat("b/down"))
            .await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("other")));
    let body = r#"{"model":"b/down","messages":[],"fallbacks":["nowhere"]}"#;
    let a = post(&t.url("/v1/chat/completions"), &[], body).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (404, "model_not_found"));
}

#[tokio::test]
async fn all_failed_lists_every_attempt_without_secrets() {
    let mock = MockUpstream::start(MockConfig::with_default(fails(500))).await.unwrap();
    let t = Tier1::start(&cfg(&mock, "")).await;
    let a = chat_ok(&t, "a/m").await;
    assert_eq!(a.status, 502);
    let attempts = a.json()["error"]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    for at in &attempts {
        assert_eq!(at["provider"], "a");
        assert_eq!(at["classification"], "server");
        assert_eq!(at["status"], 500);
        assert!(matches!(at["key"].as_str(), Some("k1" | "k2")));
    }
    assert!(!a.text().contains("sk-key"));
}

#[tokio::test]
async fn admin_state_lists_keys_by_name_with_cooldowns() {
    let limited = Behavior {
        status: Some(StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("30")),
        ..Behavior::default()
    };
    let mock = MockUpstream::start(MockConfig::with_default(limited)).await.unwrap();
    let t = Tier1::start(&cfg(&mock, "")).await;
    let a = chat_ok(&t, "a/m").await;
    assert_eq!(a.status, 429);
    let state = get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await;
    assert_eq!(state.status, 200);
    let text = state.text();
    assert!(!text.contains("sk-key"), "{text}");
    let keys = state.json()["providers"][0]["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    // A 429 rests the model on the key (the key itself serves its other models on).
    for k in keys {
        assert_eq!(k["cooldown_ms"], 0, "{k}");
        let left = k["model_cooldowns_ms"]["m"].as_u64().unwrap();
        assert!((25_000..=30_000).contains(&left), "{k}");
    }
}

#[tokio::test]
async fn idle_gap_after_commit_ends_the_stream_with_a_timeout_event() {
    let gappy = Behavior { chunk_interval: Duration::from_secs(2), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("gappy", gappy)).await.unwrap();
    let toml = cfg(&mock, "").replace(
        "[providers.b]\nkind = \"openai\"",
        "[providers.b]\nkind = \"openai\"\nidle_timeout = \"300ms\"",
    );
    let t = Tier1::start(&toml).await;
    let started = tokio::time::Instant::now();
    // The first content chunk comes at once (ttft 0) and commits the stream; the gap to the
    // next one exceeds the idle timeout.
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("b/gappy")).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(text.contains("\"content\":\"Hello \""), "{text}");
    assert!(text.contains("upstream_timeout") && !text.contains("[DONE]"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(mock.stats.snapshot().requests, 1);
}

/// Each provider kind's real context-window refusal (issue 19: it was passed straight to the
/// client as the caller's fault, though a target with a larger window would have answered).
const CONTEXT_ERRORS: &[(&str, &str)] = &[
    (
        "openai",
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    ),
    (
        "azure",
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens, however you requested 9000 tokens. Please reduce your prompt; or completion length.","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#,
    ),
    (
        "anthropic",
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"},"request_id":"req_011CWAgPbMohjStFaYrkLZCm"}"#,
    ),
    (
        "gemini",
        r#"{"error":{"code":400,"message":"The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
    ),
];

/// `[providers.small]` of `kind` on `url`, and route `r`: small first (3 tries), then `a/good`.
fn small_then_good(kind: &str, url: &str, good: &MockUpstream, window: &str) -> String {
    let azure = if kind == "azure" { r#"api_version = "2024-10-21""# } else { "" };
    let routes = format!(
        r#"
[providers.small]
kind = "{kind}"
base_url = "{url}"
{azure}
[[providers.small.keys]]
name = "k"
secret = "sk-small-key-0001"

[[routes]]
name = "r"
retry = {{ attempts = 3, backoff = "1ms" }}
targets = [{{ provider = "small", model = "m"{window} }}, {{ provider = "a", model = "good" }}]
"#
    );
    cfg(good, &routes)
}

#[tokio::test]
async fn a_context_length_refusal_of_every_provider_kind_falls_back_at_once() {
    let good = MockUpstream::start(MockConfig::default()).await.unwrap();
    for (kind, body) in CONTEXT_ERRORS {
        let small = MockUpstream::fixed(Fixed { status: 400, ..Fixed::json(body) }).await;
        let t = Tier1::start(&small_then_good(kind, &small.url(), &good, "")).await;
        let before = good.stats.calls_for("good");
        let a = chat_ok(&t, "r").await;
        assert_eq!(a.status, 200, "{kind}: {}", a.text());
        assert_eq!(a.header("x-tier1-fallback-reason"), Some("context_length"), "{kind}");
        assert_eq!(a.header("x-tier1-model"), Some("good"), "{kind}");
        // No same-target retry: its window will not grow.
        assert_eq!(small.stats.snapshot().requests, 1, "{kind}");
        assert_eq!(good.stats.calls_for("good"), before + 1, "{kind}");
    }
}

#[tokio::test]
async fn when_no_target_takes_the_request_the_client_gets_the_providers_refusal() {
    let (_, body) = CONTEXT_ERRORS[0];
    let small = MockUpstream::fixed(Fixed { status: 400, ..Fixed::json(body) }).await;
    let good = MockUpstream::start(
        MockConfig::default()
            .model("good", Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() }),
    )
    .await
    .unwrap();
    // The fallback refuses too, as the caller's fault: its 400 is the answer, as before.
    let t = Tier1::start(&small_then_good("openai", &small.url(), &good, "")).await;
    assert_eq!(chat_ok(&t, "r").await.status, 400);
    // Both refuse for the window: the provider's own 400 reaches the client, never a 502.
    let other = MockUpstream::fixed(Fixed { status: 400, ..Fixed::json(body) }).await;
    let routes = format!(
        r#"
[providers.big]
kind = "openai"
base_url = "{}"
[[routes]]
name = "r"
targets = [{{ provider = "b", model = "m" }}, {{ provider = "big", model = "m" }}]
"#,
        other.url()
    );
    let t = Tier1::start(&cfg(&small, &routes)).await;
    let a = chat_ok(&t, "r").await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "context_length_exceeded");
    // One call each (small's first came from the tier1 above).
    assert_eq!((small.stats.snapshot().requests, other.stats.snapshot().requests), (2, 1));
}

#[tokio::test]
async fn a_target_whose_context_window_is_too_small_is_skipped_up_front() {
    let small = MockUpstream::start(MockConfig::default()).await.unwrap();
    let good = MockUpstream::start(MockConfig::default()).await.unwrap();
    // About 1,000 tokens of prompt (bytes / 4) against a window of 100.
    let long =
        format!(r#"{{"model":"r","messages":[{{"role":"user","content":"{}"}}]}}"#, "word ".repeat(800));
    let t = Tier1::start(&small_then_good("openai", &small.url(), &good, ", context_window = 100")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &long).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("good")));
    assert_eq!(small.stats.snapshot().requests, 0, "the small target was tried");
    // A short request still goes to the small target first.
    let a = chat_ok(&t, "r").await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("m")));
    // Longer than every window: 400, the caller's, naming the reason.
    let routes = r#"
[[routes]]
name = "r"
targets = [{ provider = "b", model = "m", context_window = 100 }]
"#;
    let t = Tier1::start(&cfg(&good, routes)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &long).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "context_length_exceeded");
}

/// Issue 19: a 429 on one model rested the whole key, so the key's other models were refused
/// too, though providers rate-limit per model.
#[tokio::test]
async fn a_429_on_one_model_leaves_the_keys_other_models_untouched() {
    let limited = Behavior {
        status: Some(StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("30")),
        ..Behavior::default()
    };
    let mock = MockUpstream::start(MockConfig::default().model("busy", limited)).await.unwrap();
    let routes = format!(
        r#"
[providers.one]
kind = "openai"
base_url = "{}"
[[providers.one.keys]]
name = "only"
secret = "sk-only-key-0001"
"#,
        mock.url()
    );
    let t = Tier1::start(&cfg(&mock, &routes)).await;
    assert_eq!(chat_ok(&t, "one/busy").await.status, 429);
    let a = chat_ok(&t, "one/calm").await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-attempts")), (200, Some("1")), "{}", a.text());
    assert_eq!(mock.stats.calls_for("calm"), 1);
    // The busy model rests on that key: not called again while it rests; the client is told
    // when to come back (429, never a 5xx).
    let a = chat_ok(&t, "one/busy").await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (429, "rate_limited"));
    assert!(a.header("retry-after").is_some());
    assert_eq!(mock.stats.calls_for("busy"), 1);
    let state = get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json();
    let key = state["providers"].as_array().unwrap().iter().find(|p| p["name"] == "one").unwrap()["keys"][0]
        .clone();
    assert_eq!(key["cooldown_ms"], 0, "{key}");
    assert!(key["model_cooldowns_ms"]["busy"].as_u64().unwrap() > 20_000, "{key}");
}

/// Sixty words, one stream chunk each.
fn sixty_words() -> String {
    (1..=60).map(|i| format!("word{i} ")).collect::<String>().trim_end().to_owned() + "."
}

/// The content of a client stream, its chunks' ids, and whether it ended with `[DONE]`.
fn stream_parts(text: &str) -> (String, Vec<String>, bool) {
    let (mut content, mut ids) = (String::new(), Vec::new());
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert!(v.get("error").is_none(), "an error event reached the client: {data}");
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    (content, ids, text.ends_with("data: [DONE]\n\n"))
}

/// A route `r`, `stream_resume = true`: `a/primary` (cut after 40 of its 60 chunks), then `extra`
/// targets; `providers` adds providers on the same mock.
fn resume_config(mock: &MockUpstream, providers: &str, extra: &str) -> String {
    let routes = format!(
        r#"
{providers}
[[routes]]
name = "r"
stream_resume = true
retry = {{ attempts = 1 }}
targets = [{{ provider = "a", model = "primary" }}, {extra}]
"#
    );
    cfg(mock, &routes)
}

fn resume_mock(extra: &[(&str, Behavior)]) -> MockConfig {
    let reply: std::sync::Arc<str> = sixty_words().into();
    let cut = Behavior { reply: reply.clone(), abort_after: Some(40), ..Behavior::default() };
    let mut config = MockConfig::default().model("primary", cut);
    for (model, b) in extra {
        config = config.model(model, Behavior { reply: reply.clone(), ..b.clone() });
    }
    config
}

/// Issue 19: a committed stream cut at 40 of 60 tokens ended with an in-band error; the answer
/// was lost. Continued on Anthropic from the partial text, the client gets the whole answer byte
/// for byte (the continuation's repeat of the join removed), one id, one `[DONE]`.
#[tokio::test]
async fn a_stream_cut_at_40_of_60_tokens_is_continued_on_anthropic_to_the_whole_answer() {
    let mock = MockUpstream::start(resume_mock(&[("claude", Behavior::default())])).await.unwrap();
    let anthropic = format!(
        "[providers.claude]\nkind = \"anthropic\"\nbase_url = \"{}\"\n[[providers.claude.keys]]\nname = \"c\"\nsecret = \"sk-ant-claude-0001\"",
        mock.url()
    );
    let t =
        Tier1::start(&resume_config(&mock, &anthropic, r#"{ provider = "claude", model = "claude" }"#)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    let (content, ids, done) = stream_parts(&text);
    assert_eq!(content, sixty_words(), "{text}");
    assert!(done, "no [DONE]: {text}");
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(ids.iter().all(|i| *i == ids[0]), "ids changed at the join: {ids:?}");
    let finish = text.split("\n\n").find(|e| e.contains(r#""finish_reason":"stop""#)).unwrap();
    assert!(finish.contains(r#""x_tier1":{"resumed":true}"#), "{finish}");
    // The continuation carried the partial answer as Anthropic's prefill, without its trailing
    // space (Anthropic refuses one).
    let sent = mock.stats.requests().into_iter().find(|r| r.path.ends_with("/v1/messages")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    let last = v["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "assistant");
    let prefill = last["content"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| last["content"][0]["text"].as_str().unwrap().to_owned());
    // (The cut lands at about word 40: bytes in flight when the mock resets are lost.)
    assert!(
        sixty_words().starts_with(&prefill) && prefill.len() < sixty_words().len() / 2 + 200,
        "{prefill}"
    );
    assert!(!prefill.ends_with(' ') && prefill.len() > 100, "{prefill}");
    assert_eq!((mock.stats.calls_for("primary"), mock.stats.calls_for("claude")), (1, 1));
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, r#"tier1_stream_resumes_total{outcome="resumed",route="r"}"#), Some(1.0));
    // Each leg's tokens are counted on its own target: the cut one (estimated from the partial
    // answer, as its usage chunk never came) and the continuation (as Anthropic reported).
    let output = |provider: &str| {
        m.lines()
            .filter(|l| l.starts_with("tier1_tokens_total{") && l.contains(r#"direction="output""#))
            .find(|l| l.contains(&format!("provider=\"{provider}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(output("a").is_some_and(|n| n > 10.0), "{m}");
    assert!(output("claude").is_some_and(|n| n > 0.0), "{m}");
}

/// The same through an OpenAI-compatible target marked `prefill = true`, after one that refuses
/// the prefill (a 400 the client never sees).
#[tokio::test]
async fn a_cut_stream_skips_a_prefill_refusing_target_and_continues_on_an_openai_compatible_one() {
    let refuses = Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() };
    let mock = MockUpstream::start(resume_mock(&[("refuses", refuses), ("compat", Behavior::default())]))
        .await
        .unwrap();
    let compat =
        format!("[providers.compat]\nkind = \"openai\"\nbase_url = \"{}\"\nprefill = true", mock.url());
    let routes = r#"{ provider = "compat", model = "refuses" }, { provider = "b", model = "plain" }, { provider = "compat", model = "compat" }"#;
    let t = Tier1::start(&resume_config(&mock, &compat, routes)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    let text = a.text();
    let (content, _, done) = stream_parts(&text);
    assert_eq!(content, sixty_words(), "{text}");
    assert!(done && !text.contains("invalid_request"), "{text}");
    // The refusing target was asked once; b (no prefill) never; compat continued.
    let calls = ["primary", "refuses", "plain", "compat"].map(|m| mock.stats.calls_for(m));
    assert_eq!(calls, [1, 1, 0, 1]);
}

#[tokio::test]
async fn a_cut_stream_with_nothing_to_continue_it_ends_with_the_in_band_error() {
    let mock = MockUpstream::start(resume_mock(&[])).await.unwrap();
    // b speaks OpenAI without `prefill = true`: it cannot continue a stream.
    let t = Tier1::start(&resume_config(&mock, "", r#"{ provider = "b", model = "plain" }"#)).await;
    let text = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await.text();
    assert!(!text.contains("[DONE]"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.contains("upstream_stream_error"), "{last}");
    assert_eq!(mock.stats.calls_for("plain"), 0);
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, r#"tier1_stream_resumes_total{outcome="failed",route="r"}"#), Some(1.0));
}

/// A stream that stalls past its idle timeout after committing is continued too.
#[tokio::test]
async fn a_stream_stalled_after_commit_is_continued_elsewhere() {
    let reply: std::sync::Arc<str> = sixty_words().into();
    let stalls =
        Behavior { reply: reply.clone(), chunk_interval: Duration::from_secs(5), ..Behavior::default() };
    let mock = MockUpstream::start(
        MockConfig::default()
            .model("primary", stalls)
            .model("compat", Behavior { reply, ..Behavior::default() }),
    )
    .await
    .unwrap();
    let compat =
        format!("[providers.compat]\nkind = \"openai\"\nbase_url = \"{}\"\nprefill = true", mock.url());
    let config = resume_config(&mock, &compat, r#"{ provider = "compat", model = "compat" }"#).replace(
        "request_timeout = \"3s\"\n[[providers.a.keys]]",
        "request_timeout = \"3s\"\nidle_timeout = \"200ms\"\n[[providers.a.keys]]",
    );
    assert!(config.contains("idle_timeout = \"200ms\""));
    let t = Tier1::start(&config).await;
    let started = tokio::time::Instant::now();
    let text = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await.text();
    let (content, _, done) = stream_parts(&text);
    assert_eq!(content, sixty_words(), "{text}");
    assert!(done);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// A raw HTTP/1.1 provider: answers the first request it reads with `{}` (keep-alive, so its
/// connection is pooled), then holds every later one `hold` and closes without a byte of answer.
/// Counts the requests it read.
async fn held_then_closed(hold: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One whole request: its head, then content-length bytes of body.
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                            if buf.len() >= end + 4 + len {
                                break end + 4 + len;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end);
                    if count.fetch_add(1, Ordering::SeqCst) == 0 {
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        sock.write_all(answer.as_bytes()).await.unwrap();
                        continue;
                    }
                    tokio::time::sleep(hold).await;
                    return;
                }
            });
        }
    });
    (url, requests)
}

/// Issue 19 item 7: a provider held a request 15 s and then closed the connection without an
/// answer; the pooled connection's "stale" resend gave it the same POST again, 4 upstream
/// requests for `attempts = 3` (a possible duplicate paid request). Now: one request per
/// attempt. Paused time: the 15 s pass at once. Fails before the fix (4 requests).
#[tokio::test(start_paused = true)]
async fn a_provider_that_held_a_request_and_closed_gets_it_once_per_attempt() {
    let (url, requests) = held_then_closed(Duration::from_secs(15)).await;
    let toml = format!(
        r#"
[providers.up]
kind = "openai"
base_url = "{url}"
request_timeout = "60s"
first_byte_timeout = "60s"

[[routes]]
name = "smart"
retry = {{ attempts = 3, backoff = "1ms", max_backoff = "1ms" }}
targets = [{{ provider = "up", model = "m" }}]
"#
    );
    let t = Tier1::start(&toml).await;
    // The first call answers, and leaves its connection in tier1's pool.
    assert_eq!(chat_ok(&t, "smart").await.status, 200);
    let a = chat_ok(&t, "smart").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.header("x-tier1-attempts"), Some("3"));
    let held = requests.load(std::sync::atomic::Ordering::SeqCst) - 1;
    assert_eq!(held, 3, "the held request was sent {held} times for 3 attempts");
}

/// Azure's content filter refusing the prompt: another provider's policy may take it.
#[tokio::test]
async fn a_content_filter_refusal_falls_back_to_the_next_target() {
    let body = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
    let good = MockUpstream::start(MockConfig::default()).await.unwrap();
    let azure = MockUpstream::fixed(Fixed { status: 400, ..Fixed::json(body) }).await;
    let t = Tier1::start(&small_then_good("azure", &azure.url(), &good, "")).await;
    let a = chat_ok(&t, "r").await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-fallback-reason")), (200, Some("content_filter")));
    assert_eq!((azure.stats.snapshot().requests, good.stats.calls_for("good")), (1, 1));
}

/// An in-stream error event after the commit is a break a continuation carries on.
#[tokio::test]
async fn a_stream_broken_by_an_in_stream_error_is_continued() {
    let words = sixty_words();
    let first: String = words.split_inclusive(' ').take(10).collect();
    let chunk = |delta: &str| {
        format!(
            "data: {{\"id\":\"p\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"primary\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let body = [
        chunk(r#"{"role":"assistant","content":""}"#),
        chunk(&serde_json::json!({ "content": first }).to_string()),
        "data: {\"error\":{\"message\":\"server had an error\",\"type\":\"server_error\"}}\n\n".to_owned(),
    ];
    let primary = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: body.iter().map(|c| bytes::Bytes::from(c.clone())).collect(),
        gap: Duration::from_millis(5),
    })
    .await;
    let mock = MockUpstream::start(resume_mock(&[("compat", Behavior::default())])).await.unwrap();
    let providers = format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\n[providers.compat]\nkind = \"openai\"\nbase_url = \"{}\"\nprefill = true",
        primary.url(),
        mock.url()
    );
    let config = resume_config(&mock, &providers, r#"{ provider = "compat", model = "compat" }"#)
        .replace(r#"{ provider = "a", model = "primary" }"#, r#"{ provider = "p", model = "primary" }"#);
    let t = Tier1::start(&config).await;
    let text = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await.text();
    let (content, ids, done) = stream_parts(&text);
    assert_eq!(content, words, "{text}");
    assert!(done && ids.iter().all(|i| i == "p"), "{text}");
}

/// Issue 21's first-token deadline (provider `first_token_timeout`): headers and the role
/// preamble come at once, the first content does not. Before, only `first_byte_timeout` (the
/// first event: the preamble) and the idle timeout applied, so the stream waited for its token.
/// Now the commit point has its own deadline, scaled to the prompt: a short prompt fails over
/// after `base`, a long one (a reasoning-sized prompt) gets the longer deadline and is waited for.
#[tokio::test(start_paused = true)]
async fn a_first_token_that_does_not_come_in_time_for_its_prompt_fails_over() {
    let slow = Behavior { ttft: Duration::from_secs(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let routes = r#"
[[routes]]
name = "r"
retry = { attempts = 1 }
targets = [{ provider = "a", model = "slow" }, { provider = "b", model = "fast" }]
"#;
    let config = cfg(&mock, routes).replace(
        "request_timeout = \"3s\"\n[[providers.a.keys]]",
        "request_timeout = \"300s\"\nfirst_token_timeout = { base = \"2s\", per_1k_input_tokens = \"1s\", max = \"60s\" }\n[[providers.a.keys]]",
    );
    assert!(config.contains("first_token_timeout"));
    let t = Tier1::start(&config).await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("fast")), "{}", a.text());
    // Counted by its own reason, apart from other timeouts.
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("first_token_timeout"));
    let took = started.elapsed();
    assert!((Duration::from_secs(2)..Duration::from_secs(3)).contains(&took), "took {took:?}");
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    // About 10,000 tokens of prompt: 2 s + 10 s, so the token at 5 s is waited for.
    let long = format!(
        r#"{{"model":"r","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(8_000)
    );
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &long).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("slow")), "{}", a.text());
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!((mock.stats.calls_for("slow"), mock.stats.calls_for("fast")), (2, 1));
}

/// A slow first token on providers `a` (target `slow`) and `b` (`fast`); `route` adds to route `r`.
async fn first_token_setup(route: &str) -> (MockUpstream, Tier1) {
    let slow = Behavior { ttft: Duration::from_secs(5), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let routes = format!(
        "[[routes]]\nname = \"r\"\nretry = {{ attempts = 1 }}\n{route}\ntargets = [{{ provider = \"a\", model = \"slow\" }}, {{ provider = \"b\", model = \"fast\" }}]\n"
    );
    // The provider's own deadline is long: only the route's can move the request.
    let config = cfg(&mock, &routes).replace(
        "request_timeout = \"3s\"\n[[providers.a.keys]]",
        "request_timeout = \"300s\"\nfirst_token_timeout = { base = \"60s\" }\n[[providers.a.keys]]",
    );
    assert!(config.contains("base = \"60s\""));
    (mock, Tier1::start(&config).await)
}

/// Issue 21, item 3: a route's `first_token_timeout` is over its providers' own (here 60 s,
/// which would wait for the token at 5 s).
#[tokio::test(start_paused = true)]
async fn a_routes_first_token_timeout_is_over_its_providers() {
    let (mock, t) = first_token_setup("first_token_timeout = { base = \"2s\" }").await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("fast")), "{}", a.text());
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("first_token_timeout"));
    assert!((Duration::from_secs(2)..Duration::from_secs(3)).contains(&started.elapsed()));
    assert_eq!((mock.stats.calls_for("slow"), mock.stats.calls_for("fast")), (1, 1));
    let m = get(&t.url("/metrics")).await.text();
    let fallback =
        r#"tier1_fallbacks_total{from_provider="a",reason="first_token_timeout",route="r",to_provider="b"}"#;
    assert_eq!(metric(&m, fallback), Some(1.0), "{m}");
}

/// Issue 21, item 3: on a hedged route the first-token deadline, when it comes before
/// `hedge_after`, starts the hedge instead of failing the primary; the first of the two to
/// commit answers, and the hedge is counted by what started it.
#[tokio::test(start_paused = true)]
async fn a_late_first_token_starts_the_hedge_on_a_hedged_route() {
    let (mock, t) = first_token_setup("hedge_after = \"30s\"\nfirst_token_timeout = { base = \"2s\" }").await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("fast")), "{}", a.text());
    assert!((Duration::from_secs(2)..Duration::from_secs(3)).contains(&started.elapsed()));
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    // Nothing failed: the hedge won a race, no fallback happened.
    assert_eq!(a.header("x-tier1-fallback-reason"), None);
    assert_eq!((mock.stats.calls_for("slow"), mock.stats.calls_for("fast")), (1, 1));
    let m = get(&t.url("/metrics")).await.text();
    let won = r#"tier1_hedges_total{route="r",trigger="first_token",winner="hedge"}"#;
    assert_eq!(metric(&m, won), Some(1.0), "{m}");
    // A primary that commits before the deadline is not hedged: with a 10 s deadline the token
    // at 5 s wins, and no second hedge is counted.
    drop(t);
    let (mock, t) =
        first_token_setup("hedge_after = \"30s\"\nfirst_token_timeout = { base = \"10s\" }").await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("slow")), "{}", a.text());
    assert_eq!((mock.stats.calls_for("slow"), mock.stats.calls_for("fast")), (1, 0));
    let m = get(&t.url("/metrics")).await.text();
    assert!(!m.contains("tier1_hedges_total{"), "{m}");
}

/// One provider with one key, whose model's first call is a 429 asking for 1 s; route `r`
/// tries it once and adds `route`, and `[resilience]` adds `resilience`.
async fn one_key_limited_once(route: &str, resilience: &str) -> (MockUpstream, Tier1) {
    let limited = Behavior {
        status: Some(StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("1")),
        fail_first: Some(1),
        ..Behavior::default()
    };
    let mock = MockUpstream::start(MockConfig::default().model("m", limited)).await.unwrap();
    let config = format!(
        "[resilience]\n{resilience}\n[providers.one]\nkind = \"openai\"\nbase_url = \"{}\"\n[[providers.one.keys]]\nname = \"k\"\nsecret = \"sk-only-key-0001\"\n[[routes]]\nname = \"r\"\nretry = {{ attempts = 1 }}\n{route}\ntargets = [{{ provider = \"one\", model = \"m\" }}]\n",
        mock.url()
    );
    (mock, Tier1::start(&config).await)
}

/// Issue 21, item 5: `wait_for_cooldown`. The first request meets the 429 and rests the key's
/// model for 1 s. Without the setting, the next request finds it resting and gets its 429 at
/// once; with it, that request is held until the rest ends and answered; with every waiting
/// slot taken (`max_cooldown_waiters = 0`), the 429 comes at once again, counted as `full`.
#[tokio::test(start_paused = true)]
async fn wait_for_cooldown_holds_a_request_until_its_key_is_back() {
    let (mock, t) = one_key_limited_once("", "").await;
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    let started = tokio::time::Instant::now();
    let a = chat_ok(&t, "r").await;
    assert_eq!((a.status.as_u16(), a.header("retry-after")), (429, Some("1")), "{}", a.text());
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(mock.stats.snapshot().requests, 1);

    let (mock, t) = one_key_limited_once("wait_for_cooldown = \"2s\"", "").await;
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    let started = tokio::time::Instant::now();
    let a = chat_ok(&t, "r").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let took = started.elapsed();
    assert!((Duration::from_millis(900)..Duration::from_millis(1200)).contains(&took), "took {took:?}");
    assert_eq!(mock.stats.snapshot().requests, 2);
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, r#"tier1_cooldown_waits_total{outcome="served",route="r"}"#), Some(1.0), "{m}");
    // The hold is a `cooldown` wait, not tier1's overhead.
    let held = metric(&m, r#"tier1_wait_seconds_sum{kind="cooldown"}"#).unwrap_or(0.0);
    assert!((0.9..1.2).contains(&held), "{m}");
    assert!(metric(&m, r#"tier1_overhead_seconds_sum{endpoint="chat"}"#).unwrap_or(1.0) < 0.01, "{m}");

    // A rest longer than the wait is not waited for: 1 s against 500 ms.
    let (mock, t) = one_key_limited_once("wait_for_cooldown = \"500ms\"", "").await;
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    let started = tokio::time::Instant::now();
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(mock.stats.snapshot().requests, 1);

    // The default comes from [resilience]; its slots are bounded.
    let (mock, t) = one_key_limited_once("", "wait_for_cooldown = \"2s\"\nmax_cooldown_waiters = 0").await;
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    let started = tokio::time::Instant::now();
    assert_eq!(chat_ok(&t, "r").await.status, 429);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(mock.stats.snapshot().requests, 1);
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, r#"tier1_cooldown_waits_total{outcome="full",route="r"}"#), Some(1.0), "{m}");
}

/// A provider of limited capacity: a request beyond `capacity` in flight is answered 529 at
/// once; the others after `LATENCY`. The capacity can change while it runs.
struct Capacity {
    addr: std::net::SocketAddr,
    capacity: std::sync::Arc<std::sync::atomic::AtomicU32>,
    overloads: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

const LATENCY: Duration = Duration::from_millis(100);

impl Capacity {
    async fn start(capacity: u32) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = Arc::new(AtomicU32::new(capacity));
        let overloads = Arc::new(AtomicU32::new(0));
        let inflight = Arc::new(AtomicU32::new(0));
        let (c, o) = (cap.clone(), overloads.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (c, o, inflight) = (c.clone(), o.clone(), inflight.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| {
                            let (c, o, inflight) = (c.clone(), o.clone(), inflight.clone());
                            async move {
                                let body = if inflight.fetch_add(1, Ordering::SeqCst)
                                    >= c.load(Ordering::SeqCst)
                                {
                                    o.fetch_add(1, Ordering::SeqCst);
                                    (
                                        529,
                                        r#"{"error":{"type":"overloaded_error","message":"busy"}}"#
                                            .to_owned(),
                                    )
                                } else {
                                    tokio::time::sleep(LATENCY).await;
                                    (200, r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#.to_owned())
                                };
                                inflight.fetch_sub(1, Ordering::SeqCst);
                                let resp = http::Response::builder()
                                    .status(body.0)
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(body.1)))
                                    .unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        Self { addr, capacity: cap, overloads }
    }
}

/// What one concurrency setting did against a provider whose capacity went 8, 3, then 12.
#[derive(Debug, Clone, Copy)]
struct Run {
    overloads: u32,
    failed: usize,
    took: Duration,
    /// The limit at the end of each phase (`tier1_concurrency_limit`).
    limits: [f64; 3],
}

/// 24 clients, 150 requests per phase; `concurrency` goes in the provider's table.
async fn against_moving_capacity(concurrency: &str) -> Run {
    let upstream = Capacity::start(8).await;
    let config = format!(
        r#"
[resilience]
breaker = {{ failure_threshold = 100000, min_requests = 100000 }}
retry_budget = {{ ratio = 10.0, min_per_second = 1000 }}
[providers.cap]
kind = "openai"
base_url = "http://{}"
queue_timeout = "60s"
{concurrency}
[[routes]]
name = "r"
retry = {{ attempts = 4, backoff = "50ms", max_backoff = "200ms" }}
targets = [{{ provider = "cap", model = "m" }}]
"#,
        upstream.addr
    );
    let t = std::sync::Arc::new(Tier1::start(&config).await);
    let started = tokio::time::Instant::now();
    let mut failed = 0;
    let mut limits = [0.0; 3];
    for (phase, capacity) in [8, 3, 12].into_iter().enumerate() {
        upstream.capacity.store(capacity, std::sync::atomic::Ordering::SeqCst);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let clients: Vec<_> = (0..24)
            .map(|_| {
                let (t, next) = (t.clone(), next.clone());
                tokio::spawn(async move {
                    let mut failed = 0;
                    while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 150 {
                        failed += usize::from(chat_ok(&t, "r").await.status != 200);
                    }
                    failed
                })
            })
            .collect();
        for c in clients {
            failed += c.await.unwrap();
        }
        let m = get(&t.url("/metrics")).await.text();
        limits[phase] = metric(&m, r#"tier1_concurrency_limit{key="*",provider="cap"}"#).unwrap_or(f64::NAN);
    }
    let overloads = upstream.overloads.load(std::sync::atomic::Ordering::SeqCst);
    Run { overloads, failed, took: started.elapsed(), limits }
}

/// Issue 21, item 4: `concurrency = "adaptive"` follows a provider whose capacity moves (8, 3,
/// then 12 in flight), and no fixed `max_inflight` does better on both overloads and time.
#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_follows_the_providers_capacity_better_than_any_fixed_one() {
    let adaptive = against_moving_capacity("concurrency = { mode = \"adaptive\", min = 1, max = 64 }").await;
    // It follows: down in the narrow phase, up again in the wide one.
    let [first, narrow, wide] = adaptive.limits;
    assert!((5.0..=10.0).contains(&first), "{adaptive:?}");
    assert!((1.0..=4.0).contains(&narrow), "{adaptive:?}");
    assert!((8.0..=14.0).contains(&wide), "{adaptive:?}");
    assert_eq!(adaptive.failed, 0, "{adaptive:?}");
    let mut fixed = Vec::new();
    for n in [2, 3, 4, 6, 8, 12, 16] {
        let run = against_moving_capacity(&format!("max_inflight = {n}")).await;
        assert_eq!(run.limits, [f64::from(n); 3], "{run:?}");
        // No fixed limit is as good on both counts.
        let dominates = run.overloads <= adaptive.overloads && run.took <= adaptive.took;
        assert!(!dominates, "max_inflight = {n}: {run:?} against adaptive {adaptive:?}");
        fixed.push((n, run));
    }
    eprintln!("adaptive: {adaptive:?}");
    for (n, run) in &fixed {
        eprintln!("max_inflight = {n}: {run:?}");
    }
}

/// Issue 21, item 4: a shed answer's `Retry-After` is measured, not a constant. One slot,
/// held 30 s by each request: while one holds it, the next is told to come back in 30 s
/// (before: `Retry-After: 1`, though the slot would not free for 30 s). For a provider's
/// `max_inflight` (a 429: the only target is full), `server.max_inflight` (a 503) and a
/// `[[limits]]` `max_inflight` (a 429).
#[tokio::test(start_paused = true)]
async fn a_shed_request_is_told_when_a_slot_is_likely_free() {
    let slow = Behavior { latency: Duration::from_secs(30), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let url = mock.url();
    for (at, provider, extra, status) in [
        ("provider", "max_inflight = 1", "", 429),
        ("server", "", "[server]\nmax_inflight = 1", 503),
        ("limit", "", "[[limits]]\nname = \"one\"\nscope = \"global\"\nmax_inflight = 1", 429),
    ] {
        let config = format!(
            "{extra}\n[providers.one]\nkind = \"openai\"\nbase_url = \"{url}\"\nrequest_timeout = \"60s\"\n{provider}\n"
        );
        let t = std::sync::Arc::new(Tier1::start(&config).await);
        // The first request teaches how long a slot is held.
        assert_eq!(chat_ok(&t, "one/slow").await.status, 200, "{at}");
        let before = mock.stats.snapshot().requests;
        let holder = tokio::spawn({
            let t = t.clone();
            async move { chat_ok(&t, "one/slow").await.status }
        });
        mock.stats.wait_until(Duration::from_secs(5), |s| s.requests > before).await.unwrap();
        let shed = chat_ok(&t, "one/slow").await;
        let got = (shed.status.as_u16(), shed.header("retry-after"));
        assert_eq!(got, (status, Some("30")), "{at}: {}", shed.text());
        assert_eq!(holder.await.unwrap(), 200);
        assert_eq!(mock.stats.snapshot().requests, before + 1, "{at}: the shed request never went upstream");
    }
}
