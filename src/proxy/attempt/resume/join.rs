//! The two sides of a resumed stream, in the client's OpenAI chunk format: the [`Transcript`] of
//! what the client already got (its id, choice index and text), and the [`Joiner`] that writes the
//! continuation into the same stream: the same id, model, creation time and choice index, no
//! second role preamble, the overlap at the join removed, and `"x_tier1": {"resumed": true}` on
//! the chunk that carries the finish reason. Pure: bytes in, bytes out.

use serde_json::Value;

use crate::sse::{Events, data_of};

/// The most answer text a transcript keeps: a longer answer is not resumed (its prefill would be
/// a request of that size again).
const MAX_TEXT: usize = 256 * 1024;

/// The longest repeat of the prefill's end that a continuation's start is checked for.
const MAX_OVERLAP: usize = 512;

/// The shortest repeat taken for an overlap: a few bytes that happen to match ("0" after "100")
/// are the continuation's own.
const MIN_OVERLAP: usize = 12;

/// What the client got of a stream so far.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    events: Events,
    /// The first chunk's `id`, `model` and `created`, and its choice's `index`.
    head: Option<Head>,
    text: String,
    /// A finish reason came (the answer is whole), a tool call or another choice did (the text
    /// alone cannot continue it), or the text is over [`MAX_TEXT`].
    unresumable: bool,
}

/// What every chunk of the client's stream repeats.
#[derive(Debug, Clone)]
struct Head {
    id: Value,
    model: Value,
    created: Value,
    index: Value,
}

impl Transcript {
    /// Reads a chunk of the client's stream.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.unresumable {
            return;
        }
        self.events.push(chunk);
        while let Some(event) = self.events.next_event() {
            let Some(data) = data_of(event) else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&data) else { continue };
            if v.get("error").is_some() {
                continue;
            }
            self.head.get_or_insert_with(|| Head {
                id: v["id"].clone(),
                model: v["model"].clone(),
                created: v["created"].clone(),
                index: v["choices"][0]["index"].clone(),
            });
            let Some(choices) = v["choices"].as_array() else { continue };
            for choice in choices {
                let delta = &choice["delta"];
                self.unresumable |= choices.len() > 1
                    || !choice["finish_reason"].is_null()
                    || delta.get("tool_calls").is_some_and(|t| !t.is_null());
                if let Some(text) = delta["content"].as_str() {
                    self.text.push_str(text);
                }
            }
        }
        self.unresumable |= self.text.len() > MAX_TEXT;
        self.events.check();
    }

    /// The partial answer, when a continuation can carry it on.
    pub(crate) fn partial(&self) -> Option<&str> {
        (!self.unresumable && self.head.is_some() && !self.text.is_empty()).then_some(self.text.as_str())
    }

    /// The joiner for a continuation of this stream.
    pub(crate) fn joiner(&self) -> Option<Joiner> {
        Some(Joiner {
            events: Events::default(),
            head: self.head.clone()?,
            sent: self.text.clone(),
            held: String::new(),
            joined: false,
        })
    }
}

/// The assistant prefill that continues `partial`: without trailing whitespace, which Anthropic
/// refuses at the end of a prefill (the continuation brings its own).
pub(crate) fn prefill(partial: &str) -> &str {
    partial.trim_end()
}

/// How many bytes at the start of `cont` the client already has: a repeat of the prefill's end
/// of [`MIN_OVERLAP`] bytes or more (or of the whole prefill: the continuation started over),
/// then the whitespace the prefill left out (the client got it before the break).
fn overlap(sent: &str, cont: &str) -> usize {
    let kept = prefill(sent);
    let longest = cont.len().min(kept.len()).min(MAX_OVERLAP);
    let repeat = (1..=longest)
        .rev()
        .filter(|&k| k >= MIN_OVERLAP || k == kept.len())
        .find(|&k| cont.is_char_boundary(k) && kept.ends_with(&cont[..k]))
        .unwrap_or(0);
    let rest = &cont[repeat..];
    let space = if kept.len() < sent.len() { rest.len() - rest.trim_start().len() } else { 0 };
    repeat + space
}

/// Rewrites a continuation stream (in the client's format) into the stream it continues.
#[derive(Debug)]
pub(crate) struct Joiner {
    events: Events,
    head: Head,
    /// What the client has of the answer.
    sent: String,
    /// Continuation text held until the overlap can be told (up to [`MAX_OVERLAP`] bytes).
    held: String,
    /// Whether the join is behind (the overlap was removed and the first text went out).
    joined: bool,
}

