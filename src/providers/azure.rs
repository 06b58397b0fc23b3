//! `kind = "azure"`: OpenAI on Azure. Keys go in `api-key`; the URL names the deployment (a
//! target's `deployment`, else its model) and carries `api-version`. There is no default
//! resource, so `base_url` is required.
//!
//! The Responses API is the exception: Azure serves it only on its v1 API,
//! `{base}/openai/v1/responses`, which takes no `api-version` (the dated versions tier1 sends
//! elsewhere predate it) and no deployment in the path: the body's `model` names the deployment.

use http::{HeaderName, Uri};

use super::{BaseUrl, Endpoints, Invalid, Kind, Operation, Settings, Wire, path_safe};

/// `api_version` when the file sets none.
pub(crate) const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The `azure` kind.
pub(crate) struct Azure;

impl Kind for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Required("https://RESOURCE.openai.azure.com")
    }

    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("api-key"), secret.to_owned())
    }

    fn endpoints(&self, base: &Uri, settings: &Settings<'_>) -> Result<Box<dyn Endpoints>, Invalid> {
        let base = base.to_string().trim_end_matches('/').to_owned();
        Ok(Box::new(Deployments { base, version: settings.api_version.to_owned() }))
    }

    /// A direct `provider/model` names the deployment, which goes in the URL path: `az/../../x`
    /// or `az/a?b` would reach other paths of the provider's host, with its key.
    fn direct_model(&self, model: &str) -> bool {
        path_safe(model)
    }

    /// The v1 Responses URL names no deployment: the body does.
    fn body_model<'m>(&self, op: Operation, model: &'m str, deployment: &'m str) -> &'m str {
        if op == Operation::Responses { deployment } else { model }
    }
}

/// `{base}/openai/deployments/{deployment}/{path}?api-version={version}`; Responses at
/// `{base}/openai/v1/responses`.
struct Deployments {
    base: String,
    version: String,
}

impl Endpoints for Deployments {
    /// A direct request's deployment passed [`Kind::direct_model`]; a route's was validated
    /// with the config.
    fn uri(&self, op: Operation, _stream: bool, deployment: &str) -> Option<Uri> {
        if op == Operation::Responses {
            return Uri::try_from(format!("{}/openai/v1/responses", self.base)).ok();
        }
        let path = if op == Operation::Embeddings { "embeddings" } else { "chat/completions" };
        let (base, version) = (&self.base, &self.version);
        Uri::try_from(format!("{base}/openai/deployments/{deployment}/{path}?api-version={version}")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(base: &str) -> Box<dyn Endpoints> {
        let settings = Settings { api_version: DEFAULT_API_VERSION, anthropic_version: "ignored", project: "", location: "" };
        Azure.endpoints(&base.parse().unwrap(), &settings).unwrap()
    }

    #[test]
    fn urls_name_the_deployment_and_the_api_version() {
        let e = endpoints("https://r.openai.azure.com/");
        assert_eq!(
            e.uri(Operation::Chat, true, "gpt-4o").unwrap().to_string(),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            e.uri(Operation::Embeddings, false, "emb.3").unwrap().to_string(),
            "https://r.openai.azure.com/openai/deployments/emb.3/embeddings?api-version=2024-10-21"
        );
        // The v1 API: no deployment in the path, no api-version; the body names the deployment.
        assert_eq!(
            e.uri(Operation::Responses, true, "gpt-4o").unwrap().to_string(),
            "https://r.openai.azure.com/openai/v1/responses"
        );
        assert_eq!(Azure.body_model(Operation::Responses, "gpt-4o", "prod-4o"), "prod-4o");
        assert_eq!(Azure.body_model(Operation::Chat, "gpt-4o", "prod-4o"), "gpt-4o");
    }

    #[test]
    fn a_direct_deployment_must_stay_in_its_path_segment() {
        for bad in ["", ".", "..", "...", "../x", "a/b", "a?b", "a#b", "a%2Fb", "a b"] {
            assert!(!Azure.direct_model(bad), "{bad:?}");
        }
        assert!(Azure.direct_model("gpt-4o_mini.2"));
        assert!(Azure.direct_model("a..b"));
    }

    #[test]
    fn keys_go_in_api_key_and_base_url_is_required() {
        assert_eq!(Azure.auth("k"), (HeaderName::from_static("api-key"), "k".to_owned()));
        assert!(matches!(Azure.base_url(), BaseUrl::Required(_)));
    }
}
