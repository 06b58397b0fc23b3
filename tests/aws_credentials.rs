//! `kind = "bedrock"` credentials from the container endpoint (ECS task roles, EKS Pod
//! Identity) and the EC2 instance metadata (IMDSv2, opt-in), over real sockets: fetched in the
//! background from the mock's endpoints (which count what they hand out), every Bedrock request
//! then signed with them and checked by the mock's SigV4 verifier and its session token; the
//! chain's order and the endpoints tier1 refuses at load; a metadata outage failed over and
//! recovered from; minted secrets redacted from answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tier1::testing::config::{Format, parse};
use tier1::testing::mock::aws::{
    CONTAINER_PATH, CONTAINER_SESSION_TOKEN, INSTANCE_ROLE, INSTANCE_SESSION_TOKEN, METADATA,
};

const PROFILE: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";

fn bedrock(url: &str, extra: &str) -> String {
    format!("[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{url}\"\n{extra}")
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars = env();
    vars.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    vars
}

/// Posts `body` until the refresh task has stored the credentials (it does just after the
/// endpoint answered, which the test awaited): a yield loop, not a sleep.
async fn post_until_served(url: &str, body: &str) -> Answer {
    let mut a = post(url, &[], body).await;
    for _ in 0..100 {
        if a.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
        a = post(url, &[], body).await;
    }
    a
}

