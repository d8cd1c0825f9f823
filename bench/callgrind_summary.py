#!/usr/bin/env python3
"""Reads callgrind dumps (Ir only) into per-request instruction counts, for bench/instructions.sh.

usage: callgrind_summary.py REQUESTS DUMP [--top K] [--json OUT]
       callgrind_summary.py --compare A.json B.json [--top K]

Prints the total instructions per request, those of libc's memcpy/memmove apart (glibc copies a
block of more than a few KiB with `rep movsb`, which valgrind counts once per byte: a 12 KiB move
of a service future counts 12,000 here and costs a few hundred cycles), the self instructions of
ringfence's own functions (symbols under `ringfence::`, or trait impls on its types,
`<ringfence::...`) per request, and the top K ringfence functions by inclusive instructions per request. Functions are merged by
name: callgrind splits one symbol by the source file of its inlined code, and `callgrind_annotate`
prints each piece apart. Inclusive = self + calls to other functions (a recursive call is not
added twice; mutual recursion can still count a cost twice, as in callgrind_annotate).

--compare reads two --json outputs (say ringfence's and the reference's, or ringfence's and the
bare proxy's, from bench/instructions.sh DUMPS=dir) and prints the functions whose self
instructions per request differ most, whatever crate they are in.
"""
import argparse
import json
import re
import sys
from collections import defaultdict

NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def own(name):
    return name.startswith("ringfence::") or name.startswith("<ringfence::")


def parse(path):
    names = {}
    self_ir = defaultdict(int)
    calls_ir = defaultdict(int)
    total = None
    current = callee = None
    call_next = False

    def name_of(spec):
        m = NAMED.match(spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                if call_next:
                    if callee != current:
                        calls_ir[current] += cost
                    call_next = False
                else:
                    self_ir[current] += cost
            elif line.startswith("fn="):
                current = name_of(line[3:])
            elif line.startswith("cfn="):
                callee = name_of(line[4:])
            elif line.startswith("calls="):
                call_next = True
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    if total is None:
        total = sum(self_ir.values())
    inclusive = {n: self_ir[n] + calls_ir[n] for n in set(self_ir) | set(calls_ir)}
    return total, self_ir, inclusive


def compare(a_path, b_path, top):
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    na, nb = a["requests"], b["requests"]
    print(f"  all: {a['total'] / na:,.0f} against {b['total'] / nb:,.0f} per request")
    if "main_thread" in a and "main_thread" in b:
        print(
            f"  main's thread: {a['main_thread'] / na:,.0f} against"
            f" {b['main_thread'] / nb:,.0f} per request"
        )
    names = set(a["self"]) | set(b["self"])
    delta = {k: a["self"].get(k, 0) / na - b["self"].get(k, 0) / nb for k in names}
    print(f"  top {top} differences in self instructions per request (A, B, A - B):")
    for k in sorted(names, key=lambda k: -abs(delta[k]))[:top]:
        print(
            f"    {a['self'].get(k, 0) / na:>9,.0f} {b['self'].get(k, 0) / nb:>9,.0f}"
            f" {delta[k]:>+9,.0f}  {k}"
        )


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        ap = argparse.ArgumentParser()
        ap.add_argument("--compare", nargs=2, required=True)
        ap.add_argument("--top", type=int, default=40)
        a = ap.parse_args()
        compare(a.compare[0], a.compare[1], a.top)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("requests", type=int)
    ap.add_argument("dump")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json")
    a = ap.parse_args()
    total, self_ir, inclusive = parse(a.dump)
    n = a.requests
    own_self = sum(v for k, v in self_ir.items() if own(k))
    copies = sum(v for k, v in self_ir.items() if k.startswith(("__memcpy", "__memmove")))
    # The runtime's thread is main's (ringfence runs one current-thread runtime there): the
    # rest is the trail's writer and the helper threads, which with one request in flight
    # wake for every line and move the total by hundreds from run to run.
    main_thread = inclusive.get("main", 0)
    print(f"  instructions per request: {total / n:,.0f}")
    print(f"  of which in main's thread (the runtime's): {main_thread / n:,.0f}")
    print(f"  of which memcpy/memmove: {copies / n:,.0f}")
    print(f"  in ringfence's own functions (self): {own_self / n:,.0f}")
    print(f"  top {a.top} ringfence functions, inclusive (self) instructions per request:")
    ranked = sorted((k for k in inclusive if own(k)), key=lambda k: -inclusive[k])[: a.top]
    for k in ranked:
        print(f"    {inclusive[k] / n:>10,.0f} ({self_ir[k] / n:>8,.0f})  {k}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "requests": n,
                    "total": total,
                    "own_self": own_self,
                    "copies": copies,
                    "main_thread": main_thread,
                    "self": {k: v for k, v in self_ir.items() if v},
                    "inclusive": {k: v for k, v in inclusive.items() if v},
                },
                f,
            )


if __name__ == "__main__":
    main()
