//! Shared state across replicas through a real Redis: fleet-wide limits within the documented
//! overshoot, cooldowns and breakers that reach every replica within 100 ms, Redis killed and
//! restarted mid-run, strict mode exact under concurrency, fail-closed mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// A replica's config: provider `a` (one key) and `b` (no key) on the mock, route `dead`, and `extra`.
fn replica(redis: &str, mock: &MockUpstream, extra: &str) -> String {
    let url = mock.url();
    format!(
        r#"
[redis]
url = "{redis}"
key_prefix = "t1test"
sync_interval = "20ms"
timeout = "300ms"

[resilience]
breaker = {{ failure_threshold = 2, open_for = "30s" }}

[providers.a]
kind = "openai"
base_url = "{url}"
[[providers.a.keys]]
name = "k1"
secret = "sk-shared-k1"

[providers.b]
kind = "openai"
base_url = "{url}"

[[routes]]
name = "dead"
retry = {{ attempts = 1 }}
targets = [{{ provider = "b", model = "dead" }}, {{ provider = "b", model = "alive" }}]
{extra}
"#
    )
}

async fn fleet(redis: &RedisServer, mock: &MockUpstream, extra: &str) -> Vec<Arc<Tier1>> {
    fleet_of(&replica(&redis.url(), mock, extra)).await
}

/// Three replicas of `config`, once each sees the fleet.
async fn fleet_of(config: &str) -> Vec<Arc<Tier1>> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let t = Tier1::start(config).await;
        out.push(Arc::new(t));
    }
    // Every replica synced with Redis and sees the fleet.
    for t in &out {
        let ok = within(Duration::from_secs(5), || async {
            get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["fleet"]["replicas"]
                .as_u64()
                == Some(3)
        })
        .await;
        assert!(ok.is_some(), "replica never saw the fleet of 3");
    }
    out
}

/// Sync batches this replica has completed with Redis.
async fn syncs(t: &Tier1) -> f64 {
    metric(&get(&t.url("/metrics")).await.text(), "tier1_redis_sync_seconds_count").unwrap_or(0.0)
}

/// Waits (bounded) until each replica has completed two more syncs than now: one that may have
/// been under way, and one that started after this call and so saw what was in Redis by then.
async fn synced_since_now(fleet: &[Arc<Tier1>]) {
    for t in fleet {
        let from = syncs(t).await;
        let synced = wait_until(Duration::from_secs(5), || async { syncs(t).await >= from + 2.0 }).await;
        assert!(synced, "a replica stopped syncing");
    }
}

async fn redis_up(t: &Tier1) -> Option<f64> {
    metric(&get(&t.url("/metrics")).await.text(), "tier1_redis_up")
}

