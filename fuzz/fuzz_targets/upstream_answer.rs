//! The upstream client's HTTP/1.1 answer decoding (`tier1::testing::upstream::decode_answer`: the head
//! parser, and the length, chunked and until-close body decoders) on arbitrary bytes, as a
//! provider's socket could deliver them. Nothing may panic, and any split of the same bytes must
//! decode to the same status and body, or fail the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::upstream::decode_answer;
use tier1_fuzz::pieces;

fuzz_target!(|data: &[u8]| {
    let whole = decode_answer([data]).map_err(|e| e.to_string());
    let mut at = 0;
    let split: Vec<&[u8]> = pieces(data)
        .into_iter()
        .map(|size| {
            let end = (at + size).min(data.len());
            let piece = &data[at..end];
            at = end;
            piece
        })
        .collect();
    let pieced = decode_answer(split).map_err(|e| e.to_string());
    assert_eq!(whole, pieced, "the split changed the answer");
    if let Ok((status, _)) = whole {
        assert!((200..=999).contains(&status), "an interim status was returned: {status}");
    }
});
