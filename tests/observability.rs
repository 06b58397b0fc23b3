//! Observability: every metric moves by the right amount with the right labels, `/metrics` passes
//! `promtool check metrics`, the alert rules pass their unit tests, a real Prometheus scrapes
//! tier1, the dashboard and alerts only use exported names, and made-up names add no series.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn cfg(mock: &MockUpstream) -> String {
    let url = mock.url();
    format!(
        r#"
[resilience]
breaker = {{ failure_threshold = 1, open_for = "60s" }}

[providers.a]
kind = "openai"
base_url = "{url}"
models = ["direct-ok"]
[[providers.a.keys]]
name = "k1"
secret = "sk-a-0001"

[providers.b]
kind = "openai"
base_url = "{url}"

[providers.c]
kind = "openai"
base_url = "{url}"
max_inflight = 4
[[providers.c.keys]]
name = "tired"
secret = "sk-c-limited"

[[routes]]
name = "r"
retry = {{ attempts = 1 }}
targets = [{{ provider = "b", model = "broken" }}, {{ provider = "a", model = "good", input_cost = 1000000.0, output_cost = 2000000.0 }}]

[[routes]]
name = "h"
hedge_after = "50ms"
targets = [{{ provider = "a", model = "slow" }}, {{ provider = "a", model = "fast" }}]

[[routes]]
name = "limited"
targets = [{{ provider = "c", model = "any" }}]

# A Redis nobody runs (its metrics exist, it is down) and a limit on a route no test uses.
[redis]
url = "redis://127.0.0.1:9"
sync_interval = "1s"
timeout = "50ms"

[[limits]]
name = "unused"
routes = ["nowhere"]
rpm = 1
"#
    )
}

async fn mock() -> MockUpstream {
    let limited = Behavior { retry_after: Some(http::HeaderValue::from_static("30")), ..fails(429) };
    let slow = Behavior { latency: Duration::from_secs(2), ..Behavior::default() };
    let cfg = MockConfig::default()
        .model("broken", fails(500))
        .model("refused", fails(400))
        .model("slow", slow)
        .key("sk-c-limited", limited);
    MockUpstream::start(cfg).await.unwrap()
}

/// The value of the series `name{labels}` (labels in any order), if present.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let labels: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", labels.join(",")) };
    text.lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|r| r.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

