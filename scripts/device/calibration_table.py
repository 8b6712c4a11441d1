#!/usr/bin/env python3
"""Prints the H100_DECODE_F16 table of crates/ir/tests/decode_calibration.rs from kernel_dev.py
sweep JSONs: per shape and M, the TOP fastest decode configurations of one template variant,
each time the geometric mean over the sweeps given (two runs halve the run-to-run noise that
reorders configurations within ~2%).

Usage: python3 scripts/device/calibration_table.py SWEEP_JSON[:VARIANT] [SWEEP_JSON[:VARIANT]...]
       (VARIANT empty = the library's template; the same variant tag names the same code)
"""
import json
import math
import re
import sys

TOP = 12


def configs(rec, variant):
    """{(tile_m, tile_n, stages, split_k): µs} of one sweep record for one template variant."""
    suffix = "_" + variant if variant else ""
    pat = re.compile(r"_none_m(\d+)n(\d+)k\d+_w\d+s(\d+)_sk(\d+)" + re.escape(suffix) + "$")
    out = {}
    for us, name in rec["all"]:
        m = pat.search(name)
        if m:
            out[tuple(map(int, m.groups()))] = us
    return out


def main():
    runs = []
    for arg in sys.argv[1:]:
        path, _, variant = arg.partition(":")
        runs.append({(r["N"], r["K"], r["M"]): configs(r, variant) for r in json.load(open(path))["bench"]})
    print("const H100_DECODE_F16: &[Measured] = &[")
    for key in runs[0]:
        times = {}
        for run in runs:
            for cfg, us in run.get(key, {}).items():
                times.setdefault(cfg, []).append(us)
        mean = {cfg: math.exp(sum(map(math.log, v)) / len(v)) for cfg, v in times.items()}
        top = sorted(mean.items(), key=lambda kv: kv[1])[:TOP]
        rows = "".join(f"            ({a}, {b}, {c}, {d}, {us:.2f}),\n" for (a, b, c, d), us in top)
        n, k, m = key
        print(f"    (\n        {n},\n        {k},\n        {m},\n        &[\n{rows}        ],\n    ),")
    print("];")


if __name__ == "__main__":
    main()
