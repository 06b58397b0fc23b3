//! Black-box tests of the real `tier1` binary: first run with no config, SIGTERM drain, port in
//! use, `check`, `mock-upstream` and `health`, and the launch a front's supervisor makes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

use common::spawn_tier1 as spawn;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tier1-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn first_run_with_no_config_answers_from_the_demo() {
    let p = spawn(&["--listen", "127.0.0.1:0"]).await;
    let url = format!("http://{}/v1/chat/completions", p.addr);
    let a = post(&url, &[], &chat("demo")).await;
    assert_eq!(a.status, 200);
    let content = a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(content.contains("mock provider"), "{content}");
    let a = post(&url, &[], &chat_stream("gpt-4o-mini")).await;
    assert_eq!(a.status, 200);
    assert!(a.text().starts_with("data: {"));
    assert!(a.text().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn sigterm_drains_a_stream_in_flight_and_exits_zero() {
    let cfg = temp_file(
        "drain.toml",
        r#"
[server]
drain_timeout = "10s"
[providers.slow]
kind = "mock"
[providers.slow.mock]
tokens_per_second = 20
reply = "one two three four five six seven eight nine ten"
[[routes]]
name = "slow"
targets = [{ provider = "slow", model = "m" }]
"#,
    );
    let mut p = spawn(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    let url = format!("http://{}/v1/chat/completions", p.addr);
    let resp = post_streaming(&url, &[], &chat_stream("slow")).await;
    let mut body = resp.into_body();
    let mut got = next_chunk(&mut body).await.unwrap().to_vec();
    sigterm(&p.child);
    while let Some(c) = next_chunk(&mut body).await {
        got.extend_from_slice(&c);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "stream cut by shutdown: {text}");
    assert_eq!(text.matches("\"content\":\"").count(), 11, "{text}");
    let status =
        tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await.expect("exited").unwrap();
    assert!(status.success(), "{status:?}");
    // Read the log to its end (the reader stops at EOF, once the process has exited).
    let saw_drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut saw = false;
        while let Some(line) = p.lines.recv().await {
            saw |= line.contains("shutdown: drained");
        }
        saw
    })
    .await
    .expect("log closed");
    assert!(saw_drained);
    std::fs::remove_file(cfg).unwrap();
}

#[tokio::test]
async fn port_in_use_gives_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(BIN)
        .args(["--listen", &addr])
        .env_remove("TIER1_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(last.contains("already in use") && last.contains("--listen"), "{stderr}");
}

#[tokio::test]
async fn check_validates_and_lists_every_problem() {
    let good = temp_file("good.toml", tier1::testing::config::DEMO_TOML);
    let out =
        std::process::Command::new(BIN).args(["check", "--config", good.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = temp_file(
        "bad.toml",
        "[server]\nlisten = \"x\"\n[[routes]]\nname = \"r\"\ntargets = [{ provider = \"opneai\", model = \"m\" }]\n",
    );
    let out =
        std::process::Command::new(BIN).args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.listen: invalid socket address"), "{stderr}");
    assert!(stderr.contains("routes[0].targets[0].provider: unknown provider \"opneai\""), "{stderr}");
    std::fs::remove_file(good).unwrap();
    std::fs::remove_file(bad).unwrap();
}

#[tokio::test]
async fn mock_upstream_command_serves_and_injects_faults() {
    let cfg = temp_file(
        "mock.toml",
        "[default]\nreply = \"from file\"\n[models.flaky]\nstatus = 503\nretry_after = \"2\"\n",
    );
    let p = spawn(&["mock-upstream", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]).await;
    let url = format!("http://{}/v1/chat/completions", p.addr);
    let a = post(&url, &[], &chat("anything")).await;
    assert_eq!(a.json()["choices"][0]["message"]["content"], "from file");
    let a = post(&url, &[], &chat("flaky")).await;
    assert_eq!((a.status.as_u16(), a.header("retry-after")), (503, Some("2")));
    let a = post(&url, &[("x-mock-status", "429"), ("x-mock-retry-after", "7")], &chat("anything")).await;
    assert_eq!((a.status.as_u16(), a.header("retry-after")), (429, Some("7")));
    let stats = get(&format!("http://{}/_mock/stats", p.addr)).await.json();
    assert_eq!(stats["requests"], 3);
    std::fs::remove_file(cfg).unwrap();
}

#[tokio::test]
async fn health_command_exits_zero_only_on_2xx() {
    let p = spawn(&["--listen", "127.0.0.1:0"]).await;
    let ok = std::process::Command::new(BIN)
        .args(["health", "--url", &format!("http://{}/healthz", p.addr)])
        .status()
        .unwrap();
    assert!(ok.success());
    let missing = std::process::Command::new(BIN)
        .args(["health", "--url", &format!("http://{}/nope", p.addr)])
        .status()
        .unwrap();
    assert!(!missing.success());
    let port = ClosedPort::new();
    let closed = std::process::Command::new(BIN)
        .args(["health", "--url", &format!("http://127.0.0.1:{}/healthz", port.port()), "--timeout", "1s"])
        .status()
        .unwrap();
    assert!(!closed.success());
}

fn mock_config(reply: &str, extra: &str) -> String {
    format!(
        r#"
[reload]
poll_interval = "0s"
[providers.p]
kind = "mock"
[providers.p.mock]
reply = "{reply}"
[[routes]]
name = "r"
targets = [{{ provider = "p", model = "m" }}]
{extra}
"#
    )
}

async fn reply_of(url: &str) -> String {
    let a = post(url, &[], &chat("r")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let cfg = temp_file("hup.toml", &mock_config("before", ""));
    let p = spawn(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    let url = format!("http://{}/v1/chat/completions", p.addr);
    assert_eq!(reply_of(&url).await, "before");
    std::fs::write(&cfg, mock_config("after", "")).unwrap();
    // File watching is off (poll_interval 0): nothing changes until the signal.
    assert_eq!(reply_of(&url).await, "before");
    signal(&p.child, "-HUP");
    let reloaded = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if reply_of(&url).await == "after" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reloaded.is_ok(), "SIGHUP did not reload");
    std::fs::remove_file(cfg).unwrap();
}

#[tokio::test]
async fn check_against_a_running_instance_prints_the_diff() {
    let running = temp_file("running.toml", &mock_config("x", ""));
    let p = spawn(&["--config", running.to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    let next =
        mock_config("y", "[[routes]]\nname = \"new\"\ntargets = [{ provider = \"p\", model = \"m2\" }]\n");
    let local = temp_file("next.toml", &next);
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", local.to_str().unwrap(), "--against", &format!("http://{}", p.addr)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("+ routes.new"), "{stdout}");
    assert!(stdout.contains("~ providers.p"), "{stdout}");
    assert!(!stdout.contains("routes.r"), "{stdout}");
    let same = std::process::Command::new(BIN)
        .args(["check", "--config", running.to_str().unwrap(), "--against", &format!("http://{}", p.addr)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&same.stdout).contains("no differences"));
    std::fs::remove_file(running).unwrap();
    std::fs::remove_file(local).unwrap();
}

/// `--probe-listen` (a sidecar's kubelet and scraper reach it on the pod address while the API
/// stays on loopback) serves health, readiness and metrics, and nothing else: no API with or
/// without a key, no model list, no admin route. `TIER1_PROBE_LISTEN` does the same.
#[tokio::test]
async fn the_probe_listener_serves_health_and_metrics_only() {
    let cfg = temp_file(
        "probe.toml",
        "[server]\napi_keys = [\"front-key\"]\n[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"demo\"\ntargets = [{ provider = \"m\", model = \"m\" }]\n",
    );
    for via_env in [false, true] {
        let mut args = vec!["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"];
        if !via_env {
            args.extend(["--probe-listen", "127.0.0.1:0"]);
        }
        let mut p = if via_env {
            let mut child = tokio::process::Command::new(BIN);
            child.args(&args).env("TIER1_PROBE_LISTEN", "127.0.0.1:0");
            common::spawn_command(child).await
        } else {
            spawn(&args).await
        };
        let probe = p.after("health and metrics on http://").await;
        for path in ["/healthz", "/health", "/readyz", "/metrics"] {
            let a = get(&format!("http://{probe}{path}")).await;
            assert_eq!(a.status, 200, "{path} on the probe listener");
        }
        assert!(get(&format!("http://{probe}/metrics")).await.text().contains("tier1_build_info"));
        let chat_url = format!("http://{probe}/v1/chat/completions");
        let key = [("authorization", "Bearer front-key")];
        assert_eq!(post(&chat_url, &[], &chat("demo")).await.status, 404);
        assert_eq!(post(&chat_url, &key, &chat("demo")).await.status, 404);
        assert_eq!(get(&format!("http://{probe}/v1/models")).await.status, 404);
        assert_eq!(get(&format!("http://{probe}/admin/state")).await.status, 404);
        if via_env {
            // A reload keeps the command line's addresses: no restart warning, the probe stays.
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(
                &cfg,
                text.replace("name = \"demo\"", "name = \"demo\"\nmodels = [\"demo\", \"d2\"]"),
            )
            .unwrap();
            let reloaded = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(line) = p.lines.recv().await {
                    assert!(!line.contains("change only on restart"), "{line}");
                    if line.contains("config reloaded") {
                        return;
                    }
                }
            });
            reloaded.await.expect("reloaded in time");
            assert_eq!(get(&format!("http://{probe}/readyz")).await.status, 200);
        }
        // The API is where it was.
        assert_eq!(
            post(&format!("http://{}/v1/chat/completions", p.addr), &key, &chat("demo")).await.status,
            200
        );
    }
}

/// Built from a checkout, `--version` names the commit (and its date), so a report from the
/// field says exactly which code it ran.
#[test]
fn version_names_the_git_commit_it_was_built_from() {
    let out = std::process::Command::new(BIN).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(
        text.starts_with(&format!("tier1 {} ({} ", env!("CARGO_PKG_VERSION"), head.trim())),
        "{text:?} does not name HEAD {head:?}"
    );
}

/// The probe listener holds at most 64 connections (`proxy::server::PROBE_CONNECTIONS`): a
/// neighbour on the pod network that opens more and sends nothing waits in the backlog, and the
/// API beside it answers all the while.
#[tokio::test]
async fn a_flood_of_probe_connections_is_bounded_and_leaves_the_api_alone() {
    let cfg = temp_file(
        "probe-flood.toml",
        "[server]\nheader_timeout = \"60s\"\n[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"demo\"\ntargets = [{ provider = \"m\", model = \"m\" }]\n",
    );
    let mut p = spawn(&[
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--probe-listen",
        "127.0.0.1:0",
    ])
    .await;
    let probe = p.after("health and metrics on http://").await;
    let mut idle = Vec::new();
    for _ in 0..tier1::testing::proxy::server::PROBE_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(&probe).await.unwrap());
    }
    // Accepted connections are served in turn: one more probe waits until a slot frees.
    let waiting = tokio::spawn({
        let url = format!("http://{probe}/healthz");
        async move { get(&url).await.status }
    });
    // Asserting an absence: no state to poll for, so a window in which a served probe would
    // have answered (a readiness wait would be a poll; this is the scenario's observation).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the probe listener took more than its bound");
    assert_eq!(post(&format!("http://{}/v1/chat/completions", p.addr), &[], &chat("demo")).await.status, 200);
    drop(idle.pop());
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap(), 200);
}

/// A type error names its key path, not only its line: `rpm = "600"` in the second `[[limits]]`.
#[test]
fn check_names_the_key_path_of_a_type_error() {
    let bad = temp_file(
        "type-error.toml",
        "[[limits]]\nname = \"a\"\nrpm = 60\n[[limits]]\nname = \"b\"\nrpm = \"600\"\n",
    );
    let out =
        std::process::Command::new(BIN).args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "{}: limits[1].rpm: TOML parse error at line 6, column 7: invalid type: a string, expected u64\n",
            bad.display()
        )
    );
    std::fs::remove_file(bad).unwrap();
}

