//! Secrets: resolved once at load time from `env:NAME`, `file:PATH` or a literal, then held in a
//! type that never prints itself. The [`Redactor`] scrubs every configured secret from bodies that
//! tier1 passes through, so a provider that echoes a key cannot leak it to the caller.

use std::fmt;
use std::sync::Arc;

/// Where configuration reads environment variables from; tests inject a map instead of mutating
/// the process environment.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A secret value. `Debug` and `Display` print `[redacted]`; there is no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a resolved value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (an upstream header) or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Resolves a secret reference: `env:NAME`, `file:PATH` (trailing newline trimmed, as Kubernetes
/// secret volumes carry one) or a literal value.
pub(crate) fn resolve(reference: &str, env: &dyn Env) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return match env.var(name) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            Some(_) => Err(format!("environment variable {name} is empty")),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\r', '\n']);
                if v.is_empty() { Err(format!("secret file {path} is empty")) } else { Ok(Secret::new(v)) }
            }
            Err(e) => Err(format!("cannot read secret file {path}: {e}")),
        };
    }
    if reference.is_empty() {
        return Err("secret is empty".to_owned());
    }
    Ok(Secret::new(reference))
}

/// How a secret found in a passed-through byte reads: `[redacted***…]`, exactly as long as the
/// secret (`*`s alone for one shorter than 10 bytes). Keeping the length lets a relayed body keep
/// its declared `Content-Length`, and lets a stream be redacted without reframing it.
pub(super) fn mask(len: usize) -> Vec<u8> {
    const OPEN: &[u8] = b"[redacted";
    if len < OPEN.len() + 1 {
        return vec![b'*'; len];
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(OPEN);
    out.resize(len - 1, b'*');
    out.push(b']');
    out
}

/// Replaces every configured secret value in the bytes tier1 passes back: one multi-pattern
/// (Aho-Corasick) scan over the bytes, whatever the number of secrets; nothing is copied when no
/// secret is there, which is the common case.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    inner: Option<std::sync::Arc<Patterns>>,
}

#[derive(Debug)]
struct Patterns {
    automaton: aho_corasick::AhoCorasick,
    secrets: Vec<Secret>,
    /// Bytes a secret can start with: a chunk's tail is held back only from such a byte on.
    first: [bool; 256],
    longest: usize,
}

impl Redactor {
    /// Builds a redactor over these secrets; very short values are skipped (see below).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            // A 1-3 byte "secret" would shred ordinary text; such values are not real keys.
            .filter(|s| s.expose().len() >= 4)
            .collect();
        secrets.sort_by(|a, b| a.expose().cmp(b.expose()));
        secrets.dedup();
        if secrets.is_empty() {
            return Self::default();
        }
        // Leftmost-longest: a secret that contains another is replaced whole.
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(secrets.iter().map(Secret::expose));
        let Ok(automaton) = automaton else {
            // Only a pattern set past aho-corasick's size limits fails to build; a handful of
            // keys never does. Refusing every answer would be worse than this fallback: no keys
            // configured means nothing to redact.
            return Self::default();
        };
        let mut first = [false; 256];
        for s in &secrets {
            first[usize::from(s.expose().as_bytes()[0])] = true;
        }
        let longest = secrets.iter().map(|s| s.expose().len()).max().unwrap_or(0);
        Self { inner: Some(std::sync::Arc::new(Patterns { automaton, secrets, first, longest })) }
    }

    /// The bytes with every secret masked (see [`mask`]); borrows when there is nothing to do.
    pub fn redact<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Some(p) = &self.inner else { return std::borrow::Cow::Borrowed(body) };
        let mut found = p.automaton.find_iter(body).peekable();
        if found.peek().is_none() {
            return std::borrow::Cow::Borrowed(body);
        }
        let mut out = body.to_vec();
        for m in found {
            out[m.range()].copy_from_slice(&mask(m.len()));
        }
        std::borrow::Cow::Owned(out)
    }

    /// A redactor for one body that arrives in chunks: a secret split across chunks is masked
    /// too.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor { patterns: self.inner.clone(), held: Vec::new() }
    }

    /// Whether there is any secret to look for.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }
}

impl Patterns {
    /// Where the held-back tail of `buf` starts, at `from` or later: the earliest position whose
    /// rest is a proper prefix of a secret (it may become one with the next chunk); `buf.len()`
    /// when there is none. Only the last `longest - 1` bytes can be such a rest.
    fn hold_from(&self, buf: &[u8], from: usize) -> usize {
        let low = from.max(buf.len().saturating_sub(self.longest - 1));
        (low..buf.len())
            .find(|&at| {
                self.first[usize::from(buf[at])]
                    && self.secrets.iter().any(|s| {
                        let s = s.expose().as_bytes();
                        s.len() > buf.len() - at && s.starts_with(&buf[at..])
                    })
            })
            .unwrap_or(buf.len())
    }
}

/// The streaming form of [`Redactor`]: each chunk comes out masked and at the same length, less
/// a held-back tail that could be the start of a secret (at most the longest secret's length less
/// one, and only when the chunk ends in such bytes: an SSE event's closing blank line never does).
/// What was held comes out with the next chunk or at [`finish`](Self::finish), so the output is
/// exactly as long as the input.
#[derive(Debug, Default)]
pub struct StreamRedactor {
    patterns: Option<std::sync::Arc<Patterns>>,
    held: Vec<u8>,
}

