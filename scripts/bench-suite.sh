#!/usr/bin/env bash
# The bench suite in one command: sockeye's server against the peers (uWebSockets when built,
# tokio-tungstenite, fastwebsockets) and the raw TCP floor on one pinned core each
# (scripts/bench-servers.sh, every scenario), uWebSockets' own load testers as a second
# opinion (scripts/bench-second-opinion.sh, when their sources are at hand), the codec's
# criterion benchmarks, then charts (docs/bench/*.svg, drawn by `bench-report` with plotters)
# and the generated section of BENCHMARKS.md: the tables with ratios to sockeye, the machine,
# the command, and which runs were not CPU-bound.
#
#   scripts/bench-suite.sh [REPEATS] [SECONDS]   full run (defaults 3 × 5 s); rewrites the
#                                                generated section of BENCHMARKS.md and docs/bench
#   scripts/bench-suite.sh --quick               a subset, 1 × 2 s, no criterion, under two
#                                                minutes; writes target/bench/report.md and
#                                                target/bench/charts/ only
#   scripts/bench-suite.sh --report-only         redraws the charts and the generated section
#                                                from the last full run's results
#
# Compression has its own script (scripts/bench-deflate.sh), the clients theirs
# (scripts/bench-clients.sh); their figures are in BENCHMARKS.md's hand-written sections.
set -euo pipefail
cd "$(dirname "$0")/.."
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [ ! -f "$FONT" ]; then
  echo "bench-suite: installing fonts-dejavu-core for the chart labels"
  apt-get install -y -q fonts-dejavu-core >/dev/null
fi
cargo build --release -q -p sockeye-benches --bin bench-report
START="started $(date -u +%Y-%m-%dT%H:%MZ)"
if [ "${1:-}" = --report-only ]; then
  ARGS="3 5"   # the arguments of the run being reported (the defaults)
  START="server runs finished $(date -u -r target/bench/servers.jsonl +%Y-%m-%dT%H:%MZ)"
  CHARTS=docs/bench
  REPORT=BENCHMARKS.md
  CODEC=$(python3 scripts/codec-bench-report.py)
elif [ "${1:-}" = --quick ]; then
  ARGS="--quick"
  bash scripts/bench-servers.sh --quick
  CHARTS=target/bench/charts
  REPORT=target/bench/report.md
  rm -rf "$CHARTS"
  CODEC=""
else
  ARGS="${1:-3} ${2:-5}"
  bash scripts/bench-servers.sh "${1:-3}" "${2:-5}"
  # uWebSockets' own load testers as a second opinion (skipped, saying so, without their sources).
  rm -f target/bench/second-opinion.jsonl
  bash scripts/bench-second-opinion.sh "${1:-3}"
  CHARTS=docs/bench
  REPORT=BENCHMARKS.md
  taskset -c 1 cargo bench -q -p sockeye-benches --bench codec -- --warm-up-time 1 \
    --measurement-time 4 >target/bench/codec.log 2>&1
  CODEC=$(python3 scripts/codec-bench-report.py)
fi
./target/release/bench-report --servers target/bench/servers.jsonl --out "$CHARTS" --font "$FONT"
TABLE=$(python3 scripts/bench_table.py target/bench/servers.jsonl)
SECOND=""
if [ "$REPORT" = BENCHMARKS.md ] && [ -s target/bench/second-opinion.jsonl ]; then
  SECOND=$(python3 scripts/bench_table.py target/bench/second-opinion.jsonl)
fi
MACHINE="$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r | cut -d- -f1), $(rustc -V | cut -d' ' -f1,2)"
BOUND=$(python3 - target/bench/servers.jsonl <<'PY'
import json, statistics, sys
runs = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    # One connection with one message in flight waits on the loopback round trip by design.
    if r.get("connections") == 1 or r["mode"] == "conns" or r.get("server_cpu_share") is None:
        continue
    # k: messages in flight per connection (echo) or the publisher's window (broadcast).
    key = (r["label"], r["mode"], r["connections"], int(r.get("in_flight", r.get("window", 1))), r.get("size"))
    runs.setdefault(key, []).append((r["server_cpu_share"], r.get("load_cpu_share") or 0))
low = []
for (label, mode, conns, k, size), v in sorted(runs.items()):
    share = statistics.median(s for s, _ in v)
    load = statistics.median(l for _, l in v)
    if share < 0.9:
        low.append(f"{label} {mode} {conns}×{k}×{size} B (server {share:.2f}, load {load:.2f})")
print("; ".join(low) if low else "none")
PY
)
export START ARGS MACHINE TABLE SECOND CODEC BOUND CHARTS REPORT
python3 - <<'PY'
import os
e = os.environ
charts = e["CHARTS"]
images = ""
for name, alt in [("throughput", "messages per second relative to sockeye"),
                  ("cpu", "server CPU per message as a multiple of the raw TCP floor"),
                  ("memory", "server memory per idle connection")]:
    if os.path.exists(f"{charts}/{name}.svg"):
        images += f"![{alt}]({charts}/{name}.svg)\n\n"
block = f"""<!-- suite:begin (written by scripts/bench-suite.sh; edits here are overwritten) -->
### Latest suite run

`scripts/bench-suite.sh {e['ARGS']}`, {e['START']}. Machine: {e['MACHINE']}. Every
server pinned to core 0 with one worker/thread, the load generator to core 1; medians of the
repeats; ratios are sockeye ÷ peer for throughput and peer ÷ sockeye for CPU and memory (above
1: sockeye is ahead). Not CPU-bound — runs whose server used under 0.90 of its core (median of
the repeats; the load generator's share beside it; single-connection latency runs, which wait on
the loopback round trip by design, left out): {e['BOUND']}.

{images}
{e['TABLE']}
"""
if e.get("SECOND"):
    block += ("\n#### Second opinion: uWebSockets' own load testers (scripts/bench-second-opinion.sh)\n\n"
              + e["SECOND"] + "\n")
if e.get("CODEC"):
    block += "\n#### Codec (criterion)\n\n" + e["CODEC"] + "\n"
block += "<!-- suite:end -->\n"
path = e["REPORT"]
if path == "BENCHMARKS.md":
    doc = open(path).read()
    begin = doc.find("<!-- suite:begin")
    end = doc.find("<!-- suite:end -->")
    if begin >= 0 and end > begin:
        doc = doc[:begin] + block + doc[end + len("<!-- suite:end -->\n"):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block
    open(path, "w").write(doc)
else:
    open(path, "w").write(block.replace("](target/bench/charts/", "](charts/"))
print(f"bench-suite: wrote {path} and {charts}/*.svg")
PY
