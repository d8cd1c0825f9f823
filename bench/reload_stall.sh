#!/usr/bin/env bash
# The longest request stall while the configuration reloads under load (issue #11).
# Usage: bash bench/reload_stall.sh        (REFERENCE=<commit> also measures an earlier build)
#
# ringfence runs on ONE worker thread (RINGFENCE_WORKER_THREADS=1, the worst case: the
# current-thread scheduler has no other thread to run requests on) with the generated policy at
# PATTERNS patterns per list (default 100,000) and ENTRIES entries. wrk sends guarded POSTs for
# DURATION seconds on CONNECTIONS connections, twice: once quiet, once while `POST /reload` is
# sent every INTERVAL seconds. The stall is wrk's longest latency in the reloading run against the
# quiet one; each reload's own duration is what `POST /reload` took to answer.
# Writes bench/results/reload-<UTC time>.md and prints the same table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PATTERNS=${PATTERNS:-100000}
ENTRIES=${ENTRIES:-10000}
DURATION=${DURATION:-20}
INTERVAL=${INTERVAL:-4}
CONNECTIONS=${CONNECTIONS:-10}
REFERENCE=${REFERENCE:-}
# Compiling 100,000 patterns per list at start takes a while.
export WAIT_PORT_SECONDS=${WAIT_PORT_SECONDS:-300}

WORK=$(mktemp -d /tmp/ringfence-reload.XXXXXX)
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

ensure_tools
build
start_upstream
log "generating and checking the policy ($PATTERNS patterns per list)"
start_ringfence --patterns "$PATTERNS" --entries "$ENTRIES" --audit off
if [ -n "$REFERENCE" ]; then
  start_reference
fi

# One run: wrk on the target's port; with reloads, POST /reload to its admin port meanwhile.
measure() { # port admin_port reload(0|1)
  local port=$1 admin=$2 reload=$3 times=$WORK/reload-times
  : >"$times"
  if [ "$reload" = 1 ]; then
    (
      sleep 2
      end=$((SECONDS + DURATION - 4))
      while [ "$SECONDS" -lt "$end" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST \
          "http://127.0.0.1:$admin/reload" >>"$times"
        sleep "$INTERVAL"
      done
    ) &
    local reloader=$!
  fi
  WORKLOAD=post taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION"s \
    -s "$BENCH/wrk.lua" "http://127.0.0.1:$port" | grep '^RESULT ' | sed 's/^RESULT //'
  if [ "$reload" = 1 ]; then
    wait "$reloader"
  fi
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $2"; }
ms() { awk -v us="$1" 'BEGIN { print us / 1000 }'; }

RESULTS=$BENCH/results/reload-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Reload under load, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/reload_stall.sh\` (PATTERNS=$PATTERNS ENTRIES=$ENTRIES DURATION=${DURATION}s INTERVAL=${INTERVAL}s CONNECTIONS=$CONNECTIONS)"
  echo "- built from: $BUILT_FROM${REFERENCE:+; reference: ringfence at $REFERENCE_REV}"
  echo "- machine: $(nproc) CPUs, kernel $(uname -r); ringfence RINGFENCE_WORKER_THREADS=1 on CPU $SERVER_CPU, wrk on CPU $LOADGEN_CPU"
  echo "- policy: $(grep -E 'global deny' "$WORK/check-config.txt" | tr -s ' \n' ' ')"
  echo
  echo "| build | reloads | reload took (s) | requests/s | p99 ms | p99.9 ms | longest request ms |"
  echo "|---|---|---|---:|---:|---:|---:|"
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
    took="-"
    if [ "$reload" = 1 ]; then
      grep -qv '^200 ' "$WORK/reload-times" && die "a reload failed: $(cat "$WORK/reload-times")"
      took=$(cut -d' ' -f2 "$WORK/reload-times" | sort -n | awk '{ a[NR] = $1 } END { printf "%d, %.2f-%.2f", NR, a[1], a[NR] }')
    fi
    printf '| %s | %s | %s | %.0f | %.1f | %.1f | %.1f |\n' "$name" \
      "$([ "$reload" = 1 ] && echo "every ${INTERVAL}s" || echo none)" "$took" \
      "$(field rps "$line")" "$(ms "$(field p99_us "$line")")" \
      "$(ms "$(field p999_us "$line")")" "$(ms "$(field max_us "$line")")" >>"$RESULTS"
  done
done
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
