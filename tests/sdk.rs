//! The official SDKs against tier1: OpenAI's and Anthropic's Python clients (installed by
//! scripts/test.sh into .tools/py) run tests/sdk/check.py against a live server whose OpenAI,
//! Anthropic and Gemini providers are mock upstreams speaking each wire format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_anthropic_sdks_work_against_every_provider_kind() {
    let python = Path::new(ROOT).join(".tools/py/bin/python");
    assert!(
        python.exists(),
        "the SDK venv is missing: run scripts/test.sh (it installs openai and anthropic)"
    );
    let config = MockConfig::default()
        .aws_key("AKIDEXAMPLE", "sk-upstream-secret-0001")
        .vertex_token("sk-upstream-secret-0001");
    let mock = MockUpstream::start(config).await.unwrap();
    let url = mock.url();
    let t = Tier1::start(&format!(
        r#"
[server]
api_keys = ["env:FRONT_KEY"]
[providers.openai]
kind = "openai"
base_url = "{url}/v1"
[[providers.openai.keys]]
secret = "env:UPSTREAM_KEY"
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"
[[providers.anthropic.keys]]
secret = "env:UPSTREAM_KEY"
[providers.gemini]
kind = "gemini"
base_url = "{url}"
[[providers.gemini.keys]]
secret = "env:UPSTREAM_KEY"
[providers.azure]
kind = "azure"
base_url = "{url}"
[[providers.azure.keys]]
secret = "env:UPSTREAM_KEY"
[providers.bedrock]
kind = "bedrock"
region = "us-east-1"
base_url = "{url}"
[[providers.bedrock.keys]]
access_key_id = "AKIDEXAMPLE"
secret = "env:UPSTREAM_KEY"
[providers.vertex]
kind = "vertex"
project = "tier1-test"
location = "global"
base_url = "{url}"
[[providers.vertex.keys]]
secret = "env:UPSTREAM_KEY"
[[routes]]
name = "smart"
targets = [{{ provider = "openai", model = "gpt-4o" }}]
"#
    ))
    .await;
    let run = tokio::process::Command::new(&python)
        .arg(Path::new(ROOT).join("tests/sdk/check.py"))
        .args([&t.url(""), "front-key-0001", DEFAULT_REPLY])
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(120), run).await.expect("SDK checks timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("sdk checks passed"), "{stdout}");
    // Every check went through tier1 to a mock: nothing was answered without an upstream call.
    // 4 kinds × (full, stream, raw, tool call, streamed tool call, tool result), 2 embeddings,
    // 27 Responses (5 kinds × (full, stream, the stream helper); through anthropic, gemini and
    // bedrock a tool call, its result, a streamed call; the store=True ones are refused by
    // tier1), Anthropic SDK: 2 auth styles × 4 kinds × (full, stream), 4 kinds × tool use (full,
    // stream). Every Bedrock call's SigV4 signature was checked by the mock. Vertex AI's two
    // publishers (Gemini, Claude) are in every list Bedrock is: 18 calls each, every one with
    // the bearer token the mock's Vertex routes check.
    assert_eq!(mock.stats.snapshot().requests, 110, "{:?}", mock.stats.snapshot());
    let bedrock = mock.stats.requests().into_iter().filter(|r| r.path.starts_with("/model/")).count();
    assert_eq!(bedrock, 18);
    let vertex: Vec<_> = mock
        .stats
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/projects/tier1-test/"))
        .collect();
    let claude = vertex
        .iter()
        .filter(|r| r.path.contains("/publishers/anthropic/models/claude-sonnet-4@20250514:"))
        .count();
    assert_eq!((vertex.len(), claude), (36, 18));
    // Azure's got the v1 API's path with the deployment in the body.
    let azure: Vec<_> =
        mock.stats.requests().into_iter().filter(|r| r.path.starts_with("/openai/v1/responses")).collect();
    assert_eq!(
        azure.len(),
        3,
        "{:?}",
        mock.stats.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
    assert!(azure.iter().all(|r| String::from_utf8_lossy(&r.body).contains(r#""model":"gpt4o-prod""#)));
}

/// Issue 19 item 6: a provider's event that is not JSON, after the stream's first content. The
/// SDK raises at such an event (`json.loads` of every `data:`), losing the rest of the answer;
/// through tier1 it reads the whole stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_reads_a_stream_whose_provider_sent_a_malformed_event() {
    let python = Path::new(ROOT).join(".tools/py/bin/python");
    assert!(
        python.exists(),
        "the SDK venv is missing: run scripts/test.sh (it installs openai and anthropic)"
    );
    let event = |content: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let stop = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    let chunks = [
        event("Hel"),
        "data: {\"choices\":[\n\n".to_owned(),
        event("lo"),
        stop.to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ];
    let up = MockUpstream::fixed(Fixed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks: chunks.into_iter().map(bytes::Bytes::from).collect(),
        gap: Duration::from_millis(10),
    })
    .await;
    let t =
        Tier1::start(&config(&up.url(), "").replace("[server]", "[server]\napi_keys = [\"env:FRONT_KEY\"]"))
            .await;
    let run = tokio::process::Command::new(&python)
        .arg(Path::new(ROOT).join("tests/sdk/malformed_event.py"))
        .args([&t.url(""), "front-key-0001", "Hello"])
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("the SDK check timed out").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("sdk stream complete"), "{stdout}\n{stderr}");
    assert_eq!(up.stats.snapshot().requests, 1);
}
