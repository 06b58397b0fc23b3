//! SSE framing, shared by the commit scan ([`crate::proxy::sse`]), the stream translators
//! ([`crate::translate`]) and the relay ([`Filter`]): complete events out of chunks as they
//! arrive, the `data:` of an event, whether that data is malformed (not JSON), and the class of a
//! provider's in-stream error object. A leaf: it knows nothing of requests.

use std::borrow::Cow;

use crate::error::Class;

mod filter;

pub use filter::Filter;

/// Complete SSE events out of chunks as they arrive. Scanning resumes where it stopped, and the
/// bytes of finished events are dropped once per chunk: one huge event in tiny chunks, or a
/// chunk of many small events, costs linear time, not quadratic.
#[derive(Debug, Default)]
pub(crate) struct Events {
    buf: Vec<u8>,
    /// Where the next event starts.
    start: usize,
    /// Where the scan for its end stopped: (byte, start of that byte's line).
    resume: (usize, usize),
    /// The most bytes one unfinished event may hold (0: no cap).
    max: usize,
    overflowed: bool,
}

impl Events {
    /// Caps the bytes one event may take while it is not finished: a provider that sends
    /// hundreds of megabytes inside one event would otherwise be buffered whole.
    pub(crate) fn limit(&mut self, max: usize) {
        self.max = max;
    }

    /// Whether an event passed the cap (then nothing more is taken).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Takes a chunk; `false` once an unfinished event is over the cap (its bytes are dropped).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> bool {
        if self.overflowed {
            return false;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.resume = (self.resume.0 - self.start, self.resume.1 - self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// Checks the cap on the unfinished event. Call it after taking every complete event, so a
    /// chunk of many small events never trips it; what is held stays under the cap plus one
    /// chunk.
    pub(crate) fn check(&mut self) -> bool {
        if self.max > 0 && self.buf.len() - self.start > self.max {
            self.overflowed = true;
            self.buf = Vec::new();
            self.start = 0;
            self.resume = (0, 0);
        }
        !self.overflowed
    }

    /// The text of the next complete event (without the blank line that ends it; empty for a
    /// blank line alone), or `None` until more bytes come.
    pub(crate) fn next_event(&mut self) -> Option<&[u8]> {
        let from = self.start;
        let (end, next) = event_end_from(&self.buf, &mut self.resume)?;
        self.start = next;
        self.resume = (next, next);
        Some(&self.buf[from..end])
    }
}

/// The end of the first complete event (a blank line): (end of its text, start of the next),
/// scanning from `at` (a byte and the start of its line), which is left where the scan stopped
/// when the end is not there yet.
fn event_end_from(b: &[u8], at: &mut (usize, usize)) -> Option<(usize, usize)> {
    let (mut i, mut line_start) = *at;
    while i < b.len() {
        let eol = match b[i] {
            b'\n' => 1,
            b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
            // A trailing `\r` that ends a blank line ends the event whether or not a `\n`
            // follows: a stream with bare `\r` line ends is not held back at its last event. A
            // `\n` that comes next then reads as one more blank line: an empty event, skipped.
            b'\r' if i + 1 < b.len() || i == line_start => 1,
            // Any other trailing `\r` may be the first half of `\r\n`: wait for more.
            b'\r' => {
                *at = (i, line_start);
                return None;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some((line_start, i + eol));
        }
        i += eol;
        line_start = i;
    }
    *at = (i, line_start);
    None
}

/// The `data:` of one complete event (multi-line data joined with `\n`); `None` without any.
/// Borrowed from the event when it has one `data:` line (nearly every event), so judging or
/// checking an event costs no allocation.
pub(crate) fn data_of(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    for line in event.split(|&c| c == b'\n' || c == b'\r').filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            data = Some(match data {
                None => Cow::Borrowed(rest),
                Some(before) => {
                    let mut joined = before.into_owned();
                    joined.push(b'\n');
                    joined.extend_from_slice(rest);
                    Cow::Owned(joined)
                }
            });
        }
        // Comments (`:`), `event:`, `id:` and `retry:` lines carry no data.
    }
    data
}

/// Whether `data` is the `[DONE]` sentinel that ends an OpenAI stream.
pub(crate) fn is_done(data: &[u8]) -> bool {
    data.trim_ascii() == b"[DONE]"
}

/// Whether one complete event carries a `data:` that is neither JSON nor `[DONE]` (an empty one
/// included): a strict client (the `openai` SDK) parses every event's data as JSON and gives up
/// on the whole stream at the first that is not. Events without data (comments, a bare
/// `event:`) are not malformed.
pub(crate) fn malformed(event: &[u8]) -> bool {
    data_of(event).is_some_and(|data| malformed_data(&data))
}

/// Whether an event's `data` (see [`data_of`]) is neither JSON nor `[DONE]`.
pub(crate) fn malformed_data(data: &[u8]) -> bool {
    !is_done(data) && !crate::json::is_json(data)
}

/// Classifies a provider's in-stream error object.
pub(crate) fn classify_error(err: &serde_json::Value) -> Class {
    let field = |k: &str| err.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_ascii_lowercase();
    // OpenAI: type and code; Anthropic: type; Gemini: status; Bedrock: the exception's name.
    let text = format!("{} {} {}", field("type"), field("code"), field("status"));
    if text.contains("rate_limit")
        || text.contains("rate limit")
        || text.contains("resource_exhausted")
        || text.contains("throttling")
    {
        Class::RateLimited
    } else if text.contains("overloaded") || text.contains("unavailable") {
        Class::Overloaded
    } else if text.contains("timeout") {
        Class::Timeout
    } else {
        Class::Server
    }
}
