#!/usr/bin/env python3
"""Runs one of uWebSockets' own load testers (load_test, broadcast_test) against a server that is
already running, and prints one JSON line: messages per second as the tester reports them and
the server's CPU per message over the same reports (from /proc/PID/stat).

    second_opinion.py --server-pid PID --label L --mode echo|broadcast --connections N
                      [--size B] [--reports K] -- TESTER ARGS...

The testers print a rate every 4 s (uSockets' timeout granularity); the first report is skipped
(connections still opening), the next K are used. broadcast_test counts iterations: every
connection sends one message and waits for all N*N deliveries, so deliveries = iterations * N*N.
"""
import argparse, json, os, statistics, subprocess, sys, threading, time

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

ap = argparse.ArgumentParser()
ap.add_argument("--server-pid", type=int, required=True)
ap.add_argument("--label", required=True)
ap.add_argument("--mode", choices=["echo", "broadcast"], required=True)
ap.add_argument("--connections", type=int, required=True)
ap.add_argument("--size", type=int, default=20)
ap.add_argument("--reports", type=int, default=2)
ap.add_argument("cmd", nargs=argparse.REMAINDER)
a = ap.parse_args()
cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
key = "Msg/sec:" if a.mode == "echo" else "Iterations/second"
# The testers printf to a pipe: line-buffer them.
p = subprocess.Popen(["stdbuf", "-oL"] + cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
marks, rates = [], []
# Bounded in time even if the tester goes silent: it is killed after the reports' worth plus
# 30 s for connecting.
watchdog = threading.Timer(4 * (a.reports + 3) + 30, p.kill)
watchdog.start()
for line in p.stdout:
    if not line.startswith(key):
        continue
    marks.append((time.monotonic(), cpu_seconds(a.server_pid)))
    rates.append(float(line.rsplit(":", 1)[1]))
    if len(rates) == a.reports + 1:
        break
watchdog.cancel()
p.kill()
p.wait()
if len(rates) < a.reports + 1:
    sys.exit(f"{a.label}: the tester gave {len(rates)} reports")
per_report = a.connections * a.connections if a.mode == "broadcast" else 1
rate = statistics.mean(rates[1:]) * per_report
(t0, c0), (t1, c1) = marks[0], marks[-1]
msgs = rate * (t1 - t0)
print(json.dumps({
    "mode": f"uws-{a.mode}", "label": a.label, "connections": a.connections, "size": a.size,
    "msgs_per_s": round(rate), "server_cpu_ns_per_msg": round((c1 - c0) * 1e9 / msgs) if msgs else -1,
    "server_cpu_share": round((c1 - c0) / (t1 - t0), 3), "tester": os.path.basename(cmd[0]),
}))
