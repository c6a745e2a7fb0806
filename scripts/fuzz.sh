#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 20), one after another, and
# fails on the first crash. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Installs cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
mkdir -p target/fuzz-logs
for t in "${TARGETS[@]}"; do
  echo "== fuzz $t for ${SECS}s"
  log=target/fuzz-logs/$t.log
  # Seeds are checked in as fuzz/corpus/$t/seed-*; what the run adds stays untracked.
  rc=0
  (cd fuzz && cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048) >"$log" 2>&1 || rc=$?
  grep -E "^#[0-9]+ +(INITED|DONE)|^Done [0-9]+ runs" "$log" | tail -3 || true
  if [ "$rc" != 0 ]; then
    grep -E "panicked|SUMMARY|ERROR|error(\[|:)|Test unit written" "$log" | head -20 >&2 || true
    echo "fuzz: $t failed (exit $rc); full log in $log" >&2
    exit 1
  fi
done
echo "fuzz: ${#TARGETS[@]} targets, ${SECS}s each, no crash"