/// The Bedrock call the mock received last, its access key id and session token.
fn signed_by(mock: &MockUpstream) -> (String, String) {
    let call = mock.stats.requests().into_iter().rfind(|r| r.path.starts_with("/model/")).unwrap();
    let auth = call.headers["authorization"].to_str().unwrap();
    let id = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=").unwrap().split('/').next().unwrap();
    (id.to_owned(), call.headers["x-amz-security-token"].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn container_credentials_sign_requests_and_an_echo_of_them_is_redacted() {
    let dir = TempDir::new("container");
    let token_file = dir.path("eks-pod-identity-token");
    std::fs::write(&token_file, "eks-pod-token-1\n").unwrap();
    let (id, secret) = ("ASIACONTAINER", "container-secret-0001");
    let reply = format!("secret {secret} token {CONTAINER_SESSION_TOKEN} end");
    let echo = Behavior { reply: reply.as_str().into(), ..Behavior::default() };
    let config =
        MockConfig::default().container_credentials(&["eks-pod-token-1"], id, secret).model("echo", echo);
    let mock = MockUpstream::start(config).await.unwrap();
    let full_uri = format!("{}{CONTAINER_PATH}", mock.url());
    let token_path = token_file.display().to_string();
    let env = vars(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path),
        // The file wins over the variable, as in the AWS SDKs.
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "static-token-unused"),
    ]);
    let t = Tier1::start_env(&bedrock(&mock.url(), ""), &env).await;
    mock.stats.wait_until(Duration::from_secs(10), |s| s.aws_credentials_served >= 1).await.unwrap();
    let fetch = &mock.stats.requests()[0];
    assert_eq!((fetch.method.as_str(), fetch.path.as_str()), ("GET", CONTAINER_PATH));
    assert_eq!(fetch.headers["authorization"], "eks-pod-token-1");
    let url = t.url("/v1/chat/completions");
    let a = post_until_served(&url, &chat(&format!("aws/{PROFILE}"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(signed_by(&mock), (id.to_owned(), CONTAINER_SESSION_TOKEN.to_owned()));
    // The model echoes the minted secret and session token: both redacted, in a stream too.
    let a = post(&url, &[], &chat("aws/echo")).await;
    let mask = |s: &str| format!("[redacted{}]", "*".repeat(s.len() - 10));
    let redacted = format!("secret {} token {} end", mask(secret), mask(CONTAINER_SESSION_TOKEN));
    assert_eq!(a.json()["choices"][0]["message"]["content"], redacted, "{}", a.text());
    let text = post(&url, &[], &chat_stream("aws/echo")).await.text();
    assert!(!text.contains(secret) && !text.contains(CONTAINER_SESSION_TOKEN), "{text}");
    assert!(text.contains("[redacted"), "{text}");
    assert_eq!(mock.stats.snapshot().aws_credentials_served, 1, "one fetch, whatever the requests");
}

#[test]
fn the_chain_takes_the_first_link_found_and_refuses_a_full_uri_to_another_host() {
    let load = |extra: &str, pairs: &[(&str, &str)]| {
        parse(&bedrock("http://127.0.0.1:1", extra), Format::Toml, &vars(pairs)).map(|c| format!("{c:?}"))
    };
    let err = |extra: &str, pairs: &[(&str, &str)]| load(extra, pairs).unwrap_err().to_string();
    // ECS: the relative URI under the agent's address, the key named `container`.
    let c = load("", &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task-1")]).unwrap();
    assert!(c.contains("\"http://169.254.170.2/v2/credentials/task-1\""), "{c}");
    assert!(c.contains("name: \"container\""), "{c}");
    // The relative URI wins over the full one; the environment's keys and a web identity win
    // over both.
    let both = [
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task-1"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/creds"),
    ];
    assert!(!load("", &both).unwrap().contains("9/creds"));
    let keys = [("AWS_ACCESS_KEY_ID", "AKIAENV"), ("AWS_SECRET_ACCESS_KEY", "s"), both[0]];
    assert!(load("", &keys).unwrap().contains("name: \"env\""));
    let irsa = [("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"), ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"), both[0]];
    assert!(load("", &irsa).unwrap().contains("name: \"web-identity\""));
    // The full URI: https anywhere; http to loopback and the ECS / EKS link-local addresses.
    for ok in [
        "https://creds.example.com/v1",
        "http://127.0.0.1:8080/creds",
        "http://127.1.2.3/creds",
        "http://localhost/creds",
        "http://[::1]:80/creds",
        "http://169.254.170.2/v2/credentials",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
    ] {
        let c =
            load("", &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok)]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(c.contains(ok), "{c}");
    }
    for refused in [
        "http://169.254.169.254/latest/meta-data/",
        "http://creds.example.com/v1",
        "http://10.0.0.1/creds",
        "ftp://127.0.0.1/creds",
        "not a url",
    ] {
        let e = err("", &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", refused)]);
        assert!(e.contains("providers.aws.keys: AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{refused}: {e}");
    }
    let e = err("", &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.0.0.1/creds")]);
    assert!(
        e.contains("\"10.0.0.1\" is not allowed (https to any host; http only to a loopback address"),
        "{e}"
    );
    // A static token must be a header value; it is a secret, never printed.
    let token = [
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c"),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok\u{7f}"),
    ];
    assert!(err("", &token).contains("AWS_CONTAINER_AUTHORIZATION_TOKEN is not a valid header value"));
    let token = [token[0], ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "static-secret-token")];
    assert!(!load("", &token).unwrap().contains("static-secret-token"));
}

#[tokio::test]
async fn instance_metadata_is_imdsv2_only_and_signs_requests() {
    let (id, secret) = ("ASIAINSTANCE", "instance-secret-0001");
    let mock = MockUpstream::start(MockConfig::default().instance_metadata(id, secret)).await.unwrap();
    // The mock is an instance requiring IMDSv2: a GET without the session token is refused.
    let v1 = bare_get(&format!("{}/latest/meta-data/iam/security-credentials/", mock.url())).await;
    assert_eq!(v1, 401);
    let env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url())]);
    let t = Tier1::start_env(&bedrock(&mock.url(), "instance_metadata = true"), &env).await;
    mock.stats.wait_until(Duration::from_secs(10), |s| s.aws_credentials_served >= 1).await.unwrap();
    let calls: Vec<_> = mock.stats.requests().into_iter().skip(1).collect();
    let seen: Vec<_> = calls.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let credentials = format!("GET /latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}");
    assert_eq!(
        seen,
        ["PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/", &credentials]
    );
    assert_eq!(calls[0].headers["x-aws-ec2-metadata-token-ttl-seconds"], "21600");
    let token = calls[0].headers.get("x-aws-ec2-metadata-token");
    assert!(token.is_none(), "the PUT carries no session token");
    for get in &calls[1..] {
        assert_eq!(get.headers["x-aws-ec2-metadata-token"], "mock-imds-v2-token");
    }
    let a = post_until_served(&t.url("/v1/chat/completions"), &chat(&format!("aws/{PROFILE}"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(signed_by(&mock), (id.to_owned(), INSTANCE_SESSION_TOKEN.to_owned()));
}

/// A GET without any header, the status it gets.
async fn bare_get(url: &str) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    client.get(url.parse().unwrap()).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn instance_metadata_is_off_unless_opted_in() {
    let mock = MockUpstream::start(MockConfig::default().instance_metadata("ASIAI", "s")).await.unwrap();
    let endpoint = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", mock.url())];
    let endpoint: Vec<(&str, &str)> = endpoint.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = |extra: &str, pairs: &[(&str, &str)]| {
        parse(&bedrock(&mock.url(), extra), Format::Toml, &vars(pairs)).unwrap_err().to_string()
    };
    let e = err("", &endpoint);
    assert!(e.contains("providers.aws.keys: none, and no AWS_ACCESS_KEY_ID"), "{e}");
    assert!(e.contains("and no instance_metadata = true"), "{e}");
    let disabled = [endpoint[0], ("AWS_EC2_METADATA_DISABLED", "true")];
    let e = err("instance_metadata = true", &disabled);
    assert!(e.contains("(instance_metadata = true, but AWS_EC2_METADATA_DISABLED=true)"), "{e}");
    let keys =
        "instance_metadata = true\n[[providers.aws.keys]]\naccess_key_id = \"AKIA1\"\nsecret = \"s\"\n";
    assert!(err(keys, &[]).contains("providers.aws.instance_metadata: takes no keys"));
    let other = "[providers.o]\nkind = \"openai\"\ninstance_metadata = true\nkeys = [{ secret = \"k\" }]\n";
    let e = parse(other, Format::Toml, &vars(&[])).unwrap_err().to_string();
    assert!(
        e.contains("providers.o.instance_metadata: only a bedrock provider takes instance_metadata"),
        "{e}"
    );
    let e = err("instance_metadata = true", &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://h/path")]);
    assert!(e.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT is not an http(s) URL without a path"), "{e}");
    // Opted in without an endpoint: the instance's own.
    let c = parse(&bedrock(&mock.url(), "instance_metadata = true"), Format::Toml, &vars(&[])).unwrap();
    assert!(format!("{c:?}").contains("\"http://169.254.169.254\""));
    let ipv6 = [("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")];
    let c = parse(&bedrock(&mock.url(), "instance_metadata = true"), Format::Toml, &vars(&ipv6)).unwrap();
    assert!(format!("{c:?}").contains("\"http://[fd00:ec2::254]\""));
    // Nothing above ever called the metadata service.
    assert_eq!(mock.stats.snapshot().requests, 0);
}

#[tokio::test]
async fn a_metadata_outage_fails_over_and_the_provider_recovers_when_it_answers() {
    let mock = MockUpstream::start(MockConfig::default().instance_metadata("ASIAOUTAGE", "outage-secret"))
        .await
        .unwrap();
    mock.stats.set_down(METADATA, Some(503));
    let extra = format!(
        "instance_metadata = true\n\n[providers.up]\nkind = \"openai\"\nbase_url = \"{}\"\nkeys = [{{ secret = \"env:UPSTREAM_KEY\" }}]\n\n\
         [[routes]]\nname = \"claude\"\ntargets = [{{ provider = \"aws\", model = \"{PROFILE}\" }}, {{ provider = \"up\", model = \"gpt-4o\" }}]\n",
        mock.url()
    );
    let env = vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url())]);
    let t = Tier1::start_env(&bedrock(&mock.url(), &extra), &env).await;
    mock.stats.wait_until(Duration::from_secs(10), |s| s.requests >= 1).await.unwrap();
    // No credentials: the Bedrock attempt is never sent, the fallback serves.
    let url = t.url("/v1/chat/completions");
    let a = post(&url, &[], &chat("claude")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-tier1-provider"), Some("up"));
    assert!(mock.stats.requests().iter().all(|r| !r.path.starts_with("/model/")), "nothing unsigned sent");
    // The metadata answers again: the next fetch (after a 1 s backoff) gets the credentials.
    mock.stats.set_down(METADATA, None);
    mock.stats.wait_until(Duration::from_secs(10), |s| s.aws_credentials_served >= 1).await.unwrap();
    let mut a = post(&url, &[], &chat("claude")).await;
    for _ in 0..100 {
        if a.header("x-tier1-provider") == Some("aws") {
            break;
        }
        tokio::task::yield_now().await;
        a = post(&url, &[], &chat("claude")).await;
    }
    assert_eq!((a.status.as_u16(), a.header("x-tier1-provider")), (200, Some("aws")), "{}", a.text());
    assert_eq!(signed_by(&mock).0, "ASIAOUTAGE");
    let tokens = mock.stats.requests().iter().filter(|r| r.path == "/latest/api/token").count();
    assert!(tokens >= 2, "a failed fetch, then one that answered: {tokens}");
}
