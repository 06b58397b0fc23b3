//! Deployment as users run it, validated with the real tools (no Docker engine needed). One
//! binary, one module per way of deploying:
//! - [`compose`]: every compose profile combination with the Compose v2 CLI, and the merge into
//!   another project's file.
//! - [`helm`]: the chart linted, rendered in both modes and checked against Kubernetes schemas.
//! - [`pod`]: the Helm sidecar in a network namespace standing in for its pod, probed and
//!   scraped from outside at the pod IP as a kubelet and Prometheus do.
//! - [`clone`]: a clean clone, alone in a temp dir, reaches the test runner.
//! - [`files`]: the Caddyfile with a current Caddy, the Dockerfile's inputs, and every shipped
//!   config closed to strangers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

#[path = "../common/mod.rs"]
mod common;

mod clone;
mod compose;
mod files;
mod helm;
mod pod;

use std::path::Path;
use std::process::Command;

/// A tool installed by scripts/test.sh under .tools/ (or on PATH): the harness's one lookup.
pub(crate) use common::tool;

pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub(crate) fn ok(cmd: &mut Command) -> String {
    ok_in(cmd, Path::new(ROOT))
}

pub(crate) fn ok_in(cmd: &mut Command, dir: &Path) -> String {
    let out = cmd.current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A fresh temp dir named for the test and the process, removed on drop, even when an assertion
/// fails.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tier1-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
