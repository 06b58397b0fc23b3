//! Which API operation a request is. A leaf, so that the providers (which send it) and the
//! translation layer (which converts it) can both name it without importing each other.

/// Which API operation is being proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions.
    Chat,
    /// Embeddings.
    Embeddings,
    /// Anthropic Messages (the Anthropic-format ingress, relayed natively).
    Messages,
    /// The OpenAI Responses API (`/v1/responses`): relayed natively to OpenAI-wire providers,
    /// translated through chat for Anthropic and Gemini.
    Responses,
}
