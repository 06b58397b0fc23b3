//! Where a request's time to its head goes: `tier1_overhead_seconds` is tier1's own work only,
//! `tier1_wait_seconds{kind}` each wait (a hedge's delay, a backoff, a concurrency queue...), and
//! the two add up to the time to the head; `Server-Timing` tells the client the same. Paused
//! time: the mock's delays and tier1's timers are exact, and tier1's own work takes no time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;

/// Providers `a` (no limit) and `q` (one request at a time, a queue of up to 5 s), both on `mock`.
fn cfg(mock: &MockUpstream, extra: &str) -> String {
    let url = mock.url();
    format!(
        r#"
[providers.a]
kind = "openai"
base_url = "{url}"
request_timeout = "30s"
first_byte_timeout = "30s"

[providers.q]
kind = "openai"
base_url = "{url}"
request_timeout = "30s"
first_byte_timeout = "30s"
max_inflight = 1
queue_timeout = "5s"

[[routes]]
name = "hedged"
hedge_after = "50ms"
targets = [{{ provider = "a", model = "slow" }}, {{ provider = "a", model = "fast" }}]

[[routes]]
name = "retried"
retry = {{ attempts = 2, backoff = "10ms", max_backoff = "2s" }}
targets = [{{ provider = "a", model = "flaky" }}]

[[routes]]
name = "queued"
targets = [{{ provider = "q", model = "held" }}]

[[routes]]
name = "delayed"
targets = [{{ provider = "a", model = "delayed" }}]
{extra}
"#
    )
}

async fn mock() -> MockUpstream {
    let slow = Behavior { latency: Duration::from_secs(3), ..Behavior::default() };
    // Fails its first call with a 500 that says to come back in 1 s.
    let flaky = Behavior {
        fail_first: Some(1),
        retry_after: Some(http::HeaderValue::from_static("1")),
        ..fails(500)
    };
    let held = Behavior { latency: Duration::from_millis(300), ..Behavior::default() };
    let delayed = Behavior {
        latency: Duration::from_millis(250),
        ttft: Duration::from_millis(40),
        ..Behavior::default()
    };
    let config = MockConfig::default()
        .model("slow", slow)
        .model("flaky", flaky)
        .model("held", held)
        .model("delayed", delayed);
    MockUpstream::start(config).await.unwrap()
}

/// `name`'s value in a `/metrics` text (0 when absent).
fn sum(m: &str, series: &str) -> f64 {
    metric(m, series).unwrap_or(0.0)
}

fn wait_sum(m: &str, kind: &str) -> f64 {
    sum(m, &format!("tier1_wait_seconds_sum{{kind=\"{kind}\"}}"))
}

fn wait_count(m: &str, kind: &str) -> f64 {
    sum(m, &format!("tier1_wait_seconds_count{{kind=\"{kind}\"}}"))
}

fn overhead_sum(m: &str) -> f64 {
    sum(m, "tier1_overhead_seconds_sum{endpoint=\"chat\"}")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.001
}

/// The hedge's delay is a `hedge` wait, not overhead: before, with `hedge_after = 50ms`, every
/// hedged request counted the primary's 50 ms as tier1's overhead (the primary's own wait went
/// with its dropped future), so the overhead p99 read the hedge delay. Fails before the fix (no
/// `tier1_wait_seconds`, and an overhead of 50 ms).
#[tokio::test(start_paused = true)]
async fn a_hedges_delay_is_a_hedge_wait_and_no_overhead() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock, "")).await;
    let started = tokio::time::Instant::now();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("hedged")).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("fast")));
    let m = get(&t.url("/metrics")).await.text();
    assert!(close(wait_sum(&m, "hedge"), 0.050), "{m}");
    assert_eq!(wait_count(&m, "hedge"), 1.0);
    assert!(overhead_sum(&m) < 0.001, "overhead {}", overhead_sum(&m));
    assert!(close(took, 0.050), "took {took}");
    // The two add up to the time to the head.
    let waits: f64 =
        ["body", "limit", "queue", "upstream", "hedge", "backoff", "cooldown", "scheduler", "other"]
            .iter()
            .map(|k| wait_sum(&m, k))
            .sum();
    assert!(close(waits + overhead_sum(&m), took), "{waits} + {} vs {took}", overhead_sum(&m));
}

