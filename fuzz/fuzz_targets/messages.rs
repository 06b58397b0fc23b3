//! Anthropic ingress ⇄ OpenAI translation (`tier1::testing::translate::messages`) on arbitrary bytes:
//! the input is tried as a request, a response, an error body and a stream. Nothing may panic;
//! what is translated must be JSON, and a stream must translate the same whatever its split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::translate::messages;
use tier1_fuzz::{check_json, check_stream};

fuzz_target!(|data: &[u8]| {
    for stream in [false, true] {
        if let Ok(r) = messages::request(data, "gpt-4o", stream) {
            check_json(&r.body);
        }
    }
    if let Ok((body, _)) = messages::response(data, "gpt-4o") {
        check_json(&body);
    }
    for status in [400, 429, 500, 529] {
        check_json(&messages::error(data, status));
    }
    check_stream(&|| Box::new(messages::Stream::new("gpt-4o")), data);
});
