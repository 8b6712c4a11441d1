#!/usr/bin/env python3
"""Fails when a tracked file points outside the repository.

    python3 scripts/check_repo.py            # run by scripts/test (and so by CI's .ci/run)
    python3 scripts/check_repo.py --self-test

The repository must stand alone: a fresh clone builds, tests and explains itself. This scans
every git-tracked text file for references to documents and folders that only exist beside
some checkouts — a sibling `shared/` folder, design notes kept outside the repo, absolute paths
of a development machine — and prints each hit as `path:line: text`.

What counts as outside (`FORBIDDEN` below): `DESIGN.md`, `SPARSE_MMA_NOTES.md`, `GPU.md`,
`STYLE.md` (documents that are not in the repo; the repo's own docs are docs/*.md and the
READMEs), `../shared` or `shared/testdata` (a folder beside the clone), and absolute paths
under `/work/` (where the team's checkouts live; recorded benchmark commands may name other
machines' output folders, which nothing reads back). If a file here ever gets one of those names, rename it or
narrow the pattern — do not add an exception for a whole file. Binary files (a NUL byte in the
first 8 KB) are skipped; this script skips only itself, since it must name the patterns.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

FORBIDDEN = [
    (re.compile(r"\b(DESIGN|SPARSE_MMA_NOTES|GPU|STYLE)\.md\b"), "a document that is not in the repository"),
    (re.compile(r"\.\./shared\b|\bshared/testdata\b"), "a folder beside the repository"),
    (re.compile(r"(?<![\w.~-])/work/"), "an absolute path of the team's machines"),
]


def tracked_files() -> list[str]:
    out = subprocess.run(
        # Tracked files plus new ones git would add (so a reference is caught before commit).
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def scan_text(path: str, text: str) -> list[str]:
    hits = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern, why in FORBIDDEN:
            m = pattern.search(line)
            if m:
                hits.append(f"{path}:{lineno}: `{m.group(0)}` is {why}: {line.strip()[:160]}")
    return hits


def scan(files: list[str]) -> tuple[list[str], int]:
    hits, scanned = [], 0
    for rel in files:
        if rel == SELF:
            continue
        p = ROOT / rel
        if not p.is_file():  # deleted in the work tree, or a submodule
            continue
        data = p.read_bytes()
        if b"\0" in data[:8192]:
            continue
        scanned += 1
        hits += scan_text(rel, data.decode("utf-8", errors="replace"))
    return hits, scanned


def self_test() -> int:
    bad = [
        "see DESIGN.md for the format",
        "(SPARSE_MMA_NOTES.md)",
        "the driver (GPU.md)",
        'join("../../../shared/testdata/x.safetensors")',
        "CI lays shared/testdata beside the clone",
        "cd /work/main && cargo test",
    ]
    good = [
        "see docs/FORMAT.md",
        "crates/codegen/kernels/README.md",
        "__shared__ float s[32];",
        "shared memory per block",
        "https://example.com/work/x",
        "~/.cache/sparseflow",
        "--json /root/out/bench.json",
        "DESIGN_NOTES in a variable name",
    ]
    failures = [t for t in bad if not scan_text("t", t)] + [t for t in good if scan_text("t", t)]
    for t in failures:
        print(f"self-test: wrong verdict for {t!r}", file=sys.stderr)
    print("check_repo self-test: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def main() -> int:
    if "--self-test" in sys.argv[1:]:
        return self_test()
    files = tracked_files()
    hits, scanned = scan(files)
    # A scan that saw almost nothing would pass trivially (wrong directory, git failing quietly).
    if scanned < 50:
        print(f"check_repo: only {scanned} tracked text files found under {ROOT}; is this the repository?", file=sys.stderr)
        return 1
    if hits:
        print("References to things outside the repository (write the facts into the repo's own docs):", file=sys.stderr)
        for h in hits:
            print("  " + h, file=sys.stderr)
        return 1
    print(f"check_repo: {scanned} tracked text files, no reference outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
