//! Helpers shared by the fuzz targets: split points derived from the input, feeding a stream
//! translator whole or in pieces, and the oracles the targets assert.
//!
//! Fuzz targets may panic on purpose: a failed assertion is how libFuzzer learns of a bug.

use tier1::testing::translate::{StreamTranslator, unstamped};

/// Piece sizes for feeding `data` in chunks, derived from the input itself (FNV-1a seeding an
/// xorshift), so every input gets its own reproducible split and the fuzzer moves it by mutating.
pub fn pieces(data: &[u8]) -> Vec<usize> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut next = move || {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        h
    };
    // Mostly tiny pieces (they cut `\r\n`, `data:` and UTF-8 sequences), sometimes large ones.
    let max = [1, 2, 3, 7, 16, 64, 256][(next() % 7) as usize];
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < data.len() {
        let size = 1 + (next() % max) as usize;
        sizes.push(size);
        total += size;
    }
    sizes
}

/// Feeds `data` to `t` in `sizes` pieces and returns everything it wrote.
pub fn feed(t: &mut dyn StreamTranslator, data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &size in sizes {
        let end = (at + size).min(data.len());
        out.extend(t.feed(&data[at..end]));
        at = end;
    }
    out
}

/// Checks one stream translator: fed whole and fed in pieces, it writes the same bytes, ends
/// in the same state and reports the same usage; every event it writes is SSE with JSON data.
pub fn check_stream(make: &dyn Fn() -> Box<dyn StreamTranslator>, data: &[u8]) {
    let mut whole = make();
    let want = whole.feed(data);
    let mut split = make();
    let got = feed(split.as_mut(), data, &pieces(data));
    assert_eq!(unstamped(&got), unstamped(&want), "output depends on how the stream was split");
    assert_eq!(split.complete(), whole.complete());
    assert_eq!(split.usage(), whole.usage());
    check_sse_json(&want);
}

/// Every event of a translator's output is `event:`/`data:` lines whose data is JSON or `[DONE]`.
pub fn check_sse_json(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("translator output is not UTF-8");
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        for line in event.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data != "[DONE]" {
                    serde_json::from_str::<serde_json::Value>(data)
                        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
                }
            } else {
                assert!(line.starts_with("event: "), "not an SSE line: {line:?}");
            }
        }
    }
}

/// Asserts `body` is JSON (what a translator hands on must parse).
pub fn check_json(body: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(body) {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(body));
    }
}
