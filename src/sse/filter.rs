//! The event filter of a stream relayed as is: every event whose `data:` is not JSON (see
//! [`super::malformed`]) is left out, every other byte goes on exactly as received.
//!
//! - **No copy for whole events.** A chunk that holds whole events only, none malformed (what
//!   providers send: one event per write), goes out as the same `Bytes`. Only the `data:` of
//!   complete events is read, never re-encoded.
//! - **Split events are held.** The bytes of an event not finished at the end of a chunk are held
//!   (as slices of their chunks) until its blank line comes: once sent, a malformed event could
//!   not be taken back. A held event is joined into one buffer when it completes (one copy of
//!   that event). An event past `max` bytes is not held: it goes on unchecked, as before this
//!   filter, rather than be buffered whole.
//! - **Line ends** as the SSE readers read them: `\n`, `\r\n` or `\r`, split anywhere across
//!   chunks.

use std::ops::Range;

use bytes::Bytes;

/// See the module doc.
#[derive(Debug)]
pub struct Filter {
    /// The unfinished event's bytes so far, as slices of their chunks.
    held: Vec<Bytes>,
    held_len: usize,
    /// No byte but line ends on the current line yet (a line end now ends the event).
    line_empty: bool,
    /// The last chunk ended in a `\r`: a `\n` first in the next one completes its `\r\n`.
    after_cr: Cr,
    /// The unfinished event passed `max`: it goes on unchecked until it ends.
    unchecked: bool,
    max: usize,
    dropped: u64,
    /// A `data: [DONE]` event went on.
    done: bool,
    /// The `data:` of the last two events that went on: an OpenAI answer's finish reason is in
    /// the last or the one before (a usage chunk may follow), read only when the stream ends.
    recent: [Bytes; 2],
    /// An OpenAI stream: an `{"error": ...}` event breaks it (it is not passed on).
    errors_break: bool,
    /// Such an event came: the stream broke there.
    errored: bool,
}

/// What a `\r` at the end of a chunk ended, for a `\n` that may begin the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Cr {
    #[default]
    None,
    /// A line of the event still open: the `\n` is part of that event.
    Line,
    /// An event, kept or left out: the `\n` goes with it (so a dropped event's `\r\n` goes
    /// whole, and the bytes relayed are exactly the stream's less that event).
    Event { kept: bool },
}

/// The `data:` lines of an event that began in the chunk being read, as found by the scan for
/// line ends (so the usual event, one `data:` line, is not read a second time to find it).
#[derive(Debug, Clone, Copy)]
enum Data {
    None,
    /// One line: its value's range in the chunk.
    One(usize, usize),
    /// More: the event's data is joined by [`super::data_of`].
    Many,
}

/// What one chunk gives: runs of the chunk itself, and joined events.
struct Out<'a> {
    chunk: &'a Bytes,
    parts: Vec<Bytes>,
    /// The run of the chunk being kept (extended while events follow one another).
    run: Option<Range<usize>>,
}

impl<'a> Out<'a> {
    fn new(chunk: &'a Bytes) -> Self {
        Self { chunk, parts: Vec::new(), run: None }
    }

    /// Keeps `range` of the chunk.
    fn keep(&mut self, range: Range<usize>) {
        match &mut self.run {
            Some(run) if run.end == range.start => run.end = range.end,
            _ => {
                self.close();
                self.run = Some(range);
            }
        }
    }

    /// Keeps bytes that are not one run of the chunk (a joined event, or held slices).
    fn push(&mut self, bytes: Bytes) {
        self.close();
        self.parts.push(bytes);
    }

    fn close(&mut self) {
        if let Some(run) = self.run.take()
            && !run.is_empty()
        {
            self.parts.push(self.chunk.slice(run));
        }
    }

    /// The bytes kept, in order: one part as it is; several joined (the rare case).
    fn bytes(mut self) -> Bytes {
        if self.parts.is_empty() {
            // The common case: one run of the chunk (no allocation for the parts).
            return match self.run.take() {
                Some(run) if run.len() == self.chunk.len() => self.chunk.clone(),
                Some(run) => self.chunk.slice(run),
                None => Bytes::new(),
            };
        }
        self.close();
        join(self.parts)
    }
}

fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    }
}

impl Filter {
    /// A filter that holds at most `max` bytes of one unfinished event (0: no cap).
    pub fn new(max: usize) -> Self {
        Self {
            held: Vec::new(),
            held_len: 0,
            line_empty: true,
            after_cr: Cr::None,
            unchecked: false,
            max,
            dropped: 0,
            done: false,
            recent: [Bytes::new(), Bytes::new()],
            errors_break: false,
            errored: false,
        }
    }

    /// An OpenAI stream: an in-stream `{"error": ...}` event is a break, not an event for the
    /// client (tier1 continues the stream or ends it with its own error event).
    pub fn errors_break(&mut self) {
        self.errors_break = true;
    }

    /// Whether an error event broke the stream (nothing after it goes on).
    pub fn errored(&self) -> bool {
        self.errored
    }

    /// Whether `data: [DONE]` went on.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether an OpenAI finish reason went on last (the answer is whole, `[DONE]` or not).
    pub fn finished(&self) -> bool {
        self.recent.iter().any(|d| has_finish_reason(d))
    }

    /// Notes what a well-formed event's `data:` says of the stream's end (a cheap look per
    /// event; the finish reason is searched for only at the end); `false` when it is not to go
    /// on (an error event that breaks the stream).
    fn note(&mut self, data: Bytes) -> bool {
        if *data == *b"[DONE]" {
            self.done = true;
        } else if self.errors_break && data.trim_ascii_start().starts_with(b"{\"error\"") {
            self.errored = true;
            return false;
        } else {
            self.recent.swap(0, 1);
            self.recent[1] = data;
        }
        true
    }

