//! What prompt affinity hashes, read from the client's bytes (no second parse of the body): the
//! system prompt (`system`, `instructions`, or a chat's leading `system` and `developer`
//! messages) and the first messages after it. The body is valid JSON already (simd-json
//! accepted it), so the array is walked byte by byte only as far as the messages it needs.

use std::ops::Range;

use super::Scanned;
use super::spans::{end_of_value, skip_ws, trim_end};

/// The bytes a prompt-affinity session key is hashed from: both empty when the body has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prompt<'b> {
    /// The `system` or `instructions` value, as sent.
    pub system: &'b [u8],
    /// The `messages` (or `input`) array from its `[` to the end of the last message taken (the
    /// leading system messages, then `messages` more); a string `input` whole.
    pub messages: &'b [u8],
}

impl Scanned {
    /// The system prompt and the first `messages` messages after it, in `body` (the bytes this
    /// was scanned from).
    pub(crate) fn prompt<'b>(&self, body: &'b [u8], messages: usize) -> Prompt<'b> {
        let at = |r: &Option<Range<usize>>| r.as_ref().and_then(|r| body.get(r.clone())).unwrap_or_default();
        let system = at(&self.spans.system);
        let all = at(&self.spans.messages);
        if all.first() != Some(&b'[') {
            return Prompt { system, messages: all };
        }
        let mut end = 1;
        let mut taken = 0;
        for e in Elements::new(all) {
            let leading_system = taken == 0 && is_system(&all[e.clone()]);
            if !leading_system {
                if taken == messages {
                    break;
                }
                taken += 1;
            }
            end = e.end;
        }
        Prompt { system, messages: &all[..end] }
    }
}

/// Whether a message is a system prompt: its `role` is `system` or `developer`.
fn is_system(message: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Role<'a> {
        #[serde(borrow)]
        role: Option<std::borrow::Cow<'a, str>>,
    }
    message.first() == Some(&b'{')
        && serde_json::from_slice::<Role<'_>>(message)
            .is_ok_and(|r| matches!(r.role.as_deref(), Some("system" | "developer")))
}

/// The elements of a valid JSON array (`b[0] == b'['`), as byte ranges in order.
struct Elements<'b> {
    b: &'b [u8],
    pos: usize,
}

impl<'b> Elements<'b> {
    fn new(b: &'b [u8]) -> Self {
        Self { b, pos: 1 }
    }
}

impl Iterator for Elements<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let b = self.b;
        let start = skip_ws(b, self.pos);
        if matches!(b.get(start), None | Some(b']')) {
            return None;
        }
        let end = end_of_value(b, start);
        let after = skip_ws(b, end);
        self.pos = if b.get(after) == Some(&b',') { after + 1 } else { b.len() };
        Some(start..trim_end(b, end))
    }
}

#[cfg(test)]
mod tests {
    use crate::json::{Schema, scan};

    fn prompt(body: &str, schema: Schema, n: usize) -> (String, String) {
        let scanned = scan(body.as_bytes(), schema).unwrap();
        let p = scanned.prompt(body.as_bytes(), n);
        (String::from_utf8(p.system.to_vec()).unwrap(), String::from_utf8(p.messages.to_vec()).unwrap())
    }

    #[test]
    fn a_chat_takes_its_system_messages_and_the_next_n() {
        let body = r#"{"model":"m","messages":[ {"role":"system","content":"be, [brief]"} ,
            {"role":"user","content":"a \"quoted\" ] , {"},{"role":"assistant","content":[1,2]},{"role":"user","content":"b"}]}"#;
        let (system, messages) = prompt(body, Schema::Chat, 1);
        assert_eq!(system, "");
        assert!(messages.starts_with(r#"[ {"role":"system""#), "{messages}");
        assert!(messages.ends_with(r#""a \"quoted\" ] , {"}"#), "{messages}");
        let (_, two) = prompt(body, Schema::Chat, 2);
        assert!(two.ends_with(r#"{"role":"assistant","content":[1,2]}"#), "{two}");
        let (_, all) = prompt(body, Schema::Chat, 10);
        assert!(all.ends_with(r#"{"role":"user","content":"b"}"#), "{all}");
        // The next turn of the same conversation hashes the same bytes.
        let turn1 = r#"{"model":"m","messages":[ {"role":"system","content":"be, [brief]"} ,
            {"role":"user","content":"a \"quoted\" ] , {"}]}"#;
        assert_eq!(prompt(turn1, Schema::Chat, 1).1, messages);
    }

    #[test]
    fn messages_and_responses_take_their_system_field() {
        let body = r#"{"model":"m","system":[{"type":"text","text":"s"}],"max_tokens":5,"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"x"}]}"#;
        assert_eq!(
            prompt(body, Schema::Messages, 1),
            (r#"[{"type":"text","text":"s"}]"#.into(), r#"[{"role":"user","content":"u"}"#.into())
        );
        let body = r#"{"model":"m","instructions":"be brief","input":"hello"}"#;
        assert_eq!(prompt(body, Schema::Responses, 1), (r#""be brief""#.into(), r#""hello""#.into()));
        let body =
            r#"{"model":"m","input":[{"role":"developer","content":"d"},{"role":"user","content":"u"}]}"#;
        assert_eq!(prompt(body, Schema::Responses, 1).1, body[21..body.len() - 2]);
        let body = r#"{"model":"m","messages":[]}"#;
        assert_eq!(prompt(body, Schema::Chat, 1), (String::new(), "[".into()));
    }
}
