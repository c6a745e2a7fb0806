# The servers the bench scripts measure, started and stopped the same way by each of them
# (sourced by scripts/bench-servers.sh and scripts/bench-second-opinion.sh). Each server is
# pinned to core 0, with one worker or thread, on $PORT; uWebSockets is $UWS_PEER (default
# /tmp/uws-peer/uws-peer, built as ../shared/tools/peer-uws/README.md says).
UWS_PEER=${UWS_PEER:-/tmp/uws-peer/uws-peer}

start_server() {   # start_server NAME MODE -> sets SPID
  local name=$1 mode=$2
  case $name in
    sockeye) taskset -c 0 target/release/sockeye serve --port $PORT --workers 1 --mode "$mode" \
               --stats-interval 0 --max-backpressure 16MiB >/dev/null 2>&1 & ;;
    tokio-tungstenite) taskset -c 0 target/release/peer-server --impl tungstenite --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    fastwebsockets) taskset -c 0 target/release/peer-server --impl fastwebsockets --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    uWebSockets) taskset -c 0 "$UWS_PEER" --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    sockeye-tokio) taskset -c 0 target/release/peer-server --impl sockeye-tokio --port $PORT --mode "$mode" >/dev/null 2>&1 & ;;
    raw-echo) taskset -c 0 target/release/peer-server --impl raw-echo --port $PORT >/dev/null 2>&1 & ;;
    raw-fanout) taskset -c 0 target/release/peer-server --impl raw-fanout --port $PORT >/dev/null 2>&1 & ;;
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
