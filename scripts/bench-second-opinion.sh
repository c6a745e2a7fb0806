#!/usr/bin/env bash
# A second opinion on sockeye-load: uWebSockets' own load testers (benchmarks/load_test.c and
# broadcast_test.c from the uWebSockets repository, on uSockets' epoll loop, written in C by
# other people) against the same servers as scripts/bench-servers.sh, server on core 0, tester
# on core 1. Server CPU is read from /proc over the tester's own reports
# (scripts/second_opinion.py). Appends to target/bench/second-opinion.jsonl and prints a table.
#
#   scripts/bench-second-opinion.sh [REPEATS]        (default 3)
#
# The testers are built (gcc, -DLIBUS_NO_SSL) from $UWS_SRC (default /tmp/uws-src, fetched as
# ../shared/tools/peer-uws/README.md describes; nothing is copied into this repository) into
# $UWS_TOOLS (default /tmp/uws-peer/tools). Without the sources the script says so and exits 0.
#   echo:      load_test, 500 connections × 1 in flight × 16 B (the tester has no pipelining)
#   broadcast: broadcast_test, 100 connections each sending one 20 B message per iteration to
#              all 100 (10,000 deliveries an iteration), the next once all have arrived
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
UWS_SRC=${UWS_SRC:-/tmp/uws-src}
UWS_TOOLS=${UWS_TOOLS:-/tmp/uws-peer/tools}
US="$UWS_SRC/uSockets"
[ -f "$US/src/libusockets.h" ] || US="$UWS_SRC/uWebSockets/uSockets"
if [ ! -x "$UWS_TOOLS/load_test" ] || [ ! -x "$UWS_TOOLS/broadcast_test" ]; then
  if [ ! -f "$US/src/libusockets.h" ] || [ ! -f "$UWS_SRC/uWebSockets/benchmarks/load_test.c" ]; then
    echo "bench-second-opinion: no uWebSockets/uSockets sources in $UWS_SRC" \
      "(../shared/tools/peer-uws/README.md says how to fetch them); skipped" >&2
    exit 0
  fi
  mkdir -p "$UWS_TOOLS"
  for t in load_test broadcast_test; do
    gcc -O3 -march=native -flto=auto -DLIBUS_NO_SSL -w -I"$US/src" "$US"/src/*.c \
      "$US"/src/eventing/*.c "$US"/src/crypto/*.c "$UWS_SRC/uWebSockets/benchmarks/$t.c" -lz \
      -o "$UWS_TOOLS/$t"
  done
fi
cargo build --release -q -p sockeye-server --bin sockeye
cargo build --release -q -p sockeye-benches --bin peer-server
OUT=target/bench/second-opinion.jsonl
mkdir -p target/bench
: > "$OUT"
PORT=9402
source scripts/bench-servers-lib.sh
SERVERS=${SERVERS:-sockeye $([ -x "$UWS_PEER" ] && echo uWebSockets) sockeye-tokio tokio-tungstenite fastwebsockets}
for _ in $(seq 1 "$REPEATS"); do
  for name in $SERVERS; do
    start_server "$name" echo
    taskset -c 1 python3 scripts/second_opinion.py --server-pid "$SPID" --label "$name" \
      --mode echo --connections 500 --size 16 -- "$UWS_TOOLS/load_test" 500 127.0.0.1 $PORT 0 0 16 \
      | tee /dev/stderr >> "$OUT" || echo "run failed: $name echo" >&2
    stop_server
    start_server "$name" broadcast
    taskset -c 1 python3 scripts/second_opinion.py --server-pid "$SPID" --label "$name" \
      --mode broadcast --connections 100 --size 20 -- "$UWS_TOOLS/broadcast_test" 100 127.0.0.1 $PORT 0 \
      | tee /dev/stderr >> "$OUT" || echo "run failed: $name broadcast" >&2
    stop_server
  done
done
python3 scripts/bench_table.py "$OUT"
