#!/usr/bin/env bash
# Broadcast across a cluster against a single node, in one run.
#
#   bash scripts/bench-cluster.sh [REPEATS SECONDS]     (default 3 × 5 s)
#
# Single node: one `sockeye serve --mode broadcast` (one worker); the publisher and 1,000
# subscribers of one room connect to it. Cluster: a `nats-server` and three nodes (one worker
# each) joined with --cluster; the publisher connects to node 1 and the 1,000 subscribers to
# nodes 2 and 3, so every delivery crosses nodes through NATS. Servers (and NATS) on core 0,
# the load generator on core 1. Two loads each: throughput (the publisher keeps 64 messages
# ahead of the slowest subscriber) and latency (one message at a time: publish, wait until all
# 1,000 have it). Reports deliveries/s and publish-to-delivery latency (p50/p99, every tenth
# subscriber) per run and their medians, in target/bench/cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
SECS=${2:-5}
OUT=target/bench/cluster.jsonl
mkdir -p target/bench
: > "$OUT"
command -v nats-server >/dev/null || { echo "bench-cluster: needs nats-server (apt-get install nats-server)" >&2; exit 1; }
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin sockeye-load
LOAD=target/release/sockeye-load
NATS_PORT=4411
PIDS=()

wait_port() {
  for _ in $(seq 1 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done
  echo "nothing listening on $1" >&2; return 1
}
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  sleep 0.3
}
trap stop_all EXIT
node() {   # node PORT [CLUSTER-ARGS...]
  local port=$1; shift
  taskset -c 0 target/release/sockeye serve --port "$port" --workers 1 --mode broadcast \
    --stats-interval 0 --max-backpressure 16MiB --no-demo "$@" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}
connected() {   # waits until the node on PORT reports sockeye_cluster_connected 1
  for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$1/metrics" | grep -q '^sockeye_cluster_connected 1$' && return 0
    sleep 0.1
  done
  echo "node $1 did not join the cluster" >&2; return 1
}
run() {   # run LABEL LOAD-ARGS...: the throughput load, then the latency load
  local label=$1; shift
  for window in 64 1; do
    taskset -c 1 $LOAD broadcast -c 1000 -s 64 --window $window -d "$SECS" --label "$label" "$@" \
      | tee /dev/stderr | grep '^{' >> "$OUT" || echo "run failed: $label" >&2
  done
}

for r in $(seq 1 "$REPEATS"); do
  node 9411
  run single-node --url ws://127.0.0.1:9411/bench --server-pid "${PIDS[0]}"
  stop_all

  taskset -c 0 nats-server -a 127.0.0.1 -p $NATS_PORT >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port $NATS_PORT
  for port in 9412 9413 9414; do node $port --cluster nats://127.0.0.1:$NATS_PORT; done
  for port in 9412 9413 9414; do connected $port; done
  run cluster-3-nodes --url ws://127.0.0.1:9412/bench \
    --subscriber-url ws://127.0.0.1:9413/bench --subscriber-url ws://127.0.0.1:9414/bench
  for port in 9412 9413 9414; do
    curl -s "http://127.0.0.1:$port/metrics" | grep -E '^sockeye_cluster_(published|received|dropped)' \
      | sed "s/^/node $port: /" >&2
  done
  stop_all
done

python3 - "$OUT" "$REPEATS" "$SECS" > target/bench/cluster.md <<'PY'
import json, statistics, sys
path, repeats, secs = sys.argv[1:4]
rows = [json.loads(l) for l in open(path)]
by = {}
for r in rows:
    by.setdefault((r["label"], int(r["window"])), []).append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"Broadcast to 1,000 subscribers of one room, 64 B messages; medians of {repeats} runs "
      f"of {secs} s (servers and NATS on core 0, load on core 1). Window 64: the publisher "
      f"keeps 64 messages ahead of the slowest subscriber (throughput, latency includes the "
      f"queue). Window 1: one message at a time (the latency of a fan-out to 1,000).\n")
print("| setup | window | deliveries/s | vs single node | p50 latency | p99 latency | out of order | errors |")
print("|---|---|---|---|---|---|---|---|")
for window in [64, 1]:
    single = by.get(("single-node", window))
    base = med(single, "msgs_per_s") if single else None
    for label in ["single-node", "cluster-3-nodes"]:
        rs = by.get((label, window))
        if not rs:
            continue
        rate = med(rs, "msgs_per_s")
        ratio = f"{rate / base:.2f}×" if base else "—"
        ooo = sum(r.get("out_of_order", 0) for r in rs)
        err = sum(r["errors"] for r in rs)
        print(f"| {label} | {window} | {rate:,.0f} | {ratio} | {med(rs, 'p50_us'):,.0f} µs | "
              f"{med(rs, 'p99_us'):,.0f} µs | {ooo:.0f} | {err} |")
print("\nRuns: " + "; ".join(
    f"{r['label']} w{int(r['window'])} {r['msgs_per_s']:,.0f}/s p50 {r['p50_us']} µs p99 {r['p99_us']} µs"
    for r in rows))
PY
cat target/bench/cluster.md