    /// Events left out so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The next chunk: what of it (and of the events held before it) goes on now.
    pub fn feed(&mut self, chunk: &Bytes) -> Bytes {
        if self.errored {
            return Bytes::new();
        }
        let mut out = Out::new(chunk);
        let b = &chunk[..];
        let (mut start, mut i) = (0, 0);
        if !b.is_empty() {
            let cr = std::mem::take(&mut self.after_cr);
            if b[0] == b'\n' {
                // The second half of a `\r\n` split across chunks.
                match cr {
                    Cr::None => {}
                    Cr::Line => i = 1,
                    Cr::Event { kept } => {
                        if kept {
                            out.keep(0..1);
                        }
                        (start, i) = (1, 1);
                    }
                }
            }
        }
        let mut data = Data::None;
        while i < b.len() {
            let Some(k) = memchr::memchr2(b'\n', b'\r', &b[i..]) else {
                self.line_empty = false;
                break;
            };
            let eol = i + k;
            let mut next = eol + 1;
            let cr_last = b[eol] == b'\r' && next == b.len();
            if b[eol] == b'\r' && b.get(next) == Some(&b'\n') {
                next += 1;
            }
            if k > 0 {
                self.line_empty = false;
                if b[i..eol].starts_with(b"data:") {
                    data = match data {
                        Data::None => Data::One(i + 5, eol),
                        _ => Data::Many,
                    };
                }
            }
            if std::mem::replace(&mut self.line_empty, true) {
                // A blank line: the event ends here.
                let kept = self.complete(&mut out, start..next, std::mem::replace(&mut data, Data::None));
                start = next;
                if cr_last {
                    self.after_cr = Cr::Event { kept };
                }
            } else if cr_last {
                self.after_cr = Cr::Line;
            }
            i = next;
        }
        self.unfinished(&mut out, start..b.len());
        out.bytes()
    }

    /// The stream ended: its last event, if it never got its blank line, is judged as it is.
    pub fn finish(&mut self) -> Bytes {
        let held = std::mem::take(&mut self.held);
        self.held_len = 0;
        self.unchecked = false;
        let event = join(held);
        if super::malformed(&event) {
            self.dropped += 1;
            return Bytes::new();
        }
        if let Some(data) = super::data_of(&event)
            && !self.note(Bytes::from(data.into_owned()))
        {
            return Bytes::new();
        }
        event
    }

    /// The stream broke: its unfinished last event, if any, is left out (not counted: it is
    /// cut, not malformed).
    pub fn abandon(&mut self) {
        self.held.clear();
        self.held_len = 0;
        self.unchecked = false;
    }

    /// The event that ends at the end of `range` of the chunk (its start held before, if any),
    /// with its `data:` lines in the chunk: whether it is kept.
    fn complete(&mut self, out: &mut Out<'_>, range: Range<usize>, data: Data) -> bool {
        if self.errored {
            self.held.clear();
            self.held_len = 0;
            return false;
        }
        if std::mem::take(&mut self.unchecked) {
            out.keep(range);
            return true;
        }
        if self.held.is_empty() {
            let malformed = match data {
                Data::None => false,
                Data::One(from, to) => {
                    let value = &out.chunk[from..to];
                    super::malformed_data(value.strip_prefix(b" ").unwrap_or(value))
                }
                Data::Many => super::malformed(&out.chunk[range.clone()]),
            };
            if malformed {
                self.dropped += 1;
                return false;
            }
            let keep = match data {
                Data::One(from, to) => {
                    let from = if out.chunk.get(from) == Some(&b' ') { from + 1 } else { from };
                    self.note(out.chunk.slice(from..to))
                }
                Data::Many => super::data_of(&out.chunk[range.clone()])
                    .is_none_or(|d| self.note(Bytes::from(d.into_owned()))),
                Data::None => true,
            };
            if !keep {
                return false;
            }
            out.keep(range);
            return true;
        }
        let mut event = Vec::with_capacity(self.held_len + range.len());
        for part in self.held.drain(..) {
            event.extend_from_slice(&part);
        }
        self.held_len = 0;
        event.extend_from_slice(&out.chunk[range]);
        if super::malformed(&event) {
            self.dropped += 1;
            return false;
        }
        if let Some(d) = super::data_of(&event)
            && !self.note(Bytes::from(d.into_owned()))
        {
            return false;
        }
        out.push(Bytes::from(event));
        true
    }

    /// The start of an event that the chunk does not finish: held, or sent on when unchecked.
    fn unfinished(&mut self, out: &mut Out<'_>, range: Range<usize>) {
        if range.is_empty() || self.errored {
            return;
        }
        if self.unchecked {
            out.keep(range);
            return;
        }
        self.held_len += range.len();
        self.held.push(out.chunk.slice(range));
        if self.max > 0 && self.held_len > self.max {
            // Too large to hold: what was held goes on, and the rest of this event unchecked.
            self.unchecked = true;
            self.held_len = 0;
            for part in std::mem::take(&mut self.held) {
                out.push(part);
            }
        }
    }
}

/// `"finish_reason":`, searched for in every event: one searcher, built once.
const FINISH_KEY: &[u8] = b"\"finish_reason\":";
static FINISH: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(FINISH_KEY));

/// Whether a chunk's JSON has a `"finish_reason"` that is a string (not `null`).
fn has_finish_reason(data: &[u8]) -> bool {
    FINISH.find_iter(data).any(|at| {
        let rest = &data[at + FINISH_KEY.len()..];
        rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'"')
    })
}

#[cfg(test)]
mod tests;
