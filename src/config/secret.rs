//! Secrets: resolved once at load time from `env:NAME`, `file:PATH` or a literal, then held in a
//! type that never prints itself. The [`Redactor`] scrubs every configured secret from bodies that
//! tier1 passes through, so a provider that echoes a key cannot leak it to the caller.

use std::fmt;
use std::sync::Arc;

/// Where configuration reads environment variables from; tests inject a map instead of mutating
/// the process environment.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A secret value. `Debug` and `Display` print `[redacted]`; there is no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a resolved value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (an upstream header) or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Resolves a secret reference: `env:NAME`, `file:PATH` (trailing newline trimmed, as Kubernetes
/// secret volumes carry one) or a literal value.
pub fn resolve(reference: &str, env: &dyn Env) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return match env.var(name) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            Some(_) => Err(format!("environment variable {name} is empty")),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\r', '\n']);
                if v.is_empty() { Err(format!("secret file {path} is empty")) } else { Ok(Secret::new(v)) }
            }
            Err(e) => Err(format!("cannot read secret file {path}: {e}")),
        };
    }
    if reference.is_empty() {
        return Err("secret is empty".to_owned());
    }
    Ok(Secret::new(reference))
}

/// The replacement text for a secret found in a passed-through body.
pub const REDACTED: &[u8] = b"[redacted]";

/// Replaces every configured secret value in a byte buffer.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// Builds a redactor over these secrets; very short values are skipped (see below).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            // A 1-3 byte "secret" would shred ordinary text; such values are not real keys.
            .filter(|s| s.expose().len() >= 4)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        secrets.dedup();
        Self { secrets }
    }

    /// The body with every secret replaced by `[redacted]`; borrows when there is nothing to do.
    pub fn redact<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let mut out: std::borrow::Cow<'a, [u8]> = std::borrow::Cow::Borrowed(body);
        for secret in &self.secrets {
            let needle = secret.expose().as_bytes();
            if find(&out, needle).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(at) = find(rest, needle) {
                next.extend_from_slice(&rest[..at]);
                next.extend_from_slice(REDACTED);
                rest = &rest[at + needle.len()..];
            }
            next.extend_from_slice(rest);
            out = std::borrow::Cow::Owned(next);
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn resolves_env_file_and_literal() {
        let env: HashMap<String, String> = [("K".to_owned(), "sk-123".to_owned())].into();
        assert_eq!(resolve("env:K", &env).unwrap().expose(), "sk-123");
        assert!(resolve("env:MISSING", &env).unwrap_err().contains("MISSING is not set"));
        assert_eq!(resolve("plain", &env).unwrap().expose(), "plain");
        let dir = std::env::temp_dir().join(format!("tier1-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let r = format!("file:{}", dir.display());
        assert_eq!(resolve(&r, &env).unwrap().expose(), "from-file");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-live-abcdef");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn redactor_replaces_every_occurrence() {
        let r = Redactor::new([Secret::new("sk-abc"), Secret::new("sk-abcdef"), Secret::new("x")]);
        let out = r.redact(b"key sk-abcdef and sk-abc and sk-abc.");
        assert_eq!(&*out, b"key [redacted] and [redacted] and [redacted].");
        assert!(matches!(r.redact(b"nothing here x"), std::borrow::Cow::Borrowed(_)));
    }
}
