//! The redactor on arbitrary secrets and bytes: fed in pieces (`StreamRedactor`), it must write
//! exactly what the one-shot `Redactor::redact` writes for the whole body, at the body's length,
//! and no secret may remain (for secrets that share no byte with the mask).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::config::{Redactor, Secret};
use tier1_fuzz::pieces;

fuzz_target!(|data: &[u8]| {
    // Up to four secrets, each ended by a 0xff byte; the rest is the body.
    let mut parts = data.splitn(5, |&b| b == 0xff);
    let mut secrets = Vec::new();
    let mut body: &[u8] = &[];
    for (i, part) in parts.by_ref().enumerate() {
        if i == 4 {
            body = part;
            break;
        }
        secrets.push(String::from_utf8_lossy(part).into_owned());
        body = part;
    }
    let redactor = Redactor::new(secrets.iter().cloned().map(Secret::new));
    let whole = redactor.redact(body).into_owned();
    assert_eq!(whole.len(), body.len(), "masks keep the length");
    let mut stream = redactor.stream();
    let mut out = Vec::new();
    let mut at = 0;
    for size in pieces(data) {
        let end = (at + size).min(body.len());
        out.extend_from_slice(&stream.feed(bytes::Bytes::copy_from_slice(&body[at..end])));
        at = end;
    }
    out.extend_from_slice(&stream.feed(bytes::Bytes::copy_from_slice(&body[at..])));
    out.extend_from_slice(&stream.finish());
    assert_eq!(out, whole, "pieces and whole agree");
    for s in secrets.iter().filter(|s| s.len() >= 4 && !s.bytes().any(|b| b"[redacted*]".contains(&b))) {
        assert!(!out.windows(s.len()).any(|w| w == s.as_bytes()), "a secret remains");
    }
});
