//! The translation API the proxy calls (`tier1::testing::translate::Dialect` and `Translated`), for every
//! dialect and operation, on arbitrary bytes; it covers the Gemini-for-Anthropic chain, which
//! no single module does. Nothing may panic; a stream must translate the same whatever its split.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tier1::testing::providers::Operation;
use tier1::testing::translate::{Dialect, Translated};
use tier1_fuzz::{check_json, check_stream};

const DIALECTS: [Dialect; 6] = [
    Dialect::Anthropic,
    Dialect::Gemini,
    Dialect::OpenAi,
    Dialect::GeminiMessages,
    Dialect::ResponsesAnthropic,
    Dialect::ResponsesGemini,
];
const OPERATIONS: [Operation; 4] =
    [Operation::Chat, Operation::Embeddings, Operation::Messages, Operation::Responses];
const MODEL: &str = "gemini-2.5-flash";

fuzz_target!(|data: &[u8]| {
    for dialect in DIALECTS {
        for operation in OPERATIONS {
            for stream in [false, true] {
                if let Ok(t) = dialect.request(operation, data, MODEL, 1024, stream) {
                    check_json(&t.body);
                }
            }
            for include_usage in [false, true] {
                let t = Translated {
                    dialect,
                    operation,
                    body: Bytes::new(),
                    dropped: Vec::new(),
                    include_usage,
                    echo: Default::default(),
                };
                if let Ok((body, _)) = t.response(data, MODEL) {
                    check_json(&body);
                }
                check_json(&t.error(data, 503));
                // Streams depend on the dialect alone.
                if operation == Operation::Chat {
                    check_stream(&|| t.stream(MODEL), data);
                }
            }
        }
    }
});
