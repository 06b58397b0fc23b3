//! `kind = "vertex"`: Gemini models in Gemini's format and Claude models in Anthropic's, through
//! Vertex AI's publisher URLs, over real sockets against the mock upstream's Vertex AI routes,
//! which take only a bearer access token they know and a Claude body in Vertex AI's form.
//! Request fixtures (URL, headers, body) per publisher, answers and streams event by event,
//! errors in the client's shape, Vertex's quota and outage answers failed over, model names that
//! would change the URL refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::*;
use http::StatusCode;
use serde_json::json;
use tier1::testing::mock::server::RecordedRequest;

const TOKEN: &str = "ya29.static-test-token";
const GEMINI: &str = "gemini-2.5-flash";
const CLAUDE: &str = "claude-sonnet-4@20250514";
const ROOT: &str = "/v1/projects/tier1-test/locations/us-east5/publishers";

fn cfg(url: &str, extra: &str) -> String {
    format!(
        r#"
[providers.gcp]
kind = "vertex"
project = "tier1-test"
location = "us-east5"
base_url = "{url}"
[[providers.gcp.keys]]
name = "static"
secret = "{TOKEN}"
{extra}
"#
    )
}

async fn mock(config: MockConfig) -> MockUpstream {
    MockUpstream::start(config.vertex_token(TOKEN)).await.unwrap()
}

/// The `data:` events of an OpenAI stream, parsed; `[DONE]` must be the last.
fn chunks(text: &str) -> Vec<serde_json::Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty() && *e != "data: [DONE]")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

fn body_of(r: &RecordedRequest) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

const BRIEF: &str = r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]"#;

#[tokio::test]
async fn gemini_models_go_to_googles_publisher_url_in_geminis_format() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/v1/chat/completions");
    let body = format!(r#"{{"model":"gcp/{GEMINI}","messages":{BRIEF},"max_tokens":50}}"#);
    let a = post(&url, &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(a.header("x-tier1-provider"), Some("gcp"));

    let body = format!(
        r#"{{"model":"gcp/{GEMINI}","messages":[{{"role":"user","content":"hi"}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    let a = post(&url, &[], &body).await;
    assert_eq!((a.status.as_u16(), a.header("content-type")), (200, Some("text/event-stream")));
    let events = chunks(&a.text());
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, DEFAULT_REPLY);
    let finish: Vec<_> = events.iter().filter_map(|e| e["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["stop"]);
    assert!(events.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{ROOT}/google/models/{GEMINI}:generateContent"),
            format!("{ROOT}/google/models/{GEMINI}:streamGenerateContent?alt=sse"),
        ]
    );
    for r in &sent {
        assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
        assert!(r.headers.get("x-goog-api-key").is_none(), "Vertex AI takes no API key");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(
        body_of(&sent[0]),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 50},
        })
    );
}

#[tokio::test]
async fn claude_models_go_to_anthropics_publisher_url_with_the_vertex_version_in_the_body() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    // OpenAI chat, translated to Messages.
    let body = format!(r#"{{"model":"gcp/{CLAUDE}","messages":{BRIEF},"max_tokens":50}}"#);
    let a = post(&t.url("/v1/chat/completions"), &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["model"], CLAUDE);
    // Anthropic Messages, passed through (streamed).
    let body = format!(
        r#"{{"model":"gcp/{CLAUDE}","max_tokens":64,"stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let a = post(&t.url("/v1/messages"), &[("anthropic-version", "2023-06-01")], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let text = a.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    let deltas: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|d| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deltas, DEFAULT_REPLY);

    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{ROOT}/anthropic/models/{CLAUDE}:rawPredict"),
            format!("{ROOT}/anthropic/models/{CLAUDE}:streamRawPredict")
        ]
    );
    for r in &sent {
        assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
        assert!(r.headers.get("x-api-key").is_none() && r.headers.get("anthropic-version").is_none());
    }
    assert_eq!(
        body_of(&sent[0]),
        json!({
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 50,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        })
    );
    assert_eq!(
        body_of(&sent[1]),
        json!({
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
        })
    );
}

