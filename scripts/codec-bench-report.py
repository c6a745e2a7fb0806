#!/usr/bin/env python3
"""Turn the criterion results of `cargo bench -p sockeye-benches --bench codec` into the
markdown tables of BENCHMARKS.md (medians, throughput, and ratios to the reference of each table).

Usage: scripts/codec-bench-report.py [CRITERION_DIR]   (default target/criterion)
"""
import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"


def load(group):
    """{(function, parameter): (median_ns, throughput dict)} for one criterion group."""
    out = {}
    gdir = os.path.join(ROOT, group)
    for dirpath, _, files in os.walk(gdir):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        key = (bench["function_id"], bench.get("value_str") or "")
        out[key] = (est["median"]["point_estimate"], bench.get("throughput") or {})
    return out


def rate(ns, tp):
    if "Bytes" in tp:
        return tp["Bytes"] / ns, "GB/s"  # bytes per ns == GB/s
    if "Elements" in tp:
        return tp["Elements"] / ns * 1e3, "M/s"
    return 1e9 / ns, "/s"


def size_label(v):
    n = int(v) if v.isdigit() else None
    if n is None:
        return v
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    if n >= 1 << 10:
        return f"{n >> 10} KiB"
    return f"{n} B"


def table(group, reference, title):
    data = load(group)
    if not data:
        print(f"(no results for {group} in {ROOT})")
        return
    params = sorted({p for _, p in data}, key=lambda p: (len(p), p))
    funcs = sorted({f for f, _ in data}, key=lambda f: (f != reference and not f.startswith("sockeye"), f))
    print(f"#### {title}\n")
    print("| " + " | ".join(["implementation"] + [size_label(p) for p in params]) + " |")
    print("|" + "---|" * (len(params) + 1))
    for f in funcs:
        cells = []
        for p in params:
            if (f, p) not in data:
                cells.append("—")
                continue
            ns, tp = data[(f, p)]
            r, unit = rate(ns, tp)
            ref = data.get((reference, p))
            ratio = ""
            if ref:
                rr, _ = rate(*ref)
                ratio = f" ({r / rr:.2f}×)"
            cells.append(f"{r:.2f} {unit}{ratio}")
        print(f"| {f} | " + " | ".join(cells) + " |")
    print()


table("mask", "memcpy", "Masking in place (throughput; ratio to memcpy of the same size)")
table("utf8", "simdutf8-basic", "UTF-8 validation of 64 KiB (throughput; ratio to one-shot simdutf8::basic)")
table("decode", "sockeye", "Decoding masked binary frames as a server (ratio to sockeye; below 1 is slower)")
