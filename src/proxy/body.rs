//! Bodies: reading the client's request body under a size cap and a deadline, and the tap that
//! watches a relayed body ([`super::relay`] relays it) for gaps, duration and usage.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::ProxyError;

/// Error type of response bodies.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body tier1 sends.
pub(crate) type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A complete body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// Reads the request body: refuses at once a declared length over `max` (without reading it),
/// stops reading as soon as the received bytes pass `max`, and gives up after `timeout`.
pub(crate) async fn read_limited(
    body: Incoming,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ProxyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ProxyError::PayloadTooLarge(max));
    }
    tokio::time::timeout(timeout, collect(body, max, declared)).await.map_err(|_| ProxyError::BodyTimeout)?
}

async fn collect(mut body: Incoming, max: usize, declared: Option<u64>) -> Result<Bytes, ProxyError> {
    // The common case is one data frame: keep it as is; copy only when a second one arrives.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ProxyError::BodyRead)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > max {
            return Err(ProxyError::PayloadTooLarge(max));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(second_frame_capacity(declared, len));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// The buffer for a body that came in more than one frame, when `received` bytes have arrived:
/// room for as much again, never more than declared. Not the declared length itself: a client
/// declaring `max_body_bytes` and sending ten bytes would cost `max_body_bytes` per request.
/// The buffer then doubles as bytes arrive, so it never exceeds twice what was received.
fn second_frame_capacity(declared: Option<u64>, received: usize) -> usize {
    let room = received.saturating_mul(2);
    declared.map_or(room, |d| room.min(usize::try_from(d).unwrap_or(usize::MAX))).max(received)
}

#[cfg(test)]
mod collect_tests {
    use super::second_frame_capacity;

    #[test]
    fn the_declared_length_is_not_allocated_up_front() {
        // A client declaring 16 MiB and sending 10 bytes in two frames costs bytes, not 16 MiB.
        let cap = second_frame_capacity(Some(16 << 20), 10);
        assert!((10..=64).contains(&cap), "{cap}");
        // Never more than declared, never less than what arrived, and room to grow on.
        assert_eq!(second_frame_capacity(Some(100), 80), 100);
        assert_eq!(second_frame_capacity(Some(5), 80), 80);
        assert!(second_frame_capacity(None, 1000) >= 1000);
        assert!(second_frame_capacity(Some(1 << 20), 1000) <= 4000);
    }
}

/// Bytes at the end of a relayed body kept to find its `usage`: in a JSON answer it comes near
/// the end; in a stream, in the last event or two (an OpenAI usage chunk and `[DONE]` are about
/// 500 bytes, Anthropic's `message_delta` and `message_stop` about 300).
const TAIL: usize = 16 * 1024;
const STREAM_TAIL: usize = 2 * 1024;

/// The last bytes of a body. A JSON answer's are kept as the chunks that hold them (no copy; it
/// usually arrives in one). A stream's are copied: its chunks are small pieces of read buffers,
/// and holding on to them would keep those buffers alive for the stream's whole life.
enum Tail {
    Chunks { chunks: VecDeque<Bytes>, len: usize },
    Copy(Vec<u8>),
}

impl Tail {
    fn new(stream: bool) -> Self {
        if stream { Self::Copy(Vec::new()) } else { Self::Chunks { chunks: VecDeque::new(), len: 0 } }
    }

    fn keep(&mut self, data: &Bytes) {
        match self {
            Self::Chunks { chunks, len } => {
                if data.is_empty() {
                    return;
                }
                chunks.push_back(data.clone());
                *len += data.len();
                while let Some(front) = chunks.front()
                    && *len - front.len() >= TAIL
                {
                    *len -= front.len();
                    chunks.pop_front();
                }
            }
            Self::Copy(tail) => {
                // Room for exactly STREAM_TAIL bytes, made once: the old bytes go before the new
                // ones come, so it never grows.
                if tail.capacity() == 0 {
                    tail.reserve_exact(STREAM_TAIL);
                }
                let data = &data[data.len().saturating_sub(STREAM_TAIL)..];
                let over = (tail.len() + data.len()).saturating_sub(STREAM_TAIL);
                tail.drain(..over);
                tail.extend_from_slice(data);
            }
        }
    }

    /// The kept bytes in one slice (a copy only when they span chunks).
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        match self {
            Self::Copy(tail) => Cow::Borrowed(tail),
            Self::Chunks { chunks, .. } => match chunks.as_slices() {
                ([], []) => Cow::Borrowed(&[]),
                ([one], []) | ([], [one]) => Cow::Borrowed(one),
                _ => {
                    // One copy of each chunk, not a byte-by-byte iterator.
                    let mut joined = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
                    for c in chunks {
                        joined.extend_from_slice(c);
                    }
                    Cow::Owned(joined)
                }
            },
        }
    }
}

/// Who a relayed body comes from: what the log of the events left out of it names.
pub(crate) struct Origin {
    /// The provider's config name.
    pub(crate) provider: std::sync::Arc<str>,
    /// The request's id.
    pub(crate) request_id: http::HeaderValue,
}

