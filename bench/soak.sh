#!/usr/bin/env bash
# Soak: ringfence with the full policy under steady load (wrk, guarded POSTs and pass-through GETs
# side by side, 25 connections each) for SOAK_SECONDS (600), sampling its RSS every 30 s.
# Usage: bash bench/soak.sh   (SOAK_SECONDS=600 SAMPLE=30 SKIP_BUILD=1)
# Writes bench/results/soak-<UTC time>.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SOAK_SECONDS=${SOAK_SECONDS:-600}
SAMPLE=${SAMPLE:-30}
scratch soak

ensure_tools
build
start_upstream
start_ringfence --audit "$WORK/audit.jsonl"
for w in post get; do
  WORKLOAD=$w taskset -c "$LOADGEN_CPU" wrk -t1 -c25 -d"${SOAK_SECONDS}"s --latency \
    -s "$BENCH/wrk.lua" "http://127.0.0.1:$RINGFENCE_PORT" >"$WORK/wrk-$w.out" &
  PIDS+=("$!")
  eval "WRK_$w=$!"
done
start=$(date +%s)
: >"$WORK/samples"
while :; do
  now=$(($(date +%s) - start))
  printf '%s\t%s\n' "$now" "$(rss_kib "$RINGFENCE_PID")" >>"$WORK/samples"
  log "t=${now}s RSS $(rss_kib "$RINGFENCE_PID") KiB"
  [ "$now" -ge "$SOAK_SECONDS" ] && break
  sleep "$SAMPLE"
done
wait "$WRK_post" "$WRK_get"
truncate -s 0 "$WORK/audit.jsonl"
RESULTS=$BENCH/results/soak-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# ringfence soak, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/soak.sh\` (SOAK_SECONDS=$SOAK_SECONDS SAMPLE=${SAMPLE}s); built from $BUILT_FROM"
  echo "- load: wrk -c25 guarded POSTs + wrk -c25 pass-through GETs on CPU $LOADGEN_CPU; ringfence and upstream on CPU $SERVER_CPU; audit to a file"
  for w in post get; do
    echo "- $w: $(grep '^RESULT' "$WORK/wrk-$w.out" | sed 's/^RESULT //')"
  done
  echo
  echo "| t (s) | RSS KiB |"
  echo "|---:|---:|"
  awk -F'\t' '{ printf "| %s | %s |\n", $1, $2 }' "$WORK/samples"
  echo
  awk -F'\t' 'NR == 1 { first = $2 } NR == 3 { warm = $2 } { last = $2; if ($2 > max) max = $2 }
    END { printf "RSS first %d KiB, at 60 s %d KiB, last %d KiB, max %d KiB; growth from 60 s to the end: %+d KiB (%+.1f%%)\n",
          first, warm, last, max, last - warm, (last - warm) * 100 / warm }' "$WORK/samples"
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
