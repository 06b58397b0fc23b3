//! `kind = "bedrock"`: OpenAI chat, Anthropic Messages and the Responses API translated to the
//! Converse API and back over real sockets, every request SigV4-signed and checked by the mock
//! upstream's independent verifier; event streams decoded; Bedrock's throttling and outages
//! failed over; model ids that would change the URL refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::*;
use http::StatusCode;

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "sk-upstream-secret-0001"; // `env:UPSTREAM_KEY`: redacted like any key

fn cfg(url: &str, extra: &str) -> String {
    format!(
        r#"
[providers.aws]
kind = "bedrock"
region = "us-east-1"
base_url = "{url}"
[[providers.aws.keys]]
name = "main"
access_key_id = "{KEY_ID}"
secret = "env:UPSTREAM_KEY"
{extra}
"#
    )
}

async fn mock(config: MockConfig) -> MockUpstream {
    MockUpstream::start(config.aws_key(KEY_ID, SECRET)).await.unwrap()
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

const PROFILE: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";

#[tokio::test]
async fn chat_and_streams_are_signed_translated_and_verified_by_the_mock() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let url = t.url("/v1/chat/completions");
    let body = format!(
        r#"{{"model":"aws/{PROFILE}","messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"hi"}}],"max_tokens":50,"logit_bias":{{"1":2}}}}"#
    );
    let a = post(&url, &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], PROFILE);
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()),
        (Some(9), Some(11))
    );
    assert_eq!(a.header("x-tier1-dropped-params"), Some("logit_bias"));

    let body = format!(
        r#"{{"model":"aws/{PROFILE}","messages":[{{"role":"user","content":"hi"}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    let a = post(&url, &[], &body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let events = chunks(&a.text());
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, DEFAULT_REPLY);
    let finish: Vec<_> = events.iter().filter_map(|e| e["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["stop"]);
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 11);

    // A tool call, streamed: id and name, the arguments in pieces, `tool_calls`.
    let body = format!(
        r#"{{"model":"aws/{PROFILE}","stream":true,"messages":[{{"role":"user","content":"weather?"}}],"tools":[{{"type":"function","function":{{"name":"weather","parameters":{{"type":"object"}}}}}}]}}"#
    );
    let events = chunks(&post(&url, &[], &body).await.text());
    let args: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"q":"mock"}"#);
    assert!(
        events.iter().any(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "weather")
    );
    assert!(events.iter().any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));

    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    let model = "us.anthropic.claude-sonnet-4-20250514-v1%3A0";
    assert_eq!(
        paths,
        [
            format!("/model/{model}/converse"),
            format!("/model/{model}/converse-stream"),
            format!("/model/{model}/converse-stream")
        ]
    );
    for r in &sent {
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        assert!(!auth.contains(SECRET), "the secret is never sent");
    }
    let first: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        first,
        serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 50},
        })
    );
}

#[tokio::test]
async fn a_signature_the_mock_cannot_verify_is_an_upstream_auth_failure() {
    // The mock knows another secret for the key id: every signature fails its check.
    let mock = MockUpstream::start(MockConfig::default().aws_key(KEY_ID, "another-secret")).await.unwrap();
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat(&format!("aws/{PROFILE}"))).await;
    // The upstream refused tier1's key: an upstream failure (502), never the client's 403.
    assert_eq!(a.status, 502, "{}", a.text());
    let e = &a.json()["error"];
    assert_eq!(
        (e["code"].as_str(), e["attempts"][0]["status"].as_u64()),
        (Some("upstream_auth"), Some(403)),
        "{e}"
    );
    assert_eq!(mock.stats.requests().len(), 1, "the key's refusal is not retried on the same key");
}

