use super::*;

fn chat(system: &str, messages: &[&str]) -> Vec<u8> {
    let mut all = vec![serde_json::json!({"role": "system", "content": system})];
    all.extend(messages.iter().map(|m| serde_json::json!({"role": "user", "content": m})));
    serde_json::json!({"model": "m", "messages": all}).to_string().into_bytes()
}

#[test]
fn a_prompt_hits_the_longest_prefix_its_key_sent_before() {
    let cache = PromptCache::default();
    let first = cache.lookup("k1", &chat("sys", &["one"])).unwrap();
    assert_eq!(first.cached, 0);
    assert!(first.tokens > 0);
    // The next turn repeats the first prompt and adds two messages: the first prompt is cached.
    let second = cache.lookup("k1", &chat("sys", &["one", "two", "three"])).unwrap();
    assert_eq!(second.cached, first.tokens);
    assert!(second.tokens > first.tokens);
    // The same prompt again: all of it.
    let again = cache.lookup("k1", &chat("sys", &["one", "two", "three"])).unwrap();
    assert_eq!(again.cached, again.tokens);
    // A prompt that differs from the first message on shares only the system prompt.
    let other = cache.lookup("k1", &chat("sys", &["uno"])).unwrap();
    let system = cache.lookup("k9", &chat("sys", &[])).unwrap().tokens;
    assert_eq!(other.cached, system);
}

#[test]
fn another_key_has_a_cache_of_its_own() {
    let cache = PromptCache::default();
    let body = chat("sys", &["one", "two"]);
    assert_eq!(cache.lookup("k1", &body).unwrap().cached, 0);
    assert_eq!(cache.lookup("k2", &body).unwrap().cached, 0);
    let p = cache.lookup("k2", &body).unwrap();
    assert_eq!(p.cached, p.tokens);
    assert_eq!(cache.lookup("k1", b"not json"), None);
}

#[test]
fn the_usage_reports_the_cached_tokens_in_each_format() {
    let p = Prompt { tokens: 100, cached: 60 };
    let mut chat =
        serde_json::json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}});
    assert!(patch(&mut chat, p));
    assert_eq!(
        chat["usage"],
        serde_json::json!({"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103,
            "prompt_tokens_details": {"cached_tokens": 60}})
    );
    let mut anthropic = serde_json::json!({"message": {"usage": {"input_tokens": 9, "output_tokens": 1}}});
    assert!(patch(&mut anthropic, p));
    assert_eq!(anthropic["message"]["usage"]["input_tokens"], 40);
    assert_eq!(anthropic["message"]["usage"]["cache_read_input_tokens"], 60);
    let mut responses = serde_json::json!({"response": {"usage": {"input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2, "total_tokens": 11}}});
    assert!(patch(&mut responses, p));
    assert_eq!(responses["response"]["usage"]["input_tokens_details"]["cached_tokens"], 60);
    assert_eq!(responses["response"]["usage"]["total_tokens"], 102);
    let mut delta = serde_json::json!({"type": "message_delta", "usage": {"output_tokens": 4}});
    assert!(!patch(&mut delta, p));
    let frame =
        patch_frame(b"data: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n", p).unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    assert!(text.starts_with("data: {") && text.ends_with("}\n\n"), "{text}");
    assert!(text.contains(r#""cached_tokens":60"#), "{text}");
}
