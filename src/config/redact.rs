//! The [`Redactor`]: scrubs secrets from the bytes tier1 passes back, so a provider that echoes
//! a key cannot leak it to the caller. Its set is the snapshot's configured secrets and the
//! credentials minted at run time ([`Mint`]: STS session credentials, OAuth access tokens), each
//! of those until it expires (so an answer echoing the previous one is still scrubbed). A mint
//! rebuilds the automaton of every live redactor, off the request path (in the task that
//! fetched the credentials); an answer loads its redactor's automaton once, without a lock.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use super::Secret;

/// How a secret found in a passed-through byte reads: `[redacted***…]`, exactly as long as the
/// secret (`*`s alone for one shorter than 10 bytes). Keeping the length lets a relayed body keep
/// its declared `Content-Length`, and lets a stream be redacted without reframing it.
fn mask(len: usize) -> Vec<u8> {
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

/// Replaces every secret value (configured and minted) in the bytes tier1 passes back: one
/// multi-pattern (Aho-Corasick) scan over the bytes, whatever the number of secrets; nothing is
/// copied when no secret is there, which is the common case.
#[derive(Clone)]
pub struct Redactor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("patterns", &*self.shared.patterns.load()).finish()
    }
}

/// How many secrets, never which (the automaton's own `Debug` would show them).
impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patterns").field("secrets", &self.secrets.len()).finish()
    }
}

/// What a redactor and the mint share: the configured secrets, and the automaton over them and
/// the minted ones, swapped whole by a mint.
struct Shared {
    configured: Vec<Secret>,
    patterns: ArcSwapOption<Patterns>,
}

struct Patterns {
    automaton: aho_corasick::AhoCorasick,
    secrets: Vec<Secret>,
    /// Bytes a secret can start with: a chunk's tail is held back only from such a byte on.
    first: [bool; 256],
    longest: usize,
}

/// The secrets worth looking for, sorted and once each: a 1-3 byte "secret" would shred
/// ordinary text; such values are not real keys.
fn usable(secrets: impl IntoIterator<Item = Secret>) -> Vec<Secret> {
    let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| s.expose().len() >= 4).collect();
    secrets.sort_by(|a, b| a.expose().cmp(b.expose()));
    secrets.dedup();
    secrets
}

impl Patterns {
    /// The automaton over `secrets` (usable ones only); `None` when there is none.
    fn build(secrets: impl IntoIterator<Item = Secret>) -> Option<Arc<Self>> {
        let secrets = usable(secrets);
        if secrets.is_empty() {
            return None;
        }
        // Leftmost-longest: a secret that contains another is replaced whole.
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(secrets.iter().map(Secret::expose))
            // Only a pattern set past aho-corasick's size limits fails to build; a handful of
            // keys never does. Refusing every answer would be worse than this fallback: no keys
            // configured means nothing to redact.
            .ok()?;
        let mut first = [false; 256];
        for s in &secrets {
            first[usize::from(s.expose().as_bytes()[0])] = true;
        }
        let longest = secrets.iter().map(|s| s.expose().len()).max().unwrap_or(0);
        Some(Arc::new(Self { automaton, secrets, first, longest }))
    }

    /// The bytes with every secret masked (see [`mask`]); borrows when there is nothing to do.
    fn redact<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        let mut found = self.automaton.find_iter(body).peekable();
        if found.peek().is_none() {
            return Cow::Borrowed(body);
        }
        let mut out = body.to_vec();
        for m in found {
            out[m.range()].copy_from_slice(&mask(m.len()));
        }
        Cow::Owned(out)
    }
}

impl Redactor {
    /// Builds a redactor over these secrets (very short values are skipped) and the minted
    /// ones, now and to come.
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Mint::global().redactor(secrets)
    }

    /// The bytes with every secret masked (see [`mask`]); borrows when there is nothing to do.
    pub fn redact<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        match &*self.shared.patterns.load() {
            Some(p) => p.redact(body),
            None => Cow::Borrowed(body),
        }
    }

    /// A redactor for one body that arrives in chunks: a secret split across chunks is masked
    /// too. The set is the one at the start of the body.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor { patterns: self.shared.patterns.load_full(), held: Vec::new() }
    }

    /// Whether there is any secret to look for.
    pub fn is_empty(&self) -> bool {
        self.shared.patterns.load().is_none()
    }
}

/// The most minted secrets kept: the ones expiring last stay.
const MAX_MINTED: usize = 256;

/// The secrets minted at run time, and the redactors that must scrub them.
#[derive(Default)]
pub(crate) struct Mint(Mutex<Minted>);

#[derive(Default)]
struct Minted {
    /// Each secret and when it expires.
    secrets: Vec<(Secret, Instant)>,
    /// Every redactor built and not yet dropped.
    redactors: Vec<Weak<Shared>>,
}

