#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient against a sockeye server and compares every case with a
# checked-in expected file (autobahn/<name>.expected.json).
#
#   scripts/autobahn-ci.sh [--write]     check (or, with --write, record) every target below
#
# Targets: the server (`sockeye serve`, echo mode, permessage-deflate with context takeover) on
# the io_uring engine and on the portable (poll) engine, both held to one expected file; the
# tokio stream's echo server (tokio/examples/tokio_autobahn_server.rs, the same compression) and the codec-only echo example (codec/examples/echo_server.rs, no compression)
# under fuzzingclient; the blocking client (server/examples/autobahn_client.rs) and the tokio
# client (tokio/examples/tokio_autobahn_client.rs), both offering compression, under two
# fuzzingservers, which run alongside the server targets (the compression
# sections take minutes of the suite's own CPU; the machine has two cores). The chroot is built by
# scripts/autobahn.sh on first use (about a minute; cached in /tmp/py2root and
# /var/cache/autobahn-py2). Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=${1:-}
PORT=${AUTOBAHN_PORT:-9101}
REPORTS=${AUTOBAHN_REPORTS:-target/autobahn}

cargo build --release -p sockeye-codec --example echo_server
cargo build --release -p sockeye-server --bin sockeye --example autobahn_client
cargo build --release -p sockeye-tokio --example tokio_autobahn_server --example tokio_autobahn_client
bash scripts/autobahn.sh setup

run_target() {   # run_target NAME EXPECTED CMD...: compared with autobahn/EXPECTED.expected.json
  local name=$1 expected=$2; shift 2
  local out="$REPORTS/$name"
  "$@" &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    ss -Hltn "sport = :$PORT" | grep -q . && break
    sleep 0.1
  done
  local rc=0
  bash scripts/autobahn.sh server --agent "$name" "ws://127.0.0.1:$PORT" '*' "$out" || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  trap - EXIT
  python3 scripts/autobahn_compare.py "$out/index.json" "$name" "autobahn/$expected.expected.json" $WRITE || rc=1
  return "$rc"
}

# The client: fuzzingserver on the next port, the driver runs every case against it.
CPORT=$((PORT + 1))
out="$REPORTS/sockeye-client"
mkdir -p "$REPORTS"
bash scripts/autobahn.sh client "$CPORT" "$out" -- \
  ./target/release/examples/autobahn_client "ws://127.0.0.1:$CPORT" >"$REPORTS/client.log" 2>&1 &
cpid=$!
# The tokio client: a second fuzzingserver on the port after it.
TPORT=$((PORT + 2))
tout="$REPORTS/sockeye-tokio-client"
bash scripts/autobahn.sh client "$TPORT" "$tout" -- \
  ./target/release/examples/tokio_autobahn_client "ws://127.0.0.1:$TPORT" >"$REPORTS/tokio-client.log" 2>&1 &
tpid=$!

rc=0
run_target sockeye-echo sockeye-echo ./target/release/sockeye serve --bind "127.0.0.1:$PORT" \
  --stats-interval 0 --compression takeover --engine uring || rc=1
# The portable engine must give exactly the io_uring engine's results (same expected file).
run_target sockeye-echo-poll sockeye-echo ./target/release/sockeye serve --bind "127.0.0.1:$PORT" \
  --stats-interval 0 --compression takeover --engine poll || rc=1
run_target echo-example echo-example ./target/release/examples/echo_server "127.0.0.1:$PORT" || rc=1
run_target sockeye-tokio sockeye-tokio ./target/release/examples/tokio_autobahn_server \
  "127.0.0.1:$PORT" || rc=1

crc=0
wait "$cpid" || crc=$?
cat "$REPORTS/client.log"
python3 scripts/autobahn_compare.py "$out/index.json" sockeye-client \
  autobahn/sockeye-client.expected.json $WRITE || crc=1
[ "$crc" = 0 ] || rc=1

trc=0
wait "$tpid" || trc=$?
cat "$REPORTS/tokio-client.log"
python3 scripts/autobahn_compare.py "$tout/index.json" sockeye-tokio-client \
  autobahn/sockeye-tokio-client.expected.json $WRITE || trc=1
[ "$trc" = 0 ] || rc=1
exit "$rc"