/// One `check` run lists every structural error of the file, in file order (serde alone stops at
/// the first), and exits 1.
#[test]
fn check_lists_every_structural_error_at_once() {
    let bad = temp_file(
        "structure.toml",
        "[server]\nlisten = 8080\n[[routes]]\nname = \"r\"\ntargets = \"all\"\n[[limits]]\nrpm = \"600\"\n",
    );
    let out =
        std::process::Command::new(BIN).args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let paths: Vec<&str> = stderr
        .lines()
        .map(|l| l.strip_prefix(&format!("{}: ", bad.display())).unwrap().split(": ").next().unwrap())
        .collect();
    assert_eq!(paths, ["server.listen", "routes[0].targets", "limits[0].rpm"], "{stderr}");
    std::fs::remove_file(bad).unwrap();
}

/// Starts tier1 as OmniRoute's supervisor starts its Bifrost sidecar (its installer's spawn
/// arguments: `-port N -host 127.0.0.1 -app-dir DIR -log-level L`, in DIR), on a picked port (others
/// while it is taken), and waits for Bifrost's ready line, the one scripts that start Bifrost grep.
async fn start_supervised(dir: &std::path::Path, level: &str, env: &[(&str, &str)]) -> Server {
    start_server("tier1, supervised", 1, "successfully started bifrost", |ports| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["-port", &ports[0].to_string(), "-host", "127.0.0.1"])
            .args(["-app-dir", dir.to_str().unwrap(), "-log-level", level])
            .current_dir(dir)
            .envs(env.iter().copied());
        for var in ["TIER1_CONFIG", "TIER1_LISTEN", "TIER1_PROBE_LISTEN", "TIER1_LOG"] {
            cmd.env_remove(var);
        }
        cmd
    })
    .await
}

