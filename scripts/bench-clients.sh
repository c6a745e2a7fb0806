#!/usr/bin/env bash
# Client benchmark: echo round trips/s driven by each client implementation on one pinned core
# (core 1) against the same server (`sockeye serve`, one worker, core 0), interleaved and
# repeated. Appends JSON lines to target/bench/clients.jsonl and prints a markdown table of
# medians with ratios (scripts/bench_clients_table.py).
#
#   scripts/bench-clients.sh [REPEATS] [SECONDS]     (defaults 5 and 4)
#
# Pairs compared (the client issue's targets):
#   sockeye-uring vs tokio-tungstenite   event-loop clients, 64 connections, 16 B and 4 KiB
#   sockeye-blocking vs tungstenite      blocking clients, 1 and 4 connections (a thread each), 16 B
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-5}
SECS=${2:-4}
OUT=target/bench/clients.jsonl
PORT=9402
mkdir -p target/bench
: > "$OUT"
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin client-bench

taskset -c 0 target/release/sockeye serve --port $PORT --workers 1 --stats-interval 0 \
  --max-backpressure 16MiB >/dev/null 2>&1 &
SPID=$!
trap 'kill -TERM $SPID 2>/dev/null || true; wait $SPID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  ss -Hltn "sport = :$PORT" | grep -q . && break
  sleep 0.1
done

run() {   # run IMPL CONNS SIZE
  taskset -c 1 target/release/client-bench --impl "$1" --url "ws://127.0.0.1:$PORT/" \
    -c "$2" -s "$3" -d "$SECS" --warmup 1 | tail -1 >> "$OUT"
}

pair() {   # pair ROUND SOCKEYE PEER CONNS SIZE: alternate who goes first (order effects)
  if [ $(($1 % 2)) = 1 ]; then run "$2" "$4" "$5"; run "$3" "$4" "$5"
  else run "$3" "$4" "$5"; run "$2" "$4" "$5"; fi
}

for r in $(seq 1 "$REPEATS"); do
  echo "round $r/$REPEATS" >&2
  for size in 16 4096; do
    pair "$r" sockeye-uring tokio-tungstenite 64 $size
  done
  for c in 1 4; do
    pair "$r" sockeye-blocking tungstenite $c 16
  done
done
python3 scripts/bench_clients_table.py "$OUT"
