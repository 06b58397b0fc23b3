//! `kind = "bedrock"`: Amazon Bedrock's Converse API. Every request is signed with SigV4
//! ([`sigv4`]) for the provider's `region` by one credential set (a key: `access_key_id`, its
//! secret, an optional session token, or temporary credentials kept fresh in the background:
//! [`credentials`]); the URL names the model (`/model/{modelId}/converse` and
//! `/converse-stream`), percent-encoded whole into one path segment. A stream answers in the AWS
//! event-stream framing, which [`stream`] turns into SSE events for the translation
//! ([`crate::translate::bedrock`]) and the commit judge.

pub(crate) mod container;
pub(crate) mod credentials;
pub(crate) mod imds;
pub(crate) mod sigv4;
pub(crate) mod stream;
pub(crate) mod web_identity;

use http::Uri;

use super::{BaseUrl, Endpoints, Invalid, Kind, Operation, Settings, Wire};
use crate::translate::bedrock::valid_model;

/// The `bedrock` kind.
pub(crate) struct Bedrock;

/// The base URL of a region's Bedrock runtime (`{region}` replaced).
pub(crate) const REGIONAL_URL: &str = "https://bedrock-runtime.{region}.amazonaws.com";

/// Whether `region` can go in a host name: `us-east-1`, `eu-central-2`, ...
pub(crate) fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

impl Kind for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn wire(&self) -> Wire {
        Wire::Bedrock
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Regional(REGIONAL_URL)
    }

    fn signed(&self) -> bool {
        true
    }

    fn event_stream(&self) -> bool {
        true
    }

    fn endpoints(&self, base: &Uri, _settings: &Settings<'_>) -> Result<Box<dyn Endpoints>, Invalid> {
        let root = base.to_string().trim_end_matches('/').to_owned();
        Ok(Box::new(Converse { root }))
    }

    // Direct models are not refused at routing: the translation into Converse answers one that
    // cannot go in the URL with a 400 (`translate::bedrock::valid_model`).
}

/// `{root}/model/{modelId}/converse[-stream]`.
struct Converse {
    root: String,
}

impl Endpoints for Converse {
    fn uri(&self, op: Operation, stream: bool, model: &str) -> Option<Uri> {
        // Checked when the request was translated; checked again, since it goes in the path.
        if !valid_model(model) || op == Operation::Embeddings {
            return None;
        }
        let method = if stream { "converse-stream" } else { "converse" };
        Uri::try_from(format!("{}/model/{}/{method}", self.root, encode_segment(model))).ok()
    }
}

/// `s` percent-encoded as one path segment: every byte but the unreserved ones
/// (`A-Z a-z 0-9 - . _ ~`), as the AWS SDKs encode a model id (`:` as `%3A`, `/` as `%2F`).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Box<dyn Endpoints> {
        let settings = Settings { api_version: "", anthropic_version: "", project: "", location: "" };
        Bedrock.endpoints(&"https://bedrock-runtime.us-east-1.amazonaws.com/".parse().unwrap(), &settings).unwrap()
    }

    #[test]
    fn urls_name_the_encoded_model_and_the_method() {
        let e = endpoints();
        let uri = |stream, model| e.uri(Operation::Chat, stream, model).map(|u| u.to_string());
        let at = |tail: &str| Some(format!("https://bedrock-runtime.us-east-1.amazonaws.com/model/{tail}"));
        assert_eq!(
            uri(false, "anthropic.claude-3-5-sonnet-20240620-v1:0"),
            at("anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
        );
        assert_eq!(
            uri(true, "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            at("us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream")
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-v1:0";
        assert_eq!(
            uri(false, arn),
            at("arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku-v1%3A0/converse")
        );
        assert_eq!(e.uri(Operation::Embeddings, false, "amazon.titan-embed-text-v2:0"), None);
    }

    #[test]
    fn a_model_name_never_changes_the_host_or_the_path() {
        let e = endpoints();
        for bad in ["", "..", "a/../b", "a//b", "/a", "a?b", "a#b", "a%2Fb", "a b", "a\\b", "@evil.com", "a\nb"] {
            assert_eq!(e.uri(Operation::Chat, false, bad), None, "{bad:?}");
        }
        let long = "a".repeat(2049);
        assert_eq!(e.uri(Operation::Chat, false, &long), None);
        // What is taken stays in its segment: the path has exactly four.
        let uri = e.uri(Operation::Chat, true, "arn:aws:bedrock:eu-west-1:1:application-inference-profile/x").unwrap();
        assert_eq!(uri.host(), Some("bedrock-runtime.us-east-1.amazonaws.com"));
        assert_eq!(uri.path().split('/').count(), 4, "{uri}");
    }

    #[test]
    fn regions_go_in_a_host_name() {
        for ok in ["us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1"] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in ["", "US-EAST-1", "us-east-1.evil.com", "us east", "-a", "a-", "us/east"] {
            assert!(!valid_region(bad), "{bad}");
        }
    }
}
