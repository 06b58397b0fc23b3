//! The nesting guard that runs before simd-json: one pass over the raw bytes.

use super::ScanError;

/// Whether arrays and objects in `b` nest no deeper than `max`: one pass over the bytes that
/// counts brackets outside strings, skips string contents eight bytes at a time, and stops at
/// the first level too deep. An error only for bytes that cannot be JSON where this pass and
/// simd-json could disagree on what is a string: an unterminated string, or a backslash outside
/// one (simd-json reads `\"` as an escaped quote wherever it stands). Public for the benchmark.
pub(crate) fn depth_within(b: &[u8], max: usize) -> Result<bool, ScanError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Ok(false);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => {
                i = string_end(b, i + 1).ok_or(ScanError::NotJson)?;
                continue;
            }
            b'\\' => return Err(ScanError::NotJson),
            _ => {}
        }
        i += 1;
    }
    Ok(true)
}

/// The offset just after the quote that closes the string whose contents start at `i`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Whether any byte of `w` equals `c` (the exact SWAR zero-byte test on `w ^ c…c`).
    let has = |w: u64, c: u8| {
        let x = w ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & (ONES << 7) != 0
    };
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            if has(w, b'"') || has(w, b'\\') {
                break;
            }
            i += 8;
        }
        match b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}
