//! Header names tier1 reads or writes, request id handling, and the inbound bearer check.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Request id, propagated upstream and echoed back.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Correlation id, propagated upstream when present.
pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// The provider that answered.
pub(crate) const X_TIER1_PROVIDER: HeaderName = HeaderName::from_static("x-tier1-provider");
/// The upstream model name used.
pub(crate) const X_TIER1_MODEL: HeaderName = HeaderName::from_static("x-tier1-model");
/// Upstream attempts started for this request.
pub(crate) const X_TIER1_ATTEMPTS: HeaderName = HeaderName::from_static("x-tier1-attempts");
/// The front's per-user token id (a rate-limit and log key, not a secret).
pub(crate) const X_RELAY_TOKEN_ID: HeaderName = HeaderName::from_static("x-relay-token-id");
/// The front's view of the client address (logged, never trusted).
pub(crate) const X_RELAY_CLIENT_IP: HeaderName = HeaderName::from_static("x-relay-client-ip");

/// Where the time to the response head went, in the shape CDNs use (`tier1;dur=0.041, …`).
pub(crate) const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The `Server-Timing` of an answer: tier1's own work, the waits on upstreams, and every other
/// wait, in milliseconds with microsecond precision. Durations only: nothing from the request,
/// the config or an upstream.
pub(crate) fn server_timing(tier1: Duration, upstream: Duration, wait: Duration) -> Option<HeaderValue> {
    // Digits by hand: `core::fmt` cost more than the rest of the answer's head (callgrind).
    let mut v = Vec::with_capacity(80);
    for (i, (name, d)) in [("tier1", tier1), ("upstream", upstream), ("wait", wait)].into_iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(b";dur=");
        let us = d.as_micros();
        push_decimal(&mut v, us / 1000);
        v.push(b'.');
        let frac = us % 1000;
        v.extend_from_slice(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
    HeaderValue::from_bytes(&v).ok()
}

/// Appends `n` in decimal.
fn push_decimal(v: &mut Vec<u8>, mut n: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    v.extend_from_slice(&digits[at..]);
}

/// The client's `x-request-id` if it is a sane id (see [`sane_id`]), or a fresh random one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if sane_id(v) => v.clone(),
        _ => generate_id(),
    }
}

/// The client's `x-correlation-id` to forward upstream, only if it is a sane id (see
/// [`sane_id`]); anything else is dropped, not forwarded with tier1's keys to a provider.
pub(crate) fn correlation_id(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(&X_CORRELATION_ID).filter(|v| sane_id(v))
}

/// Whether a client-chosen id is a sane token: 1 to 128 bytes of visible ASCII (no spaces,
/// tabs, control or high bytes), so it is safe in a log line and an upstream header.
fn sane_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
}

/// A copy of a request header's value that does not share the connection's read buffer: hyper
/// cuts header values out of that buffer, so a clone kept for a long stream's access log would
/// keep the whole buffer (8 KiB or more) alive until the stream ends (see
/// [`crate::proxy::ctx::RequestRecord`]).
pub(crate) fn detached(v: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone())
}

/// A random UUIDv4-shaped id, written into a stack buffer (no formatting machinery: this runs
/// for every request that arrives without an id).
fn generate_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut id = [b'-'; 36];
    let mut nibble = 32;
    for (i, slot) in id.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *slot = HEX[((n >> (nibble * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// The key a client presents: `Authorization: Bearer ...`, or `x-api-key` (how Anthropic's
/// SDKs send one), which counts only without `Authorization`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    let token = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))?
        }
        None => headers.get("x-api-key")?.to_str().ok()?,
    };
    Some(token.trim().as_bytes())
}

/// Whether the request carries one of `keys` (see [`presented_key`]). Every key is compared in
/// constant time, and all of them are compared, so timing says nothing about which prefix
/// matched. An empty key list means the server is open.
pub(crate) fn authorized(headers: &HeaderMap, keys: &[Secret]) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Some(token) = presented_key(headers) else { return false };
    keys.iter().fold(0u8, |ok, k| ok | k.expose().as_bytes().ct_eq(token).unwrap_u8()) == 1
}

/// Which inbound key the request carries (its index), for the `api_key` limit scope. Called
/// after [`authorized`] succeeded; every key is compared, in constant time.
pub(crate) fn key_index(headers: &HeaderMap, keys: &[Secret]) -> Option<usize> {
    let token = presented_key(headers)?;
    keys.iter().enumerate().fold(None, |found, (i, k)| {
        if bool::from(k.expose().as_bytes().ct_eq(token)) { Some(i) } else { found }
    })
}

/// Whether the client asked for SSE through `Accept`.
pub(crate) fn accepts_sse(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_milliseconds_with_microsecond_precision() {
        let at = |tier1: u64, upstream: u64, wait: u64| {
            let d = Duration::from_nanos;
            server_timing(d(tier1), d(upstream), d(wait)).unwrap().to_str().unwrap().to_owned()
        };
        assert_eq!(at(0, 0, 0), "tier1;dur=0.000, upstream;dur=0.000, wait;dur=0.000");
        assert_eq!(at(41_999, 512_300_000, 1_000), "tier1;dur=0.041, upstream;dur=512.300, wait;dur=0.001");
        assert_eq!(
            at(7_000_000_000_000, 10_020_000, 123_456_789),
            "tier1;dur=7000000.000, upstream;dur=10.020, wait;dur=123.456"
        );
    }

    #[test]
    fn request_id_kept_or_generated() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        let generated = request_id(&HeaderMap::new());
        assert_eq!(generated.len(), 36);
        // UUIDv4 shape: 8-4-4-4-12 lowercase hex, version 4, variant 10xx.
        let g = generated.to_str().unwrap();
        let groups: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{g}");
        assert!(g.bytes().all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{g}");
        assert_eq!(&g[14..15], "4", "{g}");
        assert!("89ab".contains(&g[19..20]), "{g}");
        assert_ne!(generated, request_id(&HeaderMap::new()));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }

    #[test]
    fn correlation_id_forwarded_only_when_sane() {
        let mut h = HeaderMap::new();
        assert_eq!(correlation_id(&h), None);
        h.insert(X_CORRELATION_ID, HeaderValue::from_static("corr-1_a.b:c"));
        assert_eq!(correlation_id(&h).unwrap(), "corr-1_a.b:c");
        let long = "a".repeat(129);
        for bad in [&b""[..], b"a b", b"a\tb", b"caf\xc3\xa9", b"\xff", long.as_bytes()] {
            h.insert(X_CORRELATION_ID, HeaderValue::from_bytes(bad).unwrap());
            assert_eq!(correlation_id(&h), None, "{bad:?}");
        }
        h.insert(X_CORRELATION_ID, HeaderValue::from_str(&long[..128]).unwrap());
        assert!(correlation_id(&h).is_some(), "128 bytes are accepted");
    }

    #[test]
    fn bearer_check() {
        let keys = [Secret::new("k1-secret"), Secret::new("k2-secret")];
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &keys));
        assert!(authorized(&h, &[]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2-secret"));
        assert!(authorized(&h, &keys));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2-secre"));
        assert!(!authorized(&h, &keys));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k1-secret"));
        assert!(!authorized(&h, &keys));
        // x-api-key counts only without Authorization.
        h.insert("x-api-key", HeaderValue::from_static("k1-secret"));
        assert!(!authorized(&h, &keys));
        h.remove(header::AUTHORIZATION);
        assert!(authorized(&h, &keys));
        assert_eq!(key_index(&h, &keys), Some(0));
    }
}
