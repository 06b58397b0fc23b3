//! Providers. Two layers:
//!
//! - **Kinds** (this file and one file per kind): everything that differs between `openai`,
//!   `azure`, `anthropic`, `gemini`, `bedrock`, `vertex` and `mock` — the config spelling, the default base URL, the
//!   wire format, the auth header, extra headers, URL building and the model-name rule — behind
//!   one trait, [`Kind`], found through [`ProviderKind::spec`]. Nothing else matches on a kind.
//!   This layer imports nothing from the crate but [`crate::operation`], so config validation can
//!   ask a kind its rules without a module circle.
//! - **The running provider** ([`Provider`]: client, keys, state, timeouts) and the one operation
//!   the proxy needs, [`Provider::send`]; and the body it answers with ([`UpstreamBody`]).
//!
//! A new kind is a file implementing [`Kind`] plus one line in the registry below (see README,
//! "Adding a provider kind").

mod body;
mod provider;
pub(crate) mod refresh;

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri, header};

pub use crate::operation::Operation;
pub(crate) use body::UpstreamBody;
pub(crate) use provider::{BuildError, Call, Key, Provider, SendError};

/// The registry: one `module::Type` line per provider kind, in the order error messages list
/// them. Each line declares the module (its file, `src/providers/<module>.rs`) and a
/// [`ProviderKind`] variant named after the type, which is a unit struct implementing [`Kind`].
macro_rules! registry {
    ($($module:ident::$kind:ident,)+) => {
        $(pub(crate) mod $module;)+

        /// A provider kind, as `kind = "..."` names it; [`ProviderKind::spec`] holds its rules.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProviderKind {
            $(
                #[doc = concat!("`", stringify!($module), "`: see [`", stringify!($module), "`].")]
                $kind,
            )+
        }

        impl ProviderKind {
            /// Every kind, in registry order.
            pub const ALL: &[Self] = &[$(Self::$kind),+];

            /// The kind's rules.
            pub fn spec(self) -> &'static dyn Kind {
                match self {
                    $(Self::$kind => &$module::$kind,)+
                }
            }
        }
    };
}

registry! {
    openai::OpenAi,
    anthropic::Anthropic,
    azure::Azure,
    gemini::Gemini,
    bedrock::Bedrock,
    vertex::Vertex,
    mock::Mock,
}

/// What makes a provider kind: its spelling, URLs, headers and rules. The defaults are OpenAI's
/// conventions (a bearer token, one fixed path per operation, any model name), so a kind states
/// only where it differs.
pub trait Kind: Sync {
    /// The config spelling (`kind = "..."`).
    fn name(&self) -> &'static str;

    /// The API the upstream speaks, which decides what a client's request is translated into.
    fn wire(&self) -> Wire;

    /// The API the upstream speaks for `model` (the target's model, or its deployment): the
    /// kind's, unless it serves models of several publishers in their own formats (Vertex AI).
    fn wire_for(&self, model: &str) -> Wire {
        let _ = model;
        self.wire()
    }

    /// Whether a request of `op` for `model` can be served, natively or translated.
    fn serves(&self, op: Operation, model: &str) -> bool {
        self.wire_for(model).speaks(op)
    }

    /// Whether `base_url` has a default, must be given, or is refused.
    fn base_url(&self) -> BaseUrl;

    /// The header carrying a key's secret, and its value.
    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (header::AUTHORIZATION, format!("Bearer {secret}"))
    }

    /// Headers the kind sends on every request, besides the configured ones.
    fn headers(&self, settings: &Settings<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, Invalid> {
        let _ = settings;
        Ok(Vec::new())
    }

    /// Where calls go, worked out once per snapshot from the (validated) base URL.
    fn endpoints(&self, base: &Uri, settings: &Settings<'_>) -> Result<Box<dyn Endpoints>, Invalid> {
        let _ = settings;
        Ok(Box::new(Fixed::under(base)?))
    }

    /// Whether a direct `provider/model` request may name `model`; if not, the model is unknown.
    fn direct_model(&self, model: &str) -> bool {
        let _ = model;
        true
    }

    /// Whether requests are signed (AWS SigV4, by the key's credential set) instead of carrying
    /// the key in a header.
    fn signed(&self) -> bool {
        false
    }

    /// Whether a stream answers in the AWS event-stream framing (read as SSE, see
    /// [`bedrock::stream`]) instead of SSE.
    fn event_stream(&self) -> bool {
        false
    }

    /// The model name the upstream body of `op` carries: the target's model, unless the kind's
    /// URL for `op` names no deployment (Azure's Responses API, where the body names it).
    fn body_model<'m>(&self, op: Operation, model: &'m str, deployment: &'m str) -> &'m str {
        let _ = (op, deployment);
        model
    }
}

/// The URL of each call of one provider.
pub trait Endpoints: Send + Sync {
    /// The URL of a call of `op` for `model` (the target's model, or its Azure deployment);
    /// `None` when `model` cannot go in this kind's URL.
    fn uri(&self, op: Operation, stream: bool, model: &str) -> Option<Uri>;

    /// The body sent for `model`, from the one translated or spliced for it: as it is, unless
    /// the kind's upstream wants it otherwise (Vertex AI's Claude: the version in the body, no
    /// model); `None` when it cannot be sent.
    fn body(&self, model: &str, body: Bytes) -> Option<Bytes> {
        let _ = model;
        Some(body)
    }
}

