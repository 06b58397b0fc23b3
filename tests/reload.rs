//! Hot reload: under load with 100+ reloads, file watching (atomic rename and ConfigMap-style
//! symlink swaps), invalid files, state that survives, the admin API and its auth, redaction,
//! and the reload metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// Table `tag`: route `r` tries `fail-{tag}` (always 500) then `good-{tag}`; `extra` is appended.
fn table(mock: &MockUpstream, tag: &str, extra: &str) -> String {
    format!(
        r#"
[reload]
poll_interval = "100ms"

[resilience]
breaker = {{ failure_threshold = 1000000, min_requests = 1000000 }}
retry_budget = {{ ratio = 2.0, min_per_second = 1000 }}

[providers.b]
kind = "openai"
base_url = "{url}"

[[routes]]
name = "r"
retry = {{ attempts = 1 }}
targets = [{{ provider = "b", model = "fail-{tag}" }}, {{ provider = "b", model = "good-{tag}" }}]
{extra}
"#,
        url = mock.url()
    )
}

async fn mock() -> MockUpstream {
    let cfg = MockConfig::default().model("fail-A", fails(500)).model("fail-B", fails(500));
    MockUpstream::start(cfg).await.unwrap()
}

fn model_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body).unwrap()["model"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_no_request_and_never_mix_tables() {
    let mock = mock().await;
    let dir = TempDir::new("reload-load");
    let path = dir.write_atomic("tier1.toml", &table(&mock, "A", ""));
    let t = std::sync::Arc::new(Tier1::start_file(&path, false).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..6 {
        let (t, stop) = (t.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0u32;
            // At most 700 each: the mock records its last 10,000 upstream calls, two a request.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 700 {
                let id = format!("req-{c}-{n}");
                let streaming = n.is_multiple_of(2);
                let body = if streaming { chat_stream("r") } else { chat("r") };
                let a = post(&t.url("/v1/chat/completions"), &[("x-request-id", &id)], &body).await;
                assert_eq!(a.status, 200, "{id}: {}", a.text());
                if streaming {
                    assert!(a.text().ends_with("data: [DONE]\n\n"), "{id} truncated: {}", a.text());
                } else {
                    assert_eq!(a.json()["object"], "chat.completion", "{id}");
                }
                n += 1;
                // Paced, so the 700 spread over the reloads.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        }));
    }
    let mut applied = 0;
    for i in 0..120u32 {
        let tag = if i.is_multiple_of(2) { "B" } else { "A" };
        dir.write_atomic("tier1.toml", &table(&mock, tag, ""));
        let a = post_empty(&t.admin_url("/admin/reload"), &[("x-tier1-admin", "1")]).await;
        assert_eq!(a.status, 200, "{}", a.text());
        // The watcher may have applied this very change first: then the API finds it unchanged.
        applied += u32::from(a.json()["result"] == "ok");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for c in clients {
        served += c.await.unwrap();
    }
    assert!(served >= 200, "only {served} requests in the run");
    assert!(applied >= 60, "only {applied} reloads applied through the API");
    // Every request used one table from start to end: its failing and good targets share a tag.
    let mut by_request: HashMap<String, Vec<String>> = HashMap::new();
    for r in mock.stats.requests() {
        let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
        by_request.entry(id).or_default().push(model_of(&r.body));
    }
    assert_eq!(by_request.len(), served as usize);
    for (id, models) in by_request {
        let tag = &models[0][models[0].len() - 1..];
        assert_eq!(models, [format!("fail-{tag}"), format!("good-{tag}")], "{id} mixed tables");
    }
    let metrics = get(&t.url("/metrics")).await.text();
    let ok: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"tier1_config_reloads_total{result="ok"} "#))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok >= f64::from(applied));
}

/// Sends requests to route `r` until one reaches `good-{tag}`; returns how long it took.
async fn until_serves(t: &Tier1, tag: &str, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let want = format!("good-{tag}");
    loop {
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
        assert_eq!(a.status, 200);
        if a.header("x-tier1-model") == Some(want.as_str()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{want} not served within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn file_change_by_atomic_rename_is_live_within_a_second() {
    let mock = mock().await;
    let dir = TempDir::new("reload-rename");
    let path = dir.write_atomic("tier1.toml", &table(&mock, "A", ""));
    let t = Tier1::start_file(&path, false).await;
    until_serves(&t, "A", Duration::from_secs(1)).await;
    dir.write_atomic("tier1.toml", &table(&mock, "B", ""));
    until_serves(&t, "B", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn configmap_style_symlink_swap_is_live_within_a_second() {
    let mock = mock().await;
    let dir = TempDir::new("reload-configmap");
    // Kubernetes: tier1.toml -> ..data/tier1.toml, ..data -> ..v1; an update writes ..v2 and
    // atomically re-points ..data.
    std::fs::create_dir(dir.path("..v1")).unwrap();
    std::fs::write(dir.path("..v1/tier1.toml"), table(&mock, "A", "")).unwrap();
    std::os::unix::fs::symlink("..v1", dir.path("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tier1.toml", dir.path("tier1.toml")).unwrap();
    let t = Tier1::start_file(&dir.path("tier1.toml"), false).await;
    until_serves(&t, "A", Duration::from_secs(1)).await;
    std::fs::create_dir(dir.path("..v2")).unwrap();
    std::fs::write(dir.path("..v2/tier1.toml"), table(&mock, "B", "")).unwrap();
    std::os::unix::fs::symlink("..v2", dir.path("..data_tmp")).unwrap();
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    until_serves(&t, "B", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn invalid_files_keep_the_old_table_and_show_the_error() {
    let mock = mock().await;
    let dir = TempDir::new("reload-invalid");
    let good = table(&mock, "A", "").replace("poll_interval = \"100ms\"", "poll_interval = \"0s\"");
    let path = dir.write_atomic("tier1.toml", &good);
    let t = Tier1::start_file(&path, false).await;
    let bad_files = [
        ("[routes\nname = ", "TOML parse error"),
        (
            &*good.replace("provider = \"b\", model = \"good-A\"", "provider = \"nope\", model = \"good-A\""),
            "routes[0].targets[1].provider: unknown provider \"nope\"",
        ),
        (
            &*good.replace("retry = { attempts = 1 }", "retry = { attempts = 1, backoff = \"fast\" }"),
            "routes[0].retry.backoff: invalid duration",
        ),
    ];
    for (text, expected) in bad_files {
        dir.write_atomic("tier1.toml", text);
        let a = post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await;
        assert_eq!(a.status, 422, "{}", a.text());
        let errors = a.json()["errors"].as_array().unwrap().clone();
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains(expected)), "{}", a.text());
        let cfg = get_with(&t.url("/admin/config"), &[("x-tier1-admin", "1")]).await.json();
        let errors = cfg["last_reload_error"].as_array().unwrap();
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains(expected)), "{cfg}");
        // Traffic stays on the old table.
        let a = post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
        assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("good-A")));
    }
    let metrics = get(&t.url("/metrics")).await.text();
    assert!(metrics.contains(r#"tier1_config_reloads_total{result="error"} 3"#), "{metrics}");
    assert!(metrics.lines().any(|l| l == "tier1_config_last_reload_successful 0"), "{metrics}");
    // A good file clears the error.
    dir.write_atomic("tier1.toml", &table(&mock, "B", ""));
    assert_eq!(post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"], "ok");
    let metrics = get(&t.url("/metrics")).await.text();
    assert!(metrics.lines().any(|l| l == "tier1_config_last_reload_successful 1"), "{metrics}");
    assert!(
        get_with(&t.url("/admin/config"), &[("x-tier1-admin", "1")]).await.json()["last_reload_error"]
            .is_null()
    );
    assert_eq!(
        post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"],
        "unchanged"
    );
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_reload_that_does_not_touch_it() {
    let mock = MockUpstream::start(MockConfig::default().model("dead", fails(500))).await.unwrap();
    let dir = TempDir::new("reload-breaker");
    let cfg = |extra_model: &str| {
        format!(
            r#"
[reload]
poll_interval = "0s"
[resilience]
breaker = {{ failure_threshold = 2, open_for = "60s" }}
[providers.b]
kind = "openai"
base_url = "{}"
[providers.c]
kind = "openai"
base_url = "{}"
[[routes]]
name = "r"
retry = {{ attempts = 1 }}
targets = [{{ provider = "b", model = "dead" }}, {{ provider = "c", model = "alive" }}]
[[routes]]
name = "other"
models = ["other"{extra_model}]
targets = [{{ provider = "c", model = "alive" }}]
"#,
            mock.url(),
            mock.url()
        )
    };
    let path = dir.write_atomic("tier1.toml", &cfg(""));
    let t = Tier1::start_file(&path, false).await;
    for _ in 0..2 {
        post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
    }
    let dead_calls = || mock.stats.requests().iter().filter(|r| model_of(&r.body) == "dead").count();
    assert_eq!(dead_calls(), 2);
    dir.write_atomic("tier1.toml", &cfg(", \"other-2\""));
    assert_eq!(post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"], "ok");
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-model")), (200, Some("alive")));
    assert_eq!(dead_calls(), 2, "the breaker was reset by the reload");
    let state = get_with(&t.url("/admin/state"), &[("x-tier1-admin", "1")]).await.json();
    assert_eq!(state["routes"][0]["targets"][0]["breaker"], "open");
    // The admin reset closes it.
    assert_eq!(post_empty(&t.url("/admin/breakers/reset"), &[("x-tier1-admin", "1")]).await.status, 200);
    post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
    assert_eq!(dead_calls(), 3);
}

#[tokio::test]
async fn admin_routes_require_the_admin_key_and_redact_every_secret() {
    let mock = mock().await;
    let dir = TempDir::new("reload-admin");
    let text = table(&mock, "A", "")
        + r#"
[server]
api_keys = ["env:FRONT_KEY", "literal-front-key-77"]
admin_keys = ["admin-key-123456"]
"#;
    let text = text
        + r#"
[providers.b.headers]
X-Org = "org-secret-9999"
[[providers.b.keys]]
name = "main"
secret = "env:UPSTREAM_KEY"
[[providers.b.keys]]
name = "literal"
secret = "sk-literal-key-4242"
"#;
    let path = dir.write_atomic("tier1.toml", &text);
    let t = Tier1::start_file(&path, true).await;
    for path in ["/admin/config", "/admin/state"] {
        assert_eq!(get(&t.admin_url(path)).await.status, 401, "{path}");
        assert_eq!(get_with(&t.admin_url(path), &[("authorization", "Bearer wrong")]).await.status, 401);
    }
    assert_eq!(post_empty(&t.admin_url("/admin/reload"), &[]).await.status, 401);
    assert_eq!(post_empty(&t.admin_url("/admin/breakers/reset"), &[]).await.status, 401);
    let auth = [("authorization", "Bearer admin-key-123456")];
    let cfg = get_with(&t.admin_url("/admin/config"), &auth).await;
    assert_eq!(cfg.status, 200);
    let text = cfg.text();
    for secret in [
        "front-key-0001",
        "literal-front-key-77",
        "admin-key-123456",
        "sk-upstream-secret-0001",
        "sk-literal-key-4242",
        "org-secret-9999",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let v = cfg.json();
    assert_eq!(v["hash"].as_str().unwrap().len(), 16);
    assert_eq!(v["config"]["routes"][0]["name"], "r");
    assert_eq!(v["config"]["providers"]["b"]["keys"][1]["name"], "literal");
    // With a separate admin listener, the main one does not serve admin routes.
    assert_eq!(get_with(&t.url("/admin/config"), &auth).await.status, 404);
    assert_eq!(get(&t.admin_url("/healthz")).await.status, 200);
    let front = [("authorization", "Bearer front-key-0001")];
    assert_eq!(post(&t.admin_url("/v1/chat/completions"), &front, &chat("r")).await.status, 404);
    let metrics = get(&t.url("/metrics")).await.text();
    let info: Vec<&str> = metrics.lines().filter(|l| l.starts_with("tier1_config_info{")).collect();
    assert_eq!(info, [format!("tier1_config_info{{hash=\"{}\"}} 1", v["hash"].as_str().unwrap())]);
}

#[tokio::test]
async fn unchanged_providers_keep_their_warm_connections() {
    let mock = mock().await;
    let dir = TempDir::new("reload-pool");
    let text = table(&mock, "A", "").replace("poll_interval = \"100ms\"", "poll_interval = \"0s\"");
    let path = dir.write_atomic("tier1.toml", &text);
    let t = Tier1::start_file(&path, false).await;
    // tier1's pool keeps one connection to the mock alive between requests.
    let reuse = || async {
        post(&t.url("/v1/chat/completions"), &[], &chat("b/good-A")).await;
        mock.stats.snapshot().connections_opened
    };
    let before = reuse().await;
    assert_eq!(reuse().await, before, "no keep-alive to begin with");
    // A reload that changes a route, not the provider: the same connection serves.
    dir.write_atomic("tier1.toml", &text.replace("name = \"r\"", "name = \"r\"\nmodels = [\"r2\"]"));
    assert_eq!(post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"], "ok");
    assert_eq!(reuse().await, before, "the pool was rebuilt by an unrelated reload");
    // Changing the provider's connection settings builds a new pool.
    let changed = text.replace("kind = \"openai\"", "kind = \"openai\"\nconnect_timeout = \"3s\"");
    dir.write_atomic("tier1.toml", &changed);
    assert_eq!(post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"], "ok");
    assert_eq!(reuse().await, before + 1);
}

#[tokio::test]
async fn simultaneous_triggers_coalesce_into_one_reload() {
    let mock = mock().await;
    let dir = TempDir::new("reload-coalesce");
    let text = table(&mock, "A", "").replace("poll_interval = \"100ms\"", "poll_interval = \"0s\"");
    let path = dir.write_atomic("tier1.toml", &text);
    let t = std::sync::Arc::new(Tier1::start_file(&path, false).await);
    dir.write_atomic(
        "tier1.toml",
        &table(&mock, "B", "").replace("poll_interval = \"100ms\"", "poll_interval = \"0s\""),
    );
    let mut triggers = Vec::new();
    for _ in 0..10 {
        let t = t.clone();
        triggers.push(tokio::spawn(async move {
            post_empty(&t.url("/admin/reload"), &[("x-tier1-admin", "1")]).await.json()["result"].clone()
        }));
    }
    let mut results = Vec::new();
    for tr in triggers {
        results.push(tr.await.unwrap());
    }
    let metrics = get(&t.url("/metrics")).await.text();
    let count = |result: &str| -> u64 {
        let prefix = format!("tier1_config_reloads_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    };
    // One reload applied the change; triggers that waited behind it were either covered by it or
    // found the file unchanged; nothing failed.
    assert_eq!(count("ok"), 1, "{results:?}");
    assert_eq!(count("error"), 0);
    assert!(count("unchanged") < 10);
    assert!(results.iter().all(|r| r == "ok" || r == "unchanged"), "{results:?}");
}
