//! See the suite's doc in `main.rs`. Finding 5: one header (`x-relay-token-id` with random values)
//! must not grow the limiter's state without bound, nor the Redis sync's cost.

use std::time::Duration;

use crate::common::*;

/// A `kind = "mock"` provider (no upstream socket) and one per-user limit; `limit` adds keys.
fn limited(limit: &str, redis: &str) -> String {
    format!(
        r#"
{redis}
[providers.demo]
kind = "mock"

[[routes]]
name = "demo"
targets = [{{ provider = "demo", model = "m" }}]

[[limits]]
name = "per-user"
scope = "header:x-relay-token-id"
{limit}
"#
    )
}

/// The value of `series` with labels (`name{labels}`) in a `/metrics` text; 0 when absent is NOT
/// assumed: `None` says the series does not exist.
fn labelled(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

const KEYS: &str = "tier1_ratelimit_keys{limit=\"per-user\"}";
const OVERFLOW: &str = "tier1_ratelimit_keys_overflow_total{limit=\"per-user\"}";

/// Sends one request per id (`ids` distinct values, 32 at a time); returns the statuses.
async fn burst(t: &Tier1, prefix: &str, ids: usize) -> Vec<u16> {
    let url = t.url("/v1/chat/completions");
    let body = chat("demo");
    let mut statuses = Vec::with_capacity(ids);
    for chunk in (0..ids).collect::<Vec<_>>().chunks(32) {
        let mut tasks = Vec::new();
        for i in chunk {
            let (url, body, id) =
                (url.clone(), body.clone(), format!("{prefix}-{i}-{:08x}", fastrand::u32(..)));
            tasks.push(tokio::spawn(async move {
                post(&url, &[("x-relay-token-id", &id)], &body).await.status.as_u16()
            }));
        }
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
    }
    statuses
}

async fn scrape(t: &Tier1) -> String {
    get(&t.url("/metrics")).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_header_keys_expire_without_redis() {
    let t = Tier1::start(&limited("requests = 1000\nper = \"200ms\"", "")).await;
    let statuses = burst(&t, "idle", 2000).await;
    assert!(statuses.iter().all(|s| *s == 200), "every distinct id has its own room");
    // Right after the burst the limiter holds the recent ids...
    let held = labelled(&scrape(&t).await, KEYS).expect("the key-count gauge exists");
    assert!(held > 0.0, "{held} keys held right after 2000 distinct ids");
    // ...and once their windows (2 × 200 ms) have passed, the sweep drops every one of them.
    let drained =
        within(Duration::from_secs(4), || async { labelled(&scrape(&t).await, KEYS).unwrap_or(0.0) == 0.0 })
            .await;
    assert!(drained.is_some(), "idle keys never expired: {:?}", labelled(&scrape(&t).await, KEYS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_keys_new_ids_share_one_limited_overflow_bucket() {
    let t = Tier1::start(&limited("requests = 300\nper = \"60s\"\nmax_keys = 100", "")).await;
    let statuses = burst(&t, "cap", 500).await;
    let text = scrape(&t).await;
    let keys = labelled(&text, KEYS).expect("the key-count gauge exists");
    assert_eq!(keys, 100.0, "the limiter holds exactly max_keys ids");
    // 100 ids got their own bucket; the 400 after them share one, limited like any other key: 300
    // of them pass, 100 get the limit's 429.
    assert_eq!(labelled(&text, OVERFLOW), Some(400.0), "every new id past the cap is counted");
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (400, 100), "overflow bucket is still limited");
    let again = burst(&t, "cap", 1).await;
    assert_eq!(again[0], 429, "a new id past the cap still lands in the full overflow bucket");
}

async fn evalsha_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_an_idle_replica_syncs_nothing_after_a_burst_of_ids() {
    let redis = RedisServer::start().await;
    let section = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"rlidle\"\nsync_interval = \"20ms\"\ntimeout = \"300ms\"\n",
        redis.url()
    );
    let t = Tier1::start(&limited("requests = 1000\nper = \"10s\"", &section)).await;
    let up =
        within(Duration::from_secs(5), || async { metric(&scrape(&t).await, "tier1_redis_up") == Some(1.0) })
            .await;
    assert!(up.is_some(), "never synced with redis");
    let statuses = burst(&t, "fleet", 1000).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Every id's count reaches Redis, on a TTL.
    let counters = || async {
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS").arg("{rlidle}:rl:*").query_async::<Vec<String>>(&mut c).await.unwrap()
    };
    let all = within(Duration::from_secs(3), || async { counters().await.len() >= 1000 }).await;
    let keys = counters().await;
    assert!(all.is_some(), "{} counters in redis", keys.len());
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 20_000, "counter keys expire (pttl {ttl})");
    // No traffic: after the freshness tail (5 syncs) the replica sends no batch at all, though
    // 1000 ids are still inside their two windows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = evalsha_calls(&mut conn).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let idle = evalsha_calls(&mut conn).await - before;
    assert_eq!(idle, 0, "{idle} sync batches in 1 s of no traffic (about 50 = one per 20 ms sync)");
    // One request: a batch again, for that one id only (not the 1000 stale ones).
    assert_eq!(burst(&t, "again", 1).await, [200]);
    let sent = within(Duration::from_secs(2), || async {
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        evalsha_calls(&mut c).await > before
    })
    .await;
    assert!(sent.is_some(), "the new id's count was never synced");
}
