#!/usr/bin/env python3
"""Markdown tables from the JSON lines of scripts/bench-servers.sh: the median of the repeats
for every scenario and server, and each peer's ratio to sockeye (sockeye / peer for throughput,
so above 1 means sockeye is faster; peer / sockeye for CPU and memory, above 1 means sockeye
uses less)."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "target/bench/servers.jsonl")]
# uWebSockets (../shared/tools/peer-uws/) is a column only when the run measured it.
HAS_UWS = any(r["label"] == "uWebSockets" for r in rows)
PEERS = (["uWebSockets"] if HAS_UWS else []) + ["tokio-tungstenite", "fastwebsockets"]
SERVERS = ["sockeye", "sockeye-tokio"] + PEERS
# (ours, peer): a ratio column each, uWebSockets first.
RATIOS = [(o, p) for o in ("sockeye", "sockeye-tokio") for p in PEERS]
FLOOR = "raw-echo"  # the upgrade, then bytes echoed verbatim: the kernel's share alone
for r in rows:
    if r["label"] == "raw-fanout":  # the broadcast floor: bytes forwarded verbatim to all
        r["label"] = FLOOR


def scenario(r):
    if r["mode"] in ("echo", "echo-raw"):
        size = r["size"]
        s = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB" if size >= 1024 else f"{size} B"
        return f"echo {r['connections']} conns × {int(r['in_flight'])} in flight × {s}"
    if r["mode"] in ("broadcast", "broadcast-raw"):
        return f"broadcast to {r['connections']} subscribers, {r['size']} B, window {int(r.get('window', 16))}"
    if r["mode"] == "uws-echo":
        return f"uWebSockets' load_test: echo {r['connections']} conns × 1 in flight × {r['size']} B"
    if r["mode"] == "uws-broadcast":
        return f"uWebSockets' broadcast_test: {r['connections']} conns, each to all, {r['size']} B"
    if r["mode"] == "churn":
        return f"churn: connect, upgrade, echo, close ({r['connections']} at a time)"
    return f"idle connections: {r['connections']}"


groups = defaultdict(lambda: defaultdict(list))
for r in rows:
    groups[scenario(r)][r["label"]].append(r)

has_floor = any(r["label"] == FLOOR for r in rows)
print("| scenario | metric | " + " | ".join(SERVERS) + " | "
      + " | ".join(f"{o} ÷ {p}" for o, p in RATIOS) + " |"
      + (" raw TCP echo / fan-out (floor) |" if has_floor else ""))
print("|---|---|" + "---|" * (len(SERVERS) + len(RATIOS) + has_floor))
for sc, by in groups.items():
    conns = sc.startswith("idle")
    churn = sc.startswith("churn")
    metrics = [("rss_per_conn", "server RSS per connection (B)", False)] if conns else [
        ("msgs_per_s", "connections/s" if churn else "deliveries/s" if "broadcast" in sc else "messages/s", True),
        ("mb_per_s", "MB/s", True),
        ("server_cpu_ns_per_msg", "server CPU ns per message", False),
        ("p99_us", "p99 latency (µs)", False),
        ("server_cpu_share", "server core share (< 0.90: not CPU-bound)", None),
        ("load_cpu_share", "load generator core share", None),
        ("errors", "errors", None),
    ]
    for key, label, higher_better in metrics:
        if (sc.startswith("broadcast") or sc.startswith("uWebSockets'") or churn) and key in ("p99_us", "mb_per_s"):
            continue
        med = {}
        for s in SERVERS:
            vals = [r[key] for r in by.get(s, []) if r.get(key) is not None]
            med[s] = statistics.median(vals) if vals else None
        cells = []
        for s in SERVERS:
            v = med[s]
            cells.append("—" if v is None else f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}")
        ratios = []
        for ours, peer in RATIOS:
            a, b = med[ours], med[peer]
            if higher_better is None or not a or not b or a <= 0 or b <= 0:
                ratios.append("")
            elif higher_better:
                ratios.append(f"{a / b:.2f}×")
            else:
                ratios.append(f"{b / a:.2f}× less")
        n = len(by.get("sockeye", []))
        floor = ""
        if has_floor:
            fv = [r[key] for r in by.get(FLOOR, []) if r.get(key) is not None]
            floor = " — |" if not fv else f" {statistics.median(fv):,.0f} |" if abs(statistics.median(fv)) >= 10 else f" {statistics.median(fv):.2f} |"
        print(f"| {sc} | {label} (median of {n}) | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |" + floor)
        if key == "server_cpu_ns_per_msg" and has_floor:
            fv = [r[key] for r in by.get(FLOOR, []) if r.get(key) is not None]
            if fv and statistics.median(fv) > 0:
                f = statistics.median(fv)
                mult = ["—" if med[s] is None else f"{med[s] / f:.2f}×" for s in SERVERS]
                print(f"| {sc} | server CPU as a multiple of the floor | " + " | ".join(mult) + " |"
                      + " |" * len(RATIOS) + " 1.00× |")
