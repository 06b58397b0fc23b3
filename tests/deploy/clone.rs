//! The repository on its own: a `git clone` into a temp dir with nothing beside it (no
//! `../shared`, no `.tools`), where the README's test command must reach the test runner and the
//! installers must work from the checkout alone.

use std::path::Path;
use std::process::Command;

use crate::{ROOT, TempDir, ok_in};

#[test]
fn a_clean_clone_reaches_the_test_runner_without_anything_beside_it() {
    let parent = TempDir::new("clone");
    let clone = parent.0.join("tier1");
    ok_in(Command::new("git").args(["clone", "--quiet", "--no-local", ROOT]).arg(&clone), &parent.0);
    assert!(!parent.0.join("shared").exists() && !clone.join(".tools").exists());

    // Nothing in the scripts CI runs reaches outside the checkout.
    for dir in ["scripts", ".ci"] {
        for entry in std::fs::read_dir(clone.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains("../shared"), "{} reaches outside the checkout", path.display());
        }
    }
    let ci = std::fs::read_to_string(clone.join(".ci/run")).unwrap();
    assert!(ci.contains("scripts/test.sh"), ".ci/run calls the README's test command");
    let readme = std::fs::read_to_string(clone.join("README.md")).unwrap();
    assert!(readme.contains("scripts/test.sh"), "the README names the test command");

    let help = ok_in(Command::new("bash").args(["scripts/test.sh", "--help"]), &clone);
    assert!(help.contains("Usage: scripts/test.sh"), "{help}");
    let dry = ok_in(Command::new("bash").args(["scripts/test.sh", "--dry-run"]), &clone);
    for needle in ["would run: bash scripts/install-compose.sh", "would run: bash scripts/install-helm.sh"] {
        assert!(dry.contains(needle), "{dry}");
    }
    assert!(dry.contains("would run: cargo nextest run") || dry.contains("would run: cargo test"), "{dry}");
    assert!(dry.contains("dry run: every script the suite needs is in this checkout"), "{dry}");
    assert!(!clone.join(".tools/bin/helm").exists(), "a dry run installs nothing");

    // The installers, from the clone, take a recent enough binary already on PATH (here the ones
    // this suite's own run installed) instead of downloading again.
    let tools = Path::new(ROOT).join(".tools");
    let path = format!(
        "{}:{}:{}",
        tools.join("bin").display(),
        tools.join("compose/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (script, dest, name) in [
        ("scripts/install-helm.sh", ".tools/bin", "helm"),
        ("scripts/install-compose.sh", ".tools/compose", "docker-compose"),
    ] {
        let out = ok_in(Command::new("bash").args([script, dest]).env("PATH", &path), &clone);
        let used = out.lines().last().unwrap_or_default();
        assert!(used.ends_with(&format!("/{name}")) && !used.starts_with(clone.to_str().unwrap()), "{out}");
        assert!(!clone.join(dest).join(name).exists() && !clone.join(dest).join("bin").join(name).exists());
    }
}
