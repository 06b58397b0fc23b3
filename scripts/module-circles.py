#!/usr/bin/env python3
"""Fails when the crate's modules import each other in a circle.

A module is a top-level file or folder under src/ (`proxy`, `config`, ...), and one level deeper inside
`proxy/` and `providers/` and `translate/`, where the request path's phases live. An edge A -> B is a
`crate::B` path written in A's files (a `use` line or an inline path), tests and `#[cfg(test)]` modules
excluded. Every strongly connected component with more than one module is printed, with one file and
line per edge, and the exit code is 1.

A circle listed in scripts/module-circles.allow (one per line: its modules, space-separated; `#`
starts a comment) is known and reported without failing, as is any circle among a subset of a
listed one's modules: the list may only shrink. Every other circle fails.

Usage: scripts/module-circles.py [SRC_DIR]     (default: src/ beside this script's folder)
"""
import os
import re
import sys

# Folders whose children are modules of their own in the graph.
SPLIT = {"proxy", "providers", "translate"}
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?")
# `use crate::{a, b::c}` groups: the names right after `{` or `,` at the group's first level.
GROUP = re.compile(r"\bcrate::\{")


def module_of(rel):
    """The graph node of a file path relative to src/ (None for lib.rs and main.rs)."""
    parts = rel[:-3].split(os.sep) if rel.endswith(".rs") else rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if not parts or parts[0] in ("lib", "main"):
        return None
    if parts[0] in SPLIT and len(parts) > 1:
        return parts[0] + "::" + parts[1]
    return parts[0]


def target(first, second, children):
    if first in SPLIT and second and second in children.get(first, ()):
        return first + "::" + second
    return first


def strip_tests(text):
    """Drops `#[cfg(test)] mod x { .. }` blocks and comments, so test-only imports make no edge."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def group_names(text, start):
    """Top-level names (and their next segment) in the `{...}` group opening at `start`."""
    depth, j, token, names = 1, start, "", []
    while j < len(text) and depth:
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if depth == 1 and c in ",":
            names.append(token.strip())
            token = ""
        elif depth >= 1 and not (depth == 1 and c == "{"):
            token += c
        j += 1
    names.append(token.strip().rstrip("}").strip())
    result = []
    for n in names:
        segs = re.split(r"::", n.strip())
        if segs and re.fullmatch(r"[a-z_][a-z0-9_]*", segs[0] or "-"):
            second = segs[1].strip("{ ") if len(segs) > 1 else None
            result.append((segs[0], second if second and re.fullmatch(r"[a-z_][a-z0-9_]*", second) else None))
    return result


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    src = os.path.normpath(src)
    files = []
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(root, name), src)
                if os.path.basename(rel) != "tests.rs" and os.sep + "tests" + os.sep not in os.sep + rel:
                    files.append(rel)
    children = {}
    for rel in files:
        parts = rel[:-3].split(os.sep)
        if parts[0] in SPLIT and len(parts) > 1 and parts[1] != "mod":
            children.setdefault(parts[0], set()).add(parts[1])
    edges = {}
    for rel in sorted(files):
        node = module_of(rel)
        if node is None:
            continue
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            text = strip_tests(f.read())
        refs = [(m.start(), m.group(1), m.group(2)) for m in PATH.finditer(text)]
        for m in GROUP.finditer(text):
            refs += [(m.start(), a, b) for a, b in group_names(text, m.end())]
        for pos, first, second in refs:
            dest = target(first, second, children)
            # A parent importing its own child, or a child its parent, is structure, not a circle.
            if dest == node or dest.split("::")[0] == node or node.split("::")[0] == dest:
                continue
            line = text.count("\n", 0, pos) + 1
            edges.setdefault(node, {}).setdefault(dest, f"src/{rel}:{line}")
    # Tarjan's strongly connected components.
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    nodes = sorted(set(edges) | {d for e in edges.values() for d in e})

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    allowed = []
    allow_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "module-circles.allow")
    if os.path.exists(allow_file):
        with open(allow_file, encoding="utf-8") as f:
            for line in f:
                mods = line.split("#", 1)[0].split()
                if mods:
                    allowed.append(set(mods))
    new = [c for c in comps if not any(set(c) <= a for a in allowed)]
    for comp in comps:
        known = comp not in new
        print(("known circle (to break): " if known else "NEW CIRCLE: ") + " <-> ".join(comp))
        for a in comp:
            for b, where in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"  {a} -> {b}  ({where})")
    print(f"module graph: {len(nodes)} modules, {len(comps)} circle(s), {len(new)} new")
    if new:
        print("a new import circle: break it (move the shared type into a leaf module)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