impl Minted {
    /// Forgets the secrets expired and the redactors dropped.
    fn prune(&mut self, now: Instant) {
        self.secrets.retain(|(_, until)| *until > now);
        self.redactors.retain(|r| r.strong_count() > 0);
    }

    /// The automaton over `configured` and the minted secrets.
    fn patterns(&self, configured: &[Secret]) -> Option<Arc<Patterns>> {
        Patterns::build(configured.iter().cloned().chain(self.secrets.iter().map(|(s, _)| s.clone())))
    }
}

impl Mint {
    /// The process's mint, which every [`Redactor::new`] takes from.
    pub(crate) fn global() -> &'static Self {
        static MINT: OnceLock<Mint> = OnceLock::new();
        MINT.get_or_init(Mint::default)
    }

    fn lock(&self) -> MutexGuard<'_, Minted> {
        match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A redactor over `configured` and this mint's secrets.
    pub(crate) fn redactor(&self, configured: impl IntoIterator<Item = Secret>) -> Redactor {
        let configured = usable(configured);
        let mut minted = self.lock();
        minted.prune(Instant::now());
        let patterns = ArcSwapOption::new(minted.patterns(&configured));
        let shared = Arc::new(Shared { configured, patterns });
        minted.redactors.push(Arc::downgrade(&shared));
        Redactor { shared }
    }

    /// Adds `secrets`, valid until `until`, and rebuilds every live redactor's automaton: the
    /// caller's thread pays for it, never a request. A secret minted again keeps the later
    /// expiry; expired ones go (at the next mint or redactor built).
    pub(crate) fn add(&self, secrets: Vec<Secret>, until: Instant) {
        let fresh = usable(secrets);
        if fresh.is_empty() {
            return;
        }
        let mut minted = self.lock();
        minted.prune(Instant::now());
        for s in fresh {
            match minted.secrets.iter_mut().find(|(known, _)| *known == s) {
                Some((_, at)) => *at = (*at).max(until),
                None => minted.secrets.push((s, until)),
            }
        }
        if minted.secrets.len() > MAX_MINTED {
            minted.secrets.sort_by_key(|(_, until)| std::cmp::Reverse(*until));
            minted.secrets.truncate(MAX_MINTED);
        }
        for r in minted.redactors.iter().filter_map(Weak::upgrade) {
            r.patterns.store(minted.patterns(&r.configured));
        }
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
    patterns: Option<Arc<Patterns>>,
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
            Some(p) if !held.is_empty() => bytes::Bytes::from(p.redact(&held).into_owned()),
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
    use std::time::Duration;

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
        // A mint of its own: the process's may hold what another test minted.
        let none = Mint::default().redactor([]);
        assert!(none.is_empty());
        assert_eq!(&none.stream().feed(bytes::Bytes::from_static(b"sk-")), b"sk-".as_slice());
    }

    #[test]
    fn minted_secrets_join_every_live_redactor_until_they_expire() {
        let mint = Mint::default();
        let before = mint.redactor([Secret::new("configured-0001")]);
        let in_flight = before.stream();
        let now = Instant::now();
        mint.add(vec![Secret::new("minted-0001"), Secret::new("abc")], now + Duration::from_secs(60));
        let after = mint.redactor([]);
        let text: &[u8] = b"configured-0001 minted-0001 abc";
        assert_eq!(&*before.redact(text), b"[redacted*****] [redacted*] abc");
        assert_eq!(&*after.redact(text), b"configured-0001 [redacted*] abc");
        // A stream keeps the set it started with; the next one has the minted secret.
        let streamed = |mut s: StreamRedactor| {
            let mut out = s.feed(bytes::Bytes::from_static(text)).to_vec();
            out.extend_from_slice(&s.finish());
            out
        };
        assert_eq!(streamed(in_flight), b"[redacted*****] minted-0001 abc");
        assert_eq!(streamed(before.stream()), &*before.redact(text));
        // Minted again later: the later expiry holds. Expired ones go at the next mint.
        mint.add(vec![Secret::new("minted-0001")], now + Duration::from_secs(120));
        mint.add(vec![Secret::new("minted-0002")], now);
        assert_eq!(&*after.redact(b"minted-0001 minted-0002"), b"[redacted*] [redacted*]");
        mint.add(vec![Secret::new("minted-0003")], now + Duration::from_secs(60));
        assert_eq!(&*after.redact(b"minted-0001 minted-0002"), b"[redacted*] minted-0002");
        // Dropped redactors are forgotten; the set is bounded.
        drop(before);
        let many = (0..MAX_MINTED + 10).map(|i| Secret::new(format!("minted-many-{i:04}"))).collect();
        mint.add(many, now + Duration::from_secs(600));
        let state = mint.lock();
        assert_eq!((state.secrets.len(), state.redactors.len()), (MAX_MINTED, 1));
        assert!(!state.secrets.iter().any(|(s, _)| s.expose() == "minted-0001"));
        drop(state);
        assert!(!format!("{after:?}").contains("minted"), "{after:?}");
    }
}
