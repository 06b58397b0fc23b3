//! Request and response translation through the `Dialect` API: OpenAI chat → Anthropic Messages,
//! OpenAI chat → Gemini, Anthropic Messages → OpenAI chat, and each provider's full answer back,
//! on realistic bodies (a multi-turn conversation with a tool call and its result, and answers
//! shaped like the providers' own, from the mock provider's generators).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tier1::testing::mock;
use tier1::testing::providers::Operation;
use tier1::testing::translate::Dialect;

/// A reply of about 120 words.
fn reply() -> String {
    "Paris is the capital of France and its largest city, with about two million people in the \
     city proper and over twelve million in the metropolitan area. It sits on the Seine in the \
     north of the country. Known for the Eiffel Tower, the Louvre and its cafés, it has been a \
     centre of finance, diplomacy, commerce, fashion and science for centuries. The city hosted \
     the Summer Olympics in 1900, 1924 and 2024. Its public transport network, the Métro, opened \
     in 1900 and carries more than four million passengers a day. The weather today is mild, \
     with light rain expected in the evening and temperatures around fourteen degrees."
        .to_owned()
}

/// An OpenAI chat request: system prompt, three turns, an assistant tool call and its result,
/// one tool definition, sampling parameters (~1.2 KB).
fn openai_request() -> Vec<u8> {
    serde_json::json!({
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You are a helpful travel assistant. Answer briefly and cite sources when you can."},
            {"role": "user", "content": "I am going to Paris next week. What should I pack?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":7}"}}]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": "{\"forecast\":[\"rain\",\"cloudy\",\"sun\",\"sun\",\"rain\",\"cloudy\",\"sun\"],\"high_c\":16,\"low_c\":8}"},
            {"role": "assistant", "content": "Expect mixed weather: pack a light raincoat, layers and comfortable walking shoes."},
            {"role": "user", "content": [
                {"type": "text", "text": "Thanks! And what about this outfit?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/outfit.jpg"}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["city"]}}}],
        "tool_choice": "auto",
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 1024,
        "stop": ["\n\nUser:"],
        "user": "user-42",
        "stream": false
    })
    .to_string()
    .into_bytes()
}

/// The same conversation as an Anthropic Messages request.
fn anthropic_request() -> Vec<u8> {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are a helpful travel assistant. Answer briefly and cite sources when you can.",
        "messages": [
            {"role": "user", "content": "I am going to Paris next week. What should I pack?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                "input": {"city": "Paris", "days": 7}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                "content": "{\"forecast\":[\"rain\",\"cloudy\",\"sun\",\"sun\",\"rain\",\"cloudy\",\"sun\"],\"high_c\":16,\"low_c\":8}"}]},
            {"role": "assistant", "content": "Expect mixed weather: pack a light raincoat, layers and comfortable walking shoes."},
            {"role": "user", "content": [
                {"type": "text", "text": "Thanks! And what about this outfit?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/outfit.jpg"}}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather forecast for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["city"]}}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.7,
        "top_p": 0.95,
        "stop_sequences": ["\n\nUser:"],
        "metadata": {"user_id": "user-42"},
        "stream": false
    })
    .to_string()
    .into_bytes()
}

fn requests(c: &mut Criterion) {
    let openai = openai_request();
    let anthropic = anthropic_request();
    let mut group = c.benchmark_group("translate_request");
    group.throughput(Throughput::Bytes(openai.len() as u64));
    group.bench_function("openai_to_anthropic", |b| {
        b.iter(|| {
            Dialect::Anthropic
                .request(Operation::Chat, black_box(&openai), "claude-sonnet-4-5", 4096, false)
                .unwrap()
        });
    });
    group.bench_function("openai_to_gemini", |b| {
        b.iter(|| {
            Dialect::Gemini
                .request(Operation::Chat, black_box(&openai), "gemini-2.5-flash", 0, false)
                .unwrap()
        });
    });
    group.throughput(Throughput::Bytes(anthropic.len() as u64));
    group.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            Dialect::OpenAi.request(Operation::Messages, black_box(&anthropic), "gpt-4o", 0, false).unwrap()
        });
    });
    group.finish();
}

fn responses(c: &mut Criterion) {
    let openai = openai_request();
    let anthropic = anthropic_request();
    let reply = reply();
    let to_anthropic =
        Dialect::Anthropic.request(Operation::Chat, &openai, "claude-sonnet-4-5", 4096, false).unwrap();
    let to_gemini = Dialect::Gemini.request(Operation::Chat, &openai, "gemini-2.5-flash", 0, false).unwrap();
    let to_openai = Dialect::OpenAi.request(Operation::Messages, &anthropic, "gpt-4o", 0, false).unwrap();
    let cases = [
        (
            "anthropic_to_openai",
            &to_anthropic,
            mock::anthropic_json("claude-sonnet-4-5", &reply, 1),
            "claude-sonnet-4-5",
        ),
        (
            "gemini_to_openai",
            &to_gemini,
            mock::gemini_json("gemini-2.5-flash", &reply, 1),
            "gemini-2.5-flash",
        ),
        ("openai_to_anthropic", &to_openai, mock::completion_json("gpt-4o", &reply, 1), "gpt-4o"),
        (
            "anthropic_tool_call_to_openai",
            &to_anthropic,
            mock::tools::anthropic_json("claude-sonnet-4-5", "get_weather", 1),
            "claude-sonnet-4-5",
        ),
    ];
    let mut group = c.benchmark_group("translate_response");
    for (name, translated, raw, model) in &cases {
        let (_, usage) = translated.response(raw, model).unwrap();
        assert!(usage.is_some(), "{name}: the answer carries usage");
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(*name, |b| b.iter(|| translated.response(black_box(raw), model).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, requests, responses);
criterion_main!(benches);
