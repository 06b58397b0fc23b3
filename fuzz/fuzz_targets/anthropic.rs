//! OpenAI ⇄ Anthropic translation (`tier1::testing::translate::anthropic`) on arbitrary bytes: the
//! input is tried as a request, a response, an error body and a stream. Nothing may panic; what
//! is translated must be JSON, and a stream must translate the same whatever its split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::translate::anthropic;
use tier1_fuzz::{check_json, check_stream};

fuzz_target!(|data: &[u8]| {
    for stream in [false, true] {
        if let Ok(r) = anthropic::request(data, "claude-sonnet-4-5", 4096, stream) {
            check_json(&r.body);
        }
    }
    if let Ok((body, _)) = anthropic::response(data) {
        check_json(&body);
    }
    check_json(&anthropic::error(data));
    for include_usage in [false, true] {
        check_stream(&|| Box::new(anthropic::Stream::new(include_usage)), data);
    }
});
