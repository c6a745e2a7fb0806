#!/usr/bin/env bash
# Installs what the tests drive besides Rust: the independent peers and the browser.
#   - Python: websockets (interop client and server), prometheus-client (parses /metrics)
#   - Debian: chromium (the browser test), nats-server (the cluster test)
#   - npm (lock files in the repository): playwright-core in tests/browser, ws in
#     tests/interop-node
# Idempotent; run as root on Debian (as CI does). `cargo test` skips what is missing, unless
# SOCKEYE_REQUIRE_INTEROP / SOCKEYE_REQUIRE_BROWSER are set.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check \
  'websockets==15.0.1' 'prometheus-client==0.26.0'

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nats-server >/dev/null || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "test-deps: need root to apt-get install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

for dir in tests/browser tests/interop-node; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
echo "test-deps: $(python3 -c 'import websockets; print("websockets", websockets.__version__)'), $(/usr/bin/chromium --version 2>/dev/null | head -1), $(nats-server --version), node $(node --version)"