/// The front's health loop, bounded and without a key (its supervisor's and its model sync's
/// requests): polls `GET /v1/models` until it answers 200, then checks it and `GET /health` a few
/// rounds more. Returns the listed model ids.
async fn health_loop(base: &str) -> Vec<String> {
    let models = format!("{base}/v1/models");
    let healthy = wait_until(Duration::from_secs(10), || async {
        let req = http::Request::get(&models).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
        client().request(req).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(healthy, "{models} never answered 200");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let list = get(&models).await;
        assert_eq!(list.status, 200, "{}", list.text());
        assert_eq!(list.header("content-type"), Some("application/json"));
        let list = list.json();
        assert_eq!(list["object"], "list", "{list}");
        ids = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model", "{m}");
                m["id"].as_str().unwrap().to_owned()
            })
            .collect();
        let health = get(&format!("{base}/health")).await;
        assert_eq!(health.status, 200, "{}", health.text());
    }
    ids
}

/// The address the ready lines name: `-host` and `-port`, both honoured.
fn assert_bound_as_told(server: &Server) -> String {
    let addr = format!("127.0.0.1:{}", server.ports[0]);
    let want = format!("successfully started bifrost, serving UI on http://{addr}");
    assert!(server.ready_line.contains(&want), "{}", server.ready_line);
    let listening = format!("listening on http://{addr}");
    assert!(server.before.iter().any(|l| l.contains(&listening)), "{:?}", server.before);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_supervised_launch_with_no_tier1_toml_serves_the_demo_and_says_so() {
    let dir = TempDir::new("supervised-demo");
    std::fs::write(dir.path("config.json"), "{}").unwrap(); // Bifrost's, left by a previous install
    let server = start_supervised(&dir.0, "info", &[]).await;
    let base = assert_bound_as_told(&server);
    let warnings: Vec<_> = server.before.iter().filter(|l| l.starts_with("WARNING:")).collect();
    assert_eq!(warnings.len(), 1, "{:?}", server.before);
    let looked_for = dir.path("tier1.toml").display().to_string();
    assert!(warnings[0].contains(&looked_for) && warnings[0].contains("demo"), "{}", warnings[0]);
    assert!(warnings[0].contains("mock providers") && warnings[0].contains("config.json"), "{}", warnings[0]);
    let ids = health_loop(&base).await;
    assert!(ids.contains(&"demo".to_owned()) && ids.contains(&"mock/mock-1".to_owned()), "{ids:?}");
    let a = post(&format!("{base}/v1/chat/completions"), &[], &chat("demo")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["choices"][0]["message"]["content"].as_str().unwrap().contains("mock provider"));
}

#[tokio::test]
async fn a_supervised_launch_serves_the_app_dirs_tier1_toml() {
    let dir = TempDir::new("supervised-file");
    std::fs::write(
        dir.path("tier1.toml"),
        r#"
[server]
listen = "127.0.0.1:1"                  # -host and -port win
api_keys = ["env:FRONT_KEY"]
[providers.local]
kind = "mock"
[providers.local.mock]
reply = "from the app dir"
[[routes]]
name = "supervised"
targets = [{ provider = "local", model = "m" }]
"#,
    )
    .unwrap();
    // `warn`: what OmniRoute's installer passes; the ready lines pass any level.
    let server = start_supervised(&dir.0, "warn", &[("FRONT_KEY", "front-key")]).await;
    let base = assert_bound_as_told(&server);
    assert!(!server.before.iter().any(|l| l.contains("WARNING")), "{:?}", server.before);
    let ids = health_loop(&base).await;
    assert!(ids.contains(&"supervised".to_owned()) && !ids.contains(&"demo".to_owned()), "{ids:?}");
    let url = format!("{base}/v1/chat/completions");
    let a = post(&url, &[("authorization", "Bearer front-key")], &chat("supervised")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["choices"][0]["message"]["content"], "from the app dir");
    assert_eq!(post(&url, &[], &chat("supervised")).await.status, 401);
}

/// Bifrost's one-shot database jobs (`-migrate-only`, `-matview-refresh-only`): tier1 has no
/// database, says so and exits 0, where serving would leave the job running forever.
#[tokio::test]
async fn bifrosts_one_shot_database_jobs_exit_at_once() {
    for flag in ["-migrate-only", "-matview-refresh-only"] {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(BIN).args(["-app-dir", "/nonexistent", flag]).output(),
        )
        .await
        .expect("exits in time")
        .unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("no database"), "{flag}: {out:?}");
    }
}