#[tokio::test]
async fn throttling_and_outages_fail_over_and_errors_come_back_openai_shaped() {
    let throttled = Behavior { status: Some(StatusCode::TOO_MANY_REQUESTS), ..Behavior::default() };
    let unavailable = Behavior { status: Some(StatusCode::SERVICE_UNAVAILABLE), ..Behavior::default() };
    let bad = Behavior { status: Some(StatusCode::BAD_REQUEST), ..Behavior::default() };
    let mock = mock(
        MockConfig::default()
            .model("throttled", throttled)
            .model("unavailable", unavailable)
            .model("bad", bad),
    )
    .await;
    let routes = r#"
[[routes]]
name = "t"
retry = { attempts = 1 }
targets = [{ provider = "aws", model = "throttled" }, { provider = "aws", model = "ok" }]
[[routes]]
name = "u"
retry = { attempts = 1 }
targets = [{ provider = "aws", model = "unavailable" }, { provider = "aws", model = "ok" }]
"#;
    let t = Tier1::start(&cfg(&mock.url(), routes)).await;
    let url = t.url("/v1/chat/completions");
    for (route, reason) in [("t", "rate_limited"), ("u", "overloaded")] {
        let a = post(&url, &[], &chat(route)).await;
        assert_eq!(
            (a.status.as_u16(), a.header("x-tier1-fallback-reason")),
            (200, Some(reason)),
            "{}",
            a.text()
        );
        assert_eq!(a.json()["choices"][0]["message"]["content"], DEFAULT_REPLY);
        // Streams too, the failure before any content.
        let a = post(&url, &[], &chat_stream(route)).await;
        let events = chunks(&a.text());
        assert_eq!(events.iter().filter(|e| e["choices"][0]["delta"]["role"] == "assistant").count(), 1);
    }
    let m = get(&t.url("/metrics")).await.text();
    assert!(m.contains("throttled"), "the cooldown names the model\n{m}");
    // The caller's mistake comes back OpenAI-shaped, with Bedrock's message.
    let a = post(&url, &[], &chat("aws/bad")).await;
    assert_eq!(a.status, 400);
    let e = &a.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("mock: injected failure 400"), "{e}");
    // A model id that would change the URL is refused before any call.
    let before = mock.stats.requests().len();
    for bad in ["aws/x/../../other", "aws/x?y=1", "aws/a%2Fb", "aws/a b"] {
        let a = post(&url, &[], &chat(bad)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
    }
    assert_eq!(mock.stats.requests().len(), before);
}

