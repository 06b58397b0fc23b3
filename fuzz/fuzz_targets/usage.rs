//! The usage reader (`tier1::testing::json::last_usage`) on arbitrary bytes: it never panics,
//! and where the usage object is plain JSON (no escapes, each count named once) it reads the
//! same counts as a serde pass over it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tier1::testing::json::{Usage, last_usage};

/// The counts serde_json reads from the object, when the object is one whose reading does not
/// depend on key order or escapes.
fn reference(object: &[u8]) -> Option<Option<Usage>> {
    if object.contains(&b'\\') || object.contains(&b'-') {
        return None;
    }
    let mut values = serde_json::Deserializer::from_slice(object).into_iter::<Value>();
    let Some(Ok(Value::Object(o))) = values.next() else { return None };
    let object = &object[..values.byte_offset()];
    let text = String::from_utf8_lossy(object);
    let named = |k: &str| text.matches(&format!("\"{k}\"")).count();
    let pairs = [("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")];
    let details = ("prompt_tokens_details", "input_tokens_details");
    for (a, b) in pairs.iter().chain([&details]) {
        if named(a) + named(b) > 1 {
            return None;
        }
    }
    if named("cache_read_input_tokens") > 1 || named("cached_tokens") > 1 {
        return None;
    }
    let count = |v: Option<&Value>| -> Option<u64> {
        match v {
            None | Some(Value::Null) => Some(0),
            Some(Value::Number(n)) if n.is_u64() && !n.to_string().contains(['.', 'e', 'E']) => n.as_u64(),
            Some(_) => None,
        }
    };
    let read = || -> Option<Usage> {
        let get = |a: &str, b: &str| o.get(a).or_else(|| o.get(b));
        let input = count(get(pairs[0].0, pairs[0].1))?;
        let output = count(get(pairs[1].0, pairs[1].1))?;
        let from_details = match get(details.0, details.1) {
            None | Some(Value::Null) => None,
            Some(Value::Object(d)) => match d.get("cached_tokens") {
                None | Some(Value::Null) => None,
                v => Some(count(v)?),
            },
            Some(_) => return None,
        };
        let cache_read = match o.get("cache_read_input_tokens") {
            None | Some(Value::Null) => None,
            v => Some(count(v)?),
        };
        Some(Usage { input, output, cached: from_details.or(cache_read).unwrap_or(0) })
    };
    Some(read())
}

fuzz_target!(|data: &[u8]| {
    let ours = last_usage(data);
    let key = b"\"usage\"";
    let Some(at) = data.windows(key.len()).rposition(|w| w == key) else {
        assert_eq!(ours, None);
        return;
    };
    let rest = &data[at + key.len()..];
    let Some(open) = rest.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b':')) else { return };
    if let Some(want) = reference(&rest[open..]) {
        assert_eq!(ours, want, "{}", String::from_utf8_lossy(data));
    }
});
