//! `prompt_cache = true`: a provider's prompt cache, per API key, simulated.
//!
//! A prompt is its system prompt (`system`, `instructions`, `systemInstruction`) followed by its
//! messages (`messages`, `input`, `contents`); each part costs `ceil(bytes / 4)` tokens of its
//! JSON. The cache remembers, per key, a hash of every prefix of every prompt it was sent (in a
//! bounded map, the oldest forgotten first), and a prompt's cached tokens are those of its
//! longest prefix the same key was sent before: 0 on a miss, as a provider whose cache was
//! written by another key.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use bytes::Bytes;
use http::Response;

use super::MockBody;

/// Prefixes remembered, over all keys, before the oldest are forgotten.
const CAPACITY: usize = 100_000;

/// A prompt's tokens, and how many of them the cache held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// Every token of the prompt.
    pub tokens: u64,
    /// The tokens of its longest prefix seen before on the same key.
    pub cached: u64,
}

/// The prefixes seen, per key (the key is hashed into each entry).
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl PromptCache {
    /// Looks up the prompt of request `body` sent with `key`, then remembers its prefixes.
    /// `None` for a body that is not a JSON object.
    pub(crate) fn lookup(&self, key: &str, body: &[u8]) -> Option<Prompt> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let parts = parts(&v)?;
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let (mut tokens, mut cached, mut hashes) = (0, 0, Vec::with_capacity(parts.len()));
        let Ok(mut seen) = self.seen.lock() else { return Some(Prompt { tokens: 0, cached: 0 }) };
        for part in parts {
            let text = part.to_string();
            text.hash(&mut hasher);
            tokens += text.len().div_ceil(4) as u64;
            let h = hasher.finish();
            // The hash runs on over the parts: a prefix seen is seen with all of its own.
            if seen.set.contains(&h) {
                cached = tokens;
            }
            hashes.push(h);
        }
        for h in hashes {
            if seen.set.insert(h) {
                seen.order.push_back(h);
            }
        }
        while seen.order.len() > CAPACITY {
            if let Some(old) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        Some(Prompt { tokens, cached })
    }
}

/// The prompt's parts in order: the system prompt, if any, then each message.
fn parts(v: &serde_json::Value) -> Option<Vec<&serde_json::Value>> {
    let obj = v.as_object()?;
    let system = ["system", "instructions", "systemInstruction"].iter().find_map(|k| obj.get(*k));
    let messages = ["messages", "input", "contents"].iter().find_map(|k| obj.get(*k));
    let messages: Vec<&serde_json::Value> = match messages {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    };
    Some(system.into_iter().chain(messages).collect())
}

/// `resp` with its usage telling `p`: OpenAI's `prompt_tokens` and
/// `prompt_tokens_details.cached_tokens` (Responses: `input_tokens` and
/// `input_tokens_details.cached_tokens`), Anthropic's `input_tokens` (the uncached ones) and
/// `cache_read_input_tokens`, Gemini's `promptTokenCount` and `cachedContentTokenCount`. In a
/// stream, every event carrying a usage.
pub(crate) fn report(mut resp: Response<MockBody>, p: Prompt) -> Response<MockBody> {
    match resp.body_mut() {
        MockBody::Full(Some(b)) => {
            if let Some(patched) = patch_json(b, p) {
                *b = patched;
            }
        }
        MockBody::Full(None) => {}
        MockBody::Stream(s) => {
            for frame in s.frames.iter_mut() {
                if let Some(patched) = patch_frame(frame, p) {
                    *frame = patched;
                }
            }
        }
    }
    resp
}

fn patch_json(b: &[u8], p: Prompt) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(b).ok()?;
    patch(&mut v, p).then(|| Bytes::from(v.to_string()))
}

/// An SSE frame with its `data:` line's usage patched (`None`: nothing to patch).
fn patch_frame(frame: &[u8], p: Prompt) -> Option<Bytes> {
    let text = std::str::from_utf8(frame).ok()?;
    let start = text.find("data: ")? + "data: ".len();
    let end = start + text[start..].find(['\r', '\n']).unwrap_or(text.len() - start);
    let mut v: serde_json::Value = serde_json::from_str(&text[start..end]).ok()?;
    patch(&mut v, p).then(|| Bytes::from(format!("{}{v}{}", &text[..start], &text[end..])))
}

/// Rewrites the usage in `v` (at its top, or in `response` or `message`); whether it had one.
fn patch(v: &mut serde_json::Value, p: Prompt) -> bool {
    let at = if v["usageMetadata"].is_object() {
        "usageMetadata"
    } else if v["usage"].is_object() {
        "usage"
    } else if v["response"]["usage"].is_object() {
        "response"
    } else if v["message"]["usage"].is_object() {
        "message"
    } else {
        return false;
    };
    let kind = at;
    let u = match at {
        "response" | "message" => &mut v[at]["usage"],
        _ => &mut v[at],
    };
    let n = |u: &serde_json::Value, k: &str| u[k].as_u64().unwrap_or(0);
    if kind == "usageMetadata" {
        let out = n(u, "candidatesTokenCount");
        u["promptTokenCount"] = p.tokens.into();
        u["cachedContentTokenCount"] = p.cached.into();
        u["totalTokenCount"] = (p.tokens + out).into();
    } else if u.get("prompt_tokens").is_some() {
        let out = n(u, "completion_tokens");
        u["prompt_tokens"] = p.tokens.into();
        u["prompt_tokens_details"] = serde_json::json!({"cached_tokens": p.cached});
        u["total_tokens"] = (p.tokens + out).into();
    } else if u.get("input_tokens_details").is_some() {
        let out = n(u, "output_tokens");
        u["input_tokens"] = p.tokens.into();
        u["input_tokens_details"] = serde_json::json!({"cached_tokens": p.cached});
        u["total_tokens"] = (p.tokens + out).into();
    } else if u.get("input_tokens").is_some() {
        u["input_tokens"] = (p.tokens - p.cached).into();
        u["cache_read_input_tokens"] = p.cached.into();
        u["cache_creation_input_tokens"] = 0.into();
    } else {
        return false;
    }
    true
}

#[cfg(test)]
mod tests;
