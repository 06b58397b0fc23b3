//! Behind the front: client → reference front (tests/front/front.mjs, plain Node.js) → tier1 →
//! mock provider, in `bifrost` and `auto` modes; the front's failure semantics when tier1 is down;
//! a rolling restart of two replicas behind Caddy and a single sidecar upgraded through
//! SO_REUSEPORT, both with zero fallbacks; per-user limits on the front's `x-relay-token-id`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const CLIENT: &str = "client-key-alice";
const CLIENT_2: &str = "client-key-bob";

struct Front {
    url: String,
    _child: tokio::process::Child,
}

/// Starts the reference front in `mode`, relaying to `bifrost` (a tier1 or Caddy URL).
async fn front(mode: &str, bifrost: &str, mock: &MockUpstream, cooldown_ms: u64) -> Front {
    front_with(mode, bifrost, mock, cooldown_ms, &[]).await
}

/// [`front`] with more environment (`FALLBACK_ON_5XX=1`: a 5xx rests the sidecar too).
async fn front_with(
    mode: &str,
    bifrost: &str,
    mock: &MockUpstream,
    cooldown_ms: u64,
    env: &[(&str, &str)],
) -> Front {
    let mut child = tokio::process::Command::new("node")
        .arg(format!("{ROOT}/tests/front/front.mjs"))
        .env("MODE", mode)
        .env("PORT", "0")
        .env("BIFROST_BASE_URL", bifrost)
        .env("BIFROST_API_KEY", "front-shared-key")
        .env("BIFROST_TIMEOUT_MS", "3000")
        .env("OMNIROUTE_BIFROST_FAILURE_COOLDOWN_MS", cooldown_ms.to_string())
        .env("PROVIDER_BASE_URL", format!("{}/v1", mock.url()))
        .env("CLIENT_KEYS", format!("{CLIENT},{CLIENT_2}"))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node is not installed");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let url = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some((_, rest)) = l.split_once("listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("front exited");
    })
    .await
    .expect("front started");
    Front { url, _child: child }
}

fn tier1_config(dir: &TempDir, mock: &MockUpstream, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[server]
api_keys = ["front-shared-key"]
shutdown_delay = "2s"
drain_timeout = "10s"
{extra}
[reload]
poll_interval = "0s"
[providers.openai]
kind = "openai"
base_url = "{}/v1"
[providers.groq]
kind = "openai"
base_url = "{}/v1"
[[routes]]
name = "catalog-model"
models = ["catalog-model"]
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}]
[[limits]]
name = "per-user"
scope = "header:x-relay-token-id"
requests = 5
per = "60s"
routes = ["limited"]
[[routes]]
name = "limited"
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}]
"#,
        mock.url(),
        mock.url()
    );
    dir.write_atomic("tier1.toml", &text)
}

/// tier1 on `127.0.0.1:{port}`: 0 for a port of its own (it reports it: [`Proc::port`]), or the
/// port a previous process had (a restart where the front or Caddy expects it).
async fn tier1(cfg: &std::path::Path, port: u16) -> Proc {
    spawn_tier1(&["--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")]).await
}

/// Whether the tier1 on `port` has answered an API request (its own counter, from its /metrics).
async fn served(port: u16) -> bool {
    let m = get(&format!("http://127.0.0.1:{port}/metrics")).await.text();
    m.lines().any(|l| l.starts_with("tier1_requests_total{") && !l.ends_with(" 0"))
}

