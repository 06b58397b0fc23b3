//! OpenAI ⇄ Gemini translation (`tier1::testing::translate::gemini`) on arbitrary bytes: chat and
//! embeddings requests, responses, error bodies and the `alt=sse` stream. Nothing may panic;
//! what is translated must be JSON, and a stream must translate the same whatever its split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::translate::gemini;
use tier1_fuzz::{check_json, check_stream};

const MODEL: &str = "gemini-2.5-flash";

fuzz_target!(|data: &[u8]| {
    for stream in [false, true] {
        if let Ok(r) = gemini::request(data, stream) {
            check_json(&r.body);
        }
    }
    if let Ok(r) = gemini::embeddings_request(data, MODEL) {
        check_json(&r.body);
    }
    if let Ok((body, _)) = gemini::response(data, MODEL) {
        check_json(&body);
    }
    if let Ok((body, _)) = gemini::embeddings_response(data, MODEL) {
        check_json(&body);
    }
    check_json(&gemini::error(data));
    for include_usage in [false, true] {
        check_stream(&|| Box::new(gemini::Stream::new(MODEL, include_usage)), data);
    }
});
