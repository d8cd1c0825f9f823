#!/usr/bin/env python3
"""Summarises bench/run.sh's raw wrk lines: the median over rounds per target and workload; the
ratios of ringfence to each yardstick (bare, inline, relay, policy, relay-policy), to the reference
build and to nginx; the ratios of the other yardsticks to bare, and of relay-policy to relay. usage: report.py RAW.tsv"""
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
raw = []
for line in open(sys.argv[1]):
    rnd, workload, target, fields = line.rstrip("\n").split("\t")
    kv = dict(f.split("=") for f in fields.split())
    rows[(workload, target)].append(kv)
    raw.append((rnd, workload, target, kv))


def med(workload, target, key):
    return statistics.median(float(r[key]) for r in rows[(workload, target)])


def errors(workload, target):
    return sum(int(r[k]) for r in rows[(workload, target)] for k in r if k.startswith("errors_"))


workloads = list(dict.fromkeys(w for w, _ in rows))
targets = list(dict.fromkeys(t for _, t in rows))
print("## Medians over rounds\n")
print("| workload | target | requests/s | p50 ms | p99 ms | p99.9 ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for w in workloads:
    for t in targets:
        if (w, t) in rows:
            print(f"| {w} | {t} | {med(w, t, 'rps'):,.0f} | {med(w, t, 'p50_us') / 1000:.3f} | "
                  f"{med(w, t, 'p99_us') / 1000:.3f} | {med(w, t, 'p999_us') / 1000:.3f} | {errors(w, t)} |")


def ratios(target, over):
    """target's medians over another target's, per workload."""
    if target not in targets or over not in targets:
        return
    print(f"\n## {target} / {over} (medians)\n")
    print("| workload | throughput | p50 | p99 | p99.9 |")
    print("|---|---:|---:|---:|---:|")
    for w in workloads:
        if (w, target) not in rows or (w, over) not in rows:
            continue
        r = lambda k: med(w, target, k) / med(w, over, k)
        print(f"| {w} | {r('rps'):.2f}x | {r('p50_us'):.2f}x | {r('p99_us'):.2f}x | {r('p999_us'):.2f}x |")


# bare: SPEC §11's yardstick (>= 0.95x throughput, p99 <= 1.1x), a hyper server and hyper-util's
# pooled client as ringfence has; inline and relay: what a hyper path without the pool, and one
# that forwards the bytes it parsed, cost; reference: the same proxy before a change; nginx: the
# aim; policy: bare plus the least a policy gateway does per request (bench/bare-proxy/src/policy.rs),
# what judging and recording a guarded POST costs at the least. Then the yardsticks against bare:
# what the pool and its connection tasks cost (inline / bare), a bound on what hyper and the pool
# cost together (relay / bare), and what the job itself costs (policy / bare); relay-policy: the
# same job on a path that forwards the bytes it parsed (relay-policy / bare, / relay).
for over in ["bare", "inline", "relay", "policy", "relay-policy", "reference", "nginx"]:
    ratios("ringfence", over)
for target in ["inline", "relay", "policy", "relay-policy"]:
    ratios(target, "bare")
ratios("relay-policy", "relay")
print("\n## Every measurement\n")
print("| round | workload | target | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
for rnd, w, t, kv in raw:
    err = sum(int(kv[k]) for k in kv if k.startswith("errors_"))
    print(f"| {rnd} | {w} | {t} | {float(kv['rps']):,.0f} | {int(kv['p50_us']) / 1000:.3f} | "
          f"{int(kv['p99_us']) / 1000:.3f} | {int(kv['p999_us']) / 1000:.3f} | {int(kv['max_us']) / 1000:.3f} | {err} |")
