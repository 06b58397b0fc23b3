//! SSE parsing and translation. The commit judge (`proxy::sse::CommitScanner`) on a 200-chunk
//! OpenAI stream, and each stream translator (Anthropic → OpenAI chunks, Gemini → OpenAI chunks,
//! OpenAI → Anthropic events) on a 200-word answer in its provider's own format, fed in pieces
//! of one TCP segment (1,460 B) and one event at a time (a live stream's pace).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tier1::testing::json::is_json;
use tier1::testing::mock;
use tier1::testing::proxy::sse::{CommitScanner, Verdict};
use tier1::testing::sse::Filter;
use tier1::testing::translate::{StreamTranslator, anthropic, gemini, messages};

/// One TCP segment's payload.
const SEGMENT: usize = 1_460;

/// A 200-word answer: 200 content chunks in an OpenAI stream.
fn reply() -> String {
    (0..200).map(|i| format!("word{i} ")).collect()
}

fn join(frames: &VecDeque<Bytes>) -> Vec<u8> {
    frames.iter().flat_map(|b| b.iter().copied()).collect()
}

fn judge(c: &mut Criterion) {
    let frames = mock::stream_frames("gpt-4o", &reply(), 1, true);
    assert!(frames.len() >= 200, "{}", frames.len());
    let whole = join(&frames);
    let mut group = c.benchmark_group("sse_judge");
    // The hot path: read a stream until its commit point (the first content chunk).
    group.bench_function("until_commit_1460B_pieces", |b| {
        b.iter(|| {
            let mut s = CommitScanner::default();
            for piece in black_box(&whole).chunks(SEGMENT) {
                if s.feed(piece) != Verdict::Pending {
                    break;
                }
            }
            s.events()
        });
    });
    // Every event of the stream judged (an upper bound: each one parsed and classified).
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("every_event_of_200_chunks", |b| {
        b.iter(|| {
            let mut commits = 0;
            for frame in black_box(&frames) {
                let mut s = CommitScanner::default();
                commits += usize::from(s.feed(frame) == Verdict::Commit);
            }
            commits
        });
    });
    group.finish();
}

/// Feeds `input` to a fresh translator in `pieces`, returning the output length.
fn run(make: &dyn Fn() -> Box<dyn StreamTranslator>, pieces: &[&[u8]]) -> usize {
    let mut t = make();
    let mut out = 0;
    for piece in pieces {
        out += t.feed(piece).len();
    }
    debug_assert!(t.complete());
    out
}

fn translator(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: &dyn Fn() -> Box<dyn StreamTranslator>,
    frames: &VecDeque<Bytes>,
) {
    let whole = join(frames);
    let segments: Vec<&[u8]> = whole.chunks(SEGMENT).collect();
    let events: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    // The stream translates whole, whichever the pieces.
    let mut t = make();
    for piece in &segments {
        t.feed(piece);
    }
    assert!(t.complete(), "{name}");
    group.throughput(Throughput::Bytes(whole.len() as u64));
    group.bench_function(format!("{name}/1460B_pieces"), |b| b.iter(|| run(make, black_box(&segments))));
    group.bench_function(format!("{name}/per_event"), |b| b.iter(|| run(make, black_box(&events))));
}

fn translators(c: &mut Criterion) {
    let reply = reply();
    let mut group = c.benchmark_group("sse_translate");
    translator(
        &mut group,
        "anthropic_to_openai",
        &|| Box::new(anthropic::Stream::new(true)),
        &mock::anthropic_frames("claude-sonnet-4-5", &reply, 1),
    );
    translator(
        &mut group,
        "gemini_to_openai",
        &|| Box::new(gemini::Stream::new("gemini-2.5-flash", true)),
        &mock::gemini_frames("gemini-2.5-flash", &reply, 1),
    );
    translator(
        &mut group,
        "openai_to_anthropic",
        &|| Box::new(messages::Stream::new("gpt-4o")),
        &mock::stream_frames("gpt-4o", &reply, 1, true),
    );
    group.finish();
}

/// The event filter of a stream relayed as is (issue 19 item 6): every event's `data:` checked
/// as JSON, the bytes passed on untouched. Per stream: the 204 events of a 200-word answer, one
/// chunk per event (a live stream's pace) or in 1,460 B pieces (events split across chunks,
/// held and joined). `validate_only` is the JSON check alone on each event's data; `clone_only`
/// what the relay did per chunk before the filter (a `Bytes` clone), as the floor.
fn filter(c: &mut Criterion) {
    let frames = mock::stream_frames("gpt-4o", &reply(), 1, true);
    let whole = Bytes::from(join(&frames));
    let segments: Vec<Bytes> = (0..whole.len())
        .step_by(SEGMENT)
        .map(|at| whole.slice(at..(at + SEGMENT).min(whole.len())))
        .collect();
    let datas: Vec<&[u8]> =
        frames.iter().map(|f| f.strip_prefix(b"data: ").unwrap_or(f).trim_ascii()).collect();
    let run = |pieces: &[Bytes]| {
        let mut f = Filter::new(1 << 20);
        let mut out = 0;
        for piece in pieces {
            out += f.feed(piece).len();
        }
        out += f.finish().len();
        assert_eq!(f.dropped(), 0);
        out
    };
    let events: Vec<Bytes> = frames.iter().cloned().collect();
    assert_eq!(run(&events), whole.len());
    assert_eq!(run(&segments), whole.len());
    let mut group = c.benchmark_group("sse_filter");
    group.throughput(Throughput::Bytes(whole.len() as u64));
    group.bench_function("per_event", |b| b.iter(|| run(black_box(&events))));
    group.bench_function("1460B_pieces", |b| b.iter(|| run(black_box(&segments))));
    group.bench_function("validate_only", |b| {
        b.iter(|| black_box(&datas).iter().filter(|d| is_json(d)).count())
    });
    group.bench_function("clone_only", |b| {
        b.iter(|| black_box(&events).iter().map(|e| e.clone().len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(benches, judge, translators, filter);
criterion_main!(benches);