#[tokio::test]
async fn responses_and_messages_reach_both_publishers() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    for model in [GEMINI, CLAUDE] {
        let a =
            post(&t.url("/v1/responses"), &[], &format!(r#"{{"model":"gcp/{model}","input":"hi"}}"#)).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.json()["output"][0]["content"][0]["text"], DEFAULT_REPLY, "{model}");
        let body = format!(
            r#"{{"model":"gcp/{model}","max_tokens":64,"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let a = post(&t.url("/v1/messages"), &[], &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.json()["content"], json!([{"type": "text", "text": DEFAULT_REPLY}]), "{model}");
    }
    // Embeddings: Vertex AI's are another API; the provider is not offered them.
    let a = post(&t.url("/v1/embeddings"), &[], r#"{"model":"gcp/text-embedding-005","input":"hi"}"#).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(mock.stats.requests().len(), 4);
}

#[tokio::test]
async fn quota_and_outages_fail_over_and_errors_come_back_in_the_clients_shape() {
    let status = |s| Behavior { status: Some(s), ..Behavior::default() };
    let mock = mock(
        MockConfig::default()
            .model("gemini-throttled", status(StatusCode::TOO_MANY_REQUESTS))
            .model("gemini-unavailable", status(StatusCode::SERVICE_UNAVAILABLE))
            .model("claude-throttled", status(StatusCode::TOO_MANY_REQUESTS))
            .model("gemini-bad", status(StatusCode::BAD_REQUEST))
            .model("claude-bad", status(StatusCode::BAD_REQUEST)),
    )
    .await;
    let routes = r#"
[[routes]]
name = "t"
retry = { attempts = 1 }
targets = [{ provider = "gcp", model = "gemini-throttled" }, { provider = "gcp", model = "gemini-ok" }]
[[routes]]
name = "u"
retry = { attempts = 1 }
targets = [{ provider = "gcp", model = "gemini-unavailable" }, { provider = "gcp", model = "claude-ok" }]
[[routes]]
name = "c"
retry = { attempts = 1 }
targets = [{ provider = "gcp", model = "claude-throttled" }, { provider = "gcp", model = "gemini-ok" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let url = t.url("/v1/chat/completions");
    for (route, reason) in [("t", "rate_limited"), ("u", "overloaded"), ("c", "rate_limited")] {
        let a = post(&url, &[], &chat(route)).await;
        assert_eq!(
            (a.status.as_u16(), a.header("x-tier1-fallback-reason")),
            (200, Some(reason)),
            "{route}: {}",
            a.text()
        );
        assert_eq!(a.json()["choices"][0]["message"]["content"], DEFAULT_REPLY);
        let a = post(&url, &[], &chat_stream(route)).await;
        let events = chunks(&a.text());
        assert_eq!(events.iter().filter(|e| e["choices"][0]["delta"]["role"] == "assistant").count(), 1);
    }
    // The caller's mistake comes back OpenAI-shaped, with the upstream's message.
    for bad in ["gcp/gemini-bad", "gcp/claude-bad"] {
        let a = post(&url, &[], &chat(bad)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
        let e = &a.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{bad}: {e}");
        assert!(e["message"].as_str().unwrap().contains("mock: injected failure 400"), "{bad}: {e}");
    }
    // Anthropic-shaped for a Messages client.
    let body = r#"{"model":"gcp/claude-bad","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = post(&t.url("/v1/messages"), &[], body).await;
    assert_eq!((a.status.as_u16(), a.json()["type"].as_str()), (400, Some("error")), "{}", a.text());
    // A model name that would change the URL is refused before any call.
    let before = mock.stats.requests().len();
    for bad in ["gcp/x/../../other", "gcp/x?y=1", "gcp/a%2Fb", "gcp/a b", "gcp/claude-x:rawPredict"] {
        let a = post(&url, &[], &chat(bad)).await;
        assert!(a.status.is_client_error(), "{bad}: {}", a.text());
    }
    assert_eq!(mock.stats.requests().len(), before);
}

#[tokio::test]
async fn a_token_the_upstream_refuses_is_an_upstream_auth_failure() {
    // The mock knows no token: every call is UNAUTHENTICATED.
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat(&format!("gcp/{GEMINI}"))).await;
    assert_eq!(a.status, 502, "{}", a.text());
    let e = &a.json()["error"];
    assert_eq!(
        (e["code"].as_str(), e["attempts"][0]["status"].as_u64()),
        (Some("upstream_auth"), Some(401)),
        "{e}"
    );
    assert!(!a.text().contains(TOKEN), "the token is never echoed");
}

#[test]
fn config_needs_a_project_and_a_location_that_go_in_a_url() {
    use tier1::testing::config::{Format, parse};
    let vars = std::collections::HashMap::new();
    let err = |toml: &str| parse(toml, Format::Toml, &vars).unwrap_err().to_string();
    let key = "[[providers.v.keys]]\nsecret = \"ya29.x\"\n";
    let e = err(&format!("[providers.v]\nkind = \"vertex\"\n{key}"));
    assert!(e.contains("providers.v.project: missing"), "{e}");
    assert!(e.contains("providers.v.location: missing"), "{e}");
    let e = err(&format!(
        "[providers.v]\nkind = \"vertex\"\nproject = \"a/../b\"\nlocation = \"us.evil.com\"\n{key}"
    ));
    assert!(e.contains("providers.v.project: \"a/../b\" is not a project name"), "{e}");
    assert!(e.contains("providers.v.location: \"us.evil.com\" is not a location name"), "{e}");
    let e = err("[providers.o]\nkind = \"openai\"\nproject = \"my-project\"\n");
    assert!(e.contains("providers.o.project: a openai provider takes no project"), "{e}");
    let ok = |location: &str| {
        let toml = format!(
            "[providers.v]\nkind = \"vertex\"\nproject = \"my-project\"\nlocation = \"{location}\"\n{key}"
        );
        format!("{:?}", parse(&toml, Format::Toml, &vars).unwrap())
    };
    assert!(ok("global").contains("https://aiplatform.googleapis.com"));
    assert!(ok("europe-west4").contains("https://europe-west4-aiplatform.googleapis.com"));
}

/// The test-only service account (tests/fixtures/vertex/README.md), its `token_uri` at `url`.
fn key_file(dir: &TempDir, url: &str, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let text = include_str!("fixtures/vertex/test-service-account.json");
    let mut sa: serde_json::Value = serde_json::from_str(text).unwrap();
    sa["token_uri"] = json!(format!("{url}/token"));
    edit(&mut sa);
    dir.write_atomic("sa.json", &sa.to_string())
}

#[test]
fn a_bad_key_file_is_a_clear_config_error_that_never_echoes_the_key() {
    use tier1::testing::config::{Format, parse};
    let dir = TempDir::new("vertex-bad-key");
    let vars = std::collections::HashMap::new();
    let pem = include_str!("fixtures/vertex/test-sa-key.pem");
    let body = &pem.lines().nth(3).unwrap()[..40]; // a line of the key's base64
    let err = |edit: &dyn Fn(&mut serde_json::Value)| {
        let path = key_file(&dir, "http://127.0.0.1:9", edit);
        let toml = format!(
            "[providers.v]\nkind = \"vertex\"\nproject = \"my-project\"\nlocation = \"global\"\n[[providers.v.keys]]\nname = \"sa\"\nsecret = \"file:{}\"\n",
            path.display()
        );
        let e = parse(&toml, Format::Toml, &vars).unwrap_err().to_string();
        assert!(!e.contains(body) && !e.contains("PRIVATE KEY"), "the key is never echoed: {e}");
        e
    };
    let want = "providers.v.keys[0].secret: not a usable service-account key file: ";
    let e = err(&|sa| sa["private_key"] = json!(pem.replace(body, "AAAA")));
    assert!(
        e.contains(&format!("{want}private_key: not an RSA private key"))
            || e.contains(&format!("{want}private_key: not a PKCS#8")),
        "{e}"
    );
    let e = err(&|sa| {
        sa["private_key"] = json!("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n")
    });
    assert!(e.contains(&format!("{want}private_key: not a PKCS#8 PEM private key")), "{e}");
    let e = err(&|sa| {
        sa.as_object_mut().unwrap().remove("client_email");
    });
    assert!(e.contains(&format!("{want}no client_email")), "{e}");
    let e = err(&|sa| sa["type"] = json!("authorized_user"));
    assert!(e.contains(&format!("{want}its type is not \"service_account\"")), "{e}");
    let e = err(&|sa| sa["token_uri"] = json!("ftp://x"));
    assert!(e.contains(&format!("{want}token_uri is not an http(s) URL")), "{e}");
    // Not JSON past its first brace: where, not what.
    let path = dir.write_atomic("broken.json", &format!("{{\"private_key\": \"{body}"));
    let toml = format!(
        "[providers.v]\nkind = \"vertex\"\nproject = \"my-project\"\nlocation = \"global\"\n[[providers.v.keys]]\nsecret = \"file:{}\"\n",
        path.display()
    );
    let e = parse(&toml, Format::Toml, &vars).unwrap_err().to_string();
    assert!(e.contains(&format!("{want}invalid JSON at line 1 column")) && !e.contains(body), "{e}");
    // No keys: workload identity must be asked for; another kind takes none.
    let bare = "[providers.v]\nkind = \"vertex\"\nproject = \"my-project\"\nlocation = \"global\"\n";
    let e = parse(bare, Format::Toml, &vars).unwrap_err().to_string();
    assert!(e.contains("providers.v.keys: none (a key's secret is a service-account key file"), "{e}");
    assert!(parse(&format!("{bare}workload_identity = true\n"), Format::Toml, &vars).is_ok());
    let e = parse("[providers.o]\nkind = \"openai\"\nworkload_identity = true\n", Format::Toml, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("providers.o.workload_identity: only a vertex provider takes workload_identity"),
        "{e}"
    );
}

const EMAIL: &str = "tier1-test@tier1-test.iam.gserviceaccount.com";
const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/vertex/test-sa-public.der");

/// A vertex provider whose one key is the test service account's key file.
fn sa_cfg(mock: &MockUpstream, dir: &TempDir, extra: &str) -> String {
    let path = key_file(dir, &mock.url(), |_| {});
    format!(
        "[providers.gcp]\nkind = \"vertex\"\nproject = \"tier1-test\"\nlocation = \"us-east5\"\nbase_url = \"{}\"\n[[providers.gcp.keys]]\nname = \"sa\"\nsecret = \"file:{}\"\n{extra}",
        mock.url(),
        path.display()
    )
}

/// Posts `body` until tier1 has stored its first token (it is fetched in the background: a
/// request before that fails over), yielding in between.
async fn first_ok(url: &str, body: &str) -> Answer {
    let mut a = post(url, &[], body).await;
    for _ in 0..200 {
        if a.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
        a = post(url, &[], body).await;
    }
    a
}

fn vertex_calls(mock: &MockUpstream) -> Vec<RecordedRequest> {
    mock.stats.requests().into_iter().filter(|r| r.path.starts_with("/v1/projects/")).collect()
}

#[tokio::test]
async fn a_service_account_token_is_minted_once_in_the_background_and_sent_as_the_bearer() {
    let mock =
        MockUpstream::start(MockConfig::default().service_account(EMAIL, PUBLIC_KEY, 0)).await.unwrap();
    let dir = TempDir::new("vertex-sa");
    let t = Tier1::start(&sa_cfg(&mock, &dir, "")).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.tokens_minted >= 1).await.unwrap();
    let token = &mock.stats.requests()[0];
    assert_eq!((token.method.as_str(), token.path.as_str()), ("POST", "/token"));
    let form = String::from_utf8_lossy(&token.body);
    assert!(
        form.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"),
        "{form}"
    );
    assert_eq!(token.headers["content-type"], "application/x-www-form-urlencoded");
    let url = t.url("/v1/chat/completions");
    let a = first_ok(&url, &chat(&format!("gcp/{GEMINI}"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Many requests at once, both publishers: one token, minted once, never on their path.
    let calls = (0..24).map(|i| {
        let model = if i % 2 == 0 { GEMINI } else { CLAUDE };
        let (url, body) = (url.clone(), chat(&format!("gcp/{model}")));
        tokio::spawn(async move { post(&url, &[], &body).await.status })
    });
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(mock.stats.snapshot().tokens_minted, 1);
    let sent = vertex_calls(&mock);
    assert!(sent.len() >= 25);
    for r in &sent {
        assert_eq!(r.headers["authorization"], "Bearer ya29.mock-1", "{}", r.path);
    }
    // The minted token is never relayed to a client.
    assert!(!a.text().contains("ya29."));
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires_and_a_request_in_flight_finishes() {
    // Tokens valid 12 s: the refresher fetches the next after 10 s (its shortest wait), before
    // the first expires; a stream of 14 chunks a second apart spans both.
    let slow = Behavior { chunk_interval: std::time::Duration::from_secs(1), ..Behavior::default() };
    let config = MockConfig::default().service_account(EMAIL, PUBLIC_KEY, 12).model("gemini-slow", slow);
    let mock = MockUpstream::start(config).await.unwrap();
    let dir = TempDir::new("vertex-refresh");
    let t = Tier1::start(&sa_cfg(&mock, &dir, "")).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.tokens_minted >= 1).await.unwrap();
    let url = t.url("/v1/chat/completions");
    assert_eq!(first_ok(&url, &chat(&format!("gcp/{GEMINI}"))).await.status, 200);
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { post(&url, &[], &chat_stream("gcp/gemini-slow")).await }
    });
    let snap =
        mock.stats.wait_until(std::time::Duration::from_secs(20), |s| s.tokens_minted >= 2).await.unwrap();
    assert_eq!(snap.tokens_minted, 2, "one refresh, not one per request");
    // The first token is still valid (12 s): requests move to the new one without a failure.
    let a = post(&url, &[], &chat(&format!("gcp/{GEMINI}"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(vertex_calls(&mock).last().unwrap().headers["authorization"], "Bearer ya29.mock-2");
    // The stream that started with the first token ran to its end past the refresh.
    let streamed = in_flight.await.unwrap();
    assert_eq!(streamed.status, 200);
    let content: String = chunks(&streamed.text())
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, DEFAULT_REPLY);
    let slow_call = vertex_calls(&mock).into_iter().find(|r| r.path.contains("gemini-slow")).unwrap();
    assert_eq!(slow_call.headers["authorization"], "Bearer ya29.mock-1");
    assert_eq!(mock.stats.snapshot().tokens_minted, 2);
}

#[tokio::test]
async fn a_refused_assertion_sends_no_request_without_a_token() {
    // The mock checks the JWT with another account's key: every mint is refused.
    let other =
        include_bytes!("fixtures/vertex/test-sa-public.der").iter().map(|b| b ^ 1).collect::<Vec<u8>>();
    let mock = MockUpstream::start(MockConfig::default().service_account(EMAIL, &other, 0)).await.unwrap();
    let dir = TempDir::new("vertex-refused");
    let t = Tier1::start(&sa_cfg(&mock, &dir, "")).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.requests >= 1).await.unwrap();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat(&format!("gcp/{GEMINI}"))).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(vertex_calls(&mock).is_empty(), "nothing is sent without a token");
    assert_eq!(mock.stats.snapshot().tokens_minted, 0);
}

#[tokio::test]
async fn workload_identity_gets_its_token_from_the_metadata_server() {
    let mock = MockUpstream::start(MockConfig::default().metadata_server()).await.unwrap();
    let mut vars = env();
    vars.insert("GCE_METADATA_HOST".into(), mock.addr.to_string());
    let toml = format!(
        "[providers.gcp]\nkind = \"vertex\"\nproject = \"tier1-test\"\nlocation = \"global\"\nbase_url = \"{}\"\nworkload_identity = true\n",
        mock.url()
    );
    let t = Tier1::start_env(&toml, &vars).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.tokens_minted >= 1).await.unwrap();
    let md = &mock.stats.requests()[0];
    assert_eq!(
        (md.method.as_str(), md.path.as_str()),
        ("GET", "/computeMetadata/v1/instance/service-accounts/default/token")
    );
    assert_eq!(md.headers["metadata-flavor"], "Google");
    let body =
        format!(r#"{{"model":"gcp/{CLAUDE}","max_tokens":8,"messages":[{{"role":"user","content":"hi"}}]}}"#);
    let a = first_ok(&t.url("/v1/messages"), &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let call = vertex_calls(&mock).pop().unwrap();
    assert_eq!(
        call.path,
        format!("/v1/projects/tier1-test/locations/global/publishers/anthropic/models/{CLAUDE}:rawPredict")
    );
    assert_eq!(call.headers["authorization"], "Bearer ya29.mock-1");
}

#[tokio::test]
async fn an_answer_echoing_the_minted_token_reaches_the_client_redacted() {
    // The token endpoint mints ya29.mock-1, which the config never held; the model echoes it.
    let echo = Behavior { reply: "token ya29.mock-1 end".into(), ..Behavior::default() };
    let config = MockConfig::default().service_account(EMAIL, PUBLIC_KEY, 0).model("gemini-echo", echo);
    let mock = MockUpstream::start(config).await.unwrap();
    let dir = TempDir::new("vertex-echo");
    let t = Tier1::start(&sa_cfg(&mock, &dir, "")).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.tokens_minted >= 1).await.unwrap();
    let url = t.url("/v1/chat/completions");
    let a = first_ok(&url, &chat("gcp/gemini-echo")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let content = a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(content.starts_with("token [redacted") && !content.contains("ya29.mock-1"), "{content}");
    let streamed = post(&url, &[], &chat_stream("gcp/gemini-echo")).await.text();
    assert!(streamed.contains("[redacted") && !streamed.contains("ya29.mock-1"), "{streamed}");
}
