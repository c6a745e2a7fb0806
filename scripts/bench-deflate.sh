#!/usr/bin/env bash
# permessage-deflate benchmarks: echo throughput with compression against the same server
# without it and against Python `websockets` (compression on by default there), and server
# memory per connection with each mode at 10,000 connections that each sent compressed traffic.
# The server is pinned to core 0, the load generator (sockeye's io_uring client runtime, which
# negotiates compression like any client) to core 1; every run is repeated. One JSON line per
# run goes to target/bench/deflate.jsonl; a summary of medians is printed.
#
#   scripts/bench-deflate.sh [REPEATS] [SECONDS]     (defaults 3 and 5)
#   scripts/bench-deflate.sh --quick                 1 repeat of 2 s, 2,000 connections
#   PARTS="echo conns" selects the parts (default both); CONNS=N the connection count
#
# The codec-level numbers (compress/inflate per message, zlib-rs against miniz_oxide) come from
# `taskset -c 1 cargo bench -p sockeye-benches --bench deflate`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --quick ]; then
  REPEATS=1 SECS=2 CONNS=2000
else
  REPEATS=${1:-3} SECS=${2:-5} CONNS=${CONNS:-10000}
fi
PARTS=${PARTS:-echo conns}
want() { [[ " $PARTS " == *" $1 "* ]]; }
OUT=target/bench/deflate.jsonl
mkdir -p target/bench
: > "$OUT"
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin sockeye-load
LOAD=target/release/sockeye-load
PORT=9451
HAVE_PY=0
python3 -c "import websockets.asyncio.server" 2>/dev/null && HAVE_PY=1

start() {   # start NAME COMPRESSION -> SPID
  case $1 in
    # Opening 10,000 connections that each send 40 messages takes longer than the default
    # 30 s idle timeout: the first ones would be pinged before the final check.
    sockeye) taskset -c 0 target/release/sockeye serve --port $PORT --workers 1 \
               --stats-interval 0 --max-backpressure 16MiB --idle-timeout 600s \
               --compression "$2" >/dev/null 2>&1 & ;;
    python-websockets) taskset -c 0 python3 scripts/peer_python_echo.py $PORT \
               "$([ "$2" = off ] && echo off || echo deflate)" >/dev/null 2>&1 & ;;
  esac
  SPID=$!
  for _ in $(seq 1 100); do
    ss -Hltn "sport = :$PORT" | grep -q . && return 0
    sleep 0.1
  done
  echo "server $1 did not start" >&2
  return 1
}
stop() { kill -TERM "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; }

echo_run() {   # echo_run SERVER SERVER_MODE LOAD_MODE SIZE CONNS
  start "$1" "$2"
  taskset -c 1 $LOAD echo --engine uring --url "ws://127.0.0.1:$PORT/" -c "$5" -s "$4" -k 1 \
    -d "$SECS" --text --compression "$3" --server-pid "$SPID" \
    --label "echo-$4 $1 $2" | grep '^{' >> "$OUT" || true
  stop
}

for r in $(seq 1 "$REPEATS"); do
  want echo && for size in 1024 16384; do
    echo_run sockeye off off $size 64
    echo_run sockeye takeover takeover $size 64
    echo_run sockeye no-takeover no-takeover $size 64
    [ $HAVE_PY = 1 ] && echo_run python-websockets deflate takeover $size 64
  done
  want conns && for mode in off takeover no-takeover; do
    start sockeye "$mode"
    taskset -c 1 $LOAD conns --url "ws://127.0.0.1:$PORT/" -c "$CONNS" -s 1024 --hold 3 \
      --compression "$mode" --messages 40 --server-pid "$SPID" \
      --label "conns sockeye $mode" | grep '^{' >> "$OUT" || true
    stop
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
def med(label, key):
    v = [r[key] for r in by.get(label, []) if r.get(key) is not None]
    return statistics.median(v) if v else None
print("| run | msgs/s (median) | server CPU/msg | ratio to sockeye off |")
print("|---|---|---|---|")
for size in (1024, 16384):
    base = med(f"echo-{size} sockeye off", "msgs_per_s")
    for label in (f"echo-{size} sockeye off", f"echo-{size} sockeye takeover",
                  f"echo-{size} sockeye no-takeover", f"echo-{size} python-websockets deflate"):
        m = med(label, "msgs_per_s")
        if m is None:
            continue
        cpu = med(label, "server_cpu_ns_per_msg")
        print(f"| {label} | {m:,.0f} | {cpu/1000 if cpu else float('nan'):.2f} µs | {m/base:.3f}× |")
print()
print("| conns | connections | server RSS per connection (median) |")
print("|---|---|---|")
for mode in ("off", "takeover", "no-takeover"):
    label = f"conns sockeye {mode}"
    v = med(label, "rss_per_conn")
    n = med(label, "connections")
    if v is not None:
        print(f"| {mode} | {n:,.0f} | {v:,.0f} B |")
PY