fn relay(front: &Front) -> String {
    format!("{}/api/v1/relay/chat/completions", front.url)
}

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bifrost_and_auto_modes_send_everything_through_tier1() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-modes");
    let t = tier1(&tier1_config(&dir, &mock, ""), 0).await;
    let port = t.port();
    for mode in ["bifrost", "auto"] {
        let f = front(mode, &format!("http://127.0.0.1:{port}"), &mock, 5000).await;
        let a = auth(CLIENT);
        for model in ["openai/gpt-4o", "groq/llama-3.3-70b", "catalog-model"] {
            let r = post(&relay(&f), &[("authorization", &a), ("x-request-id", "rid-1")], &chat(model)).await;
            assert_eq!(r.status, 200, "{mode} {model}: {}", r.text());
            assert_eq!(r.header("x-routing-fallback"), None, "{mode}");
            assert!(r.header("x-tier1-provider").is_some(), "{mode}: not served by tier1");
            let s = post(&relay(&f), &[("authorization", &a)], &chat_stream(model)).await;
            assert!(s.text().ends_with("data: [DONE]\n\n"), "{mode}: {}", s.text());
            assert_eq!(s.header("x-routing-fallback"), None);
        }
        // Accept: text/event-stream without a `stream` field gets SSE.
        let s = post(
            &relay(&f),
            &[("authorization", &a), ("accept", "text/event-stream")],
            &chat("openai/gpt-4o"),
        )
        .await;
        assert!(s.text().ends_with("data: [DONE]\n\n"));
    }
    // What the provider received: tier1's provider-side request, without the front's headers.
    for r in mock.stats.requests() {
        for h in
            ["x-relay-token-id", "x-relay-client-ip", "x-omniroute-provider-manifest-url", "authorization"]
        {
            assert!(!r.headers.contains_key(h), "{h} reached the provider");
        }
    }
    let ids: Vec<String> = mock
        .stats
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("x-request-id").map(|v| v.to_str().unwrap().to_owned()))
        .collect();
    assert!(ids.iter().any(|i| i == "rid-1"), "x-request-id was not propagated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_falls_back_when_tier1_is_down_and_returns_when_it_is_back() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-down");
    let cfg = tier1_config(&dir, &mock, "");
    let mut t = tier1(&cfg, 0).await;
    let port = t.port();
    let f = front("auto", &format!("http://127.0.0.1:{port}"), &mock, 800).await;
    let a = auth(CLIENT);
    let ask = || async { post(&relay(&f), &[("authorization", &a)], &chat("openai/gpt-4o")).await };
    assert_eq!(ask().await.header("x-routing-fallback"), None);
    signal(&t.child, "-KILL");
    let _ = t.child.wait().await;
    let r = ask().await;
    assert_eq!((r.status.as_u16(), r.header("x-routing-fallback")), (200, Some("bifrost-error")));
    let r = ask().await;
    assert!(
        r.header("x-routing-fallback").unwrap().starts_with("bifrost-cooldown; remaining="),
        "{:?}",
        r.headers
    );
    let _t = tier1(&cfg, port).await;
    // The front's own cooldown (800 ms, a timer in the node process) has to run out: real time,
    // there is no clock to advance in another process.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = ask().await;
    assert_eq!(r.header("x-routing-fallback"), None, "the front did not return to tier1");
    assert!(r.header("x-tier1-provider").is_some());
}

