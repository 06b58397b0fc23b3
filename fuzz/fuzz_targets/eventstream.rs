//! The AWS event-stream decoder under a Bedrock stream (`tier1::testing::providers::bedrock::ToSse`),
//! on arbitrary bytes: fed in pieces it must write exactly the SSE it writes when fed the stream
//! whole, stop at the same error, and agree on whether the end falls between messages; what
//! it writes must then translate (`translate::bedrock::Stream`) the same whole and split, as
//! SSE with JSON data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::eventstream::{Decoder, Message};
use tier1::testing::providers::bedrock::ToSse;
use tier1::testing::translate::{StreamTranslator, bedrock};
use tier1_fuzz::{check_stream, pieces};

/// The SSE written, the error met, and whether the end falls between messages.
fn transcode(data: &[u8], sizes: &[usize]) -> (Vec<u8>, Option<String>, bool) {
    let mut t = ToSse::new(4096);
    let mut out = Vec::new();
    let mut at = 0;
    for &size in sizes {
        let end = (at + size).min(data.len());
        out.extend(t.feed(&data[at..end]));
        at = end;
    }
    (out, t.failed().map(|e| e.to_string()), t.at_boundary())
}

fuzz_target!(|data: &[u8]| {
    let whole = transcode(data, &[data.len()]);
    assert_eq!(transcode(data, &pieces(data)), whole, "the output depends on the split");
    // What decodes re-encodes to the same bytes.
    let mut d = Decoder::new(4096);
    d.push(data);
    let mut encoded = Vec::new();
    while let Ok(Some(m)) = d.next_message() {
        encoded.extend(Message::encode(&m));
    }
    assert_eq!(&data[..encoded.len()], &encoded[..], "a message does not re-encode to its bytes");
    let make = || -> Box<dyn StreamTranslator> { Box::new(bedrock::Stream::new("m", true)) };
    check_stream(&make, &whole.0);
});
