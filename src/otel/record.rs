//! [`Record`]: one sampled span as tier1 keeps it from its start to its export, compact and
//! cheap to fill on the request path: attribute keys are `&'static str`, numbers stay numbers,
//! strings (model, route and provider names) are cut to [`MAX_TEXT`] bytes, and each attribute
//! is written as OTLP protobuf (a span's `KeyValue`, field 9) the moment it is set, into the one
//! buffer the record owns: [`super::encode`] then writes a span's few fixed fields and copies
//! that buffer, with no pass over the attributes and no allocation per record.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::pb;

/// Longest string put in a span name or attribute (a client's model name is its own).
pub(super) const MAX_TEXT: usize = 128;

/// A string held in a record's buffer (an attribute's value): its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Text(u32, u32);

impl Text {
    /// Its length in bytes.
    pub(super) fn len(self) -> usize {
        (self.1 - self.0) as usize
    }
}

/// An attribute's value (strings: [`Record::set_text`], lists: [`Record::set_list`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Val {
    /// A name tier1 knows at build time.
    Static(&'static str),
    Int(i64),
    F64(f64),
    Bool(bool),
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
    /// The attributes so far, encoded: `KeyValue`s as fields 9 of a `Span`, in the order set.
    attrs: Vec<u8>,
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

/// Attribute field of a `Span`.
const ATTRIBUTE: u32 = 9;

/// Appends to `b` attribute `key` up to its value's last `body` bytes, which the caller writes
/// next (room reserved for all): the `KeyValue`'s tag and length, the key, the `AnyValue`'s tag
/// and length, then `head`. Returns where the caller's bytes start. Most attributes are short:
/// each length then takes one byte, and what follows the key goes in one copy of fixed size
/// (its slack cut).
#[inline(always)]
fn put(b: &mut Vec<u8>, key: &str, head: &Small, body: usize) -> usize {
    let any = head.len + body;
    // KeyValue: key (1), value (2), each a tag and a length.
    let kv = 2 + key.len() + 2 + any;
    match (u8::try_from(kv), u8::try_from(key.len()), u8::try_from(any)) {
        (Ok(kv @ 0..0x80), Ok(k), Ok(any)) => {
            b.reserve(2 + usize::from(kv) + SMALL);
            b.extend_from_slice(&[0x4a, kv, 0x0a, k]);
            b.extend_from_slice(key.as_bytes());
            let mut value = [0u8; SMALL + 2];
            value[0] = 0x12;
            value[1] = any;
            value[2..].copy_from_slice(&head.bytes);
            b.extend_from_slice(&value);
            b.truncate(b.len() - (SMALL - head.len));
        }
        _ => {
            pb::key_value(b, ATTRIBUTE, key, any);
            b.extend_from_slice(head.bytes());
        }
    }
    b.len()
}

/// Room of [`Small`]: a tag and a varint (or a fixed64).
const SMALL: usize = 11;

/// A few bytes built on the stack: an `AnyValue`'s tag and a varint or fixed64 after it.
#[derive(Default)]
struct Small {
    bytes: [u8; SMALL],
    len: usize,
}

impl Small {
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    #[inline(always)]
    fn varint(&mut self, n: u64) {
        pb::varint_into(n, |byte| self.push(byte));
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl Record {
    /// A span of `kind` starting now, its attributes going into `attrs` (emptied).
    pub(super) fn start(
        kind: Kind,
        ids: ([u8; 16], [u8; 8]),
        name: &'static str,
        mut attrs: Vec<u8>,
    ) -> Self {
        attrs.clear();
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
            attrs,
        }
    }

    /// The record's attribute buffer, emptied, for another record to fill.
    pub(super) fn recycled(mut self) -> Vec<u8> {
        let mut attrs = std::mem::take(&mut self.attrs);
        attrs.clear();
        attrs
    }

    /// The bytes of the string `t`.
    pub(super) fn text(&self, t: Text) -> &[u8] {
        self.attrs.get(t.0 as usize..t.1 as usize).unwrap_or_default()
    }

    /// The encoded attributes.
    pub(super) fn attrs(&self) -> &[u8] {
        &self.attrs
    }

    /// Sets attribute `key`. Inlined, as what it calls: at each call site, the key's length and
    /// the value's kind are constants, and its bytes go in copies of fixed size.
    #[inline(always)]
    pub(super) fn set(&mut self, key: &'static str, val: Val) {
        // The AnyValue's field: bool_value (2), int_value (3) as varints, double_value (4).
        let mut any = Small::default();
        match val {
            Val::Static(s) => {
                self.put_str(key, s);
                return;
            }
            Val::Bool(v) => {
                any.push(0x10);
                any.push(u8::from(v));
            }
            #[allow(clippy::cast_sign_loss)]
            Val::Int(n) => {
                any.push(0x18);
                any.varint(n as u64);
            }
            Val::F64(x) => {
                any.push(0x21);
                for byte in x.to_bits().to_le_bytes() {
                    any.push(byte);
                }
            }
        }
        put(&mut self.attrs, key, &any, 0);
    }

    /// Sets attribute `key` to the string `s` (cut to [`MAX_TEXT`]); its bytes in the buffer.
    #[inline(always)]
    pub(super) fn set_text(&mut self, key: &'static str, s: &str) -> Text {
        self.put_str(key, bounded(s))
    }

    #[inline(always)]
    fn put_str(&mut self, key: &str, s: &str) -> Text {
        // AnyValue.string_value (1).
        let mut head = Small::default();
        head.push(0x0a);
        head.varint(s.len() as u64);
        let from = put(&mut self.attrs, key, &head, s.len());
        self.attrs.extend_from_slice(s.as_bytes());
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Text(at(from), at(from + s.len()))
    }

    /// Sets attribute `key` to the list of strings `items` (each cut to [`MAX_TEXT`]).
    pub(super) fn set_list(&mut self, key: &'static str, items: &[&str]) {
        let array: usize = items.iter().map(|s| pb::field_len(pb::field_len(bounded(s).len()))).sum();
        // AnyValue.array_value (5), ArrayValue.values (1), each an AnyValue.string_value (1).
        let mut head = Small::default();
        head.push(0x2a);
        head.varint(array as u64);
        let b = &mut self.attrs;
        put(b, key, &head, array);
        for s in items {
            let s = bounded(s);
            match u8::try_from(s.len()) {
                Ok(n @ 0..0x7e) => b.extend_from_slice(&[0x0a, n + 2, 0x0a, n]),
                _ => {
                    pb::len(b, 1, pb::field_len(s.len()));
                    pb::len(b, 1, s.len());
                }
            }
            b.extend_from_slice(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_kept_cut_at_a_character_boundary() {
        let mut r = Record::start(Kind::Server, ([1; 16], [2; 8]), "chat", vec![1, 2, 3]);
        let long = "é".repeat(100);
        let a = r.set_text("a", "gpt-4o");
        let b = r.set_text("b", &long);
        assert_eq!(r.text(a), b"gpt-4o");
        assert_eq!((r.text(b).len(), b.len()), (128, 128));
        assert!(long.as_bytes().starts_with(r.text(b)));
        assert!(r.start > 0);
    }
}
