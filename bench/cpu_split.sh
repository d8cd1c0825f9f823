#!/usr/bin/env bash
# Where the shared core's time goes, per request: the proxy's CPU, the upstream's CPU, and how
# often the upstream preempted the proxy. Usage: bash bench/cpu_split.sh
#
# bench/run.sh pins the proxy under test and the upstream (nginx `return 204;`) on one core, so a
# proxy's throughput is that core's time over (proxy CPU + upstream CPU) per request: a proxy that
# makes the upstream work harder per request loses throughput without costing itself more. This
# script measures both sides, from /proc (utime + stime of every thread, and the proxy's
# involuntary context switches: on that core, nearly all are the upstream's wake-ups preempting
# it), for each target in interleaved rounds, and reports medians and ratios paired by round
# (adjacent measurements share the host's passing contention, which moves whole rounds by
# +-20% on a shared machine).
#   targets: bare      bench/bare-proxy's hyper yardstick (as in bench/run.sh)
#            bare-fwd  the same, each request carrying the four headers ringfence adds for the
#                      pool (X-Forwarded-For/-Proto/-Host, X-Request-Id; SPEC §7), so that the
#                      upstream parses what it parses behind ringfence
#            policy    bench/bare-proxy's policy yardstick: bare plus the least policy work
#                      (targets of query and JSON body, prefix tries, a decision line written
#                      before forwarding, the forwarding headers)
#            relay-policy bench/bare-proxy's relay yardstick doing policy's work on the bytes
#                      it parsed (issue 15's other design)
#            policy-noaudit (when named in TARGETS) the policy yardstick judging without a trail
#            ringfence this tree's release build, full policy, audit to a file
#            reference with REFERENCE_BIN=<binary>: another ringfence build, same configuration
#            ringfence-noaudit (when named in TARGETS) this build with `--audit off`, so that the
#                      trail's share of the proxy's CPU shows
# Knobs (environment): WORKLOADS="get post" ROUNDS=12 DURATION=3 WARMUP=1 CONNECTIONS=50
# TARGETS SKIP_BUILD=1 REFERENCE_BIN= and the ports of bench/lib.sh (its own defaults here:
# UPSTREAM_PORT=18304, RINGFENCE_PORT=18306, ADMIN_PORT=18307, BARE_PORT=18308,
# REFERENCE_PORT=18309, REFERENCE_ADMIN_PORT=18310, BARE_INLINE_PORT=18311, BARE_RELAY_PORT=18312,
# NOAUDIT_PORT=18313, NOAUDIT_ADMIN_PORT=18314, BARE_POLICY_PORT=18315, POLICY_NOAUDIT_PORT=18316,
# BARE_RELAY_POLICY_PORT=18317).
# Writes bench/results/cpu-split-<UTC time>.md and prints it.
set -euo pipefail
export UPSTREAM_PORT=${UPSTREAM_PORT:-18304} RINGFENCE_PORT=${RINGFENCE_PORT:-18306}
export ADMIN_PORT=${ADMIN_PORT:-18307} BARE_PORT=${BARE_PORT:-18308}
export REFERENCE_PORT=${REFERENCE_PORT:-18309} REFERENCE_ADMIN_PORT=${REFERENCE_ADMIN_PORT:-18310}
export BARE_INLINE_PORT=${BARE_INLINE_PORT:-18311} BARE_RELAY_PORT=${BARE_RELAY_PORT:-18312}
export BARE_POLICY_PORT=${BARE_POLICY_PORT:-18315} BARE_RELAY_POLICY_PORT=${BARE_RELAY_POLICY_PORT:-18317}
POLICY_NOAUDIT_PORT=${POLICY_NOAUDIT_PORT:-18316}
NOAUDIT_PORT=${NOAUDIT_PORT:-18313} NOAUDIT_ADMIN_PORT=${NOAUDIT_ADMIN_PORT:-18314}
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-12}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-50}
WORKLOADS=${WORKLOADS:-"get post"}
REFERENCE_BIN=${REFERENCE_BIN:-}
TARGETS=${TARGETS:-"bare bare-fwd ringfence${REFERENCE_BIN:+ reference}"}

scratch cpusplit

