//! OpenAI on Azure: deployments in the URL, `api-version`, the `api-key` header.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::*;

#[tokio::test]
async fn azure_targets_use_deployment_urls_api_version_and_api_key() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let toml = format!(
        r#"
[providers.azure-east]
kind = "azure"
base_url = "{}"
api_version = "2024-10-21"
[[providers.azure-east.keys]]
name = "main"
secret = "env:UPSTREAM_KEY"

[[routes]]
name = "smart"
targets = [{{ provider = "azure-east", model = "gpt-4o", deployment = "gpt4o-prod" }}]
[[routes]]
name = "embed"
targets = [{{ provider = "azure-east", model = "text-embedding-3-small", deployment = "embed-prod" }}]
"#,
        mock.url()
    );
    let t = Tier1::start(&toml).await;
    let a = post(&t.url("/v1/chat/completions"), &[], &chat("smart")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post(&t.url("/v1/embeddings"), &[], r#"{"model":"embed","input":"hi"}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Direct: the model part is the deployment.
    let a = post(&t.url("/v1/chat/completions"), &[], &chat_stream("azure-east/my-deploy")).await;
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    let sent = mock.stats.requests();
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
            "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21",
            "/openai/deployments/my-deploy/chat/completions?api-version=2024-10-21",
        ]
    );
    for r in &sent {
        assert_eq!(r.headers["api-key"], "sk-upstream-secret-0001");
        assert!(!r.headers.contains_key("authorization"));
    }
}

#[test]
fn azure_needs_a_base_url() {
    let err = tier1::testing::config::parse(
        "[providers.az]\nkind = \"azure\"\n",
        tier1::testing::config::Format::Toml,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("providers.az.base_url: missing"), "{err}");
}
