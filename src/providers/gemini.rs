//! `kind = "gemini"`: Google's Gemini API. Keys go in `x-goog-api-key`; the URL names the model
//! and the method (`generateContent`, `streamGenerateContent?alt=sse`, `batchEmbedContents`)
//! under `base_url` plus `/v1beta`, unless the base already names a version.

use http::{HeaderName, Uri};

use super::{BaseUrl, Endpoints, Invalid, Kind, Operation, Settings, Wire, path_safe};

/// The `gemini` kind.
pub(crate) struct Gemini;

impl Kind for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Default("https://generativelanguage.googleapis.com")
    }

    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-goog-api-key"), secret.to_owned())
    }

    fn endpoints(&self, base: &Uri, _settings: &Settings<'_>) -> Result<Box<dyn Endpoints>, Invalid> {
        Ok(Box::new(Models { root: root(base) }))
    }

    // Direct models are not refused at routing: the translation into Gemini's format answers
    // one that cannot go in the URL with a 400 (`translate::gemini::valid_model`).
}

/// `{root}/models/{model}:{method}`.
struct Models {
    root: String,
}

impl Endpoints for Models {
    fn uri(&self, op: Operation, stream: bool, model: &str) -> Option<Uri> {
        // Checked when the request was translated; checked again, since it goes in the path.
        if !path_safe(model) {
            return None;
        }
        let method = match op {
            Operation::Embeddings => "batchEmbedContents",
            _ if stream => "streamGenerateContent?alt=sse",
            _ => "generateContent",
        };
        Uri::try_from(format!("{}/models/{model}:{method}", self.root)).ok()
    }
}

/// Gemini's API root: `base_url` plus `/v1beta`, unless it already names a version.
fn root(base: &Uri) -> String {
    let last = base.path().trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    let versioned = last.strip_prefix('v').is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let base = base.to_string();
    let base = base.trim_end_matches('/');
    if versioned { base.to_owned() } else { format!("{base}/v1beta") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gets_a_version_only_when_it_has_none() {
        let base = |s: &str| root(&s.parse().unwrap());
        assert_eq!(
            base("https://generativelanguage.googleapis.com"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            base("https://generativelanguage.googleapis.com/"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(
            base("https://generativelanguage.googleapis.com/v1"),
            "https://generativelanguage.googleapis.com/v1"
        );
        assert_eq!(base("http://127.0.0.1:9/proxy/v1beta/"), "http://127.0.0.1:9/proxy/v1beta");
        assert_eq!(base("http://127.0.0.1:9/proxy"), "http://127.0.0.1:9/proxy/v1beta");
        assert_eq!(base("https://v1.example.com"), "https://v1.example.com/v1beta");
    }

    #[test]
    fn urls_name_the_model_and_the_method() {
        let settings = Settings { api_version: "ignored", anthropic_version: "ignored", project: "", location: "" };
        let e = Gemini.endpoints(&"http://127.0.0.1:9".parse().unwrap(), &settings).unwrap();
        let uri = |op, stream, model| e.uri(op, stream, model).map(|u| u.to_string());
        let at = |tail: &str| Some(format!("http://127.0.0.1:9/v1beta/models/{tail}"));
        assert_eq!(uri(Operation::Chat, false, "gemini-2.5-flash"), at("gemini-2.5-flash:generateContent"));
        assert_eq!(
            uri(Operation::Chat, true, "gemini-2.5-flash"),
            at("gemini-2.5-flash:streamGenerateContent?alt=sse")
        );
        assert_eq!(uri(Operation::Messages, true, "g"), at("g:streamGenerateContent?alt=sse"));
        assert_eq!(uri(Operation::Embeddings, true, "text-embedding-004"), at("text-embedding-004:batchEmbedContents"));
        assert_eq!(uri(Operation::Chat, false, "../tunedModels/x"), None);
    }

    #[test]
    fn keys_go_in_x_goog_api_key_and_direct_models_reach_translation() {
        assert_eq!(Gemini.auth("AIza"), (HeaderName::from_static("x-goog-api-key"), "AIza".to_owned()));
        assert!(Gemini.direct_model("a/b"), "refused by translation with a 400, not here");
    }
}
