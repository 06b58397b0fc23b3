//! Build script: the git commit the binary was built from, for `tier1 --version` and the
//! `revision` label of `tier1_build_info`, when built from a checkout (`TIER1_COMMIT` names it
//! where there is no `.git`, as in a container build). No dependency: it asks the `git` on PATH;
//! with neither (a source tarball), the version has no suffix and the revision is `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=TIER1_COMMIT");
    let commit = std::env::var("TIER1_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it points at (a commit).
        let git_dir = git(&["rev-parse", "--git-dir"])?;
        let git_dir = Path::new(&git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common =
                git(&["rev-parse", "--git-common-dir"]).unwrap_or_else(|| git_dir.display().to_string());
            println!("cargo:rerun-if-changed={}", Path::new(&common).join(head_ref).display());
            println!("cargo:rerun-if-changed={}", Path::new(&common).join("packed-refs").display());
        }
        let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
        let date = git(&["log", "-1", "--format=%cs", "HEAD"]);
        Some(date.map_or_else(|| hash.clone(), |d| format!("{hash} {d}")))
    });
    // The hash alone (`TIER1_COMMIT` may carry a date after it, as the suffix does).
    let revision = commit.as_deref().and_then(|c| c.split_whitespace().next()).unwrap_or("unknown");
    println!("cargo:rustc-env=TIER1_REVISION={revision}");
    let suffix = commit.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
    println!("cargo:rustc-env=TIER1_VERSION_SUFFIX={suffix}");
}
