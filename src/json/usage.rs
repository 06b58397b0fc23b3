//! The token counts of a provider's `usage` object, read straight from its bytes. It is read on
//! every answer, and a serde pass over the object cost more instructions than the rest of the
//! answer's bookkeeping (`loadtest/profile.sh`).

use super::spans::{end_of_value, skip_ws};

/// The counts a usage object reports, in each format's own fields.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (OpenAI chat) or `input_tokens` (Responses, Anthropic).
    pub input: u64,
    /// `completion_tokens` or `output_tokens`.
    pub output: u64,
    /// Input tokens read from the provider's prompt cache: `prompt_tokens_details.cached_tokens`
    /// (OpenAI chat), `input_tokens_details.cached_tokens` (Responses), else Anthropic's
    /// `cache_read_input_tokens`.
    pub cached: u64,
}

/// The last `"usage": {…}` object in `tail`; `None` without one, or when it is cut short or not
/// an object of the expected shape (a count that is not a non-negative integer, say).
pub fn last_usage(tail: &[u8]) -> Option<Usage> {
    // A quote-by-quote search from the end: the usage object is near it, and this is cheaper
    // there than building a substring searcher for each answer.
    let key = b"\"usage\"";
    let at = memchr::memrchr_iter(b'"', tail).find(|&q| tail[q..].starts_with(key))? + key.len();
    let open = tail[at..].iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b':'))? + at;
    let (usage, _) = read_object(tail, open)?;
    Some(usage)
}

/// The usage object at `b[open]`, and the index just past it.
fn read_object(b: &[u8], open: usize) -> Option<(Usage, usize)> {
    let (mut usage, mut details_cached, mut cache_read) = (Usage::default(), None, None);
    let end = members(b, open, |key, value| {
        match key {
            b"prompt_tokens" | b"input_tokens" => usage.input = nullable(value, count)?.unwrap_or(0),
            b"completion_tokens" | b"output_tokens" => usage.output = nullable(value, count)?.unwrap_or(0),
            b"cache_read_input_tokens" => cache_read = nullable(value, count)?,
            b"prompt_tokens_details" | b"input_tokens_details" => {
                details_cached = nullable(value, cached_in)?.flatten();
            }
            _ => {}
        }
        Some(())
    })?;
    usage.cached = details_cached.or(cache_read).unwrap_or(0);
    Some((usage, end))
}

/// A details object's `cached_tokens`, if it has one.
fn cached_in(value: &[u8]) -> Option<Option<u64>> {
    let mut cached = None;
    let end = members(value, 0, |key, v| {
        if key == b"cached_tokens" {
            cached = nullable(v, count)?;
        }
        Some(())
    })?;
    (end == value.len()).then_some(cached)
}

/// Walks the members of the object at `b[open]`, calling `each` with every key (its raw bytes;
/// an escaped key never matches a known name) and value; the index just past the object, or
/// `None` when it is cut short, is not an object, or `each` refuses a value.
fn members(b: &[u8], open: usize, mut each: impl FnMut(&[u8], &[u8]) -> Option<()>) -> Option<usize> {
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        let (key, key_end) = key_at(b, i)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = value_end(b, i)?;
        each(key, trim(&b[i..value_end]))?;
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The key at `b[i]` (its raw bytes; an escaped key is `\\`, which never matches a known name)
/// and the index just past it.
fn key_at(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let close = i + 1 + memchr::memchr2(b'"', b'\\', &b[i + 1..])?;
    if b[close] == b'"' {
        return Some((&b[i + 1..close], close + 1));
    }
    let end = end_of_value(b, i);
    (end < b.len()).then_some((b"\\".as_slice(), end))
}

/// The end of the value at `b[i]`: a number's characters (checked by [`count`] where it
/// matters), else the generic walk; `None` when the value runs to the end of `b` (cut short).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    let numeric = |c: &u8| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E');
    if b.get(i).is_some_and(numeric) {
        return b[i..].iter().position(|c| !numeric(c)).map(|n| i + n);
    }
    let end = end_of_value(b, i);
    (end < b.len() || matches!(b.get(i), Some(b'{' | b'[' | b'"'))).then_some(end)
}

/// `value` without trailing whitespace (a scalar's end is the delimiter after it).
fn trim(value: &[u8]) -> &[u8] {
    let n = value.iter().rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r')).map_or(0, |p| p + 1);
    &value[..n]
}

/// `null` as `None`, anything else through `read`.
fn nullable<T>(value: &[u8], read: impl FnOnce(&[u8]) -> Option<T>) -> Option<Option<T>> {
    if value == b"null" { Some(None) } else { read(value).map(Some) }
}

