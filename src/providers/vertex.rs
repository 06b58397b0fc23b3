//! `kind = "vertex"`: Google Vertex AI, for a Google Cloud `project` and `location` (or
//! `global`). The model picks its publisher: a model named `claude-*` is Anthropic's, served by
//! `rawPredict` and `streamRawPredict` in Anthropic's Messages format with
//! `"anthropic_version": "vertex-2023-10-16"` in the body and no `model` (the URL names it); any
//! other is Google's (Gemini), served by `generateContent` and `streamGenerateContent?alt=sse`
//! in Gemini's format. Both under
//! `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}`.
//! Requests carry `Authorization: Bearer` with an OAuth2 access token ([`token`]).

pub(crate) mod token;

use bytes::Bytes;
use http::Uri;

use super::{BaseUrl, Endpoints, Invalid, Kind, Operation, Settings, Wire};

/// The `vertex` kind.
pub(crate) struct Vertex;

/// The base URL of location `global`.
pub(crate) const GLOBAL_URL: &str = "https://aiplatform.googleapis.com";
/// The base URL of any other location (`{location}` replaced).
pub(crate) const REGIONAL_URL: &str = "https://{location}-aiplatform.googleapis.com";
/// The `anthropic_version` a Claude request on Vertex AI carries in its body.
pub(crate) const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Whose model a Vertex AI model name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publisher {
    /// Google's (Gemini): any model not named `claude-*`.
    Google,
    /// Anthropic's (Claude): `claude-*`.
    Anthropic,
}

impl Publisher {
    /// The publisher of `model`.
    pub(crate) fn of(model: &str) -> Self {
        if model.starts_with("claude-") { Self::Anthropic } else { Self::Google }
    }
}

/// Whether `location` can go in a host name and a path: `global`, `us-central1`, `europe-west4`.
pub(crate) fn valid_location(location: &str) -> bool {
    super::bedrock::valid_region(location)
}

/// Whether `project` is a Google Cloud project id (6 to 30 lower-case letters, digits and
/// hyphens, from a letter, not ending in a hyphen), optionally domain-scoped
/// (`example.com:my-project`): it goes in the path.
pub(crate) fn valid_project(project: &str) -> bool {
    let (domain, id) = match project.rsplit_once(':') {
        Some((domain, id)) => (Some(domain), id),
        None => (None, project),
    };
    let domain_ok = domain.is_none_or(|d| {
        d.len() <= 253 && d.contains('.') && d.split('.').all(super::bedrock::valid_region)
    });
    domain_ok
        && (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `model` can go in one path segment as is: letters, digits, `-`, `_`, `.` and the
/// `@` of a Claude version (`claude-sonnet-4@20250514`), not only dots, at most 256 bytes.
pub(crate) fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 256
        && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
        && model.bytes().any(|b| b != b'.')
}

impl Kind for Vertex {
    fn name(&self) -> &'static str {
        "vertex"
    }

    /// Google's, for a kind-wide answer (which formats a `vertex` provider may be asked).
    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    fn wire_for(&self, model: &str) -> Wire {
        match Publisher::of(model) {
            Publisher::Google => Wire::Gemini,
            Publisher::Anthropic => Wire::Anthropic,
        }
    }

    /// Not embeddings: Vertex AI's are `:predict` with another body, not `batchEmbedContents`.
    fn serves(&self, op: Operation, model: &str) -> bool {
        op != Operation::Embeddings && self.wire_for(model).speaks(op)
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::Located { global: GLOBAL_URL, regional: REGIONAL_URL }
    }

    fn endpoints(&self, base: &Uri, settings: &Settings<'_>) -> Result<Box<dyn Endpoints>, Invalid> {
        if !valid_project(settings.project) || !valid_location(settings.location) {
            return Err(Invalid);
        }
        let base = base.to_string();
        let root = format!(
            "{}/v1/projects/{}/locations/{}/publishers",
            base.trim_end_matches('/'),
            settings.project,
            settings.location
        );
        Ok(Box::new(Publishers { root }))
    }

    /// A model that cannot go in the path is unknown (a 404 before any call), whichever
    /// publisher's it would be.
    fn direct_model(&self, model: &str) -> bool {
        valid_model(model)
    }
}

/// `{root}/{publisher}/models/{model}:{method}`.
struct Publishers {
    root: String,
}

impl Endpoints for Publishers {
    fn uri(&self, op: Operation, stream: bool, model: &str) -> Option<Uri> {
        // Routing refused a direct model that fails this; a configured one is checked here.
        if !valid_model(model) || op == Operation::Embeddings {
            return None;
        }
        let (publisher, method) = match (Publisher::of(model), stream) {
            (Publisher::Google, false) => ("google", "generateContent"),
            (Publisher::Google, true) => ("google", "streamGenerateContent?alt=sse"),
            (Publisher::Anthropic, false) => ("anthropic", "rawPredict"),
            (Publisher::Anthropic, true) => ("anthropic", "streamRawPredict"),
        };
        Uri::try_from(format!("{}/{publisher}/models/{model}:{method}", self.root)).ok()
    }

