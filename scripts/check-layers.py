#!/usr/bin/env python3
"""Checks DESIGN.md's dependency rules against the server crate's imports.

Every `crate::...` path in a module of server/src (comments and doc links left out; names
re-exported by lib.rs resolved to the module that defines them) is an edge between two
top-level modules. Fails, naming the modules, when the edges form a circle or break a rule:
the handler API names no engine, the io_uring plumbing (`ring`) imports nothing of the
server, and the portable engine's (`poll`, `backend`) only the engine layer. (The client is a crate of its own, `sockeye-client`, which cannot import the server.)
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "src")

# module -> modules it must not import
FORBIDDEN = {
    "handler": {"worker", "hub", "cluster", "http", "ring", "config", "compress"},
    "ring": None,  # None: no crate module at all
}

# module -> the only modules it may import: the engines' plumbing knows no protocol and no
# server feature (the portable engine's poller uses the ring's request kinds and send queue).
ONLY = {
    "poll": {"ring"},
    "backend": {"ring", "poll", "config"},
}


def reexports():
    lib = open(os.path.join(ROOT, "lib.rs")).read()
    names = {}
    for m in re.finditer(r"pub use (\w+)::\{?([^;]*?)\}?;", lib, re.S):
        for name in re.findall(r"\w+", m.group(2)):
            names[name] = m.group(1)
    return names


def graph():
    names = reexports()
    modules = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".rs")}
    modules |= {d for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d))}
    edges = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            module = os.path.relpath(path, ROOT).split(os.sep)[0].removesuffix(".rs")
            if module in ("lib", "main"):
                continue
            text = re.sub(r"//[^\n]*", "", open(path).read())
            out = edges.setdefault(module, set())
            for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
                for name in re.findall(r"\w+", m.group(1)):
                    target = names.get(name, name if name in modules else None)
                    if target and target != module:
                        out.add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    edges = graph()
    errors = []
    for comp in cycles(edges):
        errors.append("import circle: " + " <-> ".join(comp))
    for module, banned in FORBIDDEN.items():
        imports = edges.get(module, set())
        bad = imports if banned is None else imports & banned
        for target in sorted(bad):
            errors.append(f"{module} imports {target}")
    for module, allowed in ONLY.items():
        for target in sorted(edges.get(module, set()) - allowed):
            errors.append(f"{module} imports {target}")
    for module in sorted(edges):
        print(f"{module} -> {', '.join(sorted(edges[module])) or '(nothing)'}")
    if errors:
        print("\n".join(["", "layering broken:"] + errors), file=sys.stderr)
        return 1
    print("no import circle; layering rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
