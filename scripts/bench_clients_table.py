#!/usr/bin/env python3
"""Markdown table from scripts/bench-clients.sh's JSON lines: medians per client and scenario,
with sockeye's ratio to its peer (round trips/s: sockeye / peer; client CPU per round trip:
peer / sockeye; above 1 means sockeye is better either way). Besides the ratio of the medians,
the median of the per-round ratios (each round runs both clients back to back, so a round's
ratio is insensitive to the drift between rounds that this shared VM shows)."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "target/bench/clients.jsonl")]
PAIRS = {"sockeye-uring": "tokio-tungstenite", "sockeye-blocking": "tungstenite"}
runs = defaultdict(list)
for r in rows:
    runs[(r["impl"], r["connections"], r["size"])].append(r)


def med(key, field):
    return statistics.median(r[field] for r in runs[key])


print("| client | peer | connections × size | sockeye round trips/s | peer round trips/s | ratio | per-round ratio | sockeye CPU ns/rt | peer CPU ns/rt | CPU ratio | runs |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (imp, conns, size) in sorted(runs):
    peer = PAIRS.get(imp)
    if peer is None or (peer, conns, size) not in runs:
        continue
    s, p = (imp, conns, size), (peer, conns, size)
    sr, pr = med(s, "round_trips_per_s"), med(p, "round_trips_per_s")
    sc, pc = med(s, "client_cpu_ns_per_rt"), med(p, "client_cpu_ns_per_rt")
    paired = statistics.median(
        a["round_trips_per_s"] / b["round_trips_per_s"] for a, b in zip(runs[s], runs[p])
    )
    size_s = f"{size >> 10} KiB" if size >= 1024 else f"{size} B"
    print(f"| {imp} | {peer} | {conns} × {size_s} | {sr:,.0f} | {pr:,.0f} | {sr / pr:.2f}× | {paired:.2f}× | {sc:,.0f} | {pc:,.0f} | {pc / sc:.2f}× | {len(runs[s])} |")
