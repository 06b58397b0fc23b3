//! Translation between wire formats, for providers that do not speak the client's. Each
//! direction is a pure function over bytes (requests, full responses, error bodies) or a small
//! state machine fed chunk by chunk (streams), so fixtures test them without a network.

pub mod anthropic;

/// Why a request cannot be translated (the caller's fault: answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

/// A stream translator: upstream bytes in, client bytes out.
pub trait StreamTranslator: Send {
    /// Translates the next upstream chunk (events may span chunks).
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// Whether the upstream stream reached its proper end (then the client stream is complete).
    fn complete(&self) -> bool;
}