ensure_tools
build
start_upstream
sleep 0.3
UPSTREAM_WORKER=$(pgrep -P "$UPSTREAM_PID" | head -1)
[ -n "$UPSTREAM_WORKER" ] || die "the upstream's worker process is not found"
start_bare
BARE_PID=$(pgrep -f "bare-proxy hyper 127.0.0.1:$BARE_PORT" | head -1)
POLICY_PID=$(pgrep -f "bare-proxy policy 127.0.0.1:$BARE_POLICY_PORT" | head -1)
RELAY_POLICY_PID=$(pgrep -f "bare-proxy relay-policy 127.0.0.1:$BARE_RELAY_POLICY_PORT" | head -1)
start_ringfence --audit "$WORK/audit.jsonl"
# Another ringfence on ports of its own (a subshell, so that lib.sh's variables stay this one's).
start_other() { # name binary port admin-port audit
  (
    RINGFENCE=$2 RINGFENCE_PORT=$3 ADMIN_PORT=$4
    WORK=$WORK/$1 && mkdir -p "$WORK"
    start_ringfence --audit "$5"
    echo "$RINGFENCE_PID" >"$WORK/pid"
  )
  OTHER_PID=$(cat "$WORK/$1/pid")
  PIDS+=("$OTHER_PID")
}
if [ -n "$REFERENCE_BIN" ]; then
  start_other reference "$REFERENCE_BIN" "$REFERENCE_PORT" "$REFERENCE_ADMIN_PORT" \
    "$WORK/reference-audit.jsonl"
  REFERENCE_PID=$OTHER_PID
fi
if [[ " $TARGETS " == *" policy-noaudit "* ]]; then
  port_free "$POLICY_NOAUDIT_PORT" || die "port $POLICY_NOAUDIT_PORT is taken"
  taskset -c "$SERVER_CPU" "$ROOT/target/bare-proxy/release/bare-proxy" policy \
    "127.0.0.1:$POLICY_NOAUDIT_PORT" "127.0.0.1:$UPSTREAM_PORT" off 2>"$WORK/bare-policy-noaudit.log" &
  POLICY_NOAUDIT_PID=$!
  PIDS+=("$POLICY_NOAUDIT_PID")
  wait_port "$POLICY_NOAUDIT_PORT" "$POLICY_NOAUDIT_PID"
fi
if [[ " $TARGETS " == *" ringfence-noaudit "* ]]; then
  start_other noaudit "$RINGFENCE" "$NOAUDIT_PORT" "$NOAUDIT_ADMIN_PORT" off
  NOAUDIT_PID=$OTHER_PID
fi

