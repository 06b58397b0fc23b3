#!/usr/bin/env python3
"""Offline supply-chain checks against deny.toml (the same policy `cargo deny check` applies):

- licenses: every crate's SPDX expression must be satisfiable with the allowed licenses;
- bans: no denied crate anywhere in the tree; duplicate versions are listed (warnings);
- sources: every crate comes from crates.io (no git, no other registry);
- lockfile: Cargo.lock is up to date (`cargo metadata --locked`).

Advisories need the RustSec database, which this machine cannot reach; with network access run
`cargo deny check advisories`. Exit status 1 on any violation.
"""
import collections
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def satisfiable(expr: str, allowed: set[str]) -> bool:
    """Evaluates an SPDX expression (AND, OR, WITH, parentheses; the legacy '/' as OR)."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expr.replace("/", " OR "))
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> bool:
        if peek() == "(":
            take()
            value = disjunction()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return value
        ident = take()
        if peek() == "WITH":
            take()
            ident = f"{ident} WITH {take()}"
        return ident in allowed or ident.split(" WITH ")[0] in allowed

    def conjunction() -> bool:
        value = atom()
        while peek() == "AND":
            take()
            value = atom() and value
        return value

    def disjunction() -> bool:
        value = conjunction()
        while peek() == "OR":
            take()
            value = conjunction() or value
        return value

    result = disjunction()
    if pos != len(tokens):
        raise ValueError(f"cannot parse license expression {expr!r}")
    return result


def self_test() -> None:
    """The evaluator must be able to say no, or the license check proves nothing."""
    ok = {"MIT", "Apache-2.0"}
    assert satisfiable("MIT OR GPL-3.0-only", ok)
    assert not satisfiable("MIT AND GPL-3.0-only", ok)
    assert not satisfiable("GPL-3.0-only", ok)
    assert satisfiable("(MIT OR GPL-3.0-only) AND Apache-2.0", ok)
    assert satisfiable("Apache-2.0 WITH LLVM-exception", ok)
    assert satisfiable("MIT/Apache-2.0", ok)


def main() -> int:
    self_test()
    policy = tomllib.loads((ROOT / "deny.toml").read_text())
    allowed = set(policy["licenses"]["allow"])
    denied = {d["name"] for d in policy["bans"]["deny"]}
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    in_tree = {node["id"] for node in meta["resolve"]["nodes"]}
    packages = [p for p in meta["packages"] if p["id"] in in_tree]
    problems: list[str] = []
    for p in packages:
        name = f"{p['name']} {p['version']}"
        if p["source"] is None:
            continue  # tier1 itself
        if p["source"] != CRATES_IO:
            problems.append(f"source: {name} comes from {p['source']}")
        if p["name"] in denied:
            problems.append(f"bans: {name} is denied by deny.toml")
        lic = p.get("license")
        if not lic:
            problems.append(f"licenses: {name} declares no SPDX license (license-file only)")
        else:
            try:
                if not satisfiable(lic, allowed):
                    problems.append(f"licenses: {name} is {lic!r}, not satisfiable with the allowed list")
            except (ValueError, IndexError) as e:
                problems.append(f"licenses: {name}: {e}")
    versions = collections.defaultdict(set)
    for p in packages:
        versions[p["name"]].add(p["version"])
    duplicates = {n: sorted(v) for n, v in versions.items() if len(v) > 1}
    for n, v in sorted(duplicates.items()):
        print(f"warning: duplicate versions of {n}: {', '.join(v)}")
    print(f"supply chain: {len(packages)} crates checked against deny.toml: "
          f"{len(problems)} problem(s), {len(duplicates)} duplicated crate(s); "
          "advisories not checked offline (cargo deny check advisories)")
    for problem in problems:
        print(f"error: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
