//! Secrets: resolved once at load time from `env:NAME`, `file:PATH` or a literal, then held in a
//! type that never prints itself. The [`Redactor`](super::Redactor) scrubs them from bodies that
//! tier1 passes through.

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
pub(crate) fn resolve(reference: &str, env: &dyn Env) -> Result<Secret, String> {
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
}
