//! The request fast path (`tier1::testing::json::scan`, then `Scanned::splice`) on arbitrary bytes, for
//! every schema. Input: `body`, or `body NUL model` to choose the upstream model name (JSON never
//! holds a raw NUL). Whatever `scan` accepts, `splice` must turn into JSON equal to the input
//! with `model` replaced, `fallbacks` removed and, when forced, `stream` set to true.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tier1::testing::json::{Schema, scan};

/// The body as a map, duplicate keys resolved the way most upstream parsers do (the last wins);
/// `None` for what serde_json refuses and simd-json takes (lone surrogates, numbers out of range).
fn parse(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let (body, model) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..]).into_owned()),
        None => (data, "upstream/m\u{e9}\"del\\\u{1}".to_owned()),
    };
    let bytes = Bytes::copy_from_slice(body);
    for schema in [Schema::Chat, Schema::Embeddings, Schema::Messages] {
        let Ok(scanned) = scan(body, schema) else { continue };
        let original = parse(body);
        if let Some(original) = &original {
            assert_eq!(original.get("model").and_then(Value::as_str), Some(scanned.model.as_str()));
        }
        for force_stream in [false, true] {
            let out = scanned.splice(&bytes, &model, force_stream);
            assert!(
                simd_json::to_borrowed_value(&mut out.to_vec()).is_ok(),
                "splice wrote invalid JSON: {}",
                String::from_utf8_lossy(&out)
            );
            if let Some(original) = &original {
                let mut want = original.clone();
                want.insert("model".to_owned(), Value::from(model.as_str()));
                want.remove("fallbacks");
                if force_stream {
                    want.insert("stream".to_owned(), Value::Bool(true));
                }
                assert_eq!(parse(&out), Some(want), "splice changed more than model/stream/fallbacks");
            }
            if !model.is_empty() {
                // What tier1 forwards must pass its own scan again, naming the new model.
                let again = scan(&out, schema).unwrap_or_else(|e| panic!("spliced body refused: {e}"));
                assert_eq!(again.model, model);
                assert!(again.fallbacks.is_empty());
                if force_stream {
                    assert_eq!(again.stream, Some(true));
                }
            }
        }
    }
});
