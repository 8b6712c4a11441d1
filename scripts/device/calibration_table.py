#!/usr/bin/env python3
"""Prints the H100_DECODE_F16 table of crates/ir/tests/decode_calibration.rs from a kernel_dev.py
sweep JSON: per shape and M, the five fastest decode configurations of one template variant.

Usage: python3 scripts/device/calibration_table.py SWEEP_JSON [VARIANT]   (VARIANT "" = library)
"""
import json
import re
import sys


def main():
    sweep = json.load(open(sys.argv[1]))
    variant = sys.argv[2] if len(sys.argv) > 2 else ""
    suffix = "_" + variant if variant else ""
    pat = re.compile(r"_none_m(\d+)n(\d+)k\d+_w\d+s(\d+)_sk(\d+)" + re.escape(suffix) + "$")
    print("const H100_DECODE_F16: &[Measured] = &[")
    for rec in sweep["bench"]:
        top = []
        for us, name in rec["all"]:
            m = pat.search(name)
            if m:
                top.append((*map(int, m.groups()), us))
        top = top[:5]
        rows = "".join(f"            ({a}, {b}, {c}, {d}, {us:.2f}),\n" for a, b, c, d, us in top)
        print(f"    (\n        {rec['N']},\n        {rec['K']},\n        {rec['M']},\n        &[\n{rows}        ],\n    ),")
    print("];")


if __name__ == "__main__":
    main()