/// Watches a relayed body: gaps between stream chunks, the attempt's duration to its last byte,
/// the token usage the provider reports at the end (for the request's record), and the events
/// the relay left out.
pub(crate) struct Tap {
    metrics: std::sync::Arc<crate::metrics::TargetMetrics>,
    start: Instant,
    stream: bool,
    last: Instant,
    tail: Tail,
    origin: Origin,
    /// Events left out so far (counted).
    dropped: u64,
    /// The input tokens read from the provider's prompt cache, once the body ended.
    pub(crate) cached: u64,
}

impl Tap {
    /// Starts watching. What was read before the stream committed comes through
    /// [`Tap::chunk`] like the rest (the relay sends it as its first chunk): kept here too, it
    /// was in the tail twice, and read twice (a copy to join them) for the usage and again for
    /// the finish reasons.
    pub(crate) fn new(
        metrics: std::sync::Arc<crate::metrics::TargetMetrics>,
        start: Instant,
        stream: bool,
        origin: Origin,
    ) -> Self {
        let (last, tail) = (Instant::now(), Tail::new(stream));
        Self { metrics, start, stream, last, tail, origin, dropped: 0, cached: 0 }
    }

    /// The relay has left out `total` malformed events in all: the new ones are counted, and
    /// the first is logged (once per stream; never its bytes, which could hold anything).
    pub(crate) fn dropped(&mut self, total: u64) {
        if total <= self.dropped {
            return;
        }
        self.metrics.events_dropped.inc_by(total - self.dropped);
        if self.dropped == 0 {
            tracing::warn!(
                provider = %self.origin.provider,
                request_id = self.origin.request_id.to_str().unwrap_or(""),
                "left out a stream event whose data is not JSON (later ones in this stream are counted, not logged)"
            );
        }
        self.dropped = total;
    }

    /// One upstream chunk; `scan`: keep its end to read `usage` from (not when a translator
    /// reads the usage from the provider's own format).
    pub(crate) fn chunk(&mut self, data: &Bytes, scan: bool, now: Instant) {
        if self.stream {
            self.metrics.inter_token.observe((now - self.last).as_secs_f64());
            self.last = now;
        }
        if scan {
            self.tail.keep(data);
        }
    }

    /// The body ended: records the duration; returns the usage when the provider reported one
    /// (`known`: already read by a translator, with its cached tokens; else looked for in the
    /// body's tail). The input tokens read from the provider's prompt cache, when the usage says, are counted
    /// here (`tier1_cached_tokens_total`).
    pub(crate) fn finish(&mut self, known: Option<(Option<(u64, u64)>, u64)>) -> Option<(u64, u64)> {
        self.metrics.duration.observe(self.start.elapsed().as_secs_f64());
        let (reported, cached) = match known {
            Some(known) => known,
            None => match usage(&self.tail.bytes()) {
                Some((input, output, cached)) => (Some((input, output)), cached),
                None => (None, 0),
            },
        };
        if cached > 0 {
            self.metrics.tokens_cached.inc_by(cached);
        }
        self.cached = cached;
        reported
    }

    /// `f` of the finish reasons in the body's tail (none when a translator read the body):
    /// words lent from the tail, nothing allocated.
    pub(crate) fn finish_reasons<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        let tail = self.tail.bytes();
        let mut found = [""; MAX_REASONS];
        let n = finish_reasons(&tail, &mut found);
        f(&found[..n])
    }
}

/// Finish reasons read at most.
const MAX_REASONS: usize = 8;

/// The distinct `"finish_reason"` (OpenAI) and `"stop_reason"` (Anthropic) values in `tail`, at
/// most [`MAX_REASONS`], into `out` (their number returned): words of at most 32 letters,
/// digits, `_` or `-` (a key inside a JSON string has its quotes escaped, so content never
/// matches).
fn finish_reasons<'a>(tail: &'a [u8], out: &mut [&'a str; MAX_REASONS]) -> usize {
    use std::sync::LazyLock;
    // One scan for both keys' common end, with a finder built once.
    static REASON: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"_reason\":"));
    let mut n = 0;
    for at in REASON.find_iter(tail) {
        let before = &tail[..at];
        if !before.ends_with(b"\"finish") && !before.ends_with(b"\"stop") {
            continue;
        }
        let rest = &tail[at + b"_reason\":".len()..];
        let rest = &rest[rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count()..];
        let Some(value) = rest.strip_prefix(b"\"") else { continue };
        let len = value.iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')).count();
        if len == 0 || len > 32 || value.get(len) != Some(&b'"') {
            continue;
        }
        // ASCII, checked above.
        let Ok(word) = std::str::from_utf8(&value[..len]) else { continue };
        if n < MAX_REASONS && !out[..n].contains(&word) {
            out[n] = word;
            n += 1;
        }
    }
    n
}

/// The cached input tokens of the last usage object in a whole answer (0 without one).
pub(crate) fn cached_tokens(body: &[u8]) -> u64 {
    usage(body).map_or(0, |(_, _, cached)| cached)
}