target_of() { # target -> "port pid forwarded"
  case $1 in
    bare) echo "$BARE_PORT $BARE_PID 0" ;;
    bare-fwd) echo "$BARE_PORT $BARE_PID 1" ;;
    policy) echo "$BARE_POLICY_PORT $POLICY_PID 0" ;;
    policy-noaudit) echo "$POLICY_NOAUDIT_PORT $POLICY_NOAUDIT_PID 0" ;;
    relay-policy) echo "$BARE_RELAY_POLICY_PORT $RELAY_POLICY_PID 0" ;;
    ringfence) echo "$RINGFENCE_PORT $RINGFENCE_PID 0" ;;
    reference) echo "$REFERENCE_PORT $REFERENCE_PID 0" ;;
    ringfence-noaudit) echo "$NOAUDIT_PORT $NOAUDIT_PID 0" ;;
    *) die "unknown target $1 (bare bare-fwd policy policy-noaudit relay-policy ringfence reference ringfence-noaudit)" ;;
  esac
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # every thread's, in clock ticks
preempted() { cat /proc/"$1"/task/*/status | awk '/^nonvoluntary_ctxt/ {n += $2} END {print n}'; }

RAW=$WORK/raw.tsv
: >"$RAW"
for round in $(seq "$ROUNDS"); do
  for w in $WORKLOADS; do
    for t in $TARGETS; do
      read -r port pid fwd < <(target_of "$t")
      url=http://127.0.0.1:$port
      WORKLOAD=$w FORWARDED=$fwd taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" \
        -d"$WARMUP"s -s "$BENCH/wrk.lua" "$url" >/dev/null
      p0=$(cpu_ticks "$pid") u0=$(cpu_ticks "$UPSTREAM_WORKER") c0=$(preempted "$pid")
      line=$(WORKLOAD=$w FORWARDED=$fwd taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" \
        -d"$DURATION"s -s "$BENCH/wrk.lua" "$url" | grep '^RESULT ') ||
        die "wrk printed no RESULT for $t $w"
      p1=$(cpu_ticks "$pid") u1=$(cpu_ticks "$UPSTREAM_WORKER") c1=$(preempted "$pid")
      printf '%s\t%s\t%s\t%s proxy_ticks=%s upstream_ticks=%s preempted=%s\n' "$round" "$w" "$t" \
        "${line#RESULT }" $((p1 - p0)) $((u1 - u0)) $((c1 - c0)) >>"$RAW"
      [[ $line =~ errors_status=0\  ]] || log "warning: $t answered $w with errors: ${line#RESULT }"
      log "round $round $w $t done"
    done
  done
done

RESULTS=$BENCH/results/cpu-split-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Where the shared core's time goes, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/cpu_split.sh\` (ROUNDS=$ROUNDS DURATION=${DURATION}s CONNECTIONS=$CONNECTIONS)"
  echo "- built from: $BUILT_FROM${REFERENCE_BIN:+; reference: $REFERENCE_BIN}"
  echo "- machine: $(nproc) CPUs, kernel $(uname -r); wrk on CPU $LOADGEN_CPU, proxy and upstream on CPU $SERVER_CPU"
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  python3 - "$RAW" "$(getconf CLK_TCK)" <<'PY'
import statistics as st, sys
from collections import defaultdict
tick_us = 1e6 / int(sys.argv[2])
rows = defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, w, t, fields = line.rstrip("\n").split("\t")
    kv = {k: float(v) for k, v in (f.split("=") for f in fields.split())}
    n = kv["requests"]
    rows[(w, rnd)][t] = {
        "rps": kv["rps"], "p99": kv["p99_us"] / 1000,
        "proxy": kv["proxy_ticks"] * tick_us / n, "upstream": kv["upstream_ticks"] * tick_us / n,
        "preempted": kv["preempted"] / n,
        "errors": sum(v for k, v in kv.items() if k.startswith("errors_")),
    }
workloads = list(dict.fromkeys(w for w, _ in rows))
targets = list(dict.fromkeys(t for r in rows.values() for t in r))
keys = ["rps", "p99", "proxy", "upstream", "preempted"]
print("## Medians over rounds\n")
print("| workload | target | requests/s | p99 ms | proxy CPU µs/req | upstream CPU µs/req | both | proxy preempted /req | errors (all rounds) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for w in workloads:
    rs = [r for (ww, _), r in rows.items() if ww == w]
    for t in targets:
        m = {k: st.median(r[t][k] for r in rs if t in r) for k in keys}
        both = st.median(r[t]["proxy"] + r[t]["upstream"] for r in rs if t in r)
        errors = sum(r[t]["errors"] for r in rs if t in r)
        print(f"| {w} | {t} | {m['rps']:,.0f} | {m['p99']:.2f} | {m['proxy']:.2f} | {m['upstream']:.2f} | {both:.2f} | {m['preempted']:.3f} | {errors:.0f} |")
print("\n## Ratios paired by round (median; range)\n")
print("| workload | ratio | requests/s | p99 | proxy CPU | upstream CPU | rounds won |")
print("|---|---|---:|---:|---:|---:|---:|")
for w in workloads:
    rs = [r for (ww, _), r in rows.items() if ww == w]
    for a, b in [(a, b) for i, a in enumerate(targets) for b in targets[:i]]:
        pair = [r for r in rs if a in r and b in r]
        def ratio(k):
            x = [r[a][k] / r[b][k] for r in pair if r[b][k]]
            return f"{st.median(x):.3f} ({min(x):.2f}-{max(x):.2f})" if x else "-"
        won = sum(r[a]["rps"] > r[b]["rps"] for r in pair)
        print(f"| {w} | {a} / {b} | {ratio('rps')} | {ratio('p99')} | {ratio('proxy')} | {ratio('upstream')} | {won}/{len(pair)} |")
print("\n## Every round\n")
print("So that a drift over the run shows (the trail's file grows by ~100 MB a round).\n")
print("| workload | round | target | requests/s | p99 ms | proxy CPU µs/req | upstream CPU µs/req | proxy preempted /req |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for (w, rnd), r in rows.items():
    for t, v in r.items():
        print(f"| {w} | {rnd} | {t} | {v['rps']:,.0f} | {v['p99']:.2f} | {v['proxy']:.2f} | {v['upstream']:.2f} | {v['preempted']:.3f} |")
PY
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