/// A backoff (here the provider's `Retry-After: 1`) is a `backoff` wait of exactly that long.
/// Fails before the fix (no `tier1_wait_seconds`).
#[tokio::test(start_paused = true)]
async fn a_backoff_is_a_backoff_wait() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock, "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("retried")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-attempts")), (200, Some("2")));
    let m = get(&t.url("/metrics")).await.text();
    assert!(close(wait_sum(&m, "backoff"), 1.0), "{m}");
    assert_eq!(wait_count(&m, "backoff"), 1.0);
    assert_eq!(wait_count(&m, "hedge"), 0.0);
    assert!(overhead_sum(&m) < 0.001, "overhead {}", overhead_sum(&m));
}

/// A request behind another for the provider's one slot waits in its queue (`queue`), then on
/// the upstream (`upstream`). Fails before the fix (no `tier1_wait_seconds`).
#[tokio::test(start_paused = true)]
async fn a_concurrency_queue_is_a_queue_wait() {
    let mock = mock().await;
    let t = std::sync::Arc::new(Tier1::start(&cfg(&mock, "")).await);
    let url = t.url("/v1/chat/completions");
    let first = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, &[], &chat("queued")).await })
    };
    mock.stats.wait_until(Duration::from_secs(1), |s| s.requests >= 1).await.unwrap();
    let started = tokio::time::Instant::now();
    let second = post(&url, &[], &chat("queued")).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!((first.await.unwrap().status.as_u16(), second.status.as_u16()), (200, 200));
    // The first held the slot 300 ms from when the second arrived; the second's own answer
    // took 300 ms more.
    assert!(close(took, 0.600), "took {took}");
    let m = get(&t.url("/metrics")).await.text();
    assert!(close(wait_sum(&m, "queue"), 0.300), "{m}");
    assert!(close(wait_sum(&m, "upstream"), 0.600), "{m}");
    assert!(overhead_sum(&m) < 0.001, "overhead {}", overhead_sum(&m));
}

/// A client that sends half its body, pauses 200 ms, then the rest: the pause is a `body` wait
/// (tier1 waiting on its client), then the upstream's 250 ms an `upstream` wait, and none of it
/// overhead.
#[tokio::test(start_paused = true)]
async fn a_slow_client_body_is_a_body_wait() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock, "")).await;
    let body = chat("delayed");
    let (first, rest) = body.split_at(body.len() / 2);
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{first}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let m = get(&t.url("/metrics")).await.text();
    assert!(close(wait_sum(&m, "body"), 0.200), "{m}");
    assert!(close(wait_sum(&m, "upstream"), 0.250), "{m}");
    assert!(overhead_sum(&m) < 0.001, "overhead {}", overhead_sum(&m));
}

/// `tier1;dur=MS, upstream;dur=MS, wait;dur=MS`, each with three decimals: the durations.
fn server_timing(a: &Answer) -> [f64; 3] {
    let values: Vec<&str> = a.headers.get_all("server-timing").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(values.len(), 1, "one Server-Timing: {values:?}");
    let parts: Vec<&str> = values[0].split(", ").collect();
    let names = ["tier1", "upstream", "wait"];
    assert_eq!(parts.len(), 3, "{values:?}");
    std::array::from_fn(|i| {
        let dur =
            parts[i].strip_prefix(&format!("{};dur=", names[i])).unwrap_or_else(|| panic!("{values:?}"));
        let (whole, frac) = dur.split_once('.').unwrap_or_else(|| panic!("{values:?}"));
        assert!(whole.bytes().all(|b| b.is_ascii_digit()) && !whole.is_empty(), "{values:?}");
        assert!(frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()), "{values:?}");
        dur.parse().unwrap()
    })
}

