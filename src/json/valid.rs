//! Whether bytes are one JSON value: the check every event of a relayed stream passes (see
//! [`crate::sse::malformed`]), so it must cost little next to relaying the event.

/// Whether `b` is exactly one JSON value (whitespace around it allowed). serde_json's
/// `IgnoredAny` walks the grammar without building anything: no allocation, no copy. Like
/// serde_json everywhere in tier1, more than 127 nested levels are refused.
pub fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}