    fn body(&self, model: &str, body: Bytes) -> Option<Bytes> {
        match Publisher::of(model) {
            Publisher::Google => Some(body),
            Publisher::Anthropic => anthropic_body(&body),
        }
    }
}

/// An Anthropic Messages body as Vertex AI takes it: `anthropic_version` in it, no `model`.
fn anthropic_body(body: &[u8]) -> Option<Bytes> {
    let serde_json::Value::Object(mut obj) = serde_json::from_slice(body).ok()? else { return None };
    obj.remove("model");
    obj.insert("anthropic_version".into(), ANTHROPIC_VERSION.into());
    serde_json::to_vec(&obj).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(project: &str, location: &str) -> Result<Box<dyn Endpoints>, Invalid> {
        let settings = Settings { api_version: "", anthropic_version: "", project, location };
        Vertex.endpoints(&"https://us-east5-aiplatform.googleapis.com/".parse().unwrap(), &settings)
    }

    #[test]
    fn urls_name_the_project_location_publisher_model_and_method() {
        let e = endpoints("my-project", "us-east5").unwrap();
        let uri = |op, stream, model| e.uri(op, stream, model).map(|u| u.to_string());
        let at = |tail: &str| {
            Some(format!(
                "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/{tail}"
            ))
        };
        assert_eq!(
            uri(Operation::Chat, false, "gemini-2.5-flash"),
            at("google/models/gemini-2.5-flash:generateContent")
        );
        assert_eq!(
            uri(Operation::Responses, true, "gemini-2.5-flash"),
            at("google/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            uri(Operation::Messages, false, "claude-sonnet-4@20250514"),
            at("anthropic/models/claude-sonnet-4@20250514:rawPredict")
        );
        assert_eq!(
            uri(Operation::Messages, true, "claude-sonnet-4@20250514"),
            at("anthropic/models/claude-sonnet-4@20250514:streamRawPredict")
        );
        assert_eq!(uri(Operation::Embeddings, false, "text-embedding-005"), None);
    }

    #[test]
    fn a_model_name_never_changes_the_host_or_the_path() {
        let e = endpoints("my-project", "global").unwrap();
        for bad in ["", "..", ".", "a/../b", "a//b", "/a", "a?b", "a#b", "a%2Fb", "a b", "a\\b", "a:b", "a\nb"] {
            assert_eq!(e.uri(Operation::Chat, false, bad), None, "{bad:?}");
            assert!(!Vertex.direct_model(bad), "{bad:?}");
        }
        assert_eq!(e.uri(Operation::Chat, false, &"a".repeat(257)), None);
        let uri = e.uri(Operation::Chat, true, "claude-x@evil.com").unwrap();
        assert_eq!(uri.host(), Some("us-east5-aiplatform.googleapis.com"));
        assert_eq!(uri.path().split('/').count(), 10, "{uri}");
    }

    #[test]
    fn projects_and_locations_are_checked_before_they_go_in_the_url() {
        for ok in ["my-project", "proj-123456", "example.com:my-project", "a23456"] {
            assert!(valid_project(ok), "{ok}");
        }
        for bad in ["", "short", "My-Project", "1project", "project-", "a/b/../c", "my project", "a?b=c", ":my-project"] {
            assert!(!valid_project(bad), "{bad}");
        }
        for ok in ["global", "us-central1", "europe-west4", "us-east5"] {
            assert!(valid_location(ok), "{ok}");
        }
        for bad in ["", "US", "us-east5.evil.com", "us/east", "a b"] {
            assert!(!valid_location(bad), "{bad}");
        }
        assert!(endpoints("my-project", "us/../x").is_err());
        assert!(endpoints("../x", "global").is_err());
    }

    #[test]
    fn claude_bodies_carry_the_vertex_version_and_no_model() {
        let e = endpoints("my-project", "global").unwrap();
        let body = Bytes::from_static(br#"{"model":"claude-sonnet-4@20250514","max_tokens":5,"messages":[]}"#);
        let sent: serde_json::Value =
            serde_json::from_slice(&e.body("claude-sonnet-4@20250514", body.clone()).unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "messages": []})
        );
        assert_eq!(e.body("gemini-2.5-flash", body.clone()), Some(body));
        assert_eq!(e.body("claude-x", Bytes::from_static(b"[1]")), None);
    }

    #[test]
    fn the_model_picks_the_publisher_and_its_format() {
        assert_eq!(Vertex.wire_for("claude-opus-4-1@20250805"), Wire::Anthropic);
        assert_eq!(Vertex.wire_for("gemini-2.5-pro"), Wire::Gemini);
        assert_eq!(Vertex.wire_for("claude"), Wire::Gemini, "only claude-*");
        assert!(!Vertex.serves(Operation::Embeddings, "gemini-embedding-001"));
        assert!(Vertex.serves(Operation::Messages, "claude-3-5-haiku@20241022"));
    }
}
