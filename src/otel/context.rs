//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` a request carries, validated and bounded, and the ones an upstream request gets.
//! A malformed `traceparent` is ignored (the request starts a new trace) and never forwarded; a
//! `tracestate` is kept only with a valid `traceparent`, and only whole and well formed.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The `traceparent` header.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub(crate) const TRACESTATE: &str = "tracestate";

/// The two as header names, for the upstream request (a `&str` name is parsed at each insert).
pub(crate) const HEADERS: [HeaderName; 2] =
    [HeaderName::from_static(TRACEPARENT), HeaderName::from_static(TRACESTATE)];

/// Longest `traceparent` read: version 00 is 55 bytes; a later version may append fields.
const MAX_TRACEPARENT: usize = 256;
/// Longest `tracestate` kept, all its header lines joined (W3C: propagate at least 512).
const MAX_TRACESTATE: usize = 512;

/// The remote parent named by `headers`, if they carry exactly one valid `traceparent`.
pub(crate) fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    // By name, not by `&str`: a `&str` is parsed into a name at each lookup.
    let [parent, _] = &HEADERS;
    let mut values = headers.get_all(parent).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let (trace_id, span_id, flags) = parse(value.as_bytes())?;
    Some(SpanContext::new(trace_id, span_id, flags, true, state(headers)))
}

/// A `traceparent` value: version, trace id, parent id, flags. Lowercase hex only, no zero ids,
/// version `ff` refused; a later version's extra fields are ignored (W3C's forward
/// compatibility), version 00 must be exactly 55 bytes. Only the sampled flag is kept.
fn parse(v: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    if v.len() < 55 || v.len() > MAX_TRACEPARENT {
        return None;
    }
    let version = hex(&v[0..2])?;
    let shape = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    let tail = match version {
        0 => v.len() == 55,
        0xff => false,
        _ => v.len() == 55 || v[55] == b'-',
    };
    if !shape || !tail {
        return None;
    }
    let trace_id = TraceId::from_hex(lower_hex(&v[3..35])?).ok()?;
    let span_id = SpanId::from_hex(lower_hex(&v[36..52])?).ok()?;
    let flags = hex(&v[53..55])?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((trace_id, span_id, TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8())))
}

/// `bytes` as a str when it is all lowercase hex digits.
fn lower_hex(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// Two lowercase hex digits.
fn hex(bytes: &[u8]) -> Option<u8> {
    u8::from_str_radix(lower_hex(bytes)?, 16).ok()
}

/// The request's `tracestate`: its lines joined, when within [`MAX_TRACESTATE`] and well
/// formed (keys and values as W3C spells them, at most 32 members, no duplicate key); else none.
fn state(headers: &HeaderMap) -> TraceState {
    let mut joined = String::new();
    let [_, state] = &HEADERS;
    for v in headers.get_all(state) {
        let Ok(v) = v.to_str() else { return TraceState::NONE };
        if joined.len() + v.len() + 1 > MAX_TRACESTATE {
            return TraceState::NONE;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(v);
    }
    if joined.is_empty() {
        return TraceState::NONE;
    }
    let keys: Vec<&str> = joined
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .map(|m| m.split_once('=').map_or(m, |(k, _)| k))
        .collect();
    let unique = keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k));
    if keys.len() > 32 || !unique {
        return TraceState::NONE;
    }
    joined.parse().unwrap_or(TraceState::NONE)
}

/// A span's W3C context as tier1 carries it: ids as bytes, the sampled flag, and the
/// `tracestate` value ready to forward.
#[derive(Debug, Clone)]
pub(crate) struct SpanCx {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) sampled: bool,
    pub(crate) state: Option<HeaderValue>,
}

impl SpanCx {
    /// The context of the remote span `sc` (what [`extract`] read).
    pub(crate) fn remote(sc: &SpanContext) -> Self {
        let state = sc.trace_state().header();
        Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
            state: if state.is_empty() { None } else { HeaderValue::from_str(&state).ok() },
        }
    }

    /// The `traceparent` and `tracestate` values an upstream request carries for this span.
    pub(crate) fn inject(&self) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut v[3..35]);
        v[35] = b'-';
        hex_into(&self.span_id, &mut v[36..52]);
        v[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        (HeaderValue::from_bytes(&v).ok(), self.state.clone())
    }
}

/// Every byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

/// `bytes` as lowercase hex into `out` (twice as long), a byte's pair at a time.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_the_remote_parent_and_goes_on_with_its_state() {
        let sc = extract(&headers(&[
            (TRACEPARENT, VALID),
            (TRACESTATE, "congo=t61rcWkgMzE"),
            (TRACESTATE, "rojo=00f067aa0ba902b7"),
        ]))
        .unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let (parent, state) = SpanCx::remote(&sc).inject();
        assert_eq!(parent.unwrap(), VALID);
        assert_eq!(state.unwrap(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        // Unsampled; a later version with an extra field; unknown flag bits dropped.
        let sc = extract(&headers(&[(TRACEPARENT, &VALID.replace("-01", "-00"))])).unwrap();
        assert!(!sc.is_sampled());
        let later = format!("{}-what-comes-next", VALID.replacen("00", "01", 1));
        assert!(extract(&headers(&[(TRACEPARENT, &later)])).is_some());
        let sc = extract(&headers(&[(TRACEPARENT, &VALID.replace("-01", "-ff"))])).unwrap();
        assert_eq!(sc.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            &format!("{VALID}-extra"),
            &VALID.to_uppercase(),
            &VALID.replacen("00", "ff", 1),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            &format!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01{}", "x".repeat(300)),
        ];
        for b in bad {
            assert!(extract(&headers(&[(TRACEPARENT, b), (TRACESTATE, "a=b")])).is_none(), "{b:?}");
        }
        // Two traceparent lines: neither is trusted.
        assert!(extract(&headers(&[(TRACEPARENT, VALID), (TRACEPARENT, VALID)])).is_none());
    }

    #[test]
    fn a_malformed_or_oversized_tracestate_is_dropped_not_the_parent() {
        let too_long = ["a", "b", "c"].map(|k| format!("{k}={}", "x".repeat(200))).join(",");
        let too_many = (0..33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        for state in ["no-equals", "UPPER=1", "a=b,a=c", too_long.as_str(), too_many.as_str()] {
            let sc = extract(&headers(&[(TRACEPARENT, VALID), (TRACESTATE, state)])).unwrap();
            assert_eq!(SpanCx::remote(&sc).inject().1, None, "{state:?}");
        }
    }
}
