#!/usr/bin/env python3
"""Lists the functions in src/ longer than a limit, longest first.

Usage: scripts/fn-length.py [--max N] [SRC_DIR]     (default: --max 80, src/ beside this script's folder)

`scripts/fn-length.allow` names the functions allowed over the limit, one `path name` per line
(`#` starts a comment: say why); a list that may only shrink.

A function runs from its `fn` line to the first later line holding only `}` (optionally `};` or `},`)
at the `fn` line's indent; both lines count. Declarations without a body (`fn f();` in a trait) are
skipped. Exit code 1 when a function not in the allow list is over the limit (CI runs it).
"""
import os
import re
import sys

FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(path):
    """(name, first line, length) of every function with a body in `path`."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        close = re.compile("^" + re.escape(indent) + r"\}[;,]?\s*$")
        for j in range(i, len(lines)):
            text = lines[j]
            if j == i and text.rstrip().endswith("}"):
                break  # a one-line function
            if j > i and close.match(text):
                break
            # A signature ending in `;` is a declaration without a body.
            if "{" not in "".join(lines[i : j + 1]) and text.rstrip().endswith(";"):
                j = None
                break
        else:
            j = None
        if j is not None:
            yield m.group(2), i + 1, j - i + 1


def main(argv):
    limit = 80
    args = list(argv)
    if args[:1] == ["--max"] and len(args) > 1:
        limit = int(args[1])
        args = args[2:]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    allow_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fn-length.allow")
    allowed = set()
    if os.path.exists(allow_file):
        with open(allow_file, encoding="utf-8") as f:
            for entry in f:
                entry = entry.split("#", 1)[0].split()
                if len(entry) == 2:
                    allowed.add(tuple(entry))
    found = []
    for root, _, files in sorted(os.walk(src)):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                for fn, line, length in functions(path):
                    if length > limit:
                        found.append((length, os.path.relpath(path, os.path.join(src, "..")), line, fn))
    new = 0
    for length, path, line, fn in sorted(found, reverse=True):
        known = (path, fn) in allowed
        new += not known
        print(f"{length:5} {path}:{line} {fn}{'  (allowed)' if known else ''}")
    print(f"{len(found)} functions over {limit} lines, {new} not allowed", file=sys.stderr)
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
