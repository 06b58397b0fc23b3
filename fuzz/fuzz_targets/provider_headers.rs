//! Provider answer headers, as a broken or hostile provider could send them: the input is header
//! lines (`name: value`, CRLF-separated). Every value goes through
//! `tier1::testing::resilience::parse_retry_after` against clocks at both ends of time, which must never
//! panic nor return more than its ceiling; the lines, as the head of a chunked answer, go through
//! `tier1::testing::upstream::decode_answer` (the Transfer-Encoding / Content-Length framing decision),
//! which must not panic and must decode any split of the same bytes the same way.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use tier1::testing::resilience::parse_retry_after;
use tier1::testing::upstream::decode_answer;
use tier1_fuzz::pieces;

const MAX: Duration = Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    let clocks = [
        SystemTime::UNIX_EPOCH,
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
        SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799),
    ];
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let value = line.split_once(':').map_or(line, |(_, v)| v);
        for now in clocks {
            if let Some(d) = parse_retry_after(value, now, MAX) {
                assert!(d <= MAX, "Retry-After {value:?} gave {d:?}, over the ceiling");
            }
        }
    }
    let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
    answer.extend_from_slice(data);
    answer.extend_from_slice(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let whole = decode_answer([&answer[..]]).map_err(|e| e.to_string());
    let mut at = 0;
    let split: Vec<&[u8]> = pieces(&answer)
        .into_iter()
        .map(|size| {
            let end = (at + size).min(answer.len());
            let piece = &answer[at..end];
            at = end;
            piece
        })
        .collect();
    assert_eq!(whole, decode_answer(split).map_err(|e| e.to_string()), "the split changed the answer");
});
