//! `tier1 check`: validate a config file, listing every problem at once, and with `--against`
//! show how it differs from the config a running instance has (its redacted `/admin/config`).
//! The binary only prints what this returns, so the messages and exit codes live here.

use std::path::Path;
use std::time::Duration;

use crate::config::{self, ConfigErrors, Env, Format};

/// Why `check` failed: the text for stderr and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One or more lines, without a trailing newline.
    pub message: String,
    /// 1 for a bad file or an unreachable instance, 2 for a bad argument.
    pub code: u8,
}

impl Failure {
    fn new(message: String) -> Self {
        Self { message, code: 1 }
    }
}

/// Checks the file at `path`; with `against` (a running tier1's admin URL), also diffs it with
/// that instance's config, reading it with the bearer that the `admin_key` reference resolves to.
/// Returns what to print on stdout.
pub async fn run(
    path: &Path,
    against: Option<&str>,
    admin_key: Option<&str>,
    env: &dyn Env,
) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("error: cannot read {}: {e}", path.display())))?;
    let format = Format::from_path(path);
    let c = config::parse(&text, format, env)
        .map_err(|errors| Failure::new(prefixed(&path.display().to_string(), &errors)))?;
    let summary =
        format!("{}: ok ({} providers, {} routes)\n", path.display(), c.providers.len(), c.routes.len());
    let Some(url) = against else { return Ok(summary) };
    let bearer = admin_key
        .map(|r| config::resolve_secret(r, env))
        .transpose()
        .map_err(|e| Failure { message: format!("error: --admin-key: {e}"), code: 2 })?;
    let endpoint = format!("{}/admin/config", url.trim_end_matches('/'));
    let running = match crate::health::get(
        &endpoint,
        bearer.as_ref().map(|s| s.expose()),
        Duration::from_secs(5),
    )
    .await
    {
        Ok((status, body)) if status.is_success() => serde_json::from_slice::<serde_json::Value>(&body)
            .map(|v| v["config"].clone())
            .map_err(|e| format!("{endpoint}: not JSON: {e}")),
        Ok((status, _)) => Err(format!("{endpoint}: {status}")),
        Err(e) => Err(e),
    }
    .map_err(|e| Failure::new(format!("error: {e}")))?;
    let changes = crate::admin::diff(&running, &crate::admin::redacted_config(&text, format));
    let mut out = summary;
    if changes.is_empty() {
        out.push_str(&format!("no differences with {url}\n"));
    } else {
        out.push_str(&format!("differences with {url} (+ added, - removed, ~ changed):\n"));
        for c in changes {
            out.push_str(&format!("  {c}\n"));
        }
    }
    Ok(out)
}

/// Every problem on its own line, after the file it is in: `tier1.toml: routes[0].name: missing`.
pub fn prefixed(origin: &str, errors: &ConfigErrors) -> String {
    errors.0.iter().map(|e| format!("{origin}: {e}")).collect::<Vec<_>>().join("\n")
}