/// Sends steady traffic through the front until stopped; counts answers, failures and fallbacks.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    problems: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|c| {
                let (stop, ok, problems, url) = (stop.clone(), ok.clone(), problems.clone(), url.clone());
                tokio::spawn(async move {
                    let a = auth(CLIENT);
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let body = if (n + c).is_multiple_of(3) {
                            chat_stream("openai/gpt-4o")
                        } else {
                            chat("openai/gpt-4o")
                        };
                        let r = post(&url, &[("authorization", &a)], &body).await;
                        let complete = r.status == 200
                            && (!body.contains("\"stream\"") || r.text().ends_with("data: [DONE]\n\n"));
                        match (complete, r.header("x-routing-fallback")) {
                            (true, None) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            (_, fallback) => {
                                problems.lock().unwrap().push(format!("{} {fallback:?}", r.status))
                            }
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Self { stop, ok, problems, tasks }
    }

    /// Waits (bounded) until `n` answers in all have come back clean.
    async fn wait_ok(&self, n: usize) {
        let ok = self.ok.clone();
        let reached = wait_until(Duration::from_secs(20), || {
            let reached = ok.load(Ordering::Relaxed) >= n;
            async move { reached }
        })
        .await;
        assert!(
            reached,
            "only {} clean answers, waiting for {n}: {:?}",
            ok.load(Ordering::Relaxed),
            self.problems.lock().unwrap()
        );
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.problems.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_caddy_causes_no_fallback() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-rolling");
    let cfg = tier1_config(&dir, &mock, "");
    let mut replicas = [tier1(&cfg, 0).await, tier1(&cfg, 0).await];
    let ports = [replicas[0].port(), replicas[1].port()];
    let _caddy = caddy(&ports.map(|p| format!("127.0.0.1:{p}")), &dir.0).await;
    let through = format!("http://127.0.0.1:{}", _caddy.ports[0]);
    let ready = format!("{through}/readyz");
    assert!(within(Duration::from_secs(15), || answers(&ready)).await.is_some(), "Caddy never proxied");
    // Both replicas are in Caddy's rotation: requests through it until each has answered one.
    let in_rotation = wait_until(Duration::from_secs(15), || async {
        let key = [("authorization", "Bearer front-shared-key")];
        let a = post(&format!("{through}/v1/chat/completions"), &key, &chat("catalog-model")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        served(ports[0]).await && served(ports[1]).await
    })
    .await;
    assert!(in_rotation, "Caddy never sent a request to both replicas");
    let f = front("auto", &through, &mock, 5000).await;
    let load = Load::start(relay(&f), 4);
    load.wait_ok(20).await;
    for (i, port) in ports.iter().enumerate() {
        signal(&replicas[i].child, "-TERM");
        let _ =
            tokio::time::timeout(Duration::from_secs(20), replicas[i].child.wait()).await.expect("drained");
        replicas[i] = tier1(&cfg, *port).await;
        // Caddy sends the new process traffic (its health check passed) before the next one goes.
        let back = wait_until(Duration::from_secs(15), || served(*port)).await;
        assert!(back, "Caddy never sent traffic to the restarted replica on {port}");
    }
    let (ok, problems) = load.finish().await;
    assert!(problems.is_empty(), "fallbacks or errors during the rolling restart: {problems:?}");
    assert!(ok > 50, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_upgrade_through_reuse_port_causes_no_fallback() {
    // Connections still queued on the old socket when it closes move to the new one.
    let _ = std::process::Command::new("sysctl").args(["-qw", "net.ipv4.tcp_migrate_req=1"]).status();
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-upgrade");
    let cfg = tier1_config(&dir, &mock, "reuse_port = true");
    let mut old = tier1(&cfg, 0).await;
    let port = old.port();
    let f = front("auto", &format!("http://127.0.0.1:{port}"), &mock, 5000).await;
    let load = Load::start(relay(&f), 4);
    load.wait_ok(20).await;
    // The new version binds the same address, then the old one drains.
    let _new = tier1(&cfg, port).await;
    signal(&old.child, "-TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(20), old.child.wait()).await.expect("drained").unwrap();
    assert!(status.success());
    // Traffic keeps flowing on the new process alone.
    let now = load.ok.load(Ordering::Relaxed);
    load.wait_ok(now + 20).await;
    let (ok, problems) = load.finish().await;
    assert!(problems.is_empty(), "fallbacks or errors during the upgrade: {problems:?}");
    assert!(ok > 50, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limits_follow_the_fronts_token_id() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-limits");
    let t = tier1(&tier1_config(&dir, &mock, ""), 0).await;
    let port = t.port();
    let f = front("auto", &format!("http://127.0.0.1:{port}"), &mock, 5000).await;
    let (alice, bob) = (auth(CLIENT), auth(CLIENT_2));
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(post(&relay(&f), &[("authorization", &alice)], &chat("limited")).await);
    }
    let admitted = statuses.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted, 5);
    let limited = statuses.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(limited.header("x-tier1-limit"), Some("per-user"));
    assert_eq!(limited.header("x-routing-fallback"), None, "a 429 must not send the front to its slow path");
    // Bob, another token id, is not affected.
    assert_eq!(post(&relay(&f), &[("authorization", &bob)], &chat("limited")).await.status, 200);
}

#[tokio::test]
async fn a_front_using_tier1_as_an_openai_compatible_provider_is_served() {
    // Seen from OmniRoute used with base URL http://tier1:8080/v1: compact JSON, its provider key
    // as the bearer, no x-* headers, stream_options.include_usage on streams, Accept-only SSE
    // when its client omitted `stream`, and GET /models without authorization.
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-as-provider");
    let t = tier1(&tier1_config(&dir, &mock, ""), 0).await;
    let port = t.port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let bearer = "Bearer front-shared-key";
    let body = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let r = post(&format!("{base}/chat/completions"), &[("authorization", bearer)], body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(text.contains(r#""usage":{"#), "no usage chunk: {text}");
    let compact = r#"{"model":"groq/llama","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(
        &format!("{base}/chat/completions"),
        &[("authorization", bearer), ("accept", "text/event-stream")],
        compact,
    )
    .await;
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    let models = get(&format!("{base}/models")).await;
    assert_eq!(models.status, 200);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&"openai/gpt-4o-mini".to_owned()) && ids.contains(&"catalog-model".to_owned()),
        "{ids:?}"
    );
    // A wrong key is the only 401.
    let r = post(&format!("{base}/chat/completions"), &[("authorization", "Bearer wrong")], compact).await;
    assert_eq!(r.status, 401);
}

/// Issue 20: a front rests the sidecar for *every* provider on any 5xx. tier1 answered "this
/// model rests" (nothing could be tried) with a 503, so one rate-limited model sent every other
/// provider's traffic off the fast path; it is a 429 with `Retry-After` now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_model_is_a_429_and_never_rests_the_sidecar_for_the_other_providers() {
    let limited = Behavior {
        status: Some(http::StatusCode::TOO_MANY_REQUESTS),
        retry_after: Some(http::HeaderValue::from_static("30")),
        ..Behavior::default()
    };
    let mock = MockUpstream::start(MockConfig::default().model("busy", limited)).await.unwrap();
    let dir = TempDir::new("front-429");
    let t = tier1(&tier1_config(&dir, &mock, ""), 0).await;
    let bifrost = format!("http://127.0.0.1:{}", t.port());
    let f = front_with("auto", &bifrost, &mock, 60_000, &[("FALLBACK_ON_5XX", "1")]).await;
    let a = auth(CLIENT);
    // The provider's own 429, then tier1's: the model rests.
    for _ in 0..2 {
        let r = post(&relay(&f), &[("authorization", &a)], &chat("openai/busy")).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some());
        assert_eq!(r.header("x-routing-fallback"), None, "the front rested the sidecar");
    }
    // Every other provider still goes through tier1.
    let r = post(&relay(&f), &[("authorization", &a)], &chat("groq/llama-3.3-70b")).await;
    assert_eq!((r.status.as_u16(), r.header("x-routing-fallback")), (200, None), "{}", r.text());
    assert!(r.header("x-tier1-provider").is_some());
}

/// Issue 20: a front without `BIFROST_API_KEY` forwards its caller's own key. With
/// `server.api_keys` set, tier1 refuses it with a 401 that says what the front must send (a 4xx:
/// the front does not rest the sidecar for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_caller_key_is_refused_with_a_401_naming_bifrost_api_key() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-forwarded-401");
    let t = tier1(&tier1_config(&dir, &mock, ""), 0).await;
    let forward = [("BIFROST_API_KEY", ""), ("FORWARD_CALLER_AUTH", "1")];
    let f = front_with("bifrost", &format!("http://127.0.0.1:{}", t.port()), &mock, 5000, &forward).await;
    let r = post(&relay(&f), &[("authorization", &auth(CLIENT))], &chat("openai/gpt-4o")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("BIFROST_API_KEY"), "{}", r.text());
    assert!(!r.text().contains(CLIENT), "the caller's key was echoed");
    assert_eq!(mock.stats.snapshot().requests, 0);
}

/// Open on loopback (no `server.api_keys`), the forwarded caller key is accepted, never sent
/// upstream (tier1 sends its own provider keys, or none) and never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_loopback_a_forwarded_caller_key_is_accepted_and_goes_nowhere() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new("front-forwarded-open");
    let path = tier1_config(&dir, &mock, "");
    let open = std::fs::read_to_string(&path).unwrap().replace("api_keys = [\"front-shared-key\"]\n", "")
        + "\n[log]\nsample = 1.0\n";
    assert!(!open.contains("api_keys"));
    let path = dir.write_atomic("tier1.toml", &open);
    // The access log goes to stdout, the rest to stderr: both are read here.
    let mut cmd = tokio::process::Command::new("sh");
    let line = format!("exec {BIN} --config {} --listen 127.0.0.1:0 1>&2", path.display());
    cmd.args(["-c", &line]).env("TIER1_LOG", "debug");
    let mut t = spawn_command(cmd).await;
    let forward = [("BIFROST_API_KEY", ""), ("FORWARD_CALLER_AUTH", "1")];
    let f = front_with("bifrost", &format!("http://127.0.0.1:{}", t.port()), &mock, 5000, &forward).await;
    let a = auth(CLIENT);
    let r = post(&relay(&f), &[("authorization", &a)], &chat("openai/gpt-4o")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = post(&relay(&f), &[("authorization", &a)], &chat_stream("groq/llama-3.3-70b")).await;
    assert!(s.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.stats.snapshot().requests, 2);
    for req in mock.stats.requests() {
        for (name, value) in &req.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(CLIENT),
                "{name} carried the caller's key upstream"
            );
        }
    }
    // The access lines of both requests are out; none of tier1's lines holds the key.
    let _ = t.after("tier1::access").await;
    let _ = t.after("tier1::access").await;
    let mut lines = Vec::new();
    while let Ok(l) = t.lines.try_recv() {
        lines.push(l);
    }
    assert!(lines.iter().all(|l| !l.contains(CLIENT)), "the caller's key was logged: {lines:?}");
}
