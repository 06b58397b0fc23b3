//! What a provider's error body says beyond its status: a 400 that is a context-window refusal
//! (another target with a larger window may answer) or a content filter's (another provider's
//! policy may take it), and a 429 that exhausted the key as a whole
//! (billing, quota) rather than one model's rate. Read from the first bytes of the body, which
//! tier1 reads anyway to pass a refusal on or to learn from a failure.

/// Each provider's words for "the prompt does not fit the model's context window".
const CONTEXT_LENGTH: &[&[u8]] = &[
    // OpenAI and Azure OpenAI: `"code": "context_length_exceeded"`.
    b"context_length_exceeded",
    // OpenAI-compatible servers (vLLM, and OpenAI's own message): "This model's maximum context
    // length is 8192 tokens".
    b"maximum context length",
    // Anthropic: "prompt is too long: 208656 tokens > 200000 maximum", and "input length and
    // `max_tokens` exceed context limit: 197626 + 21333 > 200000".
    b"prompt is too long",
    b"exceed context limit",
    // Gemini: "The input token count (1200293) exceeds the maximum number of tokens allowed
    // (1048576)."
    b"exceeds the maximum number of tokens allowed",
];

/// Error codes that say a key (or its organisation) is out of quota or billing, not over one
/// model's rate: the whole key rests, not only (key, model).
const KEY_EXHAUSTED: &[&[u8]] =
    &[b"insufficient_quota", b"billing_hard_limit_reached", b"billing_not_active"];

/// Whether a refusal's body says the request does not fit the target's context window.
pub(super) fn outgrown(body: &[u8]) -> bool {
    CONTEXT_LENGTH.iter().any(|m| contains(body, m))
}

/// OpenAI's and Azure's content filter codes (Azure: `"code": "content_filter"` with its
/// `innererror.content_filter_result`; OpenAI images and moderation: `content_policy_violation`).
const CONTENT_FILTER: &[&[u8]] = &[b"\"content_filter\"", b"content_policy_violation"];

/// Whether a refusal's body says a content filter refused the request.
pub(super) fn filtered(body: &[u8]) -> bool {
    CONTENT_FILTER.iter().any(|m| contains(body, m))
}

/// Whether a 429's body says the key as a whole is exhausted.
pub(super) fn key_exhausted(body: &[u8]) -> bool {
    KEY_EXHAUSTED.iter().any(|m| contains(body, m))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provider's real context-length error.
    #[test]
    fn every_providers_context_length_error_is_recognised() {
        let openai = br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let azure = br#"{"error":{"message":"This model's maximum context length is 8192 tokens, however you requested 9000 tokens. Please reduce your prompt; or completion length.","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#;
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"},"request_id":"req_011CWAgPbMohjStFaYrkLZCm"}"#;
        let anthropic_max = br#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 197626 + 21333 > 200000, decrease input length or `max_tokens` and try again"}}"#;
        let gemini = br#"{"error":{"code":400,"message":"The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        let vllm = br#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).","type":"BadRequestError","param":null,"code":400}"#;
        for body in [&openai[..], azure, anthropic, anthropic_max, gemini, vllm] {
            assert!(outgrown(body), "{}", String::from_utf8_lossy(body));
        }
        let other = br#"{"error":{"message":"max_tokens: 10000 > 4096, which is the maximum allowed number of output tokens","type":"invalid_request_error"}}"#;
        assert!(!outgrown(other));
        assert!(!outgrown(b""));
    }

    #[test]
    fn a_content_filter_refusal_is_recognised() {
        let azure = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
        assert!(filtered(azure));
        assert!(!filtered(br#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#));
    }

    #[test]
    fn only_quota_and_billing_429s_exhaust_the_whole_key() {
        let quota = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let rate = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        assert!(key_exhausted(quota));
        assert!(!key_exhausted(rate));
    }
}
