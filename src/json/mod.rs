//! The request fast path: validate an OpenAI body with simd-json, find the byte spans of the
//! top-level fields the router acts on, and splice the upstream model name into the original
//! bytes. The rest of the body is forwarded untouched (no re-serialisation, key order and
//! whitespace kept).
//!
//! In order: `depth` refuses deep nesting before simd-json sees the body, `fields` parses it
//! and reads and checks the fields, `spans` locates the members to edit, and `splice` writes
//! the upstream body.

use std::ops::Range;

mod depth;
mod fields;
mod prompt;
mod spans;
mod splice;
#[cfg(test)]
mod tests;
mod usage;
mod valid;

pub(crate) use depth::depth_within;
pub use usage::{Usage, last_usage};
pub use valid::is_json;

/// Which request schema to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `/chat/completions`.
    Chat,
    /// `/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
    /// OpenAI `/v1/responses`.
    Responses,
}

/// Why a body was refused (all map to 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not parseable JSON.
    #[error("request body is not valid JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("request body must be a JSON object")]
    NotObject,
    /// A required field is absent.
    #[error("missing required field '{0}'")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field '{field}' must be {want}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        want: &'static str,
    },
    /// A field the router acts on appears twice (ambiguous: refused rather than guessed).
    #[error("field '{0}' appears more than once")]
    Duplicate(&'static str),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("request body nests arrays and objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More request-level fallbacks than `server.max_request_fallbacks`, the body's and the
    /// header's together.
    #[error(
        "{given} request-level fallbacks ('fallbacks' in the body and the 'x-tier1-fallbacks' header \
         together); at most {max} are accepted (server.max_request_fallbacks)"
    )]
    TooManyFallbacks {
        /// How many the request named (the body's alone when they are already too many).
        given: usize,
        /// The cap.
        max: usize,
    },
}

impl ScanError {
    /// OpenAI-style error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson | Self::NotObject => "invalid_json",
            Self::Missing(_) => "missing_required_field",
            Self::WrongType { .. } => "invalid_type",
            Self::Duplicate(_) => "duplicate_field",
            Self::TooDeep => "json_too_deep",
            Self::TooManyFallbacks { .. } => "too_many_fallbacks",
        }
    }

    /// The field concerned, if any (OpenAI's `param`).
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::NotJson | Self::NotObject | Self::TooDeep => None,
            Self::TooManyFallbacks { .. } => Some("fallbacks"),
            Self::Missing(f) | Self::Duplicate(f) => Some(f),
            Self::WrongType { field, .. } => Some(field),
        }
    }
}

/// What the router needs from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The client-facing model name.
    pub model: String,
    /// `stream`, if present and not null.
    pub stream: Option<bool>,
    /// Bifrost-style `fallbacks`: more models to try, in order (removed before forwarding).
    pub fallbacks: Vec<String>,
    /// `max_completion_tokens`, `max_tokens` or `max_output_tokens` (Responses), for the token
    /// estimate of rate limits.
    pub max_tokens: Option<u64>,
    spans: Spans,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spans {
    /// Offset just after the opening `{`.
    body_start: usize,
    model: Range<usize>,
    stream: Option<Range<usize>>,
    /// The whole `"fallbacks": [...]` member with one adjacent comma, to cut out.
    fallbacks: Option<Range<usize>>,
    /// The value of `system` (Messages) or `instructions` (Responses), for prompt affinity.
    system: Option<Range<usize>>,
    /// The value of `messages` (or a Responses `input`), for prompt affinity.
    messages: Option<Range<usize>>,
}

/// A worker thread's parse buffers, reused across requests: the copy simd-json parses in place
/// and its structural index. Without them every request paid several allocations.
struct Scratch {
    copy: Vec<u8>,
    buffers: simd_json::Buffers,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch { copy: Vec::new(), buffers: simd_json::Buffers::default() });
}

/// Buffers grown beyond this by a large body are given back after it, so an idle worker does not
/// hold the largest body it ever saw.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Deepest nesting of arrays and objects accepted in a request body (the body's own object is
/// level 1). Fixed, not a setting: it is what serde_json accepts (its recursion limit of 128
/// refuses the 128th level), and the translated paths parse the body with serde_json again, so
/// a higher knob could not be honoured there. Real requests (tool schemas included) stay far
/// below it.
pub(crate) const MAX_DEPTH: usize = 127;

/// Validates `body` against `schema` and locates its `model` and `stream` (any number of
/// fallbacks accepted).
pub fn scan(body: &[u8], schema: Schema) -> Result<Scanned, ScanError> {
    scan_capped(body, schema, usize::MAX)
}

/// [`scan`], refusing more than `max_fallbacks` entries in `fallbacks` before any is copied.
pub(crate) fn scan_capped(body: &[u8], schema: Schema, max_fallbacks: usize) -> Result<Scanned, ScanError> {
    // Before simd-json: its structural index and tape cost about 20 bytes per bracket, so a
    // 14 MB body of nested arrays took 400 MB.
    if !depth_within(body, MAX_DEPTH)? {
        return Err(ScanError::TooDeep);
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let Scratch { copy, buffers } = &mut *scratch;
            let result = fields::scan_with(body, schema, max_fallbacks, copy, buffers);
            if copy.capacity() > SCRATCH_KEEP {
                *scratch = Scratch { copy: Vec::new(), buffers: simd_json::Buffers::default() };
            }
            result
        }
        // Not reachable (scan does not re-enter), but never worth a panic.
        Err(_) => fields::scan_with(
            body,
            schema,
            max_fallbacks,
            &mut Vec::new(),
            &mut simd_json::Buffers::default(),
        ),
    })
}
