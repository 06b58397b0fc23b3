//! Writing the upstream body: the original bytes with at most three edits.

use bytes::Bytes;

use super::Scanned;

impl Scanned {
    /// The body to send upstream: `model` replaced by `upstream_model`, and `"stream":true` set
    /// when `force_stream` (a client that asked for SSE through `Accept` only). Returns the
    /// original bytes, without copying, when nothing changes.
    pub fn splice(&self, body: &Bytes, upstream_model: &str, force_stream: bool) -> Bytes {
        let force_stream = force_stream && self.stream != Some(true);
        if !force_stream && upstream_model == self.model && self.spans.fallbacks.is_none() {
            return body.clone();
        }
        // The model as a JSON string: quoted as is unless it needs escaping (rare).
        let escaped = upstream_model
            .bytes()
            .any(|b| b < 0x20 || b == b'"' || b == b'\\')
            .then(|| serde_json::to_vec(upstream_model).unwrap_or_default());
        let model_json: &[u8] = escaped.as_deref().unwrap_or(upstream_model.as_bytes());
        let quote: &[u8] = if escaped.is_some() { b"" } else { b"\"" };
        // At most three edits, on the stack; the output is sized exactly, so turning it into
        // `Bytes` neither reallocates nor copies.
        let mut edits: [(usize, usize, [&[u8]; 3]); 3] = [(0, 0, [b""; 3]); 3];
        edits[0] = (self.spans.model.start, self.spans.model.end, [quote, model_json, quote]);
        let mut n = 1;
        if let Some(cut) = &self.spans.fallbacks {
            edits[n] = (cut.start, cut.end, [b""; 3]);
            n += 1;
        }
        if force_stream {
            let start = self.spans.body_start;
            edits[n] = match &self.spans.stream {
                Some(span) => (span.start, span.end, [b"true", b"", b""]),
                None => (start, start, [b"\"stream\":true,", b"", b""]),
            };
            n += 1;
        }
        let edits = &mut edits[..n];
        // By start, then end: the `stream` insertion at `body_start` must come before a
        // `fallbacks` cut that starts at the same offset (the first member).
        edits.sort_unstable_by_key(|&(start, end, _)| (start, end));
        let len = edits.iter().fold(body.len(), |len, (start, end, text)| {
            len - (end - start) + text.iter().map(|t| t.len()).sum::<usize>()
        });
        let mut out = Vec::with_capacity(len);
        let mut at = 0;
        for (start, end, text) in edits.iter() {
            out.extend_from_slice(&body[at..*start]);
            for t in text {
                out.extend_from_slice(t);
            }
            at = *end;
        }
        out.extend_from_slice(&body[at..]);
        Bytes::from(out)
    }
}
