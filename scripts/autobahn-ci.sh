#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient against a sockeye server and compares every case with a
# checked-in expected file (autobahn/<name>.expected.json).
#
#   scripts/autobahn-ci.sh [--write]     check (or, with --write, record) every target below
#
# Targets: the server (`sockeye serve`, echo mode, permessage-deflate with context takeover) on
# the io_uring engine and on the portable (poll) engine, both held to one expected file; the
# tokio stream's echo server (tokio/examples/tokio_autobahn_server.rs, the same compression) and
# the codec-only echo example (codec/examples/echo_server.rs, no compression) under
# fuzzingclient; the blocking client (server/examples/autobahn_client.rs) and the tokio client
# (tokio/examples/tokio_autobahn_client.rs), both offering compression, under two fuzzingservers.
# They run in two rounds, each target on its own port: the io_uring server beside the two
# clients, then the poll, tokio and codec-example servers together (wstest is single-threaded
# Python; the compression sections take minutes of its CPU; the machine has two cores). Ports:
# AUTOBAHN_PORT (9101) to AUTOBAHN_PORT + 5. The chroot is built by scripts/autobahn.sh on first
# use (about a minute; cached in /tmp/py2root and /var/cache/autobahn-py2). Needs root
# (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=${1:-}
PORT=${AUTOBAHN_PORT:-9101}
REPORTS=${AUTOBAHN_REPORTS:-target/autobahn}

cargo build --release -p sockeye-codec --example echo_server
cargo build --release -p sockeye-server --bin sockeye --example autobahn_client
cargo build --release -p sockeye-tokio --example tokio_autobahn_server --example tokio_autobahn_client
bash scripts/autobahn.sh setup

run_target() {   # run_target NAME EXPECTED PORT CMD...: compared with autobahn/EXPECTED.expected.json
  local name=$1 expected=$2 port=$3; shift 3
  local out="$REPORTS/$name"
  "$@" &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    ss -Hltn "sport = :$port" | grep -q . && break
    sleep 0.1
  done
  local rc=0
  bash scripts/autobahn.sh server --agent "$name" "ws://127.0.0.1:$port" '*' "$out" || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  trap - EXIT
  python3 scripts/autobahn_compare.py "$out/index.json" "$name" "autobahn/$expected.expected.json" $WRITE || rc=1
  return "$rc"
}

# Targets run in parallel (wstest is single-threaded Python and the servers under test use little
# CPU, so one target at a time left a core idle for half the run); each has its own port and log,
# printed whole when it ends.
declare -A TARGET_PID=()
start_target() {   # start_target NAME EXPECTED PORT CMD...: run_target in the background
  local name=$1
  mkdir -p "$REPORTS"
  run_target "$@" >"$REPORTS/$name.log" 2>&1 &
  TARGET_PID[$name]=$!
}
finish_targets() {   # waits for every started target; prints its log; 1 if any failed
  local name frc=0
  for name in "${!TARGET_PID[@]}"; do
    local trc=0
    wait "${TARGET_PID[$name]}" || trc=$?
    printf '\n-- target %s (exit %s)\n' "$name" "$trc"
    cat "$REPORTS/$name.log"
    [ "$trc" = 0 ] || frc=1
  done
  TARGET_PID=()
  return "$frc"
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
# Two rounds of server targets: the io_uring one beside the two client targets, then the rest
# (more Python processes than two cores at once slows every case, the timed ones included).
start_target sockeye-echo sockeye-echo "$PORT" ./target/release/sockeye serve \
  --bind "127.0.0.1:$PORT" --stats-interval 0 --compression takeover --engine uring
finish_targets || rc=1
# The portable engine must give exactly the io_uring engine's results (same expected file).
start_target sockeye-echo-poll sockeye-echo "$((PORT + 3))" ./target/release/sockeye serve \
  --bind "127.0.0.1:$((PORT + 3))" --stats-interval 0 --compression takeover --engine poll
start_target sockeye-tokio sockeye-tokio "$((PORT + 4))" \
  ./target/release/examples/tokio_autobahn_server "127.0.0.1:$((PORT + 4))"
start_target echo-example echo-example "$((PORT + 5))" \
  ./target/release/examples/echo_server "127.0.0.1:$((PORT + 5))"
finish_targets || rc=1

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