/// A token count: a non-negative JSON integer that fits in a `u64`.
fn count(value: &[u8]) -> Option<u64> {
    if value.is_empty() || (value.len() > 1 && value[0] == b'0') {
        return None;
    }
    value.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(c - b'0')) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::{Usage, last_usage};

    /// What a serde pass over the same object says: the reference the byte walk must match.
    fn reference(tail: &[u8]) -> Option<Usage> {
        #[derive(serde::Deserialize)]
        struct Details {
            cached_tokens: Option<u64>,
        }
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(alias = "input_tokens")]
            prompt_tokens: Option<u64>,
            #[serde(alias = "output_tokens")]
            completion_tokens: Option<u64>,
            #[serde(alias = "input_tokens_details")]
            prompt_tokens_details: Option<Details>,
            cache_read_input_tokens: Option<u64>,
        }
        let key = b"\"usage\"";
        let at = tail.windows(key.len()).rposition(|w| w == key)? + key.len();
        let rest = &tail[at..];
        let open = rest.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b':'))?;
        let end = super::end_of_value(rest, open);
        let u: Raw = serde_json::from_slice(&rest[open..end]).ok()?;
        let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens).or(u.cache_read_input_tokens);
        Some(Usage {
            input: u.prompt_tokens.unwrap_or(0),
            output: u.completion_tokens.unwrap_or(0),
            cached: cached.unwrap_or(0),
        })
    }

    #[test]
    fn reads_each_format_as_serde_does() {
        type Counts = Option<(u64, u64, u64)>;
        let cases: &[(&str, Counts)] = &[
            (r#"{"usage":{"completion_tokens":11,"prompt_tokens":9,"total_tokens":20}}"#, Some((9, 11, 0))),
            (
                r#"{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":80,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2}}}"#,
                Some((100, 5, 80)),
            ),
            (
                r#"{"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":3},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":9}}"#,
                Some((7, 2, 3)),
            ),
            (
                r#"{"usage":{"input_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":12,"output_tokens":1,"service_tier":"standard"}}"#,
                Some((4, 1, 12)),
            ),
            (
                "data: {\"usage\" : { \"prompt_tokens\" : 3 , \"completion_tokens\" : 4 } }\n\n",
                Some((3, 4, 0)),
            ),
            (r#"{"usage":{}}"#, Some((0, 0, 0))),
            (r#"{"usage":{"prompt_tokens":null,"prompt_tokens_details":null}}"#, Some((0, 0, 0))),
            (
                r#"{"usage":{"cache_read_input_tokens":null,"prompt_tokens_details":{"cached_tokens":null}}}"#,
                Some((0, 0, 0)),
            ),
            (r#"{"usage":{"prompt_tokens":"9"}}"#, None),
            (r#"{"usage":{"prompt_tokens":9.0}}"#, None),
            (r#"{"usage":{"prompt_tokens":-1}}"#, None),
            (r#"{"usage":{"prompt_tokens":99999999999999999999999}}"#, None),
            (r#"{"usage":{"prompt_tokens":9,"completion_tokens":4"#, None),
            (r#"{"usage":{"prompt_tokens":9,"completion_tokens":4}"#, Some((9, 4, 0))),
            (r#"{"usage":{"prompt_tokens":9,"completion_tok"#, None),
            (r#"{"usage":null}"#, None),
            (r#"{"usage":{"note":"a \"usage\": {} inside","prompt_tokens":2}}"#, Some((2, 0, 0))),
            (r#"{"usage":{"prompt_tokens":1},"later":{"usage":{"prompt_tokens":2}}}"#, Some((2, 0, 0))),
            (r#"{"usage":{"cost":-1.5e-3,"prompt_tokens":2,"ok":true,"none":null}}"#, Some((2, 0, 0))),
            // An escaped key is never a known name (serde would decode it; no provider escapes).
            (r#"{"usage":{"prompt\u005ftokens":5,"completion_tokens":1}}"#, Some((0, 1, 0))),
            (r#"{"usage":{"a\"b":5,"completion_tokens":1}}"#, Some((0, 1, 0))),
            ("no usage here", None),
        ];
        for (tail, want) in cases {
            let want = want.map(|(input, output, cached)| Usage { input, output, cached });
            assert_eq!(last_usage(tail.as_bytes()), want, "{tail}");
        }
    }

    #[test]
    fn agrees_with_serde_on_every_cut_of_a_usage_object() {
        let whole = br#"data: {"id":"x","usage":{"prompt_tokens":120,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":64},"total_tokens":127,"extra":[1,{"a":"}"}]}}"#;
        for cut in 0..=whole.len() {
            let tail = &whole[..cut];
            let (ours, theirs) = (last_usage(tail), reference(tail));
            // serde takes a cut object for a whole one only where the walk does too.
            assert_eq!(ours, theirs, "cut at {cut}: {}", String::from_utf8_lossy(tail));
        }
    }
}
