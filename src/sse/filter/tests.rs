use bytes::Bytes;

use super::Filter;

const PREAMBLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const CONTENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
const MORE: &str = ": keep-alive\n\nevent: ping\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// Feeds `stream` in pieces of `split` bytes and then finishes: all output, and the drops.
fn filtered(stream: &str, split: usize, max: usize) -> (String, u64) {
    let mut f = Filter::new(max);
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(split.max(1)) {
        out.extend_from_slice(&f.feed(&Bytes::copy_from_slice(piece)));
    }
    out.extend_from_slice(&f.finish());
    (String::from_utf8(out).unwrap(), f.dropped())
}

/// The same stream with `\r\n` or `\r` line ends.
fn line_ends(s: &str, eol: &str) -> String {
    s.replace('\n', eol)
}

#[test]
fn whole_well_formed_events_go_out_as_the_same_bytes() {
    let mut f = Filter::new(0);
    let chunk = Bytes::from([PREAMBLE, CONTENT, MORE, DONE].concat());
    let out = f.feed(&chunk);
    assert_eq!(out.as_ptr(), chunk.as_ptr(), "no copy");
    assert_eq!(out.len(), chunk.len());
    assert_eq!(f.dropped(), 0);
    assert!(f.finish().is_empty());
}

#[test]
fn each_malformed_event_is_left_out_exactly_in_any_split_and_line_end() {
    let bad = [
        "data: {\"choices\":[\n\n",
        "data: not json\n\n",
        "data:\n\n",
        "event: message\ndata: {\"a\":1}\ndata: {\"b\":\n\n",
        "data: {\"a\":1} trailing\n\n",
    ];
    for eol in ["\n", "\r\n", "\r"] {
        for b in bad {
            let stream = line_ends(&[PREAMBLE, CONTENT, b, MORE, DONE].concat(), eol);
            let want = line_ends(&[PREAMBLE, CONTENT, MORE, DONE].concat(), eol);
            for split in 1..=stream.len() {
                let (out, dropped) = filtered(&stream, split, 0);
                assert_eq!(out, want, "{b:?} eol {eol:?} split {split}");
                assert_eq!(dropped, 1, "{b:?} eol {eol:?} split {split}");
            }
        }
    }
}

#[test]
fn well_formed_streams_pass_unchanged_in_any_split() {
    // Multi-line JSON data, comments, events without data, `[DONE]` with spaces, blank lines.
    let stream = [
        "\n",
        PREAMBLE,
        "data: {\"choices\":\ndata: []}\n\n",
        ": comment\n\n",
        "id: 7\nretry: 10\n\n",
        CONTENT,
        "data:  [DONE] \n\n\n",
    ]
    .concat();
    for eol in ["\n", "\r\n", "\r"] {
        let stream = line_ends(&stream, eol);
        for split in 1..=stream.len() {
            assert_eq!(filtered(&stream, split, 0), (stream.clone(), 0), "eol {eol:?} split {split}");
        }
    }
    // `\r` then `\n` in the next chunk, where the `\r` ends an event.
    let stream = "data: {}\r\r\ndata: {}\n\ndata: x\r\r\ndata: {}\r\n\r\n";
    for split in 1..=stream.len() {
        let (out, dropped) = filtered(stream, split, 0);
        assert_eq!(dropped, 1, "split {split}");
        assert_eq!(out, "data: {}\r\r\ndata: {}\n\ndata: {}\r\n\r\n", "split {split}");
    }
}

#[test]
fn pseudo_random_splits_drop_only_the_malformed_events() {
    let events: Vec<String> =
        (0..300)
            .map(|i| {
                if i % 37 == 5 {
                    format!("data: {{\"n\":{i}\n\n")
                } else {
                    format!("data: {{\"n\":{i}}}\n\n")
                }
            })
            .collect();
    let stream = events.concat();
    let want: String = events.iter().filter(|e| e.contains('}')).cloned().collect();
    let mut seed = 0x2545_f491_u64;
    for round in 0..30 {
        let mut f = Filter::new(0);
        let (mut out, mut at) = (Vec::new(), 0);
        while at < stream.len() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let end = (at + 1 + (seed >> 33) as usize % 300).min(stream.len());
            out.extend_from_slice(&f.feed(&Bytes::copy_from_slice(&stream.as_bytes()[at..end])));
            at = end;
        }
        out.extend_from_slice(&f.finish());
        assert_eq!(String::from_utf8(out).unwrap(), want, "round {round}");
        assert_eq!(f.dropped(), 8, "round {round}");
    }
}

#[test]
fn an_unfinished_last_event_is_judged_at_the_end_and_left_out_when_the_stream_broke() {
    assert_eq!(
        filtered("data: {\"a\":1}\n\ndata: [DONE]", 4, 0),
        ("data: {\"a\":1}\n\ndata: [DONE]".into(), 0)
    );
    assert_eq!(filtered("data: {\"a\":1}\n\ndata: {\"a\"", 4, 0), ("data: {\"a\":1}\n\n".into(), 1));
    let mut f = Filter::new(0);
    assert_eq!(&f.feed(&Bytes::from_static(b"data: {}\n\ndata: {\"a\":"))[..], b"data: {}\n\n");
    f.abandon();
    assert!(f.finish().is_empty());
    assert_eq!(f.dropped(), 0, "a cut event is not counted as malformed");
}

#[test]
fn an_event_over_the_cap_is_not_held_but_passed_on_unchecked() {
    let big = format!("data: {{\"x\":\"{}\"\n\n", "y".repeat(5000));
    let stream = [CONTENT, big.as_str(), CONTENT].concat();
    for split in [100, 1024, 1500] {
        let mut f = Filter::new(2048);
        let mut most = 0;
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(split) {
            out.extend_from_slice(&f.feed(&Bytes::copy_from_slice(piece)));
            most = most.max(f.held_len);
        }
        assert!(most <= 2048 + split, "split {split}: held {most}");
        assert_eq!(String::from_utf8(out).unwrap(), stream, "split {split}");
        assert_eq!(f.dropped(), 0);
    }
    // Under the cap, the same event is checked.
    assert_eq!(filtered(&stream, 1500, 8192), ([CONTENT, CONTENT].concat(), 1));
}

/// What the relay asks when an OpenAI stream ends without `[DONE]`: did a finish reason go out
/// last (a usage chunk may follow it)? And an error event breaks the stream when asked to.
#[test]
fn the_end_of_an_openai_answer_is_noted_and_an_error_event_breaks_it() {
    let content = Bytes::from_static(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n",
    );
    let stop = Bytes::from_static(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\": \"stop\"}]}\n\n",
    );
    let usage = Bytes::from_static(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n");
    let mut f = Filter::new(0);
    f.feed(&content);
    assert!(!f.finished() && !f.done());
    f.feed(&stop);
    f.feed(&usage);
    assert!(f.finished(), "a finish reason before a usage chunk");
    f.feed(&Bytes::from_static(b"data: [DONE]\n\n"));
    assert!(f.done());
    let mut f = Filter::new(0);
    f.errors_break();
    let error = Bytes::from_static(b"data: {\"error\":{\"message\":\"boom\"}}\n\n");
    let both = Bytes::from([&content[..], &error[..], &content[..]].concat());
    assert_eq!(f.feed(&both), content, "what came before the error goes on, nothing after");
    assert!(f.errored());
    assert!(f.feed(&content).is_empty());
}