#[tokio::test]
async fn every_metric_moves_by_the_right_amount() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock)).await;
    let url = t.url("/v1/chat/completions");
    // One forced fallback: b/broken fails (and its breaker opens at the first failure), a/good answers.
    let a = post(&url, &[], &chat("r")).await;
    assert_eq!((a.status.as_u16(), a.header("x-tier1-fallback-reason")), (200, Some("server")));
    // A stream with usage, a hedge, a rate-limited key, a direct request, a bad one.
    let stream = r#"{"model":"a/direct-ok","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    assert!(post(&url, &[], stream).await.text().ends_with("[DONE]\n\n"));
    assert_eq!(post(&url, &[], &chat("h")).await.header("x-tier1-model"), Some("fast"));
    assert_eq!(post(&url, &[], &chat("limited")).await.status, 429);
    assert_eq!(post(&url, &[], &chat("nope")).await.status, 404);
    // A provider's refusal of the caller's request, relayed.
    assert_eq!(post(&url, &[], &chat("a/refused")).await.status, 400);
    let m = get(&t.url("/metrics")).await.text();
    let v = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);

    assert_eq!(
        v(
            "tier1_fallbacks_total",
            &[("route", "r"), ("from_provider", "b"), ("to_provider", "a"), ("reason", "server")]
        ),
        Some(1.0)
    );
    assert_eq!(v("tier1_retries_total", &[("provider", "b"), ("reason", "server")]), Some(1.0));
    assert_eq!(
        v("tier1_upstream_requests_total", &[("provider", "b"), ("model", "broken"), ("outcome", "server")]),
        Some(1.0)
    );
    assert_eq!(
        v("tier1_upstream_requests_total", &[("provider", "a"), ("model", "good"), ("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "tier1_upstream_requests_total",
            &[("provider", "c"), ("model", "any"), ("outcome", "rate_limited")]
        ),
        Some(1.0)
    );
    // b's target breaker opened; one model's failure leaves the provider's own breaker closed.
    assert_eq!(v("tier1_breaker_transitions_total", &[("provider", "b"), ("to", "open")]), Some(1.0));
    assert_eq!(v("tier1_breaker_state", &[("provider", "b"), ("target", "broken")]), Some(2.0));
    assert_eq!(v("tier1_breaker_state", &[("provider", "b"), ("target", "*")]), Some(0.0));
    assert_eq!(v("tier1_breaker_state", &[("provider", "a"), ("target", "good")]), Some(0.0));
    // The same breakers, one 0/1 series per state, with the model label every family uses.
    let status = |provider, model| {
        ["closed", "half_open", "open"].map(|state| {
            v("tier1_breaker_status", &[("provider", provider), ("model", model), ("state", state)])
        })
    };
    assert_eq!(status("b", "broken"), [Some(0.0), Some(0.0), Some(1.0)]);
    assert_eq!(status("b", "*"), [Some(1.0), Some(0.0), Some(0.0)]);
    assert_eq!(status("a", "good"), [Some(1.0), Some(0.0), Some(0.0)]);
    assert_eq!(
        v(
            "tier1_key_cooldowns_total",
            &[("provider", "c"), ("key", "tired"), ("reason", "rate_limited"), ("scope", "model")]
        ),
        Some(1.0)
    );
    // The 429 rested one model on the key: the key itself is still available.
    assert_eq!(v("tier1_keys_available", &[("provider", "c")]), Some(1.0));
    assert_eq!(v("tier1_keys_available", &[("provider", "a")]), Some(1.0));
    assert_eq!(v("tier1_keys_available", &[("provider", "b")]), None, "b needs no key: no series");
    assert_eq!(
        v("tier1_hedges_total", &[("route", "h"), ("trigger", "hedge_after"), ("winner", "hedge")]),
        Some(1.0)
    );
    // The mock reports 9 prompt tokens and one completion token per word of its reply (11).
    assert_eq!(
        v("tier1_tokens_total", &[("provider", "a"), ("model", "good"), ("direction", "input")]),
        Some(9.0)
    );
    assert_eq!(
        v("tier1_tokens_total", &[("provider", "a"), ("model", "good"), ("direction", "output")]),
        Some(11.0)
    );
    assert_eq!(
        v("tier1_tokens_total", &[("provider", "a"), ("model", "direct-ok"), ("direction", "output")]),
        Some(11.0)
    );
    // $1 and $2 per token in this config: 9 * 1 + 11 * 2.
    assert_eq!(v("tier1_cost_usd_total", &[("provider", "a"), ("model", "good")]), Some(31.0));
    assert_eq!(
        v("tier1_time_to_first_token_seconds_count", &[("provider", "a"), ("model", "direct-ok")]),
        Some(1.0)
    );
    assert!(
        v("tier1_inter_token_seconds_count", &[("provider", "a"), ("model", "direct-ok")]).unwrap() >= 10.0
    );
    assert_eq!(
        v("tier1_upstream_duration_seconds_count", &[("provider", "a"), ("model", "good")]),
        Some(1.0)
    );
    let requests = |route, code, class| {
        v(
            "tier1_requests_total",
            &[("route", route), ("endpoint", "chat"), ("code", code), ("status_class", class)],
        )
    };
    assert_eq!(requests("r", "ok", "2xx"), Some(1.0));
    // The rate-limited key's 429 and the unknown model's 404, told apart (one status class).
    assert_eq!(requests("limited", "rate_limited", "4xx"), Some(1.0));
    assert_eq!(requests("unmatched", "not_found", "4xx"), Some(1.0));
    assert_eq!(requests("direct", "invalid", "4xx"), Some(1.0));
    assert_eq!(v("tier1_overhead_seconds_count", &[("endpoint", "chat")]), Some(6.0));
    assert_eq!(
        v(
            "tier1_request_duration_seconds_count",
            &[("route", "direct"), ("endpoint", "chat"), ("stream", "true")]
        ),
        Some(1.0)
    );
    assert!(v("tier1_queue_wait_seconds_count", &[]).unwrap() >= 1.0);
    assert_eq!(v("tier1_inflight_requests", &[]), Some(0.0));
    let build = m.lines().find(|l| l.starts_with("tier1_build_info{")).unwrap();
    assert!(build.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(build.contains(r#"revision=""#) && build.ends_with(" 1"), "{build}");
    assert_eq!(v("tier1_config_reloads_total", &[("result", "error")]), Some(0.0));
    assert_eq!(v("tier1_config_last_reload_successful", &[]), Some(1.0));
    assert!(v("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(v("process_open_fds", &[]).unwrap() > 0.0);
    // The overhead histogram starts at 10 µs.
    assert!(m.contains(r#"tier1_overhead_seconds_bucket{endpoint="chat",le="0.00001"}"#), "{m}");
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock)).await;
    post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
    let text = get(&t.url("/metrics")).await.text();
    let mut child = tool(None, "promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let dir = format!("{ROOT}/deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = tool(None, "promtool").args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Metric names in PromQL text: `tier1_*` and `process_*`, histogram suffixes folded.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["tier1_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let end = start
                + bytes[start..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            let preceded =
                start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            if !preceded {
                let name = &text[start..end];
                let base =
                    ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                out.insert(base.to_owned());
            }
            from = end;
        }
    }
    out
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock)).await;
    let url = t.url("/v1/chat/completions");
    for body in [chat("r"), chat("h"), chat("limited"), chat_stream("a/direct-ok")] {
        post(&url, &[], &body).await;
    }
    let exported: BTreeSet<String> = get(&t.url("/metrics"))
        .await
        .text()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ").and_then(|l| l.split_whitespace().next()).map(str::to_owned)
        })
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/deploy/grafana/tier1.json")).unwrap())
            .unwrap();
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let alerts = std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/alerts.yml")).unwrap();
    for (what, text) in [("dashboard", exprs), ("alerts", alerts)] {
        let used = names_in(&text);
        assert!(used.len() >= 5, "{what}: {used:?}");
        let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(missing.is_empty(), "{what} uses metrics tier1 does not export: {missing:?}");
    }
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_models_and_header_values_add_no_series() {
    let mock = mock().await;
    let t = std::sync::Arc::new(Tier1::start(&cfg(&mock)).await);
    let url = t.url("/v1/chat/completions");
    let series =
        |text: &str| text.lines().filter(|l| !l.starts_with('#') && !l.starts_with("process_")).count();
    // Warm up every label set the config allows, then count.
    for body in [chat("a/warm"), chat("unknown-model"), chat("a/direct-ok")] {
        post(&url, &[], &body).await;
    }
    let before = series(&get(&t.url("/metrics")).await.text());
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (t, url) = (t.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..1250 {
                let n = w * 1250 + i;
                let model = if n % 2 == 0 { format!("made-up-{n}") } else { format!("a/made-up-{n}") };
                let token = format!("tok-{n}");
                let id = format!("id-{n}");
                let a =
                    post(&url, &[("x-relay-token-id", &token), ("x-request-id", &id)], &chat(&model)).await;
                assert!(a.status == 404 || a.status == 200, "{model}: {}", a.status);
            }
            let _ = &t;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let text = get(&t.url("/metrics")).await.text();
    assert_eq!(series(&text), before, "10,000 made-up names added series");
    assert!(!text.contains("made-up") && !text.contains("tok-") && !text.contains("id-1"));
}

/// A Prometheus (in `dir`) scraping tier1 at `target` every second as job `tier1`; its address.
async fn prometheus(target: std::net::SocketAddr, dir: &TempDir) -> (Server, String) {
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tier1\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(dir.path("prometheus.yml"), config).unwrap();
    let mut cmd = tool(None, "prometheus");
    cmd.arg(format!("--config.file={}", dir.path("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path("data").display()))
        .arg("--web.listen-address=127.0.0.1:0");
    // It binds :0 and logs `msg="Listening on" address=127.0.0.1:PORT`.
    let server = start_reporting("prometheus", "msg=\"Listening on\"", cmd).await;
    let addr =
        server.ready_line.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    (server, addr)
}

/// `text` as a URL query value.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's JSON answer to `GET path` (`None`: no answer within 2 s).
async fn prometheus_api(addr: &str, path: &str) -> Option<serde_json::Value> {
    let request = http::Request::get(format!("http://{addr}{path}")).body(Default::default()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(2), client().request(request)).await.ok()?.ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// `expr` evaluated now.
async fn instant(addr: &str, expr: &str) -> Option<serde_json::Value> {
    prometheus_api(addr, &format!("/api/v1/query?query={}", encoded(expr))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_fallback_counter() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock)).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("r")).await;
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("server"));
    let dir = TempDir::new("prometheus");
    let (server, addr) = prometheus(t.addr, &dir).await;
    let query = r#"sum(tier1_fallbacks_total{route="r",reason="server"})"#;
    // Bounded poll on the series (Prometheus scrapes every second).
    let found = std::sync::Mutex::new(None);
    let scraped = wait_until(Duration::from_secs(60), || async {
        let value = instant(&addr, query)
            .await
            .and_then(|v| v["data"]["result"][0]["value"][1].as_str().map(str::to_owned));
        let hit = value.is_some();
        *found.lock().unwrap() = value;
        hit
    })
    .await;
    drop(server);
    assert!(scraped, "Prometheus never returned the series");
    let found = found.lock().unwrap().take();
    assert_eq!(found.as_deref(), Some("1"));
}

/// Every dashboard query, with its variables at their default (All: `.*`), evaluates on a real
/// Prometheus scraping tier1; the panels on the request codes, breaker states, reloads, versions
/// and per-instance process figures show tier1's series; the `job`, `namespace` and `instance`
/// variables list what the scrape has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_dashboard_query_and_variable() {
    let mock = mock().await;
    let t = Tier1::start(&cfg(&mock)).await;
    let url = t.url("/v1/chat/completions");
    // An answer after a fallback (b/broken's breaker opens), a 429 and a 404.
    for (body, status) in [(chat("r"), 200), (chat("limited"), 429), (chat("nope"), 404)] {
        assert_eq!(post(&url, &[], &body).await.status, status);
    }
    let dir = TempDir::new("prometheus-dashboard");
    let (server, addr) = prometheus(t.addr, &dir).await;
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/deploy/grafana/tier1.json")).unwrap())
            .unwrap();
    let all = |q: &str| {
        q.replace("$job", ".*")
            .replace("$namespace", ".*")
            .replace("$instance", ".*")
            .replace("$__rate_interval", "1m")
    };
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries
                .push((panel["title"].as_str().unwrap().to_owned(), all(target["expr"].as_str().unwrap())));
        }
    }
    // Rates need two scrapes in their window.
    let rate = &queries[0].1;
    let ready = wait_until(Duration::from_secs(60), || async {
        instant(&addr, rate)
            .await
            .is_some_and(|v| v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()))
    })
    .await;
    assert!(ready, "Prometheus never had two scrapes of tier1");
    let mut results: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for (title, expr) in &queries {
        let v = instant(&addr, expr).await.unwrap();
        assert_eq!(v["status"], "success", "{title}: {expr}: {v}");
        results.push((title.clone(), v["data"]["result"].as_array().unwrap().clone()));
    }
    let shown = |title: &str| -> Vec<serde_json::Value> {
        let r: Vec<_> = results.iter().filter(|(t, _)| t == title).flat_map(|(_, r)| r.clone()).collect();
        assert!(!r.is_empty(), "{title} shows nothing");
        r
    };
    let codes: BTreeSet<String> = shown("Errors by code (share of answers)")
        .iter()
        .map(|s| s["metric"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, BTreeSet::from(["not_found".to_owned(), "rate_limited".to_owned()]));
    let breakers = shown("Circuit breakers by state, and those not closed");
    assert!(
        breakers.iter().any(|s| s["metric"]["model"] == "broken" && s["metric"]["state"] == "open"),
        "{breakers:?}"
    );
    let split: BTreeSet<String> = shown("Time to the head: tier1's work and what it waited on")
        .iter()
        .map(|s| s["metric"]["kind"].as_str().unwrap_or("tier1 work").to_owned())
        .collect();
    assert!(split.contains("tier1 work") && split.contains("upstream"), "{split:?}");
    for title in [
        "Wait p99 by kind",
        "Config reloads",
        "Versions running",
        "Resident memory by instance",
        "CPU (cores) by instance",
        "Open file descriptors by instance",
    ] {
        shown(title);
    }
    let per_instance = shown("Resident memory by instance");
    assert_eq!(per_instance.len(), 1);
    assert_eq!(per_instance[0]["metric"]["instance"], t.addr.to_string());
    // The variables: `label_values(selector, label)` is the label's values on the selector.
    let mut listed = Vec::new();
    for v in dashboard["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        let q = all(v["query"].as_str().unwrap());
        let inner = q.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(", ").unwrap();
        let path = format!("/api/v1/label/{label}/values?match[]={}", encoded(selector));
        let answer = prometheus_api(&addr, &path).await.unwrap();
        assert_eq!(answer["status"], "success", "{q}: {answer}");
        listed.push((v["name"].as_str().unwrap().to_owned(), answer["data"].clone()));
    }
    drop(server);
    let instance = t.addr.to_string();
    assert_eq!(
        listed,
        [
            ("job".to_owned(), serde_json::json!(["tier1"])),
            ("namespace".to_owned(), serde_json::json!([])),
            ("instance".to_owned(), serde_json::json!([instance])),
        ]
    );
}