/// The settings of a provider that some kind reads (from `[providers.NAME]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `api_version`: the query parameter of an `azure` provider.
    pub api_version: &'a str,
    /// `anthropic_version`: the header of an `anthropic` provider.
    pub anthropic_version: &'a str,
    /// `project`: the Google Cloud project of a `vertex` provider (empty for the others).
    pub project: &'a str,
    /// `location`: the Vertex AI location of a `vertex` provider, or `global`.
    pub location: &'a str,
}

/// A setting or base URL that cannot go in a request (a header value with a newline, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot go in a request")]
pub struct Invalid;

/// The API family a kind's upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions and embeddings.
    OpenAi,
    /// Anthropic Messages (no embeddings).
    Anthropic,
    /// Gemini `generateContent` and `batchEmbedContents`.
    Gemini,
    /// Amazon Bedrock's Converse API (no embeddings).
    Bedrock,
    /// Whatever the client spoke: the in-process mock answers every operation in its own format.
    Client,
}

impl Wire {
    /// Whether a request of `op` can be served, natively or translated.
    pub fn speaks(self, op: Operation) -> bool {
        match self {
            Self::OpenAi | Self::Client => true,
            // Anthropic messages and the Responses API are translated to OpenAI chat, then to
            // Gemini, and back.
            Self::Gemini => true,
            // OpenAI chat is translated to Messages and back, and the Responses API through chat.
            Self::Anthropic | Self::Bedrock => op != Operation::Embeddings,
        }
    }
}

/// A kind's rule for `base_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseUrl {
    /// Used when the file names none.
    Default(&'static str),
    /// The file must name one; the example shows its shape.
    Required(&'static str),
    /// The region's URL (`{region}` replaced by the provider's `region`) unless the file names
    /// one; the region is required either way (requests are signed for it).
    Regional(&'static str),
    /// The location's URL unless the file names one: `global`'s, or `regional` with
    /// `{location}` replaced; the location is required either way (it is in every path).
    Located {
        /// The URL of location `global`.
        global: &'static str,
        /// The URL of any other location.
        regional: &'static str,
    },
    /// The kind answers in process: it takes none (and is the one that takes `mock` settings).
    InProcess,
}

impl ProviderKind {
    /// The kind spelled `name` in config.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        self.spec().name()
    }

    /// Every spelling, for an error message: `openai, anthropic, ... or mock`.
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Whether the kind answers in process, with no network (and takes `mock` settings).
    pub fn in_process(self) -> bool {
        self.spec().base_url() == BaseUrl::InProcess
    }

    /// The base URL to use given the file's `base_url` (not yet parsed) and `region` (a
    /// Vertex AI location for [`BaseUrl::Located`]): the file's, the kind's default, or none for
    /// an in-process kind; `Err` says why the file's value is wrong.
    pub fn base_url<'a>(
        self,
        raw: Option<&'a str>,
        region: Option<&str>,
    ) -> Result<Option<Cow<'a, str>>, String> {
        match (self.spec().base_url(), raw) {
            (BaseUrl::Located { .. }, Some(raw)) => Ok(Some(Cow::Borrowed(raw))),
            (BaseUrl::Located { global, regional }, None) => match region {
                Some("global") => Ok(Some(Cow::Borrowed(global))),
                Some(location) => Ok(Some(Cow::Owned(regional.replace("{location}", location)))),
                None => Err("missing, and no location to make it from".to_owned()),
            },
            (BaseUrl::Default(default), raw) => Ok(Some(Cow::Borrowed(raw.unwrap_or(default)))),
            (BaseUrl::Regional(_), Some(raw)) => Ok(Some(Cow::Borrowed(raw))),
            (BaseUrl::Regional(template), None) => match region {
                Some(region) => Ok(Some(Cow::Owned(template.replace("{region}", region)))),
                None => Err("missing, and no region to make it from".to_owned()),
            },
            (BaseUrl::Required(_), Some(raw)) => Ok(Some(Cow::Borrowed(raw))),
            (BaseUrl::Required(example), None) => Err(format!("missing ({example})")),
            (BaseUrl::InProcess, None) => Ok(None),
            (BaseUrl::InProcess, Some(_)) => {
                Err(format!("a {} provider answers in process and takes no base_url", self.as_str()))
            }
        }
    }
}

/// What validation goes on with after a missing or unknown `kind`, so it still checks the rest.
impl Default for ProviderKind {
    fn default() -> Self {
        Self::OpenAi
    }
}

/// Whether `model` can go in a URL path segment as is: no `/`, `?`, `#` or escapes, and not `.`
/// or `..`. The model-name rule of kinds that put the model (or deployment) in the path.
pub(crate) fn path_safe(model: &str) -> bool {
    !model.is_empty()
        && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        // `.` and `..` are path segments, not names.
        && model.bytes().any(|b| b != b'.')
}

/// One fixed URL per operation under the base URL (OpenAI's layout, and Anthropic's).
struct Fixed {
    chat: Uri,
    embeddings: Uri,
    messages: Uri,
    responses: Uri,
}

impl Fixed {
    fn under(base: &Uri) -> Result<Self, Invalid> {
        let base = base.to_string();
        let join = |path: &str| format!("{}{path}", base.trim_end_matches('/')).parse().map_err(|_| Invalid);
        Ok(Self {
            chat: join("/chat/completions")?,
            embeddings: join("/embeddings")?,
            messages: join("/v1/messages")?,
            responses: join("/responses")?,
        })
    }
}

impl Endpoints for Fixed {
    fn uri(&self, op: Operation, _stream: bool, _model: &str) -> Option<Uri> {
        Some(match op {
            Operation::Chat => self.chat.clone(),
            Operation::Embeddings => self.embeddings.clone(),
            Operation::Messages => self.messages.clone(),
            Operation::Responses => self.responses.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
