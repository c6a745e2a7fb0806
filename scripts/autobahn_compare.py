#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite report with a checked-in expected file.

Usage: autobahn_compare.py INDEX_JSON AGENT EXPECTED_JSON [--write]

EXPECTED_JSON maps every case id to "behavior/behaviorClose" (e.g. "OK/OK"). The run passes
when every case has exactly its expected result: a case that got better fails too, so the
expected file is updated on purpose (--write rewrites it from the report). Any FAILED result
fails regardless of the file. Python 3 standard library only.
"""
import json
import sys


def case_key(cid):
    return tuple(int(p) if p.isdigit() else p for p in cid.split("."))


def main(argv):
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    index, agent, expected_path = args
    with open(index, encoding="utf-8") as f:
        cases = json.load(f).get(agent) or {}
    got = {c: f"{r.get('behavior')}/{r.get('behaviorClose')}" for c, r in cases.items()}
    if write:
        with open(expected_path, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(got.items(), key=lambda kv: case_key(kv[0]))), f, indent=1)
            f.write("\n")
        print(f"autobahn: wrote {len(got)} expected results to {expected_path}")
        return 0
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    bad = []
    for c in sorted(set(expected) | set(got), key=case_key):
        e, g = expected.get(c, "missing"), got.get(c, "missing")
        if e != g or "FAILED" in g:
            bad.append(f"  {c}: expected {e}, got {g}")
    if bad:
        print(f"autobahn: {len(bad)} case(s) differ from {expected_path}:")
        print("\n".join(bad))
        return 1
    print(f"autobahn: all {len(got)} cases match {expected_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