/// A full answer and a stream each carry `Server-Timing` at their head, and tier1 + upstream is
/// the time the client waited for it: 250 ms of the mock's latency (and, for the stream, 40 ms
/// more to its first content, which tier1 waits for before it answers). Fails before the fix
/// (no header).
#[tokio::test(start_paused = true)]
async fn server_timing_on_full_and_stream_answers_adds_up_to_the_time_to_the_head() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock, "")).await;
    let url = t.url("/v1/chat/completions");
    let started = tokio::time::Instant::now();
    let full = post(&url, &[], &chat("delayed")).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(full.status, 200);
    let [tier1, upstream, wait] = server_timing(&full);
    assert!((250.0..251.0).contains(&upstream), "upstream {upstream}");
    assert!((tier1 + upstream + wait - took).abs() < 1.0, "{tier1} + {upstream} + {wait} vs {took}");
    assert!(tier1 < 1.0 && wait < 1.0, "{tier1}, {wait}");

    let started = tokio::time::Instant::now();
    let mut stream = post_streaming(&url, &[], &chat_stream("delayed")).await;
    let head = started.elapsed().as_secs_f64() * 1000.0;
    let [tier1, upstream, wait] = server_timing(&Answer {
        status: stream.status(),
        headers: stream.headers().clone(),
        body: bytes::Bytes::new(),
    });
    assert!((290.0..291.0).contains(&upstream), "upstream {upstream}");
    assert!((tier1 + upstream + wait - head).abs() < 1.0, "{tier1} + {upstream} + {wait} vs {head}");
    while next_chunk(stream.body_mut()).await.is_some() {}

    // Errors carry it too: tier1's time to say no.
    let unknown = post(&url, &[], &chat("no-such-model")).await;
    assert_eq!(unknown.status, 404);
    server_timing(&unknown);
    // Operational endpoints are not proxied answers.
    assert!(get(&t.url("/v1/models")).await.header("server-timing").is_none());
}

/// An upstream's own `Server-Timing` never reaches the client (it may tell of the provider's
/// internals): the client sees tier1's only.
#[tokio::test]
async fn an_upstreams_server_timing_is_dropped() {
    let answer = tier1::testing::mock::completion_json("m", "hi", 1);
    let mut fixed = Fixed::json(std::str::from_utf8(&answer).unwrap());
    fixed.headers.push(("server-timing", "db;dur=53, auth;desc=\"sk-upstream-secret-0001\"".into()));
    let upstream = MockUpstream::fixed(fixed).await;
    let t = Tier1::start(&config(&upstream.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200);
    server_timing(&a);
    assert!(!format!("{:?}", a.headers).contains("db;dur"), "{:?}", a.headers);
}

/// `[observability] server_timing = false` turns the header off, and a reload turns it back on.
#[tokio::test]
async fn server_timing_is_off_when_configured_so_and_reloads() {
    let mock = mock().await;
    let dir = TempDir::new("server-timing");
    let off = cfg(&mock, "\n[observability]\nserver_timing = false\n");
    let path = dir.write_atomic("tier1.toml", &off);
    let t = Tier1::start_file(&path, false).await;
    let url = t.url("/v1/chat/completions");
    let a = post(&url, &[], &chat("a/fast")).await;
    assert_eq!(a.status, 200);
    assert!(a.header("server-timing").is_none(), "{:?}", a.headers);
    dir.write_atomic("tier1.toml", &cfg(&mock, ""));
    let reloaded = post_empty(&t.admin_url("/admin/reload"), &[("x-tier1-admin", "1")]).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    server_timing(&post(&url, &[], &chat("a/fast")).await);
}

/// The key takes a boolean, and only known keys.
#[test]
fn the_observability_section_is_validated() {
    let parse = |extra: &str| {
        tier1::testing::config::parse(
            &config("http://127.0.0.1:9", extra),
            tier1::testing::config::Format::Toml,
            &env(),
        )
    };
    assert!(parse("[observability]\nserver_timing = true").is_ok());
    let wrong = parse("[observability]\nserver_timing = \"no\"").unwrap_err().to_string();
    assert!(wrong.contains("observability.server_timing"), "{wrong}");
    let unknown = parse("[observability]\nserver_timings = false").unwrap_err().to_string();
    assert!(unknown.contains("server_timings"), "{unknown}");
}
