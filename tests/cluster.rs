//! The cluster tier for real, on loopback: Caddy (a current release, with compose/Caddyfile
//! itself) in front of three tier1 processes sharing a redis-server, with the mock provider, under
//! steady load: SIGTERM one replica (its in-flight streams finish, Caddy moves new requests: zero
//! client errors), SIGKILL another (only requests in flight on it may fail, and a cut stream is
//! detectable: no `data: [DONE]`), restart both, and a shared rate limit still holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::time::Instant;

struct Outcome {
    client: usize,
    started: Instant,
    ended: Instant,
    ok: bool,
    stream: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_and_three_replicas_survive_sigterm_sigkill_and_restarts() {
    let redis = RedisServer::start().await;
    let slow = Behavior { chunk_interval: Duration::from_millis(80), ..Behavior::default() };
    let mock = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let dir = TempDir::new("cluster");
    let config = format!(
        r#"
[server]
shutdown_delay = "2s"
drain_timeout = "10s"
[reload]
poll_interval = "0s"
[redis]
url = "{}"
sync_interval = "20ms"
[providers.mock]
kind = "openai"
base_url = "{}/v1"
[[routes]]
name = "demo"
targets = [{{ provider = "mock", model = "m" }}]
[[routes]]
name = "slow"
targets = [{{ provider = "mock", model = "slow" }}]
[[routes]]
name = "limited"
targets = [{{ provider = "mock", model = "m" }}]
[[limits]]
name = "per-user"
scope = "header:x-relay-token-id"
requests = 30
per = "60s"
routes = ["limited"]
"#,
        redis.url(),
        mock.url()
    );
    let cfg = dir.write_atomic("tier1.toml", &config);
    // Each replica binds :0 and reports its port; a restart binds that port again (Caddy's
    // upstream list is fixed), which the previous process has just released.
    let start = |listen: String| {
        let cfg = cfg.clone();
        async move { spawn_tier1(&["--config", cfg.to_str().unwrap(), "--listen", &listen]).await }
    };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Some(start("127.0.0.1:0".to_owned()).await));
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.as_ref().unwrap().port()).collect();
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut caddy = caddy(&upstreams, &dir.0).await;
    let front = format!("http://127.0.0.1:{}", caddy.ports[0]);
    let ready = format!("{front}/readyz");
    let up = within(Duration::from_secs(15), || answers(&ready)).await;
    assert!(up.is_some(), "Caddy never proxied");
    // Whether a replica has answered an API request (its own counter, from its /metrics).
    let served = |port: u16| async move {
        let m = get(&format!("http://127.0.0.1:{port}/metrics")).await.text();
        m.lines().any(|l| l.starts_with("tier1_requests_total{") && !l.ends_with(" 0"))
    };
    // Every replica is in Caddy's rotation before the load: requests through Caddy until each
    // has answered one.
    let in_rotation = wait_until(Duration::from_secs(15), || async {
        assert_eq!(post(&format!("{front}/v1/chat/completions"), &[], &chat("demo")).await.status, 200);
        let mut all = true;
        for p in &ports {
            all &= served(*p).await;
        }
        all
    })
    .await;
    assert!(in_rotation, "Caddy never sent a request to every replica");

    // Steady load: six clients, alternating plain and streamed requests (a stream lasts ~1 s).
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut load = Vec::new();
    for c in 0..6usize {
        let (stop, outcomes, url) = (stop.clone(), outcomes.clone(), format!("{front}/v1/chat/completions"));
        load.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let stream = (n + c).is_multiple_of(2);
                let body = if stream { chat_stream("slow") } else { chat("demo") };
                let started = Instant::now();
                let ok = match tokio::time::timeout(
                    Duration::from_secs(10),
                    client().request(post_req(&url, &[], &body)),
                )
                .await
                {
                    Ok(Ok(resp)) if resp.status() == 200 => {
                        let body =
                            http_body_util::BodyExt::collect(resp.into_body()).await.map(|b| b.to_bytes());
                        match body {
                            Ok(b) if stream => b.ends_with(b"data: [DONE]\n\n"),
                            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b).is_ok(),
                            Err(_) => false,
                        }
                    }
                    _ => false,
                };
                outcomes.lock().unwrap().push(Outcome {
                    client: c,
                    started,
                    ended: Instant::now(),
                    ok,
                    stream,
                });
                n += 1;
            }
        }));
    }
    // Failed requests that ended after `from`: (how long they ran, whether a stream).
    let failures = |from: Instant| -> Vec<(Duration, bool)> {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| !o.ok && o.ended >= from)
            .map(|o| (o.ended.duration_since(o.started), o.stream))
            .collect()
    };
    // Whether every client has finished `n` requests started after `from` (so whatever it had
    // in flight at `from` has ended, and `n` more were observed).
    let each_client_done = |from: Instant, n: usize| {
        let outcomes = outcomes.clone();
        move || {
            let done =
                outcomes.lock().unwrap().iter().filter(|o| o.started > from).fold([0usize; 6], |mut d, o| {
                    d[o.client] += 1;
                    d
                });
            let all = done.iter().all(|d| *d >= n);
            async move { all }
        }
    };
    let t0 = Instant::now();
    // The load is steady: every client has finished a stream, so streams are in flight everywhere.
    let steady = wait_until(Duration::from_secs(15), || {
        let all = (0..6).all(|c| outcomes.lock().unwrap().iter().any(|o| o.client == c && o.stream));
        async move { all }
    })
    .await;
    assert!(steady, "the load never reached every client");

    // SIGTERM replica 0: lame duck, drain, exit 0. No client sees an error.
    signal(&replicas[0].as_ref().unwrap().child, "-TERM");
    let mut r0 = replicas[0].take().unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(15), r0.child.wait())
        .await
        .expect("drained in time")
        .unwrap();
    assert!(exited.success());
    let exited_at = Instant::now();
    assert!(wait_until(Duration::from_secs(15), each_client_done(exited_at, 1)).await, "the load stalled");
    assert!(failures(t0).is_empty(), "errors during a graceful SIGTERM: {:?}", failures(t0));

    // SIGKILL replica 1: only requests in flight on it may fail.
    let killed_at = Instant::now();
    signal(&replicas[1].as_ref().unwrap().child, "-KILL");
    let mut r1 = replicas[1].take().unwrap();
    let _ = r1.child.wait().await;
    // Observed for as many requests as about 3 s of load gives: 4 per client started after the
    // first 200 ms.
    let observed =
        wait_until(Duration::from_secs(20), each_client_done(killed_at + Duration::from_millis(200), 4))
            .await;
    assert!(observed, "the load stalled after the kill");
    let after_kill = failures(killed_at);
    let late = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| !o.ok && o.started > killed_at + Duration::from_millis(200))
        .count();
    assert_eq!(late, 0, "requests started after the kill failed: {after_kill:?}");
    // In flight at the kill: at most one request per client. Within the first 200 ms Caddy may
    // still send a new one to the dead replica (its health check has not run yet), so a client
    // may lose a second one there, never more.
    let in_flight = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| !o.ok && o.started <= killed_at && o.ended >= killed_at)
        .count();
    assert!(in_flight <= 6, "more failures than requests in flight: {after_kill:?}");
    let mut per_client = [0usize; 6];
    for o in outcomes.lock().unwrap().iter().filter(|o| !o.ok && o.ended >= killed_at) {
        per_client[o.client] += 1;
    }
    assert!(per_client.iter().all(|&n| n <= 2), "a client lost more than two requests: {per_client:?}");

    // Restart both on their ports; Caddy's health checks bring them back.
    replicas[0] = Some(start(upstreams[0].clone()).await);
    replicas[1] = Some(start(upstreams[1].clone()).await);
    for p in &ports[..2] {
        let back = within(Duration::from_secs(20), || served(*p)).await;
        assert!(back.is_some(), "Caddy never sent traffic to the restarted replica on {p}");
    }
    let restarted = Instant::now();
    let observed = wait_until(Duration::from_secs(20), each_client_done(restarted, 2)).await;
    assert!(observed, "the load stalled after the restarts");
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(failures(restarted).is_empty(), "errors after the restarts: {:?}", failures(restarted));
    let total = outcomes.lock().unwrap().len();
    assert!(total > 50, "only {total} requests in the run");

    // The per-user limit holds across the three replicas behind Caddy, within the documented
    // overshoot (replicas × rate × sync_interval: 3 × 17/s × 0.02 s ≈ 1 at this pace).
    let mut admitted = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..60 {
        pace.tick().await;
        let a =
            post(&format!("{front}/v1/chat/completions"), &[("x-relay-token-id", "eve")], &chat("limited"))
                .await;
        assert!(a.status == 200 || a.status == 429, "{}", a.status);
        admitted += usize::from(a.status == 200);
    }
    assert!((30..=33).contains(&admitted), "{admitted} admitted of a 30 limit");
    caddy.kill();
}