#[tokio::test]
async fn anthropic_messages_and_responses_reach_bedrock_through_chat() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let body = format!(
        r#"{{"model":"aws/{PROFILE}","max_tokens":64,"system":"Be brief.","messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let a = post(&t.url("/v1/messages"), &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], serde_json::json!([{"type": "text", "text": DEFAULT_REPLY}]));
    let body = format!(
        r#"{{"model":"aws/{PROFILE}","max_tokens":64,"stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let text = post(&t.url("/v1/messages"), &[], &body).await.text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(text.contains(r#""output_tokens":11"#), "{text}");

    let body = format!(r#"{{"model":"aws/{PROFILE}","input":"hi"}}"#);
    let a = post(&t.url("/v1/responses"), &[], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["output"][0]["content"][0]["text"], DEFAULT_REPLY);
    let sent: serde_json::Value = serde_json::from_slice(&mock.stats.requests()[0].body).unwrap();
    assert_eq!(sent["system"], serde_json::json!([{"text": "Be brief."}]));
}

#[test]
fn config_needs_a_region_and_credentials_and_takes_the_environments() {
    use tier1::testing::config::{Format, parse};
    let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let err = |toml: &str, e: &std::collections::HashMap<String, String>| {
        parse(toml, Format::Toml, e).unwrap_err().to_string()
    };
    let bare = "[providers.aws]\nkind = \"bedrock\"\n";
    let e = err(bare, &env(&[]));
    assert!(e.contains("providers.aws.region: missing"), "{e}");
    assert!(e.contains("providers.aws.keys: none, and no AWS_ACCESS_KEY_ID"), "{e}");
    let e = err("[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1.evil.com\"\n", &env(&[]));
    assert!(e.contains("is not a region name"), "{e}");
    let e = err("[providers.o]\nkind = \"openai\"\nregion = \"us-east-1\"\n", &env(&[]));
    assert!(e.contains("providers.o.region: a openai provider takes no region"), "{e}");
    let e = err(
        "[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\n[[providers.aws.keys]]\nsecret = \"s\"\n",
        &env(&[]),
    );
    assert!(e.contains("providers.aws.keys[0].access_key_id: missing"), "{e}");
    // From the environment, with a session token: one key named `env`.
    let vars = env(&[
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ("AWS_SESSION_TOKEN", "tok"),
    ]);
    let c = parse(&format!("{bare}region = \"eu-west-3\"\n"), Format::Toml, &vars).unwrap();
    assert!(format!("{c:?}").contains("bedrock-runtime.eu-west-3.amazonaws.com"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t") && !dbg.contains("tok\""), "secrets never print: {dbg}");
}

#[tokio::test]
async fn a_web_identity_is_exchanged_with_sts_in_the_background_and_signs_requests() {
    let token_file = std::env::temp_dir().join(format!("tier1-irsa-{}", std::process::id()));
    std::fs::write(&token_file, "eyJ.irsa-token\n").unwrap();
    let mock =
        MockUpstream::start(MockConfig::default().sts("eyJ.irsa-token", "ASIAMOCK", "sts-secret-0001"))
            .await
            .unwrap();
    let mut vars = env();
    vars.insert("AWS_ROLE_ARN".into(), "arn:aws:iam::123456789012:role/tier1".into());
    vars.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.display().to_string());
    vars.insert("AWS_ENDPOINT_URL_STS".into(), format!("{}/", mock.url()));
    let toml = format!(
        "[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let t = Tier1::start_env(&toml, &vars).await;
    // The exchange happens in the background at start: wait for it, not for a time.
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.requests >= 1).await.unwrap();
    let sts = &mock.stats.requests()[0];
    let form = String::from_utf8_lossy(&sts.body);
    assert!(form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Ftier1"), "{form}");
    assert!(
        form.contains("WebIdentityToken=eyJ.irsa-token&")
            || form.ends_with("WebIdentityToken=eyJ.irsa-token"),
        "{form}"
    );
    assert!(!sts.path.contains("Token"), "the token never goes in the URL");
    // The credentials are stored just after STS answers: a request may come first (and fail
    // over, unsigned requests are never sent). Yield to the refresh task until it stored them.
    let url = t.url("/v1/chat/completions");
    let mut a = post(&url, &[], &chat(&format!("aws/{PROFILE}"))).await;
    for _ in 0..100 {
        if a.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
        a = post(&url, &[], &chat(&format!("aws/{PROFILE}"))).await;
    }
    assert_eq!(a.status, 200, "{}", a.text());
    let call = mock.stats.requests().into_iter().find(|r| r.path.ends_with("/converse")).unwrap();
    let auth = call.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIAMOCK/"), "{auth}");
    assert_eq!(call.headers["x-amz-security-token"], "mock-session-token");
    std::fs::remove_file(&token_file).ok();
}

#[tokio::test]
async fn without_credentials_from_sts_no_request_is_sent_unsigned() {
    let token_file = std::env::temp_dir().join(format!("tier1-irsa-bad-{}", std::process::id()));
    std::fs::write(&token_file, "eyJ.expired").unwrap();
    // The mock's STS takes another token: every exchange is refused.
    let mock = MockUpstream::start(MockConfig::default().sts("eyJ.valid", "ASIAMOCK", "sts-secret-0001"))
        .await
        .unwrap();
    let mut vars = env();
    vars.insert("AWS_ROLE_ARN".into(), "arn:aws:iam::123456789012:role/other".into());
    vars.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.display().to_string());
    vars.insert("AWS_ENDPOINT_URL_STS".into(), format!("{}/", mock.url()));
    let toml = format!(
        "[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let t = Tier1::start_env(&toml, &vars).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.requests >= 1).await.unwrap();
    let a = post(&t.url("/v1/chat/completions"), &[], &chat(&format!("aws/{PROFILE}"))).await;
    assert_eq!(a.status, 502, "{}", a.text());
    let converse = mock.stats.requests().iter().filter(|r| r.path.starts_with("/model/")).count();
    assert_eq!(converse, 0, "nothing unsigned reached the upstream");
    std::fs::remove_file(&token_file).ok();
}

#[tokio::test]
async fn an_answer_echoing_the_minted_credentials_reaches_the_client_redacted() {
    // STS mints a secret and a session token the config never held; the model echoes both.
    let (secret, token) = ("sts-secret-echo-0001", "mock-session-token");
    let reply = format!("secret {secret} token {token} end");
    let echo = Behavior { reply: reply.as_str().into(), ..Behavior::default() };
    let token_file = std::env::temp_dir().join(format!("tier1-irsa-echo-{}", std::process::id()));
    std::fs::write(&token_file, "eyJ.echo").unwrap();
    let mock =
        MockUpstream::start(MockConfig::default().sts("eyJ.echo", "ASIAECHO", secret).model("echo", echo))
            .await
            .unwrap();
    let mut vars = env();
    vars.insert("AWS_ROLE_ARN".into(), "arn:aws:iam::123456789012:role/echo".into());
    vars.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.display().to_string());
    vars.insert("AWS_ENDPOINT_URL_STS".into(), format!("{}/", mock.url()));
    let toml = format!(
        "[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let t = Tier1::start_env(&toml, &vars).await;
    mock.stats.wait_until(std::time::Duration::from_secs(10), |s| s.requests >= 1).await.unwrap();
    let url = t.url("/v1/chat/completions");
    let mut a = post(&url, &[], &chat("aws/echo")).await;
    for _ in 0..100 {
        if a.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
        a = post(&url, &[], &chat("aws/echo")).await;
    }
    assert_eq!(a.status, 200, "{}", a.text());
    let redacted = "secret [redacted**********] token [redacted********] end";
    assert_eq!(a.json()["choices"][0]["message"]["content"], redacted);
    let text = post(&url, &[], &chat_stream("aws/echo")).await.text();
    let content: String =
        chunks(&text).iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, redacted);
    assert!(!text.contains(secret) && !text.contains(token), "{text}");
    std::fs::remove_file(&token_file).ok();
}

#[tokio::test]
async fn an_image_url_is_a_400_in_the_clients_shape_and_an_s3_object_goes_as_s3_location() {
    let mock = mock(MockConfig::default()).await;
    let t = Tier1::start(&cfg(&mock.url(), "")).await;
    let with_image = |url: &str| {
        serde_json::json!({"model": format!("aws/{PROFILE}"), "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
        .to_string()
    };
    let a = post(&t.url("/v1/chat/completions"), &[], &with_image("https://example.com/cat.png")).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(
        a.json(),
        serde_json::json!({"error": {
            "message": "cannot translate the request for aws: Bedrock takes images as base64 data URLs or s3:// objects only",
            "type": "invalid_request_error", "param": "messages", "code": "untranslatable_request"}})
    );
    assert_eq!(mock.stats.requests().len(), 0, "never sent, never downloaded");
    let uri = "s3://team-images/cats/tabby.webp";
    let a = post(&t.url("/v1/chat/completions"), &[], &with_image(uri)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let sent: serde_json::Value = serde_json::from_slice(&mock.stats.requests()[0].body).unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        serde_json::json!([{"text": "What is this?"},
            {"image": {"format": "webp", "source": {"s3Location": {"uri": uri}}}}])
    );
}
