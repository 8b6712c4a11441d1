#!/usr/bin/env python3
"""Checks that the numbers quoted in the docs match the benchmark files they cite.

    python3 scripts/check_doc_numbers.py               # every tracked *.md; run by scripts/test
    python3 scripts/check_doc_numbers.py README.md     # only these files
    python3 scripts/check_doc_numbers.py --self-test

Two kinds of marker, both HTML comments (invisible when the Markdown is rendered):

1. A number, checked against a value computed from a JSON file:

       **1.794×**<!-- bench: bench/decode-llama3-8b-h100-fp16-graph.json summary.geomean_vs_dense -->

   The checked number is the last number on the line before the marker (`1.794` here; signs,
   thousands commas and units around it are fine). It must equal the value rounded to the
   decimals written: `1.79` accepts 1.785 … 1.795. FILE is relative to the Markdown file, like a
   link. EXPR is a path into the JSON, optionally inside one aggregate:

       summary.geomean_vs_dense                      a field
       rows[0].speedup_vs_dense                      a list index
       sparse_over_dense["cuda_graphs/batch16"]      a key that is not a plain name
       min(rows[*].speedup_vs_dense)                 every element of a list
       max(rows[m<=16,layer=down_proj].speedup_vs_dense)   elements whose fields match
       max(rows[*].measurements[contender=sparseflow].tbps)
       summary.geomean_vs_dense / summary.geomean_vs_cusparselt   a ratio of two of the above

   Aggregates: min, max, mean, geomean, sum, count. Filters compare a field with `=`, `!=`, `<`,
   `<=`, `>`, `>=` (numbers as numbers, anything else as text); commas mean "and". A path that
   finds nothing is an error, so a renamed field cannot pass silently.

2. A table copied from a benchmark's Markdown output:

       <!-- bench-table: bench/decode-llama3-8b-h100-fp16-graph.md -->
       | layer | N×K | M | ...

   Every row of the table that follows (up to the first line not starting with `|`) must be a
   line of that file, verbatim.

Markers inside `inline code` or fenced code blocks are examples and are ignored.

README.md and docs/PERFORMANCE.md must carry at least one number marker each: their headline
numbers are the ones readers quote.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUST_HAVE_MARKERS = ["README.md", "docs/PERFORMANCE.md"]

NUMBER_MARK = re.compile(r"<!--\s*bench:\s*(\S+)\s+(.*?)\s*-->")
TABLE_MARK = re.compile(r"<!--\s*bench-table:\s*(\S+)\s*-->")
INLINE_CODE = re.compile(r"`[^`]*`")
# A number standing on its own: not the digits inside a word such as `bf16` or `sm_90a`.
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:,\d{3})*(?:\.\d+)?")
AGGREGATES = {
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
    "mean": lambda v: sum(v) / len(v),
    "geomean": lambda v: math.exp(sum(math.log(x) for x in v) / len(v)),
}
SEGMENT = re.compile(r'\.?([A-Za-z_][\w-]*)|\["([^"]*)"\]|\[([^\]]*)\]')
CONDITION = re.compile(r"^\s*([\w-]+)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$")


class CheckError(Exception):
    pass


def _scalar(text: str):
    try:
        return float(text)
    except ValueError:
        return text.strip("\"'")


def _matches(item, conditions: list[tuple[str, str, object]]) -> bool:
    if not isinstance(item, dict):
        return False
    for field, op, want in conditions:
        if field not in item:
            return False
        have = item[field]
        if isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
            ok = {"=": have == want, "!=": have != want, "<": have < want, "<=": have <= want,
                  ">": have > want, ">=": have >= want}[op]
        else:
            if op not in ("=", "!="):
                return False
            ok = (str(have) == str(want)) == (op == "=")
        if not ok:
            return False
    return True


def select(data, path: str) -> list:
    """All values `path` reaches in `data` (a list: `[*]` and filters fan out)."""
    nodes = [data]
    pos = 0
    while pos < len(path):
        m = SEGMENT.match(path, pos)
        if not m or m.end() == pos:
            raise CheckError(f"cannot parse path {path!r} at {path[pos:]!r}")
        pos = m.end()
        name, key, bracket = m.groups()
        nxt = []
        for node in nodes:
            if name is not None or key is not None:
                k = name if name is not None else key
                if not isinstance(node, dict) or k not in node:
                    raise CheckError(f"{path!r}: no field {k!r}")
                nxt.append(node[k])
            elif bracket.strip() == "*":
                if not isinstance(node, list):
                    raise CheckError(f"{path!r}: [*] on a non-list")
                nxt.extend(node)
            elif re.fullmatch(r"\s*-?\d+\s*", bracket):
                if not isinstance(node, list):
                    raise CheckError(f"{path!r}: index on a non-list")
                nxt.append(node[int(bracket)])
            else:
                conds = []
                for part in bracket.split(","):
                    c = CONDITION.match(part)
                    if not c:
                        raise CheckError(f"{path!r}: bad filter {part!r}")
                    conds.append((c.group(1), c.group(2), _scalar(c.group(3))))
                if not isinstance(node, list):
                    raise CheckError(f"{path!r}: filter on a non-list")
                nxt.extend(x for x in node if _matches(x, conds))
        nodes = nxt
    return nodes


def evaluate(data, expr: str) -> float:
    if " / " in expr:  # a ratio of two values (e.g. two geomeans); the first " / " splits
        num, den = expr.split(" / ", 1)
        return evaluate(data, num) / evaluate(data, den)
    m = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", expr)
    if m and m.group(1) in AGGREGATES:
        values = [v for v in select(data, m.group(2).strip()) if v is not None]
        if not values:
            raise CheckError(f"{expr!r}: the path selects nothing")
        if m.group(1) != "count" and not all(isinstance(v, (int, float)) for v in values):
            raise CheckError(f"{expr!r}: not all selected values are numbers")
        return float(AGGREGATES[m.group(1)](values))
    values = select(data, expr.strip())
    if len(values) != 1:
        raise CheckError(f"{expr!r} selects {len(values)} values; wrap it in min/max/mean/...")
    v = values[0]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise CheckError(f"{expr!r} is {v!r}, not a number")
    return float(v)


def agrees(written: str, value: float) -> bool:
    text = written.replace("−", "-").replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10.0**-decimals + 1e-9 * max(1.0, abs(value))


def check_file(md: Path, cache: dict) -> tuple[list[str], int]:
    errors, markers = [], 0
    lines = md.read_text(encoding="utf-8").splitlines()
    rel = md.relative_to(ROOT).as_posix() if md.is_relative_to(ROOT) else str(md)

    def load_json(name: str):
        p = (md.parent / name).resolve()
        if p not in cache:
            cache[p] = json.loads(p.read_text(encoding="utf-8"))
        return cache[p]

    fenced = False
    for i, raw in enumerate(lines):
        where = f"{rel}:{i + 1}"
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue  # examples in code blocks are not markers
        line = INLINE_CODE.sub("``", raw)  # nor are examples in `inline code`
        for m in NUMBER_MARK.finditer(line):
            markers += 1
            before = NUMBER_MARK.sub("", line[: m.start()])
            numbers = NUMBER.findall(before)
            if not numbers:
                errors.append(f"{where}: bench marker with no number before it")
                continue
            try:
                value = evaluate(load_json(m.group(1)), m.group(2))
            except FileNotFoundError:
                errors.append(f"{where}: {m.group(1)} does not exist")
                continue
            except (CheckError, json.JSONDecodeError, ValueError, ZeroDivisionError) as e:
                errors.append(f"{where}: {m.group(1)}: {e}")
                continue
            if not agrees(numbers[-1], value):
                errors.append(
                    f"{where}: the text says {numbers[-1]} but {m.group(1)} {m.group(2)} = {value:.6g}"
                )
        t = TABLE_MARK.search(line)
        if t:
            source = (md.parent / t.group(1)).resolve()
            if not source.is_file():
                errors.append(f"{where}: {t.group(1)} does not exist")
                continue
            have = set(source.read_text(encoding="utf-8").splitlines())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            rows = 0
            while j < len(lines) and lines[j].startswith("|"):
                rows += 1
                if lines[j] not in have:
                    errors.append(f"{rel}:{j + 1}: table row not found in {t.group(1)}: {lines[j][:100]}")
                j += 1
            if rows == 0:
                errors.append(f"{where}: bench-table marker not followed by a table")
    return errors, markers


def markdown_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def self_test() -> int:
    data = {
        "summary": {"geomean_vs_dense": 1.7943},
        "rows": [
            {"m": 1, "layer": "a", "speedup_vs_dense": 1.61},
            {"m": 16, "layer": "b", "speedup_vs_dense": 2.0},
            {"m": 64, "layer": "a", "speedup_vs_dense": 0.91},
        ],
        "ratios": {"x/y": 1.23},
    }
    cases = [
        ("**1.794×**<!-- bench: d.json summary.geomean_vs_dense -->", True),
        ("1.79×<!-- bench: d.json summary.geomean_vs_dense -->", True),
        ("1.80×<!-- bench: d.json summary.geomean_vs_dense -->", False),
        ("lowest 0.91×<!-- bench: d.json min(rows[*].speedup_vs_dense) -->", True),
        ("lowest 1.61×<!-- bench: d.json min(rows[*].speedup_vs_dense) -->", False),
        ("0.91<!-- bench: d.json rows[m>=64].speedup_vs_dense -->", True),
        ("2.0<!-- bench: d.json max(rows[m<=16,layer=b].speedup_vs_dense) -->", True),
        ("1.23<!-- bench: d.json ratios[\"x/y\"] -->", True),
        ("3 cases<!-- bench: d.json count(rows[*]) -->", True),
        ("2.20<!-- bench: d.json max(rows[*].speedup_vs_dense) / rows[m=64].speedup_vs_dense -->", True),
        ("1.79<!-- bench: d.json summary.renamed_field -->", False),
        ("1.79<!-- bench: missing.json summary.geomean_vs_dense -->", False),
        ("no number<!-- bench: d.json summary.geomean_vs_dense -->", False),
        ("in bf16<!-- bench: d.json summary.geomean_vs_dense -->", False),
        ("1.79× in fp16<!-- bench: d.json summary.geomean_vs_dense -->", True),
        ("1.79×<!-- bench: d.json summary.geomean_vs_dense --><!-- bench: d.json summary.geomean_vs_dense -->", True),
        ("an example: `9.99<!-- bench: d.json summary.geomean_vs_dense -->`", True),
        ("```\n9.99<!-- bench: d.json summary.geomean_vs_dense -->\n```", True),
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "d.json").write_text(json.dumps(data))
        (Path(tmp) / "t.md").write_text("| a | b |\n| 1 | 2 |\n")
        for text, ok in cases:
            md = Path(tmp) / "x.md"
            md.write_text(text + "\n")
            errors, _ = check_file(md, {})
            if (not errors) != ok:
                failures += 1
                print(f"self-test: {text!r}: expected {'pass' if ok else 'failure'}, got {errors}", file=sys.stderr)
        for table, ok in [("| a | b |\n| 1 | 2 |", True), ("| a | b |\n| 1 | 3 |", False)]:
            md = Path(tmp) / "x.md"
            md.write_text("<!-- bench-table: t.md -->\n" + table + "\n")
            errors, _ = check_file(md, {})
            if (not errors) != ok:
                failures += 1
                print(f"self-test: table {table!r}: got {errors}", file=sys.stderr)
    print("check_doc_numbers self-test: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    files = [Path(a).resolve() for a in argv] if argv else markdown_files()
    cache: dict = {}
    errors, total = [], 0
    for md in files:
        errs, n = check_file(md, cache)
        errors += errs
        total += n
        rel = md.relative_to(ROOT).as_posix() if md.is_relative_to(ROOT) else str(md)
        if not argv and rel in MUST_HAVE_MARKERS and n == 0:
            errors.append(f"{rel}: no bench markers; tie its headline numbers to their JSON")
    if errors:
        print("Numbers in the docs that do not match the benchmark files they cite:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    print(f"check_doc_numbers: {total} numbers in {len(files)} Markdown files match their JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
