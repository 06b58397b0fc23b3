use bytes::Bytes;

use super::*;

fn chat(body: &str) -> Result<Scanned, ScanError> {
    scan(body.as_bytes(), Schema::Chat)
}

#[test]
fn finds_model_and_stream() {
    let s = chat(r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#)
        .unwrap();
    assert_eq!(s.model, "openai/gpt-4o");
    assert_eq!(s.stream, Some(true));
    let s = chat(r#"{"messages":[],"model":"m","stream":null}"#).unwrap();
    assert_eq!(s.stream, None);
}

#[test]
fn spans_skip_nested_values_and_brackets_inside_strings() {
    let raw = " {\n \"messages\" : [ {\"role\":\"user\",\"content\":\"} ] { [ \\\" ,\"} ], \"extra\": [1, [2, {\"x\": null}]] ,\n\t\"n\" : 1 ,\"stream\"\t: false , \"model\" :\"m\"\r\n}";
    let s = chat(raw).unwrap();
    assert_eq!((s.model.as_str(), s.stream), ("m", Some(false)));
    assert_eq!(&raw[s.spans.model.clone()], "\"m\"");
    assert_eq!(&raw[s.spans.stream.clone().unwrap()], "false");
    let out = s.splice(&Bytes::from(raw), "up/x", false);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(raw).unwrap();
    want["model"] = "up/x".into();
    assert_eq!(v, want);
}

#[test]
fn splice_keeps_everything_else() {
    let raw = "{ \"messages\" : [{\"role\":\"user\",\"content\":\"a \\\"model\\\": x\"}],\n \"model\" : \"openrouter/meta-llama/llama-3.3-70b\", \"temperature\":0.5 }";
    let s = chat(raw).unwrap();
    let out = s.splice(&Bytes::from(raw), "meta-llama/llama-3.3-70b", false);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        raw.replace("openrouter/meta-llama/llama-3.3-70b", "meta-llama/llama-3.3-70b")
    );
}

#[test]
fn unchanged_body_is_not_copied() {
    let raw = Bytes::from(r#"{"model":"gpt-4o","messages":[]}"#);
    let s = scan(&raw, Schema::Chat).unwrap();
    let out = s.splice(&raw, "gpt-4o", false);
    assert_eq!(out.as_ptr(), raw.as_ptr());
}

#[test]
fn force_stream_inserts_or_replaces() {
    let raw = Bytes::from(r#"{"model":"a","messages":[]}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "b", true);
    assert_eq!(&out[..], br#"{"stream":true,"model":"b","messages":[]}"#);
    let raw = Bytes::from(r#"{"model":"a","messages":[],"stream":null}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", true);
    assert_eq!(&out[..], br#"{"model":"a","messages":[],"stream":true}"#);
}

#[test]
fn fallbacks_are_read_and_cut_out() {
    for (raw, want) in [
        (r#"{"model":"a","fallbacks":["b","c/d"],"messages":[]}"#, r#"{"model":"x","messages":[]}"#),
        (r#"{"model":"a","messages":[], "fallbacks" : ["b","c/d"] }"#, r#"{"model":"x","messages":[] }"#),
        (r#"{"fallbacks":["b","c/d"], "model":"a","messages":[]}"#, r#"{"model":"x","messages":[]}"#),
    ] {
        let s = chat(raw).unwrap();
        assert_eq!(s.fallbacks, ["b", "c/d"]);
        let out = s.splice(&Bytes::from(raw), "x", false);
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
    }
    assert!(matches!(
        chat(r#"{"model":"a","messages":[],"fallbacks":"b"}"#),
        Err(ScanError::WrongType { .. })
    ));
    assert!(matches!(
        chat(r#"{"model":"a","messages":[],"fallbacks":[""]}"#),
        Err(ScanError::WrongType { .. })
    ));
    let raw = Bytes::from(r#"{"model":"a","messages":[],"fallbacks":[]}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", false);
    assert_eq!(&out[..], br#"{"model":"a","messages":[]}"#);
}

#[test]
fn force_stream_with_fallbacks_first() {
    // Regression (found by fuzzing): the insertion and the cut both start after `{`; sorted
    // by start alone, the cut came first and the insertion sliced backwards (a panic).
    let raw = Bytes::from(r#"{"fallbacks":["b"], "model":"a","messages":[]}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "x", true);
    assert_eq!(&out[..], br#"{"stream":true,"model":"x","messages":[]}"#);
    let raw = Bytes::from(r#"{"fallbacks":[],"model":"a","messages":[],"stream":false}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "a", true);
    assert_eq!(&out[..], br#"{"model":"a","messages":[],"stream":true}"#);
}

#[test]
fn splice_escapes_model() {
    let raw = Bytes::from(r#"{"model":"x","messages":[]}"#);
    let out = scan(&raw, Schema::Chat).unwrap().splice(&raw, "we\"ird", false);
    assert_eq!(&out[..], br#"{"model":"we\"ird","messages":[]}"#);
}

/// A chat body with `depth` levels in all (its own object included).
fn nested(depth: usize, open: char, close: char) -> String {
    let mut v = String::from("1");
    for _ in 0..depth - 2 {
        v = if open == '{' { format!("{{\"k\":{v}}}") } else { format!("{open}{v}{close}") };
    }
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"x":[{v}]}}"#)
}

#[test]
fn nesting_beyond_the_limit_is_refused_before_parsing() {
    for (open, close) in [('[', ']'), ('{', '}')] {
        let ok = nested(MAX_DEPTH, open, close);
        assert_eq!(depth_within(ok.as_bytes(), MAX_DEPTH), Ok(true));
        assert!(chat(&ok).is_ok(), "{open}: {MAX_DEPTH} levels are accepted");
        // What the translated paths parse again, serde_json, accepts it too.
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok(), "{open}");
        let deeper = nested(MAX_DEPTH + 1, open, close);
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err(), "{open}: the same limit");
        assert_eq!(chat(&nested(MAX_DEPTH + 1, open, close)), Err(ScanError::TooDeep), "{open}");
    }
    // Far too deep, and unbalanced: refused at level 128 without reading the rest.
    let mut deep = String::from(r#"{"model":"m","messages":[],"x":"#);
    deep.extend(std::iter::repeat_n('[', 1_000_000));
    assert_eq!(chat(&deep), Err(ScanError::TooDeep));
    assert_eq!(ScanError::TooDeep.code(), "json_too_deep");
    assert!(ScanError::TooDeep.to_string().contains("127"));
}

#[test]
fn depth_counts_only_brackets_outside_strings() {
    let brackets = "[".repeat(300);
    let quoted =
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{brackets} \" {brackets} \\"}}]}}"#);
    assert_eq!(depth_within(quoted.as_bytes(), MAX_DEPTH), Ok(true));
    assert!(chat(&quoted).is_ok());
    // Every alignment of a quote or backslash against the eight-byte skip.
    for pad in 0..17 {
        let s = format!(r#"["{}\"[[[", [[1]]]"#, "a".repeat(pad));
        assert_eq!(depth_within(s.as_bytes(), 3), Ok(true), "{s}");
        assert_eq!(depth_within(s.as_bytes(), 2), Ok(false), "{s}");
        let s = format!(r#"["{}\\", [[1]]]"#, "é".repeat(pad));
        assert_eq!(depth_within(s.as_bytes(), 3), Ok(true), "{s}");
        assert_eq!(depth_within(s.as_bytes(), 2), Ok(false), "{s}");
    }
    // Where simd-json could see strings elsewhere: a backslash outside a string (simd-json
    // takes `\"` as escaped wherever it is) and an unterminated string are not JSON.
    let sneaky = format!(r#"{{"model":"m","messages":[],"x":\"{}"#, "[".repeat(1000));
    assert_eq!(chat(&sneaky), Err(ScanError::NotJson));
    assert_eq!(depth_within(br#"{"a":"unterminated"#, MAX_DEPTH), Err(ScanError::NotJson));
}

#[test]
fn fallbacks_beyond_the_cap_are_refused() {
    let raw = r#"{"model":"a","messages":[],"fallbacks":["b","c","d"]}"#;
    assert_eq!(scan_capped(raw.as_bytes(), Schema::Chat, 3).unwrap().fallbacks, ["b", "c", "d"]);
    let e = scan_capped(raw.as_bytes(), Schema::Chat, 2).unwrap_err();
    assert_eq!(e, ScanError::TooManyFallbacks { given: 3, max: 2 });
    assert_eq!((e.code(), e.param()), ("too_many_fallbacks", Some("fallbacks")));
    assert!(scan_capped(raw.as_bytes(), Schema::Messages, 0).is_err());
}

#[test]
fn refuses_bad_bodies() {
    assert_eq!(chat("{nope"), Err(ScanError::NotJson));
    assert_eq!(chat("[1]"), Err(ScanError::NotObject));
    assert_eq!(chat(r#"{"messages":[]}"#), Err(ScanError::Missing("model")));
    assert_eq!(chat(r#"{"model":"m"}"#), Err(ScanError::Missing("messages")));
    assert!(matches!(chat(r#"{"model":5,"messages":[]}"#), Err(ScanError::WrongType { field: "model", .. })));
    assert!(matches!(
        chat(r#"{"model":"m","messages":{}}"#),
        Err(ScanError::WrongType { field: "messages", .. })
    ));
    assert!(matches!(
        chat(r#"{"model":"m","messages":[],"stream":"yes"}"#),
        Err(ScanError::WrongType { field: "stream", .. })
    ));
    assert!(matches!(
        chat(r#"{"model":"m","messages":[],"max_tokens":-1}"#),
        Err(ScanError::WrongType { field: "max_tokens", .. })
    ));
    assert_eq!(chat(r#"{"model":"a","model":"b","messages":[]}"#), Err(ScanError::Duplicate("model")));
    assert_eq!(chat(r#"{"mod\u0065l":"a","model":"b","messages":[]}"#), Err(ScanError::Duplicate("model")));
    assert_eq!(scan(br#"{"model":"e"}"#, Schema::Embeddings), Err(ScanError::Missing("input")));
    assert!(scan(br#"{"model":"e","input":["a","b"]}"#, Schema::Embeddings).is_ok());
}

#[test]
fn responses_bodies_need_a_model_and_take_input_as_text_or_items() {
    let scan = |body: &str| scan(body.as_bytes(), Schema::Responses);
    let raw = r#"{"model":"up/gpt-4o","input":"hi","stream":true,"max_output_tokens":64}"#;
    let s = scan(raw).unwrap();
    assert_eq!((s.model.as_str(), s.stream, s.max_tokens), ("up/gpt-4o", Some(true), Some(64)));
    let out = s.splice(&Bytes::from(raw), "gpt-4o", false);
    assert_eq!(&out[..], raw.replace("up/gpt-4o", "gpt-4o").as_bytes());
    assert!(scan(r#"{"model":"m","input":[{"role":"user","content":"hi"}]}"#).is_ok());
    // A stored prompt or a previous response may carry the input.
    assert!(scan(r#"{"model":"m","previous_response_id":"resp_1"}"#).is_ok());
    assert_eq!(scan(r#"{"input":"hi"}"#), Err(ScanError::Missing("model")));
    assert_eq!(
        scan(r#"{"model":"m","input":3}"#),
        Err(ScanError::WrongType { field: "input", want: "a string or an array" })
    );
    assert_eq!(
        scan(r#"{"model":"m","input":"hi","stream":"yes"}"#),
        Err(ScanError::WrongType { field: "stream", want: "a boolean" })
    );
}

#[test]
fn end_of_value_finds_the_end_of_each_kind_of_value() {
    use super::spans::end_of_value as value_end;
    let b = br#"[{"a":"}\"]","b":[1,{}]}, "x\"y" ,12 ,true]"#;
    let obj = value_end(b, 1);
    assert_eq!(&b[1..obj], br#"{"a":"}\"]","b":[1,{}]}"#);
    let s = value_end(b, obj + 2);
    assert_eq!(&b[obj + 2..s], br#""x\"y""#);
    let n = value_end(b, s + 2);
    assert_eq!(&b[s + 2..n], b"12 ");
    // Cut short: the length.
    assert_eq!(value_end(br#"{"a":[1,2"#, 0), 9);
}
