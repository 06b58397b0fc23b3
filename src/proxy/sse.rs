//! Reading an OpenAI SSE stream up to its commit point: the first event that carries content, a
//! tool call or a finish reason. Until then tier1 may still retry or fall back invisibly; the
//! role-only preamble (`{"delta":{"role":"assistant","content":""}}`) does not commit. An
//! `{"error":...}` event before the commit is a failure like an error status, and so is an event
//! whose `data:` is not JSON.
//!
//! A Responses API stream (typed `response.*` events) commits at its first output: a delta, an
//! output item with content or a function call, a done or terminal event; never at
//! `response.created`, `response.in_progress`, or an empty message item or text part. Its
//! `error` and `response.failed` events before the commit are failures.
//!
//! Handles events split across reads, `\r\n` and `\r` line ends, multi-line `data:` fields and
//! comments. Only the bytes before the commit are inspected; after it the stream is relayed as is.

use crate::error::Class;
use crate::sse::{Events, classify_error, data_of, is_done};

/// What the events so far mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing that commits yet.
    Pending,
    /// The answer began: relay it.
    Commit,
    /// The provider sent an error event.
    Error(Class),
}

/// Incremental scanner over the raw bytes of a stream.
#[derive(Debug, Default)]
pub struct CommitScanner {
    /// Bytes of the event being received (kept only until it is complete).
    pending: Events,
    /// Complete events seen.
    events: usize,
}

impl CommitScanner {
    /// Complete events seen so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Verdict {
        self.pending.push(chunk);
        while let Some(event) = self.pending.next_event() {
            if event.is_empty() {
                // A blank line alone is no event (the `\n` of a `\r\n` split after the `\r`).
                continue;
            }
            let verdict = judge(event);
            self.events += 1;
            if verdict != Verdict::Pending {
                return verdict;
            }
        }
        Verdict::Pending
    }
}

/// Judges one complete event's text.
fn judge(event: &[u8]) -> Verdict {
    let Some(data) = data_of(event) else { return Verdict::Pending };
    if is_done(&data) {
        return Verdict::Commit;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
        // Not JSON (an empty `data:` included): a strict client would give up on the stream
        // here, so before the commit it is a broken answer, tried elsewhere like a close (after
        // it, the relay drops such events: see `crate::sse::Filter`).
        return Verdict::Error(Class::Server);
    };
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Verdict::Error(classify_error(err));
    }
    // Anthropic Messages events carry a `type`, and so do the Responses API's.
    if let Some(kind) = v.get("type").and_then(|t| t.as_str()) {
        if kind == "error" || kind.starts_with("response.") {
            return responses(kind, &v);
        }
        let text = |d: Option<&serde_json::Value>, k: &str| {
            d.and_then(|d| d.get(k)).and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty())
        };
        return match kind {
            "content_block_delta" => {
                let delta = v.get("delta");
                if text(delta, "text") || text(delta, "partial_json") || text(delta, "thinking") {
                    Verdict::Commit
                } else {
                    Verdict::Pending
                }
            }
            "content_block_start" => {
                let block = v.get("content_block");
                let tool = block
                    .and_then(|b| b.get("type"))
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t != "text" && t != "thinking");
                if tool || text(block, "text") { Verdict::Commit } else { Verdict::Pending }
            }
            "message_delta" | "message_stop" => Verdict::Commit,
            _ => Verdict::Pending,
        };
    }
    if let Some(verdict) = bedrock(&v) {
        return verdict;
    }
    // Gemini chunks carry `candidates`; a blocked prompt only `promptFeedback`.
    if let Some(candidates) = v.get("candidates").and_then(|c| c.as_array()) {
        let commits = candidates.iter().any(|c| {
            c.get("finishReason").is_some_and(|f| !f.is_null())
                || c.pointer("/content/parts").and_then(|p| p.as_array()).is_some_and(|parts| {
                    parts.iter().any(|p| {
                        p.get("functionCall").is_some()
                            || p.get("text").and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty())
                    })
                })
        });
        return if commits { Verdict::Commit } else { Verdict::Pending };
    }
    if v.pointer("/promptFeedback/blockReason").is_some() {
        return Verdict::Commit;
    }
    let commits = v.get("choices").and_then(|c| c.as_array()).is_some_and(|choices| {
        choices.iter().any(|c| {
            let delta = c.get("delta");
            let text = |k: &str| {
                delta.and_then(|d| d.get(k)).and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty())
            };
            let present = |k: &str| delta.and_then(|d| d.get(k)).is_some_and(|t| !t.is_null());
            text("content")
                || text("refusal")
                || text("reasoning_content")
                || present("tool_calls")
                || present("function_call")
                || c.get("finish_reason").is_some_and(|f| !f.is_null())
        })
    });
    if commits || v.get("usage").is_some_and(|u| !u.is_null()) { Verdict::Commit } else { Verdict::Pending }
}

