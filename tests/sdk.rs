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
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
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
    // 3 kinds × (full, stream, raw, tool call, streamed tool call, tool result), 2 embeddings,
    // Anthropic SDK: 2 auth styles × 3 kinds × (full, stream), 3 kinds × tool use (full, stream).
    assert_eq!(mock.stats.snapshot().requests, 38, "{:?}", mock.stats.snapshot());
}
