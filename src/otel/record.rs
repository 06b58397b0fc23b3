//! [`Record`]: one sampled span as tier1 keeps it from its start to its export, compact and
//! cheap to fill on the request path: attribute keys are `&'static str`, numbers stay numbers,
//! and every string a span owns (model, route and provider names) goes into one buffer per span,
//! each cut to [`MAX_TEXT`] bytes. [`super::encode`] writes records as OTLP protobuf.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Longest string put in a span name or attribute (a client's model name is its own).
pub(super) const MAX_TEXT: usize = 128;

/// A string held in a record's text buffer: its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Text(u32, u32);

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    /// A name tier1 knows at build time.
    Static(&'static str),
    /// A string of the record's buffer.
    Text(Text),
    Int(i64),
    F64(f64),
    Bool(bool),
    /// A list of strings (the finish reasons), each already cut to [`MAX_TEXT`].
    List(Vec<String>),
}

/// A span's kind (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A request tier1 serves.
    Server = 2,
    /// A request tier1 sends upstream.
    Client = 3,
}

/// One sampled span.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span's id, and whether it is another process's (a remote parent).
    pub parent: Option<([u8; 8], bool)>,
    /// The W3C `tracestate` the span carries.
    pub state: Option<HeaderValue>,
    pub kind: Kind,
    /// The span name: a word, then (after a space) a string of the buffer.
    pub name: (&'static str, Option<Text>),
    /// Start and end, nanoseconds since the Unix epoch.
    pub start: u64,
    pub end: u64,
    /// The error status's message, when the span failed.
    pub error: Option<&'static str>,
    pub attrs: Vec<(&'static str, Val)>,
    text: String,
}

/// Now, in nanoseconds since the Unix epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `n` as an OTLP int (an `i64`), saturating.
pub(super) fn int(n: u64) -> Val {
    Val::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `s`, cut to [`MAX_TEXT`] bytes at a character boundary.
pub(super) fn bounded(s: &str) -> &str {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Record {
    /// A span of `kind` starting now, with room for `attrs` attributes.
    pub(super) fn start(kind: Kind, ids: ([u8; 16], [u8; 8]), name: &'static str, attrs: usize) -> Self {
        Self {
            trace_id: ids.0,
            span_id: ids.1,
            parent: None,
            state: None,
            kind,
            name: (name, None),
            start: now(),
            end: 0,
            error: None,
            attrs: Vec::with_capacity(attrs),
            text: String::with_capacity(64),
        }
    }

    /// Keeps `s` (cut to [`MAX_TEXT`]) in the record's buffer.
    pub(super) fn text(&mut self, s: &str) -> Text {
        let from = self.text.len();
        self.text.push_str(bounded(s));
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Text(at(from), at(self.text.len()))
    }

    /// The string `t` of the buffer.
    pub(super) fn str(&self, t: Text) -> &str {
        let range = t.0 as usize..t.1 as usize;
        self.text.get(range).unwrap_or_default()
    }

    /// Sets attribute `key`.
    pub(super) fn set(&mut self, key: &'static str, val: Val) {
        self.attrs.push((key, val));
    }

    /// Sets attribute `key` to the string `s`, kept in the buffer.
    pub(super) fn set_text(&mut self, key: &'static str, s: &str) {
        let t = self.text(s);
        self.attrs.push((key, Val::Text(t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_kept_cut_at_a_character_boundary() {
        let mut r = Record::start(Kind::Server, ([1; 16], [2; 8]), "chat", 2);
        let long = "é".repeat(100);
        let a = r.text("gpt-4o");
        let b = r.text(&long);
        assert_eq!(r.str(a), "gpt-4o");
        assert_eq!(r.str(b).len(), 128);
        assert!(long.starts_with(r.str(b)));
        assert!(r.start > 0);
    }
}
