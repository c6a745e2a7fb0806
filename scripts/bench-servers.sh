#!/usr/bin/env bash
# Side-by-side server benchmark: sockeye and the peers (uWebSockets when it is built, see
# ../shared/tools/peer-uws/README.md; tokio-tungstenite, fastwebsockets and sockeye's own tokio
# stream, sockeye-tokio, on tokio current_thread) and a raw TCP echo floor, each pinned to core 0 with the load generator on core 1, every scenario repeated. Appends one JSON line per run to target/bench/servers.jsonl
# and prints a markdown table of medians and ratios (scripts/bench_table.py).
#
#   scripts/bench-servers.sh [REPEATS] [SECONDS]      (defaults 3 and 5)
#   scripts/bench-servers.sh --quick                  1 repeat of 2 s, a subset: under 2 minutes
#   SCENARIOS="..." selects scenarios (default: all):
#     latency   echo, 1 connection × 1 in flight × 16 B
#     echo20    echo, 100 × 1 × 20 B          echo1k   echo, 500 × 1 × 1 KiB
#     echo16k   echo, 500 × 1 × 16 KiB        pipe16   echo, 64 × 16 in flight × 16 B
#     echo16    echo, 64 × 16 × 16 B (= pipe16, kept for the server issue's targets)
#     echo4k    echo, 64 × 4 × 4 KiB          echo1m   echo, 16 × 2 × 1 MiB
#     broadcast 1,000 subscribers, 64 B, the publisher writing 16 messages at once and
#               waiting until every subscriber has all but the last 16 (window 16)
#     broadcast1 the same, one message per write, the next written once every subscriber has
#               the one before it (window 1: little for a server to batch)
#     churn     connect/upgrade/echo/close, 16 at a time
#     conns     idle connections, 10,000 and 19,000 (server RSS per connection)
#   SERVERS="sockeye uWebSockets sockeye-tokio tokio-tungstenite fastwebsockets raw-echo" selects
#   servers (default: all; uWebSockets only when $UWS_PEER, default /tmp/uws-peer/uws-peer, is
#   built, and the script says so when it is not);
#   raw-echo is the floor: the upgrade, then bytes echoed verbatim (for broadcast: raw-fanout,
#   bytes from the publisher forwarded verbatim to every connection)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --quick ]; then
  REPEATS=1 SECS=2
  SCENARIOS=${SCENARIOS:-latency pipe16 echo4k broadcast churn}
else
  REPEATS=${1:-3}
  SECS=${2:-5}
fi
OUT=target/bench/servers.jsonl
SCENARIOS=${SCENARIOS:-latency echo20 echo1k echo16k pipe16 echo4k echo1m broadcast broadcast1 churn conns}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
mkdir -p target/bench
: > "$OUT"
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin sockeye-load --bin peer-server
LOAD=target/release/sockeye-load
PORT=9401

source scripts/bench-servers-lib.sh

run() {   # run NAME MODE LOAD-ARGS...
  local name=$1 mode=$2; shift 2
  start_server "$name" "$mode"
  taskset -c 1 $LOAD "$@" --url "ws://127.0.0.1:$PORT/" --server-pid "$SPID" --label "$name" -d "$SECS" \
    | tee /dev/stderr | grep '^{' >> "$OUT" || echo "run failed: $name $*" >&2
  stop_server
}

if [ -x "$UWS_PEER" ]; then
  DEFAULT_SERVERS="sockeye uWebSockets sockeye-tokio tokio-tungstenite fastwebsockets raw-echo"
else
  echo "bench-servers: uWebSockets is not built ($UWS_PEER missing; ../shared/tools/peer-uws/README.md" \
    "says how), so it is left out of this run" >&2
  DEFAULT_SERVERS="sockeye sockeye-tokio tokio-tungstenite fastwebsockets raw-echo"
fi
SERVERS=${SERVERS:-$DEFAULT_SERVERS}
for r in $(seq 1 "$REPEATS"); do
  for name in $SERVERS; do
    raw=(); [ "$name" = raw-echo ] && raw=(--verbatim)
    if want latency; then run "$name" echo echo "${raw[@]}" -c 1 -k 1 -s 16; fi
    if want echo20; then run "$name" echo echo "${raw[@]}" -c 100 -k 1 -s 20; fi
    if want echo1k; then run "$name" echo echo "${raw[@]}" -c 500 -k 1 -s 1024; fi
    if want echo16k; then run "$name" echo echo "${raw[@]}" -c 500 -k 1 -s 16384; fi
    if want pipe16 || want echo16; then run "$name" echo echo "${raw[@]}" -c 64 -k 16 -s 16; fi
    if want echo4k; then run "$name" echo echo "${raw[@]}" -c 64 -k 4 -s 4096; fi
    if want echo1m; then run "$name" echo echo "${raw[@]}" -c 16 -k 2 -s 1048576; fi
    if [ "$name" = raw-echo ]; then
      # The broadcast floor: the same fan-out, bytes forwarded verbatim.
      if want broadcast; then run raw-fanout broadcast broadcast --verbatim -c 1000 -s 64 --window 16; fi
      if want broadcast1; then run raw-fanout broadcast broadcast --verbatim -c 1000 -s 64 --window 1; fi
      continue
    fi
    if want broadcast; then run "$name" broadcast broadcast -c 1000 -s 64 --window 16; fi
    if want broadcast1; then run "$name" broadcast broadcast -c 1000 -s 64 --window 1; fi
    if want churn; then run "$name" echo churn -c 16 -s 16; fi
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
