//! The request fast path of `tier1::testing::json`: `scan` (simd-json validation, spans of `model` and
//! `stream`) and `splice` (the upstream model written into the original bytes), on a small chat
//! body (~300 B) and a 50 KB prompt body.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tier1::testing::json::{Schema, scan};

/// A typical small chat request (~300 bytes).
fn small_body() -> Bytes {
    Bytes::from_static(
        br#"{"model":"smart","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"What is the capital of France? Answer in one word, then give one fact about it."}],"temperature":0.2,"max_tokens":256,"stream":false,"user":"user-1234","metadata":{"team":"search"}}"#,
    )
}

/// A long-context request of about 50 KB: a system prompt, a pasted document, a short history.
fn large_body() -> Bytes {
    let paragraph = "The quick brown fox jumps over the lazy dog; \\\"quoted\\\" text, unicode é ü 漢字, \
                     and a newline\\n appear here as a real prompt would carry them. ";
    let mut document = String::new();
    while document.len() < 48 * 1024 {
        document.push_str(paragraph);
    }
    let body = format!(
        r#"{{"model":"smart","messages":[{{"role":"system","content":"You summarise documents."}},{{"role":"user","content":"Summarise this:\n{document}"}},{{"role":"assistant","content":"Which aspect?"}},{{"role":"user","content":"The main argument."}}],"temperature":0.7,"max_completion_tokens":1024,"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    Bytes::from(body)
}

fn bench_body(c: &mut Criterion, label: &str, body: &Bytes) {
    let mut group = c.benchmark_group(format!("json_{label}"));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan", |b| b.iter(|| scan(black_box(body), Schema::Chat).unwrap()));
    let scanned = scan(body, Schema::Chat).unwrap();
    group.bench_function("splice", |b| {
        b.iter(|| scanned.splice(black_box(body), black_box("gpt-4o-2024-08-06"), false));
    });
    group.bench_function("splice_unchanged", |b| {
        b.iter(|| scanned.splice(black_box(body), black_box("smart"), false));
    });
    group.bench_function("scan_and_splice", |b| {
        b.iter(|| {
            let s = scan(black_box(body), Schema::Chat).unwrap();
            s.splice(body, "gpt-4o-2024-08-06", false)
        });
    });
    group.finish();
}

fn json(c: &mut Criterion) {
    let small = small_body();
    let large = large_body();
    // The bodies are what they claim to be.
    assert!((250..400).contains(&small.len()), "{}", small.len());
    assert!((48 * 1024..56 * 1024).contains(&large.len()), "{}", large.len());
    let spliced = scan(&large, Schema::Chat).unwrap().splice(&large, "gpt-4o-2024-08-06", false);
    assert!(spliced.starts_with(br#"{"model":"gpt-4o-2024-08-06","#));
    bench_body(c, "small_300B", &small);
    bench_body(c, "large_50KB", &large);
}

criterion_group!(benches, json);
criterion_main!(benches);