/// The last usage object in `tail`: its input, output and cached input tokens.
fn usage(tail: &[u8]) -> Option<(u64, u64, u64)> {
    crate::json::last_usage(tail).map(|u| (u.input, u.output, u.cached))
}

#[cfg(test)]
mod tests {
    use super::{STREAM_TAIL, TAIL, Tail, usage};
    use bytes::Bytes;

    #[test]
    fn the_tail_keeps_the_end_of_a_body_in_both_modes() {
        let last = Bytes::from_static(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        );
        for (stream, limit) in [(false, TAIL), (true, STREAM_TAIL)] {
            let mut tail = Tail::new(stream);
            for i in 0..1000 {
                tail.keep(&Bytes::from(format!("data: {{\"n\":{i},\"usage\":null}}\n\n")));
            }
            tail.keep(&last);
            tail.keep(&Bytes::new());
            tail.keep(&Bytes::from_static(b"data: [DONE]\n\n"));
            let kept = tail.bytes();
            assert!(kept.len() >= limit && kept.len() < limit + 64, "stream {stream}: {} bytes", kept.len());
            assert!(
                kept.ends_with(b"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n")
            );
            assert_eq!(usage(&kept), Some((3, 4, 0)));
            if let Tail::Copy(copy) = &tail {
                assert_eq!(copy.capacity(), STREAM_TAIL, "a stream's tail never grows");
            }
        }
        // One chunk larger than the limit: its end is kept.
        let mut tail = Tail::new(true);
        tail.keep(&Bytes::from(vec![b'x'; 3 * STREAM_TAIL]));
        assert_eq!(tail.bytes().len(), STREAM_TAIL);
        let mut tail = Tail::new(false);
        tail.keep(&last);
        assert_eq!(&tail.bytes()[..], &last[..], "a single chunk is lent, not copied");
    }

    #[test]
    fn a_body_relayed_from_its_held_prefix_is_in_the_tail_once() {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().unwrap().target("p", "m"));
        let body = Bytes::from_static(br#"{"choices":[{"finish_reason":"stop"}],"usage":{}}"#);
        for stream in [false, true] {
            let origin =
                super::Origin { provider: "p".into(), request_id: http::HeaderValue::from_static("r") };
            let now = tokio::time::Instant::now();
            let mut tap = super::Tap::new(metrics.clone(), now, stream, origin);
            // The relay's first chunk is the held prefix.
            tap.chunk(&body, true, now);
            assert_eq!(&tap.tail.bytes()[..], &body[..], "stream {stream}");
            assert_eq!(tap.finish_reasons(|r| r.to_vec().join(",")), "stop");
        }
    }

    #[test]
    fn finish_reasons_are_read_from_the_end_of_a_body_never_from_content() {
        fn finish_reasons(tail: &[u8]) -> Vec<&str> {
            let mut out = [""; super::MAX_REASONS];
            let n = super::finish_reasons(tail, &mut out);
            out[..n].to_vec()
        }
        let chat = br#"{"choices":[{"message":{"content":"say \"finish_reason\":\"secret\""},"finish_reason":"stop"},{"finish_reason": "length"}]}"#;
        assert_eq!(finish_reasons(chat), ["stop", "length"]);
        let stream = b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n";
        assert_eq!(finish_reasons(stream), ["tool_calls"]);
        let anthropic = br#"{"type":"message","stop_reason":"end_turn","content":[]}"#;
        assert_eq!(finish_reasons(anthropic), ["end_turn"]);
        let long = format!(r#"{{"finish_reason":"{}"}}"#, "x".repeat(33));
        assert!(finish_reasons(long.as_bytes()).is_empty());
        assert!(finish_reasons(br#"{"finish_reason":"a b"}"#).is_empty());
    }

    #[test]
    fn usage_is_read_from_the_end_of_a_body() {
        let body = br#"{"choices":[{"message":{"content":"a "usage": {"}}],"usage":{"prompt_tokens":9,"completion_tokens":11,"total_tokens":20}}"#;
        assert_eq!(usage(body), Some((9, 11, 0)));
        let stream = b"data: {\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        assert_eq!(usage(stream), Some((3, 4, 0)));
        // Cached input tokens, in each format's field.
        let chat = br#"{"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":7}}}"#;
        assert_eq!(usage(chat), Some((9, 1, 7)));
        let responses =
            br#"{"usage":{"input_tokens":9,"output_tokens":1,"input_tokens_details":{"cached_tokens":6}}}"#;
        assert_eq!(usage(responses), Some((9, 1, 6)));
        let anthropic = br#"{"usage":{"input_tokens":2,"output_tokens":1,"cache_read_input_tokens":5}}"#;
        assert_eq!(usage(anthropic), Some((2, 1, 5)));
        assert_eq!(usage(b"data: {\"usage\":null}\n\n"), None);
        assert_eq!(usage(b"{\"usage\":{\"prompt_tokens\":1"), None);
    }
}