fn user(token: &str) -> [(&str, &str); 1] {
    [("x-relay-token-id", token)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_limit_holds_fleet_wide_within_the_overshoot_bound() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let limit = "[[limits]]\nname = \"per-user\"\nscope = \"header:x-relay-token-id\"\nrequests = 200\nper = \"10s\"\n";
    let fleet = fleet(&redis, &mock, limit).await;
    // Keep the 3.2 s of load inside one 10 s window, so the count is not blurred by the slide.
    // Real time: windows are aligned on the wall clock the replicas share through Redis.
    let pos = tier1::testing::ratelimit::unix_ms() % 10_000;
    if pos > 6_000 {
        tokio::time::sleep(Duration::from_millis(10_050 - pos)).await;
    }
    // 320 requests at a paced 100/s, spread round robin over the three replicas.
    let mut admitted = 0;
    let mut limited = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = Vec::new();
    for i in 0..320usize {
        tick.tick().await;
        let t = fleet[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            post(&t.url("/v1/chat/completions"), &user("alice"), &chat("b/m")).await.status.as_u16()
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Overshoot bound: replicas × rate × sync interval = 3 × 33/s × 0.02 s ≈ 2 (plus one sync RTT).
    assert!((190..=210).contains(&admitted), "{admitted} admitted of a 200 limit ({limited} limited)");
    assert_eq!(mock.stats.snapshot().requests, admitted as u64);
    // Another user is untouched.
    assert_eq!(post(&fleet[1].url("/v1/chat/completions"), &user("bob"), &chat("b/m")).await.status, 200);
    let limited_answer = post(&fleet[2].url("/v1/chat/completions"), &user("alice"), &chat("b/m")).await;
    assert_eq!(limited_answer.status, 429);
    assert_eq!(limited_answer.header("x-tier1-limit"), Some("per-user"));
    assert!(limited_answer.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_one_replica_rests_the_key_on_all_within_100ms() {
    let redis = RedisServer::start().await;
    let limited = Behavior {
        retry_after: Some(http::HeaderValue::from_static("3")),
        fail_first: Some(1),
        ..fails(429)
    };
    let mock = MockUpstream::start(MockConfig::default().key("sk-shared-k1", limited)).await.unwrap();
    let fleet = fleet(&redis, &mock, "").await;
    let a = post(&fleet[0].url("/v1/chat/completions"), &[], &chat("a/m")).await;
    assert_eq!(a.status, 429);
    let resting = |t: Arc<Tier1>| async move {
        // The model rests on that key (its other models would still go to it).
        get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["providers"][0]["keys"][0]
            ["model_cooldowns_ms"]["m"]
            .as_u64()
            .unwrap_or(0)
            > 0
    };
    for t in &fleet[1..] {
        let took = within(Duration::from_millis(100), || resting(t.clone())).await;
        assert!(took.is_some(), "the other replica did not rest the key within 100 ms");
    }
    // Replicas 2 and 3 skip the key: nothing reaches the provider.
    for t in &fleet[1..] {
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("a/m")).await;
        assert_eq!((a.status.as_u16(), a.code().as_str()), (429, "rate_limited"));
    }
    assert_eq!(mock.stats.snapshot().requests, 1);
    // After the 3 s, the key serves again everywhere. Real time: the rest is shared through
    // Redis (another process) as a wall-clock deadline, so there is no clock to advance.
    for t in &fleet {
        let rested = wait_until(Duration::from_secs(6), || async { !resting(t.clone()).await }).await;
        assert!(rested, "the key still rests after its 3 s");
    }
    for t in &fleet {
        assert_eq!(post(&t.url("/v1/chat/completions"), &[], &chat("a/m")).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_replica_is_open_on_all() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default().model("dead", fails(500))).await.unwrap();
    let fleet = fleet(&redis, &mock, "").await;
    for _ in 0..2 {
        post(&fleet[0].url("/v1/chat/completions"), &[], &chat("dead")).await;
    }
    let dead_calls = || mock.stats.calls_for("dead");
    assert_eq!(dead_calls(), 2);
    for t in &fleet[1..] {
        let open = within(Duration::from_millis(100), || async {
            get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["routes"][0]["targets"]
                [0]["breaker"]
                == "open"
        })
        .await;
        assert!(open.is_some(), "breaker not open on the other replica within 100 ms");
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("dead")).await;
        assert_eq!(a.header("x-tier1-model"), Some("alive"));
    }
    assert_eq!(dead_calls(), 2, "another replica still called the dead target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_no_request_and_the_fleet_converges_after() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let limit = "[[limits]]\nname = \"per-user\"\nscope = \"header:x-relay-token-id\"\nrequests = 60\nper = \"60s\"\n";
    let fleet = fleet(&redis, &mock, limit).await;
    redis.kill();
    for t in &fleet {
        let down = within(Duration::from_secs(3), || async { redis_up(t).await == Some(0.0) }).await;
        assert!(down.is_some(), "tier1_redis_up stayed 1");
    }
    // Unlimited traffic is not affected at all.
    for t in &fleet {
        for _ in 0..10 {
            assert_eq!(post(&t.url("/v1/chat/completions"), &[], &chat("b/m")).await.status, 200);
        }
    }
    // The limit holds per replica: 60 / 3 replicas = 20 each.
    let mut admitted = 0;
    for t in &fleet {
        for _ in 0..30 {
            let s = post(&t.url("/v1/chat/completions"), &user("carol"), &chat("b/m")).await.status;
            assert!(s == 200 || s == 429, "{s}");
            admitted += usize::from(s == 200);
        }
    }
    assert_eq!(admitted, 60);
    // Redis returns (same port): sync resumes by itself and the counts of the outage are flushed,
    // so the whole fleet now refuses carol.
    let _redis = RedisServer::start_on(port).await;
    for t in &fleet {
        let up = within(Duration::from_secs(5), || async { redis_up(t).await == Some(1.0) }).await;
        assert!(up.is_some(), "tier1_redis_up did not come back");
    }
    // Every replica has flushed its outage counts (it is up) and then synced again.
    synced_since_now(&fleet).await;
    for t in &fleet {
        assert_eq!(post(&t.url("/v1/chat/completions"), &user("carol"), &chat("b/m")).await.status, 429);
    }
    let metrics = get(&fleet[0].url("/metrics")).await.text();
    assert!(metric(&metrics, r#"tier1_redis_errors_total{op="sync"}"#).unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_is_exact_under_concurrency() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let limit = "[[limits]]\nname = \"exact\"\nscope = \"global\"\nrequests = 100\nper = \"60s\"\nmode = \"strict\"\n";
    // A strict call that Redis answers after `timeout` falls back to the local rule, which is
    // not exact (as documented): on a loaded 2-core machine 300 ms was seen to pass, admitting a
    // 101st request. Exactness under concurrency is what this test is about, so Redis gets time.
    let config = replica(&redis.url(), &mock, limit).replace("timeout = \"300ms\"", "timeout = \"5s\"");
    assert!(config.contains("timeout = \"5s\""));
    let fleet = fleet_of(&config).await;
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let t = fleet[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            post(&t.url("/v1/chat/completions"), &[], &chat("b/m")).await.status.as_u16()
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        let s = task.await.unwrap();
        assert!(s == 200 || s == 429, "{s}");
        admitted += usize::from(s == 200);
    }
    assert_eq!(admitted, 100);
    assert_eq!(mock.stats.snapshot().requests, 100);
    // Every request waited on Redis for its strict limit: a `limit` wait, not tier1's overhead.
    let limit_waits = fleet_metric(&fleet, r#"tier1_wait_seconds_count{kind="limit"}"#).await;
    assert_eq!(limit_waits, 200.0);
    assert!(fleet_metric(&fleet, r#"tier1_wait_seconds_sum{kind="limit"}"#).await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_mode_refuses_limited_requests_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let extra = "[[limits]]\nname = \"per-user\"\nscope = \"header:x-relay-token-id\"\nrpm = 1000\n";
    let t = Tier1::start(
        &replica(&redis.url(), &mock, extra)
            .replace("timeout = \"300ms\"", "timeout = \"300ms\"\non_failure = \"closed\""),
    )
    .await;
    assert!(within(Duration::from_secs(3), || async { redis_up(&t).await == Some(1.0) }).await.is_some());
    assert_eq!(post(&t.url("/v1/chat/completions"), &user("dave"), &chat("b/m")).await.status, 200);
    redis.kill();
    assert!(within(Duration::from_secs(3), || async { redis_up(&t).await == Some(0.0) }).await.is_some());
    let a = post(&t.url("/v1/chat/completions"), &user("dave"), &chat("b/m")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (503, "rate_limit_unavailable"));
    // Readiness stays (only limited traffic is refused).
    assert_eq!(get(&t.url("/readyz")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_limits_and_state_too() {
    let cluster = RedisCluster::start().await;
    let mock = MockUpstream::start(MockConfig::default().model("dead", fails(500))).await.unwrap();
    let limit = "[[limits]]\nname = \"exact\"\nscope = \"global\"\nrequests = 30\nper = \"60s\"\nmode = \"strict\"\nroutes = [\"direct\"]\n";
    let url = format!("redis://127.0.0.1:{}", cluster.nodes[0].port);
    let config = replica(&url, &mock, limit)
        .replace("key_prefix = \"t1test\"", "key_prefix = \"t1test\"\ncluster = true");
    let mut fleet = Vec::new();
    for _ in 0..2 {
        fleet.push(Arc::new(Tier1::start(&config).await));
    }
    for t in &fleet {
        let seen = within(Duration::from_secs(5), || async {
            get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["fleet"]["replicas"]
                .as_u64()
                == Some(2)
        })
        .await;
        assert!(seen.is_some(), "replica never saw the fleet through the cluster");
    }
    // The strict limit is exact across replicas through the cluster.
    let mut admitted = 0;
    for i in 0..50usize {
        admitted += usize::from(
            post(&fleet[i % 2].url("/v1/chat/completions"), &[], &chat("b/m")).await.status == 200,
        );
    }
    assert_eq!(admitted, 30);
    // A breaker opened on one replica reaches the other.
    for _ in 0..2 {
        post(&fleet[0].url("/v1/chat/completions"), &[], &chat("dead")).await;
    }
    let open = within(Duration::from_secs(1), || async {
        get_with(&fleet[1].url("/admin/state"), &[("x-tier1-admin", "1")]).await.json()["routes"][0]["targets"][0]["breaker"] == "open"
    })
    .await;
    assert!(open.is_some(), "breaker not shared through the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_holds_across_the_fleet() {
    let redis = RedisServer::start().await;
    let slow = Behavior { chunk_interval: Duration::from_millis(100), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::with_default(slow)).await.unwrap();
    let limit = "[[limits]]\nname = \"streams\"\nscope = \"header:x-relay-token-id\"\nmax_inflight = 2\n";
    let fleet = fleet(&redis, &mock, limit).await;
    // Two streams in flight on replica 0...
    let mut held = Vec::new();
    for _ in 0..2 {
        let resp =
            post_streaming(&fleet[0].url("/v1/chat/completions"), &user("frank"), &chat_stream("b/m")).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        assert!(next_chunk(&mut body).await.is_some());
        held.push(body);
    }
    // ...so replica 1 refuses a third once it has synced the fleet's count.
    let refused = within(Duration::from_secs(2), || async {
        post(&fleet[1].url("/v1/chat/completions"), &user("frank"), &chat("b/m")).await.status == 429
    })
    .await;
    assert!(refused.is_some(), "replica 1 admitted a third concurrent request");
    // Replica 2 has not seen frank yet: its first request may pass before its next sync (the async
    // overshoot, one request per replica); after that it refuses too.
    let _ = post(&fleet[2].url("/v1/chat/completions"), &user("frank"), &chat("b/m")).await;
    let a = post(&fleet[2].url("/v1/chat/completions"), &user("frank"), &chat("b/m")).await;
    let a = if a.status == 429 {
        a
    } else {
        synced_since_now(&fleet[2..]).await;
        post(&fleet[2].url("/v1/chat/completions"), &user("frank"), &chat("b/m")).await
    };
    assert_eq!(
        (a.status.as_u16(), a.header("retry-after"), a.header("x-tier1-limit")),
        (429, Some("1"), Some("streams"))
    );
    // Another user is not limited; and once the streams end, frank is served again.
    assert_eq!(post(&fleet[1].url("/v1/chat/completions"), &user("grace"), &chat("b/m")).await.status, 200);
    drop(held);
    let again = within(Duration::from_secs(3), || async {
        post(&fleet[1].url("/v1/chat/completions"), &user("frank"), &chat("b/m")).await.status == 200
    })
    .await;
    assert!(again.is_some(), "slots never came back");
}

fn tls_fixture(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/").to_owned() + name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_and_a_client_certificate() {
    // redis-server on TLS for clients (on a second port), requiring a client certificate
    // signed by the test CA.
    let (cert, key, ca) =
        (tls_fixture("server-a.pem"), tls_fixture("server-a-key.pem"), tls_fixture("ca.pem"));
    let redis = RedisServer::start_with(1, |ports| {
        let tls_port = ports[0].to_string();
        [
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
        ]
        .map(str::to_owned)
        .to_vec()
    })
    .await;
    let tls = redis.ports[1];
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let url = format!("rediss://localhost:{tls}");
    let files = format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        ca,
        tls_fixture("client.pem"),
        tls_fixture("client-key.pem")
    );
    let config =
        replica(&url, &mock, "").replace("timeout = \"300ms\"", &format!("timeout = \"2s\"\n{files}"));
    let t = Tier1::start(&config).await;
    let synced = within(Duration::from_secs(10), || async { redis_up(&t).await == Some(1.0) }).await;
    assert!(synced.is_some(), "tier1 never synced over rediss://");
    assert_eq!(
        metric(&get(&t.url("/metrics")).await.text(), "tier1_redis_errors_total{op=\"connect\"}"),
        Some(0.0)
    );

    // Without the client certificate the server refuses the handshake: Redis stays down for
    // this replica, and requests are still served (on_failure = local).
    let no_cert = format!("ca_file = {ca:?}\n");
    let config =
        replica(&url, &mock, "").replace("timeout = \"300ms\"", &format!("timeout = \"2s\"\n{no_cert}"));
    let t = Tier1::start(&config).await;
    let failing = within(Duration::from_secs(10), || async {
        let text = get(&t.url("/metrics")).await.text();
        metric(&text, "tier1_redis_errors_total{op=\"connect\"}").is_some_and(|n| n > 0.0)
    })
    .await;
    assert!(failing.is_some(), "a handshake without a client certificate was not refused");
    assert_eq!(redis_up(&t).await, Some(0.0));
    assert_eq!(post(&t.url("/v1/chat/completions"), &[], &chat("a/m")).await.status, StatusCode::OK);
}

#[test]
fn redis_certificates_need_rediss_and_readable_files() {
    let env = std::collections::HashMap::<String, String>::new();
    let parse = |toml: &str| {
        tier1::testing::config::parse(toml, tier1::testing::config::Format::Toml, &env)
            .unwrap_err()
            .to_string()
    };
    let e = parse(&format!("[redis]\nurl = \"redis://localhost\"\nca_file = {:?}\n", tls_fixture("ca.pem")));
    assert!(e.contains("redis.ca_file") && e.contains("rediss://"), "{e}");
    let e = parse("[redis]\nurl = \"rediss://localhost\"\nca_file = \"/nonexistent/ca.pem\"\n");
    assert!(e.contains("redis.ca_file"), "{e}");
    let e = parse(&format!(
        "[redis]\nurl = \"rediss://localhost\"\nclient_cert = {:?}\n",
        tls_fixture("client.pem")
    ));
    assert!(e.contains("redis.client_cert") && e.contains("go together"), "{e}");
    let e = parse(&format!(
        "[redis]\nurl = \"rediss://localhost\"\nclient_cert = {:?}\nclient_key = {:?}\n",
        tls_fixture("client.pem"),
        tls_fixture("server-a-key.pem")
    ));
    assert!(e.contains("redis.client_cert"), "a key that does not match: {e}");
}

/// A route whose target costs 100 µUSD per input token and 1 000 per output token: the mock's
/// answer (9 prompt and 11 completion tokens) costs 11 900 µUSD; a request with `max_tokens = 11`
/// (78 bytes: 19 tokens of prompt by its size) is reserved at 12 900.
const PRICED: &str = r#"
[[routes]]
name = "priced"
targets = [{ provider = "b", model = "m", input_cost = 100.0, output_cost = 1000.0 }]
[[routes]]
name = "exact"
targets = [{ provider = "b", model = "m", input_cost = 0.0, output_cost = 1000.0 }]
"#;

fn priced(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":11}}"#)
}

/// The sum of `series` over the fleet's `/metrics`.
async fn fleet_metric(fleet: &[Arc<Tier1>], series: &str) -> f64 {
    let mut sum = 0.0;
    for t in fleet {
        sum += metric(&get(&t.url("/metrics")).await.text(), series).unwrap_or(0.0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_fleet_wide_within_the_overshoot_bound_and_says_when_it_resets() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    // 4 answers at their cost plus one reservation: 5 requests' worth, 0.0605 USD a day per user.
    let budget = "[[budgets]]\nname = \"daily\"\nscope = \"header:x-relay-token-id\"\nusd = 0.0605\nper = \"1d\"\nroutes = [\"priced\"]\n";
    let fleet = fleet(&redis, &mock, &format!("{PRICED}{budget}")).await;
    // 30 requests at a paced 50/s, round robin over the three replicas.
    let mut statuses = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..30usize {
        tick.tick().await;
        let t = &fleet[i % 3];
        statuses.push(
            post(&t.url("/v1/chat/completions"), &user("alice"), &priced("priced")).await.status.as_u16(),
        );
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    // Overshoot bound: replicas × rate × sync interval × one request = 3 × 16.7/s × 0.02 s ≈ 1
    // request (plus one sync round trip).
    eprintln!("budget: {admitted} of 30 admitted under a 5-request budget");
    assert!((5..=7).contains(&admitted), "{admitted} admitted of a 5-request budget: {statuses:?}");
    assert_eq!(mock.stats.snapshot().requests, admitted as u64);
    // Settled with the actual cost (11 900 µUSD each), not the estimate (12 900).
    let spent = fleet_metric(&fleet, "tier1_budget_spent_usd_total{budget=\"daily\"}").await;
    assert!((spent - admitted as f64 * 0.0119).abs() < 1e-9, "{spent} USD spent by {admitted}");
    let refused = fleet_metric(&fleet, "tier1_budget_rejections_total{budget=\"daily\"}").await;
    assert_eq!(refused as usize, 30 - admitted);
    // Another user is untouched.
    assert_eq!(
        post(&fleet[1].url("/v1/chat/completions"), &user("bob"), &priced("priced")).await.status,
        200
    );
    // The refusal: budget_exceeded, Retry-After to midnight UTC, the reset time in the body.
    let now_s = tier1::testing::ratelimit::unix_ms() / 1000;
    let midnight = (now_s / 86_400 + 1) * 86_400;
    let r = post(&fleet[2].url("/v1/chat/completions"), &user("alice"), &priced("priced")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-tier1-budget"), Some("daily"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry.abs_diff(midnight - now_s) <= 2, "Retry-After {retry}, midnight in {}", midnight - now_s);
    let v = r.json();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert_eq!(v["error"]["resets_at"], midnight);
    // Anthropic's format on /v1/messages.
    let messages = r#"{"model":"priced","max_tokens":11,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&fleet[0].url("/v1/messages"), &user("alice"), messages).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("rate_limit_error")));
    assert_eq!(v["error"]["resets_at"], midnight);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_budget_is_exact_under_concurrency() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    // 11 000 µUSD a request, reserved and spent alike: exactly 5 fit in 0.055 USD.
    let budget = "[[budgets]]\nname = \"exact\"\nscope = \"header:x-relay-token-id\"\nusd = 0.055\nper = \"1d\"\nmode = \"strict\"\n";
    let fleet = fleet(&redis, &mock, &format!("{PRICED}{budget}")).await;
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let t = fleet[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            post(&t.url("/v1/chat/completions"), &user("carol"), &priced("exact")).await.status.as_u16()
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        let s = task.await.unwrap();
        assert!(s == 200 || s == 429, "{s}");
        admitted += usize::from(s == 200);
    }
    assert_eq!(admitted, 5);
    assert_eq!(mock.stats.snapshot().requests, 5);
    // The strict reservations are settled too (and counted), at 0.011 USD each.
    let spent = fleet_metric(&fleet, "tier1_budget_spent_usd_total{budget=\"exact\"}").await;
    assert!((spent - 0.055).abs() < 1e-9, "{spent}");
    assert_eq!(
        post(&fleet[0].url("/v1/chat/completions"), &user("dave"), &priced("exact")).await.status,
        200
    );
}