/// A config whose in-process mock answers every model, with one JSON access line per request.
fn logged_config(name: &str) -> PathBuf {
    temp_file(
        name,
        r#"
[log]
format = "json"
sample = 1.0
[providers.m]
kind = "mock"
[[routes]]
name = "r"
targets = [{ provider = "m", model = "m" }]
"#,
    )
}

/// Issue 24, item 1: a stdout nobody reads (a stalled pipe, a stuck log collector) never holds a
/// request. Before, the access line was written on the request's thread: once the pipe's 64 KiB
/// were full, the runtime's threads blocked in `write` and every request waited. Now the line
/// is queued for the writer thread (dropped and counted when the queue is full).
#[tokio::test]
async fn a_stalled_stdout_never_holds_a_request() {
    let cfg = logged_config("stalled.toml");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let p = spawn_command_to(cmd, writer.into()).await;
    let url = p.url("/v1/chat/completions");
    // About 300 bytes a line: 600 lines are three times what the pipe holds.
    for i in 0..600 {
        let answer = tokio::time::timeout(Duration::from_secs(10), post(&url, &[], &chat("r")))
            .await
            .unwrap_or_else(|_| panic!("request {i} waited for stdout"));
        assert_eq!(answer.status, 200);
    }
    let text = get(&p.url("/metrics")).await.text();
    assert_eq!(metric(&text, "tier1_log_lines_dropped_total"), Some(0.0), "the queue holds 600 lines");
    drop(reader);
    std::fs::remove_file(cfg).unwrap();
}

/// A graceful stop writes every queued access line before the process ends: each request's line,
/// whole, JSON.
#[tokio::test]
async fn a_graceful_stop_writes_every_queued_access_line() {
    let cfg = logged_config("flushed.toml");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let mut p = spawn_command_to(cmd, std::process::Stdio::piped()).await;
    let mut stdout = p.child.stdout.take().unwrap();
    let read = tokio::spawn(async move {
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out).await.unwrap();
        out
    });
    let url = p.url("/v1/chat/completions");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    assert_eq!(post(&url, &[], &chat("r")).await.status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    sigterm(&p.child);
    let status =
        tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await.expect("exited").unwrap();
    assert!(status.success(), "{status:?}");
    let out = tokio::time::timeout(Duration::from_secs(10), read).await.expect("stdout closed").unwrap();
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    assert_eq!(lines.len(), 200, "{out}");
    assert!(lines.iter().all(|l| l["target"] == "tier1::access" && l["status"] == 200));
    std::fs::remove_file(cfg).unwrap();
}
