//! The byte spans of the top-level members the splice edits, found on simd-json's structural
//! index rather than by reading the bytes again.

use std::ops::Range;

use super::{ScanError, Spans};

/// One top-level member as the structural index places it.
struct Member {
    /// The key, quotes included.
    key: Range<usize>,
    /// The value, without surrounding whitespace.
    value: Range<usize>,
    /// Offset of the `,` or `}` after the member.
    sep: usize,
}

/// Offset `k` of the structural index.
#[inline]
fn at(index: &[u32], k: usize) -> Option<usize> {
    index.get(k).map(|&p| p as usize)
}

/// Finds the spans of top-level `model`, `stream` and `fallbacks` in JSON simd-json accepted, by
/// walking its structural index (the offsets of every `{}[]:,` outside strings and of every
/// value's first byte) instead of the bytes: a 50 KB prompt is one hop, not 50,000 steps. `None`
/// only if the index does not describe an object (cannot happen after a successful parse).
pub(super) fn spans(b: &[u8], index: &[u32]) -> Option<Result<Spans, ScanError>> {
    let open = at(index, 0)?;
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut spans = Spans { body_start: open + 1, ..Spans::default() };
    let mut model = None;
    // Offset of the comma before the current member, if any.
    let mut prev_comma: Option<usize> = None;
    let mut k = 1;
    loop {
        match b.get(at(index, k)?)? {
            b'}' => break,
            b'"' => {}
            _ => return None,
        }
        let (member, sep) = member_at(b, index, k)?;
        k = sep;
        if let Err(e) = note(b, &member, prev_comma, &mut spans, &mut model) {
            return Some(Err(e));
        }
        match b.get(member.sep)? {
            b',' => {
                prev_comma = Some(member.sep);
                k += 1;
            }
            b'}' => break,
            _ => return None,
        }
    }
    spans.model = model?;
    Some(Ok(spans))
}

/// The member whose key is at index entry `k`, and the entry of the separator after it.
#[inline]
fn member_at(b: &[u8], index: &[u32], k: usize) -> Option<(Member, usize)> {
    let key_start = at(index, k)?;
    let colon = at(index, k + 1)?;
    if b.get(colon) != Some(&b':') {
        return None;
    }
    let key = key_start..trim_end(b, colon);
    let value_start = at(index, k + 2)?;
    let (value_end, k) = value_end(b, index, k + 2)?;
    let sep = at(index, k)?;
    Some((Member { key, value: value_start..value_end, sep }, k))
}

/// Where the value at index entry `k` ends, and the entry just after it: an array or object is
/// skipped to its matching bracket, entry by entry; a scalar ends before the next entry.
#[inline]
fn value_end(b: &[u8], index: &[u32], mut k: usize) -> Option<(usize, usize)> {
    match b.get(at(index, k)?)? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(at(index, k)?)? {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            Some((at(index, k)? + 1, k + 1))
        }
        _ => Some((trim_end(b, at(index, k + 1)?), k + 1)),
    }
}

/// Records `member` in `spans` (or `model`) if it is one the router edits; a second one is an
/// error. `prev_comma` is the comma before the member, if any.
#[inline]
fn note(
    b: &[u8],
    member: &Member,
    prev_comma: Option<usize>,
    spans: &mut Spans,
    model: &mut Option<Range<usize>>,
) -> Result<(), ScanError> {
    let Member { key, value, sep } = member;
    let name = key_name(&b[key.start + 1..key.end - 1]);
    let next_comma = (b.get(*sep) == Some(&b',')).then_some(*sep);
    match name.as_deref() {
        Some("model") if model.replace(value.clone()).is_some() => Err(ScanError::Duplicate("model")),
        Some("stream") if spans.stream.replace(value.clone()).is_some() => {
            Err(ScanError::Duplicate("stream"))
        }
        Some("fallbacks") => {
            // Cut the member with the comma after it, or, for the last member, the one before.
            let cut = match (next_comma, prev_comma) {
                (Some(c), _) => key.start..skip_ws(b, c + 1),
                (None, Some(c)) => c..value.end,
                (None, None) => key.start..value.end,
            };
            match spans.fallbacks.replace(cut) {
                Some(_) => Err(ScanError::Duplicate("fallbacks")),
                None => Ok(()),
            }
        }
        // Kept, not checked: only prompt affinity reads them.
        Some("system" | "instructions") => {
            spans.system = Some(value.clone());
            Ok(())
        }
        Some("messages" | "input") => {
            spans.messages = Some(value.clone());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `end` moved back over whitespace: where the token before it ends.
pub(super) fn trim_end(b: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(b.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    end
}

/// A key's text; keys with escapes are decoded (rare, but `"mod\u0065l"` is still `model`).
fn key_name(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if raw.contains(&b'\\') {
        let quoted = [b"\"", raw, b"\""].concat();
        serde_json::from_slice::<String>(&quoted).ok().map(std::borrow::Cow::Owned)
    } else {
        std::str::from_utf8(raw).ok().map(std::borrow::Cow::Borrowed)
    }
}

pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the JSON value that starts at `b[start]`: just past its closing
/// bracket or quote, or at the `,`, `]` or `}` after a scalar; `b.len()` when it is cut short. A
/// byte walk that only tracks strings and nesting, for bytes simd-json already validated (or
/// whose parse is checked after).
pub(crate) fn end_of_value(b: &[u8], start: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut i = start;
    while let Some(&c) = b.get(i) {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') if depth == 0 => return i + 1,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => depth += 1,
            (false, _, b'}' | b']') if depth > 1 => depth -= 1,
            (false, _, b'}' | b']') if depth == 1 => return i + 1,
            (false, _, b',' | b']' | b'}') if depth == 0 => return i,
            (false, _, _) => {}
        }
        i += 1;
    }
    i
}