impl StreamRedactor {
    /// The next chunk's bytes that can go out now, masked.
    pub fn feed(&mut self, chunk: bytes::Bytes) -> bytes::Bytes {
        let Some(p) = &self.patterns else { return chunk };
        let joined = (!self.held.is_empty()).then(|| {
            self.held.extend_from_slice(&chunk);
            std::mem::take(&mut self.held)
        });
        let buf: &[u8] = joined.as_deref().unwrap_or(&chunk);
        let mut hold = p.hold_from(buf, 0);
        let mut masked: Vec<std::ops::Range<usize>> = Vec::new();
        for m in p.automaton.find_iter(buf) {
            if m.start() >= hold {
                // Held whole: the next chunk may make it a longer secret.
                break;
            }
            if m.end() > hold {
                // It straddles the held tail: it goes out now, masked, and the tail starts after.
                hold = p.hold_from(buf, m.end());
            }
            masked.push(m.range());
        }
        let tail = buf[hold..].to_vec();
        let out = if masked.is_empty() && hold == buf.len() && joined.is_none() {
            chunk.clone()
        } else {
            let mut out = buf[..hold].to_vec();
            for r in masked {
                let len = r.len();
                out[r].copy_from_slice(&mask(len));
            }
            bytes::Bytes::from(out)
        };
        self.held = tail;
        out
    }

    /// The held-back tail, masked: the body ended.
    pub fn finish(&mut self) -> bytes::Bytes {
        let held = std::mem::take(&mut self.held);
        match &self.patterns {
            Some(_) if !held.is_empty() => {
                let r = Redactor { inner: self.patterns.clone() };
                bytes::Bytes::from(r.redact(&held).into_owned())
            }
            _ => bytes::Bytes::from(held),
        }
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn resolves_env_file_and_literal() {
        let env: HashMap<String, String> = [("K".to_owned(), "sk-123".to_owned())].into();
        assert_eq!(resolve("env:K", &env).unwrap().expose(), "sk-123");
        assert!(resolve("env:MISSING", &env).unwrap_err().contains("MISSING is not set"));
        assert_eq!(resolve("plain", &env).unwrap().expose(), "plain");
        let dir = std::env::temp_dir().join(format!("tier1-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let r = format!("file:{}", dir.display());
        assert_eq!(resolve(&r, &env).unwrap().expose(), "from-file");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-live-abcdef");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn redactor_replaces_every_occurrence() {
        let r = Redactor::new([Secret::new("sk-abc"), Secret::new("sk-abcdef"), Secret::new("x")]);
        let out = r.redact(b"key sk-abcdef and sk-abc and sk-abc.");
        assert_eq!(&*out, b"key ********* and ****** and ******.");
        let long = Redactor::new([Secret::new("sk-upstream-secret-0001")]);
        assert_eq!(&*long.redact(b"k=sk-upstream-secret-0001;"), b"k=[redacted*************];");
        assert!(matches!(r.redact(b"nothing here x"), std::borrow::Cow::Borrowed(_)));
    }

    fn streamed(r: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = r.stream();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(bytes::Bytes::copy_from_slice(c)));
        }
        out.extend_from_slice(&s.finish());
        out
    }

    #[test]
    fn a_stream_is_masked_at_every_split_and_keeps_its_length() {
        let r =
            Redactor::new([Secret::new("sk-abc"), Secret::new("sk-abcdef"), Secret::new("key-0123456789")]);
        let body: &[u8] = b"data: {\"a\":\"sk-abcdef sk-abc key-0123456789 sk-ab\"}\n\ndata: sk-abc";
        let whole = r.redact(body).into_owned();
        assert_eq!(whole.len(), body.len());
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let out = streamed(&r, &[&body[..i], &body[i..j], &body[j..]]);
                assert_eq!(out, whole, "split at {i} and {j}");
            }
        }
        // Byte by byte too.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(streamed(&r, &bytes), whole);
    }

    #[test]
    fn a_stream_holds_back_only_a_possible_secret_start() {
        let r = Redactor::new([Secret::new("sk-live-0001")]);
        let mut s = r.stream();
        let event = bytes::Bytes::from_static(b"data: {\"x\":1}\n\n");
        let out = s.feed(event.clone());
        assert_eq!(out, event);
        assert_eq!(out.as_ptr(), event.as_ptr(), "nothing to mask: the chunk itself goes on");
        assert_eq!(&s.feed(bytes::Bytes::from_static(b"text sk-li"))[..], b"text ");
        assert_eq!(s.held(), 5);
        assert_eq!(&s.feed(bytes::Bytes::from_static(b"ve-0001 end"))[..], b"[redacted**] end");
        assert!(r.stream().feed(bytes::Bytes::from_static(b"no key here.")).len() == 12);
        let none = Redactor::new([]);
        assert!(none.is_empty());
        assert_eq!(&none.stream().feed(bytes::Bytes::from_static(b"sk-")), b"sk-".as_slice());
    }
}
