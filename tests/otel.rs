//! OpenTelemetry traces against a mock OTLP/HTTP collector that decodes each protobuf
//! `ExportTraceServiceRequest`: the spans of a request with a fallback (parent and child, the
//! incoming trace id, the GenAI attributes, no content), the trace context the upstream sees, a
//! malformed `traceparent` ignored, and a collector that is down or stalled neither slowing nor
//! failing requests (its drops counted). With the exporter off, nothing is forwarded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::net::TcpListener;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// Content that must never reach a span.
const PROMPT: &str = "PROMPT-CONTENT-never-exported-7731";

/// A mock OTLP/HTTP collector: every `POST /v1/traces` decoded and its spans kept; `stall`: it
/// reads requests and never answers.
struct Collector {
    url: String,
    calls: Arc<AtomicUsize>,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Collector {
    async fn start(stall: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (calls.clone(), spans.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (c, s) = (c.clone(), s.clone());
                        async move { Ok::<_, Infallible>(receive(req, &c, &s, stall).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { url, calls, spans }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    req: Request<Incoming>,
    calls: &AtomicUsize,
    spans: &Mutex<Vec<(String, Span)>>,
    stall: bool,
) -> Response<Full<Bytes>> {
    calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(req.uri().path(), "/v1/traces");
    assert_eq!(req.headers()["content-type"], "application/x-protobuf");
    assert_eq!(req.headers()["authorization"], "Bearer collector-token");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if stall {
        std::future::pending::<()>().await;
    }
    let export = ExportTraceServiceRequest::decode(body).unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.lock().unwrap().push((service.clone(), span));
            }
        }
    }
    Response::new(Full::new(Bytes::new()))
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(|v| text(Some(v))).collect::<Vec<_>>().join(","),
        _ => String::new(),
    }
}

/// A span's attribute, as text.
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| text(kv.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Two targets on one mock upstream: `broken` fails (500), `good` answers; traces to `endpoint`.
fn cfg(upstream: &MockUpstream, otlp: &str) -> String {
    let url = upstream.url();
    format!(
        r#"
[providers.a]
kind = "openai"
base_url = "{url}"
[[providers.a.keys]]
name = "k1"
secret = "env:UPSTREAM_KEY"

[[routes]]
name = "r"
retry = {{ attempts = 1 }}
targets = [{{ provider = "a", model = "broken" }}, {{ provider = "a", model = "good" }}]

{otlp}
"#
    )
}

fn otlp(endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[observability.otlp]
endpoint = "{endpoint}"
service_name = "tier1-test"
interval = "20ms"
timeout = "200ms"
headers = {{ authorization = "Bearer collector-token" }}
{extra}
"#
    )
}

fn body() -> String {
    body_for("r")
}

fn body_for(model: &str) -> String {
    format!(r#"{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":"{PROMPT}"}}]}}"#)
}

async fn upstream() -> MockUpstream {
    MockUpstream::start(MockConfig::default().model("broken", fails(500))).await.unwrap()
}

#[tokio::test]
async fn a_fallback_exports_a_server_span_and_one_client_span_per_attempt_in_the_callers_trace() {
    let collector = Collector::start(false).await;
    let up = upstream().await;
    let t = Tier1::start(&cfg(&up, &otlp(&collector.url, ""))).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let headers = [("traceparent", traceparent.as_str()), ("tracestate", "vendor=abc")];
    let a = post(&t.url("/v1/chat/completions"), &headers, &body()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-fallback-reason"), Some("server"));
    assert!(wait_until(Duration::from_secs(5), || async { collector.spans().len() >= 3 }).await);
    let spans = collector.spans();
    assert_eq!(spans.len(), 3, "one server span, two client spans");
    assert!(spans.iter().all(|(service, _)| service == "tier1-test"));
    let server = spans.iter().map(|(_, s)| s).find(|s| s.kind == SpanKind::Server as i32).unwrap();
    // The caller's trace, under the caller's span.
    assert_eq!(hex(&server.trace_id), TRACE_ID);
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(server.name, "chat r");
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "r"),
        ("gen_ai.request.max_tokens", "64"),
        ("gen_ai.response.model", "good"),
        ("gen_ai.response.finish_reasons", "stop"),
        ("http.response.status_code", "200"),
        ("tier1.route", "r"),
        ("tier1.provider", "a"),
        ("tier1.attempts", "2"),
        ("tier1.fallback_reason", "server"),
        ("tier1.end", "done"),
    ] {
        assert_eq!(attr(server, key).as_deref(), Some(value), "server span {key}");
    }
    let tokens = |k| attr(server, k).and_then(|v| v.parse::<u64>().ok()).unwrap();
    assert!(tokens("gen_ai.usage.input_tokens") > 0 && tokens("gen_ai.usage.output_tokens") > 0);
    // Each attempt: a client span under the server span, whose id the upstream request carried.
    let mut clients: Vec<&Span> =
        spans.iter().map(|(_, s)| s).filter(|s| s.kind == SpanKind::Client as i32).collect();
    clients.sort_by_key(|s| attr(s, "tier1.attempt"));
    let upstream = up.stats.requests();
    assert_eq!(upstream.len(), 2);
    for (n, (client, (model, class, status))) in
        clients.iter().zip([("broken", "server", "500"), ("good", "ok", "200")]).enumerate()
    {
        assert_eq!(hex(&client.trace_id), TRACE_ID);
        assert_eq!(client.parent_span_id, server.span_id);
        assert_eq!(client.name, format!("chat {model}"));
        for (key, value) in [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", model),
            ("tier1.attempt", &(n + 1).to_string()),
            ("tier1.classification", class),
            ("http.response.status_code", status),
        ] {
            assert_eq!(attr(client, key).as_deref(), Some(value), "attempt {n}: {key}");
        }
        let sent = &upstream[n];
        let expected = format!("00-{TRACE_ID}-{}-01", hex(&client.span_id));
        assert_eq!(sent.headers["traceparent"], expected.as_str(), "attempt {n}");
        assert_eq!(sent.headers["tracestate"], "vendor=abc");
    }
    // Never content, never a secret.
    for (_, s) in &spans {
        for kv in &s.attributes {
            let v = text(kv.value.as_ref());
            assert!(
                !v.contains(PROMPT) && !v.contains("sk-upstream") && !v.contains("collector-token"),
                "{}",
                kv.key
            );
        }
        assert!(!s.name.contains(PROMPT));
    }
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, "tier1_otlp_spans_exported_total"), Some(3.0));
    assert_eq!(metric(&m, r#"tier1_otlp_spans_dropped_total{reason="queue_full"}"#), Some(0.0));
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_not_forwarded() {
    let collector = Collector::start(false).await;
    let up = upstream().await;
    let t = Tier1::start(&cfg(&up, &otlp(&collector.url, ""))).await;
    let bad = format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase());
    let a =
        post(&t.url("/v1/chat/completions"), &[("traceparent", &bad), ("tracestate", "vendor=abc")], &body())
            .await;
    assert_eq!(a.status, 200);
    let sent = up.stats.requests();
    let forwarded = sent[0].headers["traceparent"].to_str().unwrap().to_owned();
    assert_ne!(forwarded, bad);
    assert!(!forwarded.to_lowercase().contains(TRACE_ID), "a new trace: {forwarded}");
    assert!(sent[0].headers.get("tracestate").is_none(), "no tracestate without a valid parent");
    assert!(wait_until(Duration::from_secs(5), || async { collector.spans().len() >= 3 }).await);
    let server =
        collector.spans().into_iter().map(|(_, s)| s).find(|s| s.kind == SpanKind::Server as i32).unwrap();
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(forwarded[3..35], hex(&server.trace_id));
}

#[tokio::test]
async fn without_the_exporter_no_trace_context_is_read_or_forwarded() {
    let up = upstream().await;
    let t = Tier1::start(&cfg(&up, "")).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let a = post(&t.url("/v1/chat/completions"), &[("traceparent", &traceparent)], &body()).await;
    assert_eq!(a.status, 200);
    assert!(up.stats.requests().iter().all(|r| r.headers.get("traceparent").is_none()));
    let m = get(&t.url("/metrics")).await.text();
    assert!(!m.contains("tier1_otlp_"), "no exporter metrics when off");
}

/// `n` requests with one attempt each (two spans), each answered 200 well within `limit`,
/// whatever the collector does.
async fn unaffected(t: &Tier1, n: usize, limit: Duration) {
    for _ in 0..n {
        let sent = tokio::time::Instant::now();
        let a = post(&t.url("/v1/chat/completions"), &[], &body_for("a/good")).await;
        assert_eq!(a.status, 200);
        assert!(sent.elapsed() < limit, "a request took {:?}", sent.elapsed());
    }
}

#[tokio::test]
async fn a_collector_that_is_down_neither_slows_nor_fails_requests_and_drops_are_counted() {
    let closed = ClosedPort::new();
    let up = upstream().await;
    let t = Tier1::start(&cfg(&up, &otlp(&format!("http://127.0.0.1:{}", closed.port()), ""))).await;
    unaffected(&t, 10, Duration::from_millis(500)).await;
    let dropped = || async {
        let m = get(&t.url("/metrics")).await.text();
        metric(&m, r#"tier1_otlp_spans_dropped_total{reason="export_failed"}"#).unwrap_or(0.0) >= 20.0
    };
    assert!(wait_until(Duration::from_secs(10), dropped).await, "10 requests, 2 spans each, all dropped");
    let m = get(&t.url("/metrics")).await.text();
    assert_eq!(metric(&m, "tier1_otlp_spans_exported_total"), Some(0.0));
}

#[tokio::test]
async fn a_stalled_collector_neither_slows_nor_fails_requests_and_a_full_queue_drops() {
    let collector = Collector::start(true).await;
    let up = upstream().await;
    // A queue of 4 spans, and an export that waits 10 s on a collector that never answers.
    let t =
        Tier1::start(&cfg(&up, &otlp(&collector.url, "max_queue = 4").replace("\"200ms\"", "\"10s\""))).await;
    unaffected(&t, 10, Duration::from_millis(500)).await;
    let reached = || async { collector.calls.load(Ordering::SeqCst) >= 1 };
    assert!(wait_until(Duration::from_secs(5), reached).await, "the export reached the collector");
    let m = get(&t.url("/metrics")).await.text();
    let full = metric(&m, r#"tier1_otlp_spans_dropped_total{reason="queue_full"}"#).unwrap();
    // 20 spans; at most 4 queued and one batch (of at most 4) in flight: the rest dropped.
    assert!(full >= 20.0 - 8.0, "dropped {full}");
    assert_eq!(metric(&m, "tier1_otlp_spans_exported_total"), Some(0.0));
}

#[tokio::test]
async fn a_hedge_has_its_own_client_span_and_the_slow_primary_ends_cancelled() {
    let collector = Collector::start(false).await;
    let slow = Behavior { latency: Duration::from_secs(2), ..Behavior::default() };
    let up = MockUpstream::start(MockConfig::default().model("slow", slow)).await.unwrap();
    let hedged = r#"
[[routes]]
name = "h"
hedge_after = "50ms"
targets = [{ provider = "a", model = "slow" }, { provider = "a", model = "good" }]
"#;
    let t = Tier1::start(&cfg(&up, &(otlp(&collector.url, "") + hedged))).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &body_for("h")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-tier1-attempts"), Some("2"));
    assert!(wait_until(Duration::from_secs(5), || async { collector.spans().len() >= 3 }).await);
    let spans: Vec<Span> = collector.spans().into_iter().map(|(_, s)| s).collect();
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).unwrap();
    let client = |model: &str| {
        spans
            .iter()
            .find(|s| {
                s.kind == SpanKind::Client as i32 && attr(s, "gen_ai.request.model").as_deref() == Some(model)
            })
            .unwrap()
    };
    let (primary, hedge) = (client("slow"), client("good"));
    assert_eq!(
        (primary.parent_span_id.as_slice(), hedge.parent_span_id.as_slice()),
        (&server.span_id[..], &server.span_id[..])
    );
    assert_eq!(attr(primary, "tier1.attempt").as_deref(), Some("1"));
    assert_eq!(attr(primary, "tier1.hedge"), None);
    assert_eq!(attr(primary, "tier1.classification").as_deref(), Some("cancelled"));
    assert_eq!(attr(hedge, "tier1.attempt").as_deref(), Some("2"));
    assert_eq!(attr(hedge, "tier1.hedge").as_deref(), Some("hedge_after"));
    assert_eq!(attr(hedge, "tier1.classification").as_deref(), Some("ok"));
    assert_eq!(spans.len(), 3);
}