/// Judges a Bedrock Converse event, as the provider layer writes it (`{"<event type>": {...}}`,
/// see `crate::providers::bedrock::stream`): text, a tool call's input or reasoning commits, a
/// tool call's start, `messageStop` and `metadata` too; `messageStart` and a block's empty start
/// or stop do not. `None`: not a Converse event.
fn bedrock(v: &serde_json::Value) -> Option<Verdict> {
    let o = v.as_object().filter(|o| o.len() == 1)?;
    let (kind, e) = o.iter().next()?;
    let text = |p: &str| e.pointer(p).and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty());
    let commits = match kind.as_str() {
        "messageStart" | "contentBlockStop" => false,
        "contentBlockStart" => e.pointer("/start/toolUse").is_some(),
        "contentBlockDelta" => {
            text("/delta/text") || text("/delta/toolUse/input") || text("/delta/reasoningContent/text")
        }
        "messageStop" | "metadata" => true,
        _ => return None,
    };
    Some(if commits { Verdict::Commit } else { Verdict::Pending })
}

/// Judges one Responses API event (`kind` is its `type`).
fn responses(kind: &str, v: &serde_json::Value) -> Verdict {
    let empty = |list: Option<&serde_json::Value>| list.and_then(|l| l.as_array()).is_none_or(Vec::is_empty);
    match kind {
        // Its own fields (`code`, `message`) say what failed.
        "error" => Verdict::Error(classify_error(v)),
        "response.failed" => {
            Verdict::Error(v.pointer("/response/error").map_or(Class::Server, classify_error))
        }
        "response.created" | "response.in_progress" | "response.queued" => Verdict::Pending,
        // A message begins empty and a reasoning item without summary; a function call commits.
        "response.output_item.added" => {
            let item = v.get("item");
            let pending = match item.and_then(|i| i.get("type")).and_then(|t| t.as_str()) {
                Some("message") => empty(item.and_then(|i| i.get("content"))),
                Some("reasoning") => empty(item.and_then(|i| i.get("summary"))),
                _ => false,
            };
            if pending { Verdict::Pending } else { Verdict::Commit }
        }
        "response.content_part.added" | "response.reasoning_summary_part.added" => {
            let text = v.pointer("/part/text").and_then(|t| t.as_str());
            if text.is_none_or(str::is_empty) { Verdict::Pending } else { Verdict::Commit }
        }
        // Deltas, done events, `response.completed` and `response.incomplete`.
        _ => Verdict::Commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREAMBLE: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    const CONTENT: &[u8] =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";

    #[test]
    fn a_huge_event_byte_by_byte_and_a_chunk_of_many_events_take_linear_time() {
        // Rescanning the pending bytes at every chunk would take minutes here (4 * 10^10 steps).
        let mut events = Events::default();
        let mut big = b"data: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', 256 * 1024));
        for &b in &big {
            events.push(&[b]);
            assert!(events.next_event().is_none());
        }
        events.push(b"\n\n");
        assert_eq!(events.next_event().map(<[u8]>::len), Some(big.len() + 1), "its text and line end");
        assert!(events.next_event().is_none());
        // Draining each event from the front would move the rest of the chunk every time.
        let many: Vec<u8> = std::iter::repeat_n(PREAMBLE, 20_000).flatten().copied().collect();
        events.push(&many);
        let mut n = 0;
        while let Some(e) = events.next_event() {
            assert_eq!(e, &PREAMBLE[..PREAMBLE.len() - 1]);
            n += 1;
        }
        assert_eq!(n, 20_000);
    }

    fn verdict_of(stream: &[u8], split: usize) -> Verdict {
        let mut s = CommitScanner::default();
        for chunk in stream.chunks(split.max(1)) {
            let v = s.feed(chunk);
            if v != Verdict::Pending {
                return v;
            }
        }
        Verdict::Pending
    }

    #[test]
    fn preamble_does_not_commit_content_does_in_any_split() {
        let stream = [PREAMBLE, b": keep-alive\n\n", CONTENT].concat();
        for split in 1..stream.len() {
            assert_eq!(verdict_of(&stream, split), Verdict::Commit, "split {split}");
            assert_eq!(verdict_of(&stream[..PREAMBLE.len() + 14], split), Verdict::Pending, "split {split}");
        }
    }

    #[test]
    fn crlf_and_multiline_data() {
        let e = b"data: {\"choices\":[{\"delta\":\r\ndata: {\"tool_calls\":[{\"index\":0}]}}]}\r\n\r\n";
        assert_eq!(verdict_of(e, 3), Verdict::Commit);
        // A lone trailing `\r` may be half of `\r\n`: the event completes once the next byte arrives.
        let e = b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\rdata: [DONE]\r\r";
        assert_eq!(verdict_of(e, 1), Verdict::Commit);
    }

    #[test]
    fn bare_cr_streams_end_without_waiting_and_count_the_same_in_any_split() {
        // Regression (found by the property tests): the last event of a `\r`-only stream was
        // held back, waiting for a `\n` that never comes.
        let mut s = CommitScanner::default();
        assert_eq!(s.feed(b"data: {}\r\r"), Verdict::Pending);
        assert_eq!(s.events(), 1);
        // `\r\r` then `\n`: the `\n` completes the blank line, and is not one more event.
        let stream = b"data: {}\r\r\ndata: {}\n\n\n: ping\r\n\r\n";
        for split in 1..stream.len() {
            let mut s = CommitScanner::default();
            for chunk in stream.chunks(split) {
                assert_eq!(s.feed(chunk), Verdict::Pending);
            }
            assert_eq!(s.events(), 3, "split {split}");
        }
    }

    #[test]
    fn error_events_are_classified() {
        let e = b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n";
        assert_eq!(verdict_of(e, 5), Verdict::Error(Class::RateLimited));
        let e = b"event: error\ndata: {\"error\":{\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(verdict_of(e, 7), Verdict::Error(Class::Overloaded));
        let e = b"data: {\"error\":{\"message\":\"boom\"}}\n\n";
        assert_eq!(verdict_of(e, 64), Verdict::Error(Class::Server));
    }

    #[test]
    fn anthropic_events_commit_at_the_first_text_or_tool() {
        let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n";
        assert_eq!(verdict_of(start, 3), Verdict::Pending);
        let delta = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
        assert_eq!(verdict_of(&[&start[..], delta].concat(), 5), Verdict::Commit);
        let tool = b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n";
        assert_eq!(verdict_of(tool, 4), Verdict::Commit);
        let err = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert_eq!(verdict_of(err, 4), Verdict::Error(Class::Overloaded));
    }

    #[test]
    fn gemini_chunks_commit_at_the_first_text_call_or_finish() {
        let empty = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"\"}]},\"index\":0}]}\r\n\r\n";
        assert_eq!(verdict_of(empty, 3), Verdict::Pending);
        let text = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\r\n\r\n";
        assert_eq!(verdict_of(&[&empty[..], text].concat(), 5), Verdict::Commit);
        let call = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{}}}]}}]}\r\n\r\n";
        assert_eq!(verdict_of(call, 4), Verdict::Commit);
        let blocked = b"data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\r\n\r\n";
        assert_eq!(verdict_of(blocked, 4), Verdict::Commit);
        let err = b"data: {\"error\":{\"code\":429,\"message\":\"quota\",\"status\":\"RESOURCE_EXHAUSTED\"}}\r\n\r\n";
        assert_eq!(verdict_of(err, 4), Verdict::Error(Class::RateLimited));
        let err = b"data: {\"error\":{\"code\":503,\"message\":\"busy\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
        assert_eq!(verdict_of(err, 4), Verdict::Error(Class::Overloaded));
    }

    #[test]
    fn an_event_whose_data_is_not_json_is_a_failure_before_the_commit() {
        for bad in
            [&b"data: {\"choices\":[\n\n"[..], b"data: not json\n\n", b"data:\n\n", b"data: {} x\r\n\r\n"]
        {
            let stream = [PREAMBLE, bad, CONTENT].concat();
            for split in 1..stream.len() {
                assert_eq!(
                    verdict_of(&stream, split),
                    Verdict::Error(Class::Server),
                    "{bad:?} split {split}"
                );
            }
        }
        // Events without data are no events to judge.
        assert_eq!(verdict_of(b"event: ping\n\n: comment\n\n", 3), Verdict::Pending);
    }

    #[test]
    fn responses_streams_commit_at_their_first_output_never_at_created_or_in_progress() {
        let frames = crate::mock::responses_frames("gpt-4o", "Hello there", 1);
        let stream: Vec<u8> = frames.iter().flatten().copied().collect();
        // created, in_progress, the empty message item and the empty text part: 4 events.
        let preamble: usize = frames.iter().take(4).map(|f| f.len()).sum();
        for split in [1, 7, 64, stream.len()] {
            assert_eq!(verdict_of(&stream[..preamble], split), Verdict::Pending, "split {split}");
            assert_eq!(verdict_of(&stream, split), Verdict::Commit, "split {split}");
        }
        let mut s = CommitScanner::default();
        assert_eq!(s.feed(&stream[..preamble]), Verdict::Pending);
        assert_eq!(s.feed(&frames[4]), Verdict::Commit, "the first output_text.delta");
        let call = b"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"\"},\"sequence_number\":2}\n\n";
        assert_eq!(verdict_of(call, 5), Verdict::Commit);
        let completed =
            b"data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n";
        assert_eq!(verdict_of(completed, 5), Verdict::Commit);
    }

    #[test]
    fn responses_error_and_failed_events_before_the_commit_are_failures() {
        let e = b"event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null,\"sequence_number\":1}\n\n";
        assert_eq!(verdict_of(e, 6), Verdict::Error(Class::RateLimited));
        let f = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        assert_eq!(verdict_of(f, 6), Verdict::Error(Class::Server));
        let f = b"data: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\"}}\n\n";
        assert_eq!(verdict_of(f, 6), Verdict::Error(Class::Server));
    }

    #[test]
    fn done_commits_and_events_are_counted() {
        let mut s = CommitScanner::default();
        assert_eq!(s.feed(PREAMBLE), Verdict::Pending);
        assert_eq!(s.events(), 1);
        assert_eq!(s.feed(b"data: [DONE]\n\n"), Verdict::Commit);
    }

    #[test]
    fn bedrock_events_commit_at_their_first_content_and_exceptions_are_classified() {
        let judge1 = |data: &str| {
            let mut s = CommitScanner::default();
            s.feed(format!("event: x\ndata: {data}\n\n").as_bytes())
        };
        for pending in [
            r#"{"messageStart":{"role":"assistant"}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":""}}}"#,
            r#"{"contentBlockStop":{"contentBlockIndex":0}}"#,
            r#"{"contentBlockStart":{"contentBlockIndex":0,"start":{}}}"#,
        ] {
            assert_eq!(judge1(pending), Verdict::Pending, "{pending}");
        }
        for commit in [
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"Hi"}}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{"}}}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hm"}}}}"#,
            r#"{"contentBlockStart":{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t","name":"f"}}}}"#,
            r#"{"messageStop":{"stopReason":"end_turn"}}"#,
            r#"{"metadata":{"usage":{"inputTokens":1}}}"#,
        ] {
            assert_eq!(judge1(commit), Verdict::Commit, "{commit}");
        }
        let error = |kind: &str| judge1(&format!(r#"{{"error":{{"type":"{kind}","message":"m"}}}}"#));
        assert_eq!(error("throttlingException"), Verdict::Error(Class::RateLimited));
        assert_eq!(error("serviceUnavailableException"), Verdict::Error(Class::Overloaded));
        assert_eq!(error("modelStreamErrorException"), Verdict::Error(Class::Server));
    }
}
