//! Translation between wire formats, for providers that do not speak the client's. Each
//! direction is a pure function over bytes (requests, full responses, error bodies) or a small
//! state machine fed chunk by chunk (streams), so fixtures test them without a network.

pub mod anthropic;
pub mod gemini;
pub mod messages;

use bytes::Bytes;

use crate::providers::Operation;

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
    /// The usage the upstream reported (input, output), read from its own format: the Tap only
    /// knows OpenAI's and Anthropic's `usage` objects.
    fn usage(&self) -> Option<(u64, u64)>;
}

/// The format a provider speaks where the client spoke another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Anthropic Messages, for OpenAI chat.
    Anthropic,
    /// Gemini `generateContent` and `batchEmbedContents`, for OpenAI chat and embeddings.
    Gemini,
    /// OpenAI chat, for the Anthropic-format ingress.
    OpenAi,
}

/// A request in the provider's format.
#[derive(Debug, Clone)]
pub struct Translated {
    /// Into which format.
    pub dialect: Dialect,
    /// What the client asked (chat, embeddings, or Anthropic messages).
    pub operation: Operation,
    /// The provider's body.
    pub body: Bytes,
    /// OpenAI parameters the provider cannot take, dropped (`x-tier1-dropped-params`).
    pub dropped: Vec<&'static str>,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

impl Dialect {
    /// The provider's operation for a client's `op`.
    pub fn operation(self, op: Operation) -> Operation {
        match self {
            Self::Anthropic => Operation::Messages,
            Self::Gemini => op,
            Self::OpenAi => Operation::Chat,
        }
    }

    /// Translates a client request of `op` for `model`.
    pub fn request(
        self,
        op: Operation,
        body: &[u8],
        model: &str,
        default_max_tokens: u32,
        stream: bool,
    ) -> Result<Translated, TranslateError> {
        let (body, dropped, include_usage) = match (self, op) {
            (Self::OpenAi, _) => {
                let r = messages::request(body, model, stream)?;
                (r.body, r.dropped, false)
            }
            (Self::Anthropic, _) => {
                let r = anthropic::request(body, model, default_max_tokens, stream)?;
                (r.body, r.dropped, r.include_usage)
            }
            (Self::Gemini, _) if !gemini::valid_model(model) => {
                return Err(TranslateError(format!("{model:?} is not a Gemini model name")));
            }
            (Self::Gemini, Operation::Embeddings) => {
                let r = gemini::embeddings_request(body, model)?;
                (r.body, r.dropped, r.include_usage)
            }
            (Self::Gemini, _) => {
                let r = gemini::request(body, stream)?;
                (r.body, r.dropped, r.include_usage)
            }
        };
        Ok(Translated { dialect: self, operation: op, body, dropped, include_usage })
    }
}

impl Translated {
    /// The provider's full answer → the client's, with the usage it reported (input, output).
    pub fn response(&self, raw: &[u8], model: &str) -> Result<(Bytes, Option<(u64, u64)>), TranslateError> {
        match (self.dialect, self.operation) {
            (Dialect::OpenAi, _) => messages::response(raw, model),
            (Dialect::Anthropic, _) => anthropic::response(raw),
            (Dialect::Gemini, Operation::Embeddings) => gemini::embeddings_response(raw, model),
            (Dialect::Gemini, _) => gemini::response(raw, model),
        }
    }

    /// The provider's error body (with its status) → the client's shape.
    pub fn error(&self, raw: &[u8], status: u16) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => messages::error(raw, status),
            Dialect::Anthropic => anthropic::error(raw),
            Dialect::Gemini => gemini::error(raw),
        }
    }

    /// A translator for the provider's stream.
    pub fn stream(&self, model: &str) -> Box<dyn StreamTranslator> {
        match self.dialect {
            Dialect::Anthropic => Box::new(anthropic::Stream::new(self.include_usage)),
            Dialect::Gemini => Box::new(gemini::Stream::new(model, self.include_usage)),
            Dialect::OpenAi => Box::new(messages::Stream::new(model)),
        }
    }
}
