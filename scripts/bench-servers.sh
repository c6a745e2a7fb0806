#!/usr/bin/env bash
# Side-by-side server benchmark: sockeye and the peers (tokio-tungstenite, fastwebsockets on
# tokio current_thread), each pinned to core 0 with the load generator on core 1, every
# scenario repeated. Appends one JSON line per run to target/bench/servers.jsonl and prints a
# markdown table of medians and ratios (scripts/bench_table.py).
#
#   scripts/bench-servers.sh [REPEATS] [SECONDS]      (defaults 3 and 5)
#   SCENARIOS="echo16 echo4k echo1m broadcast conns" selects scenarios (default: all)
#   SERVERS="sockeye tokio-tungstenite fastwebsockets raw-echo" selects servers (default: all);
#   raw-echo is the floor: the upgrade, then bytes echoed verbatim (echo scenarios only)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
SECS=${2:-5}
OUT=target/bench/servers.jsonl
SCENARIOS=${SCENARIOS:-echo16 echo4k echo1m broadcast conns}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
mkdir -p target/bench
: > "$OUT"
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin sockeye-load --bin peer-server
LOAD=target/release/sockeye-load
PORT=9401

start_server() {   # start_server NAME MODE -> sets SPID
  local name=$1 mode=$2
  case $name in
    sockeye) taskset -c 0 target/release/sockeye serve --port $PORT --workers 1 --mode "$mode" \
               --stats-interval 0 --max-backpressure 16MiB >/dev/null 2>&1 & ;;
    tokio-tungstenite) taskset -c 0 target/release/peer-server --impl tungstenite --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    fastwebsockets) taskset -c 0 target/release/peer-server --impl fastwebsockets --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    raw-echo) taskset -c 0 target/release/peer-server --impl raw-echo --port $PORT >/dev/null 2>&1 & ;;
  esac
  SPID=$!
  for _ in $(seq 1 50); do
    ss -Hltn "sport = :$PORT" | grep -q . && return 0
    sleep 0.1
  done
  echo "server $name did not start" >&2
  return 1
}

stop_server() {
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  sleep 0.3
}

run() {   # run NAME MODE LOAD-ARGS...
  local name=$1 mode=$2; shift 2
  start_server "$name" "$mode"
  taskset -c 1 $LOAD "$@" --url "ws://127.0.0.1:$PORT/" --server-pid "$SPID" --label "$name" -d "$SECS" \
    | tee /dev/stderr | grep '^{' >> "$OUT" || echo "run failed: $name $*" >&2
  stop_server
}

SERVERS=${SERVERS:-sockeye tokio-tungstenite fastwebsockets raw-echo}
for r in $(seq 1 "$REPEATS"); do
  for name in $SERVERS; do
    raw=(); [ "$name" = raw-echo ] && raw=(--verbatim)
    if want echo16; then run "$name" echo echo "${raw[@]}" -c 64 -k 16 -s 16; fi
    if want echo4k; then run "$name" echo echo "${raw[@]}" -c 64 -k 4 -s 4096; fi
    if want echo1m; then run "$name" echo echo "${raw[@]}" -c 16 -k 2 -s 1048576; fi
    if want broadcast && [ "$name" != raw-echo ]; then run "$name" broadcast broadcast -c 1000 -s 64 --window 16; fi
  done
done
for n in 10000 19000; do
  want conns || break
  for name in $SERVERS; do
    [ "$name" = raw-echo ] && continue
    start_server "$name" echo
    taskset -c 1 $LOAD conns -c "$n" --url "ws://127.0.0.1:$PORT/" --server-pid "$SPID" --label "$name" \
      | tee /dev/stderr | grep '^{' >> "$OUT" || echo "conns failed: $name $n" >&2
    stop_server
  done
done
python3 scripts/bench_table.py "$OUT"
