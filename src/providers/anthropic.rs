//! `kind = "anthropic"`: Anthropic's Messages API. Keys go in `x-api-key`, every request carries
//! `anthropic-version`; OpenAI chat is translated to Messages and back.

use http::{HeaderName, HeaderValue};

use super::{BaseUrl, Invalid, Kind, Settings, Wire};

/// `anthropic_version` when the file sets none.
pub(crate) const DEFAULT_VERSION: &str = "2023-06-01";

/// The `anthropic` kind.
pub(crate) struct Anthropic;

impl Kind for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Default("https://api.anthropic.com")
    }

    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-api-key"), secret.to_owned())
    }

    fn headers(&self, settings: &Settings<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, Invalid> {
        let version = HeaderValue::from_str(settings.anthropic_version).map_err(|_| Invalid)?;
        Ok(vec![(HeaderName::from_static("anthropic-version"), version)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;

    fn settings(anthropic_version: &str) -> Settings<'_> {
        Settings { api_version: "ignored", anthropic_version, project: "", location: "" }
    }

    #[test]
    fn keys_go_in_x_api_key_with_the_version_header() {
        assert_eq!(Anthropic.auth("sk-ant"), (HeaderName::from_static("x-api-key"), "sk-ant".to_owned()));
        let h = Anthropic.headers(&settings(DEFAULT_VERSION)).unwrap();
        assert_eq!(h, vec![(HeaderName::from_static("anthropic-version"), HeaderValue::from_static("2023-06-01"))]);
        assert_eq!(Anthropic.headers(&settings("2023\n-01")), Err(Invalid));
    }

    #[test]
    fn messages_go_to_v1_messages() {
        let base = "https://api.anthropic.com".parse().unwrap();
        let e = Anthropic.endpoints(&base, &settings(DEFAULT_VERSION)).unwrap();
        let uri = e.uri(Operation::Messages, true, "claude-sonnet-4").unwrap();
        assert_eq!(uri.to_string(), "https://api.anthropic.com/v1/messages");
        assert!(Anthropic.direct_model("claude/../x"), "the model goes in the body");
    }
}