impl Joiner {
    /// Takes a chunk of the continuation; returns the client's bytes.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.events.push(chunk);
        while let Some(event) = self.events.next_event() {
            let Some(data) = data_of(event).map(std::borrow::Cow::into_owned) else { continue };
            if data == b"[DONE]" {
                self.release(&mut out);
                out.extend_from_slice(b"data: [DONE]\n\n");
                continue;
            }
            match serde_json::from_slice::<Value>(&data) {
                Ok(v) if v.get("error").is_none() => self.chunk(v, &mut out),
                // Not JSON: left out (the relay's filter does so already).
                Err(_) => {}
                // An error event (the continuation broke too) goes out as it is.
                Ok(_) => {
                    self.release(&mut out);
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\n\n");
                }
            }
        }
        self.events.check();
        out
    }

    fn chunk(&mut self, mut v: Value, out: &mut Vec<u8>) {
        v["id"] = self.head.id.clone();
        v["model"] = self.head.model.clone();
        v["created"] = self.head.created.clone();
        let Some(choice) = v["choices"].get_mut(0) else {
            // A usage chunk: after the text.
            self.release(out);
            return write(out, &v);
        };
        choice["index"] = self.head.index.clone();
        let finish = !choice["finish_reason"].is_null();
        if let Some(delta) = choice["delta"].as_object_mut() {
            delta.remove("role");
            if !self.joined
                && let Some(text) = delta.remove("content")
            {
                self.held.push_str(text.as_str().unwrap_or_default());
            }
        }
        let empty = choice["delta"].as_object().is_none_or(|d| d.values().all(Value::is_null));
        if !self.joined && (finish || !empty || self.held.len() >= MAX_OVERLAP) {
            self.release(out);
        }
        if finish {
            v["x_tier1"] = serde_json::json!({"resumed": true});
        } else if empty {
            return;
        }
        write(out, &v);
    }

    /// Sends the held text, less what the client already has.
    fn release(&mut self, out: &mut Vec<u8>) {
        if self.joined {
            return;
        }
        self.joined = true;
        let held = std::mem::take(&mut self.held);
        let text = &held[overlap(&self.sent, &held)..];
        if text.is_empty() {
            return;
        }
        let v = serde_json::json!({
            "id": self.head.id, "object": "chat.completion.chunk", "created": self.head.created,
            "model": self.head.model,
            "choices": [{"index": self.head.index, "delta": {"content": text}, "logprobs": null, "finish_reason": null}],
        });
        write(out, &v);
    }

    /// The end of the continuation: what is still held.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.release(&mut out);
        out
    }
}

fn write(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, delta: &str, finish: Option<&str>) -> String {
        let v = serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "m",
            "choices": [{"index": 0, "delta": serde_json::from_str::<Value>(delta).unwrap(), "logprobs": null, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    }

    /// The text of a stream of chunks, and whether every chunk has `id`.
    fn text_of(stream: &[u8], id: &str) -> String {
        let mut t = Transcript::default();
        t.feed(stream);
        for line in String::from_utf8_lossy(stream).lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line != "[DONE]" {
                assert_eq!(serde_json::from_str::<Value>(line).unwrap()["id"], id, "{line}");
            }
        }
        t.text
    }

    #[test]
    fn a_continuation_joins_with_the_same_id_and_no_repeat() {
        let first = format!(
            "{}{}{}",
            chunk("a", r#"{"role":"assistant","content":""}"#, None),
            chunk("a", r#"{"content":"The quick brown fox "}"#, None),
            chunk("a", r#"{"content":"jumps over "}"#, None)
        );
        let mut t = Transcript::default();
        // Split anywhere: events span chunks.
        let (x, y) = first.as_bytes().split_at(37);
        t.feed(x);
        t.feed(y);
        assert_eq!(t.partial(), Some("The quick brown fox jumps over "));
        assert_eq!(prefill(t.partial().unwrap()), "The quick brown fox jumps over");
        // The continuation repeats "brown fox jumps over" and brings the space back.
        let cont = format!(
            "{}{}{}{}data: [DONE]\n\n",
            chunk("b", r#"{"role":"assistant","content":""}"#, None),
            chunk("b", r#"{"content":"brown fox jumps over the"}"#, None),
            chunk("b", r#"{"content":" lazy dog."}"#, None),
            chunk("b", "{}", Some("stop"))
        );
        let mut j = t.joiner().unwrap();
        let mut out = Vec::new();
        for piece in cont.as_bytes().chunks(11) {
            out.extend(j.feed(piece));
        }
        out.extend(j.finish());
        let whole = format!("{first}{}", String::from_utf8(out.clone()).unwrap());
        assert_eq!(text_of(whole.as_bytes(), "a"), "The quick brown fox jumps over the lazy dog.");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("\"role\"").count(), 0, "a second role preamble: {out}");
        assert!(out.ends_with("data: [DONE]\n\n"));
        let last = out.lines().find(|l| l.contains("finish_reason\":\"stop")).unwrap();
        assert!(last.contains(r#""x_tier1":{"resumed":true}"#), "{last}");
    }

    #[test]
    fn short_matches_are_the_continuations_own() {
        assert_eq!(overlap("It costs 100", "0 dollars"), 0);
        assert_eq!(overlap("Hello ", " world"), 1);
        assert_eq!(overlap("Hello", " world"), 0);
        // A short answer started over: the whole of it is the repeat.
        assert_eq!(overlap("word1 ", "word1 word2"), "word1 ".len());
        assert_eq!(overlap("It costs 100", "0 dollars"), 0);
        assert_eq!(overlap("one two three four five", "three four five six"), "three four five".len());
    }

    #[test]
    fn a_finished_or_tool_calling_stream_is_not_resumed() {
        let mut done = Transcript::default();
        done.feed(chunk("a", r#"{"content":"hi"}"#, Some("stop")).as_bytes());
        assert_eq!(done.partial(), None);
        let mut tool = Transcript::default();
        tool.feed(chunk("a", r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#, None).as_bytes());
        assert_eq!(tool.partial(), None);
        assert_eq!(Transcript::default().partial(), None, "nothing to continue");
    }
}
