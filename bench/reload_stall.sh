#!/usr/bin/env bash
# The longest request stall while the configuration reloads under load (issue #11).
# Usage: bash bench/reload_stall.sh        (REFERENCE=<commit> also measures an earlier build)
#
# ringfence runs on ONE worker thread (RINGFENCE_WORKER_THREADS=1, the worst case: the
# current-thread scheduler has no other thread to run requests on) with the generated policy at
# PATTERNS patterns per list (default 100,000) and ENTRIES entries. wrk sends guarded POSTs for
# DURATION seconds on CONNECTIONS connections, twice: once quiet, once with one `POST /reload`
# RELOAD_AT seconds in. Beside wrk, bench/stall_probe.py sends GETs one after another and reports
# the longest any of them waited: that is the stall (wrk does not count requests still waiting
# when its run ends). The reload's own duration is what `POST /reload` took to answer.
# Writes bench/results/reload-<UTC time>.md and prints the same table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PATTERNS=${PATTERNS:-100000}
ENTRIES=${ENTRIES:-10000}
DURATION=${DURATION:-40}
RELOAD_AT=${RELOAD_AT:-3}
CONNECTIONS=${CONNECTIONS:-10}
REFERENCE=${REFERENCE:-}
# Compiling 100,000 patterns per list at start takes a while.
export WAIT_PORT_SECONDS=${WAIT_PORT_SECONDS:-300}

scratch reload

ensure_tools
build
start_upstream
log "generating and checking the policy ($PATTERNS patterns per list)"
start_ringfence --patterns "$PATTERNS" --entries "$ENTRIES" --audit off
if [ -n "$REFERENCE" ]; then
  start_reference
fi

# One run: wrk's load and bench/stall_probe.py on the target's port for DURATION seconds; with
# a reload, one `POST /reload` to its admin port RELOAD_AT seconds in. Prints the wrk RESULT
# fields, the probe's and the reload's time on one line.
measure() { # port admin_port reload(0|1)
  local port=$1 admin=$2 reload=$3
  WORKLOAD=post taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION"s \
    -s "$BENCH/wrk.lua" "http://127.0.0.1:$port" >"$WORK/wrk.out" &
  local wrk=$!
  taskset -c "$LOADGEN_CPU" python3 "$BENCH/stall_probe.py" "127.0.0.1:$port" "$DURATION" \
    >"$WORK/probe.out" &
  local probe=$!
  local took="-"
  if [ "$reload" = 1 ]; then
    sleep "$RELOAD_AT"
    took=$(curl -s -o "$WORK/reload.body" -w '%{time_total}' -X POST "http://127.0.0.1:$admin/reload")
    grep -q '^reloaded' "$WORK/reload.body" || die "the reload failed: $(cat "$WORK/reload.body")"
  fi
  wait "$wrk" "$probe"
  echo "$(grep '^RESULT ' "$WORK/wrk.out" | sed 's/^RESULT //') $(sed 's/^PROBE //' "$WORK/probe.out") reload_s=$took"
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $2"; }
ms() { awk -v us="$1" 'BEGIN { print us / 1000 }'; }

RESULTS=$BENCH/results/reload-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Reload under load, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/reload_stall.sh\` (PATTERNS=$PATTERNS ENTRIES=$ENTRIES DURATION=${DURATION}s RELOAD_AT=${RELOAD_AT}s CONNECTIONS=$CONNECTIONS)"
  echo "- built from: $BUILT_FROM${REFERENCE:+; reference: ringfence at $REFERENCE_REV}"
  echo "- machine: $(nproc) CPUs, kernel $(uname -r); ringfence RINGFENCE_WORKER_THREADS=1 on CPU $SERVER_CPU, wrk on CPU $LOADGEN_CPU"
  echo "- policy: $(grep -E 'global deny' "$WORK/check-config.txt" | tr -s ' \n' ' ')"
  echo
  echo "| build | reload | reload took s | wrk requests/s | wrk p99 ms | wrk timeouts | probe requests | longest probe wait ms |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
} >"$RESULTS"
for target in ringfence ${REFERENCE:+reference}; do
  if [ "$target" = ringfence ]; then
    port=$RINGFENCE_PORT admin=$ADMIN_PORT name=$BUILT_FROM
  else
    port=$REFERENCE_PORT admin=$REFERENCE_ADMIN_PORT name=$REFERENCE_REV
  fi
  for reload in 0 1; do
    log "$target: reload=$reload"
    line=$(measure "$port" "$admin" "$reload")
    log "$line"
    printf '| %s | %s | %s | %.0f | %s | %s | %s | %s |\n' "$name" \
      "$([ "$reload" = 1 ] && echo "at ${RELOAD_AT}s" || echo none)" "$(field reload_s "$line")" \
      "$(field rps "$line")" "$(ms "$(field p99_us "$line")")" "$(field errors_timeout "$line")" \
      "$(field requests "$line" | tail -1)" "$(field max_ms "$line")" >>"$RESULTS"
  done
done
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
