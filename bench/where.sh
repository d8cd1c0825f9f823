#!/usr/bin/env bash
# Where a proxy's CPU goes under load, by cycles rather than instructions: per thread, kernel
# against user space, the top symbols, and the system calls per request. Usage: bash bench/where.sh
#
# bench/instructions.sh counts instructions one request at a time; this script watches the same
# targets under bench/run.sh's load (wrk on LOADGEN_CPU with CONNECTIONS connections, the proxy and
# the upstream, nginx `return 204;`, on SERVER_CPU), where batching, wake-ups, the audit writer's
# thread and the kernel's share show. For each target in turn (after WARMUP seconds of load):
#   1. CPU per request by thread (utime + stime from /proc/PID/task/*/stat over DURATION seconds);
#   2. `perf record` (SAMPLE_HZ, call graphs off) over DURATION seconds: the share of samples by
#      thread and shared object ([kernel.kallsyms], the binary, libc, [vdso]) and the TOP symbols
#      of the busiest thread;
#   3. `perf stat` on the raw_syscalls and the main syscalls' tracepoints over a wrk run of
#      DURATION seconds of its own, divided by the requests that run finished.
# Targets: ringfence (this tree's release build, full policy, audit to a file) and bare
# (bench/bare-proxy's hyper yardstick). Knobs (environment): TARGETS="ringfence bare"
# WORKLOAD=post DURATION=4 WARMUP=2 CONNECTIONS=50 SAMPLE_HZ=4999 TOP=30 SKIP_BUILD=1 and the
# ports of bench/lib.sh (its own defaults here: UPSTREAM_PORT=18404, RINGFENCE_PORT=18406,
# ADMIN_PORT=18407, BARE_PORT=18408 and the other yardsticks' 18411-18414).
# Needs perf (Debian: linux-perf) and a kernel that lets this user read tracepoints.
# Writes bench/results/where-<UTC time>.md and prints it.
set -euo pipefail
UPSTREAM_PORT=${UPSTREAM_PORT:-18404} RINGFENCE_PORT=${RINGFENCE_PORT:-18406}
ADMIN_PORT=${ADMIN_PORT:-18407} BARE_PORT=${BARE_PORT:-18408}
BARE_INLINE_PORT=${BARE_INLINE_PORT:-18411} BARE_RELAY_PORT=${BARE_RELAY_PORT:-18412}
BARE_POLICY_PORT=${BARE_POLICY_PORT:-18413} BARE_RELAY_POLICY_PORT=${BARE_RELAY_POLICY_PORT:-18414}
source "$(dirname "$0")/lib.sh"

TARGETS=${TARGETS:-"ringfence bare"}
WORKLOAD=${WORKLOAD:-post}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-50}
SAMPLE_HZ=${SAMPLE_HZ:-4999}
TOP=${TOP:-30}

scratch where
ensure_tools
command -v perf >/dev/null || die "perf is needed (Debian: apt-get install linux-perf)"
build
start_upstream
start_ringfence --audit "$WORK/audit.jsonl"
start_bare
BARE_PID=$(pgrep -f "bare-proxy hyper 127.0.0.1:$BARE_PORT" | head -1)

# Every thread's ticks, by thread name.
thread_ticks() { # pid
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s\t%s\n' "$(cat "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
  done | awk -F'\t' '{n[$1] += $2} END {for (k in n) printf "%s\t%d\n", k, n[k]}' | sort
}
requests_done() { # wrk output -> requests
  awk '/requests in/ {print $1}' "$1"
}
# Starts wrk for WARMUP + DURATION + 1 seconds in the background; sets WRK_PID, WRK_OUT.
load() { # port name
  WRK_OUT=$WORK/wrk-$2-$3.txt
  WORKLOAD=$WORKLOAD taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" \
    -d"$((WARMUP + DURATION + 1))s" -s "$BENCH/wrk.lua" "http://127.0.0.1:$1/" >"$WRK_OUT" &
  WRK_PID=$!
  sleep "$WARMUP"
}
# Requests per second over the whole wrk run (the measured window is inside it).
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }

TICK=$(getconf CLK_TCK)
REPORT=$WORK/report.md
: >"$REPORT"
for t in $TARGETS; do
  case $t in
    ringfence) pid=$RINGFENCE_PID port=$RINGFENCE_PORT ;;
    bare) pid=$BARE_PID port=$BARE_PORT ;;
    *) die "unknown target $t (ringfence bare)" ;;
  esac
  log "$t: CPU by thread"
  load "$port" "$t" threads
  thread_ticks "$pid" >"$WORK/ticks-a"
  sleep "$DURATION"
  thread_ticks "$pid" >"$WORK/ticks-b"
  wait "$WRK_PID"
  rps=$(rate "$WRK_OUT")
  log "$t: perf record"
  load "$port" "$t" record
  perf record -q -F "$SAMPLE_HZ" -p "$pid" -o "$WORK/$t.data" -- sleep "$DURATION" \
    >/dev/null 2>&1
  wait "$WRK_PID"
  log "$t: system calls"
  # Counted over a whole wrk run of its own (the proxy is warm from the parts above) and divided
  # by the requests it finished: the tracepoints slow the proxy, so a window inside a longer
  # run, divided by that run's rate, undercounted by ~14% (session 35).
  perf stat -x, -o "$WORK/$t-syscalls.csv" -p "$pid" -e raw_syscalls:sys_enter \
    -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_sendto -e syscalls:sys_enter_read \
    -e syscalls:sys_enter_write -e syscalls:sys_enter_writev -e syscalls:sys_enter_epoll_wait \
    -e syscalls:sys_enter_futex -e syscalls:sys_enter_sched_yield >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.5
  WRK_OUT=$WORK/wrk-$t-syscalls.txt
  WORKLOAD=$WORKLOAD taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" \
    -s "$BENCH/wrk.lua" "http://127.0.0.1:$port/" >"$WRK_OUT"
  sleep 0.5
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  srps=$(rate "$WRK_OUT")
  sreqs=$(requests_done "$WRK_OUT")
  {
    echo "## $t"
    echo
    echo "CPU by thread over ${DURATION} s at $rps requests/s (wrk's rate over its whole run):"
    echo
    echo "| thread | µs per request | share |"
    echo "|---|---:|---:|"
    join -t$'\t' "$WORK/ticks-a" "$WORK/ticks-b" | awk -F'\t' -v r="$rps" -v d="$DURATION" \
      -v hz="$TICK" '{ d_t = $3 - $2; name[NR] = $1; t[NR] = d_t; all += d_t }
        END { for (i = 1; i <= NR; i++) if (t[i] > 0)
          printf "| %s | %.2f | %.1f%% |\n", name[i], t[i] / hz * 1e6 / (r * d), 100 * t[i] / all
          printf "| all | %.2f | |\n", all / hz * 1e6 / (r * d) }'
    echo
    echo "Samples by thread and shared object (perf record, ${SAMPLE_HZ} Hz, ${DURATION} s):"
    echo
    echo '```'
    perf report -i "$WORK/$t.data" --no-children --sort comm,dso --stdio 2>/dev/null |
      grep '%' | head -12 || true # head closes the pipe early (SIGPIPE under pipefail)
    echo '```'
    echo
    echo "Top $TOP symbols (all threads):"
    echo
    echo '```'
    perf report -i "$WORK/$t.data" --no-children --sort comm,sym --stdio 2>/dev/null |
      grep '%' | head -"$TOP" || true
    echo '```'
    echo
    if [ "$t" = ringfence ]; then
      echo "Top $TOP symbols of the audit trail's writer thread (share of all samples):"
      echo
      echo '```'
      perf report -i "$WORK/$t.data" --no-children --comm ringfence-audit --sort sym --stdio \
        2>/dev/null | grep '%' | head -"$TOP" || true
      echo '```'
      echo
    fi
    echo "System calls per request (perf stat over a wrk run of ${DURATION} s, $sreqs requests at $srps requests/s):"
    echo
    echo "| system call | per request |"
    echo "|---|---:|"
    awk -F, -v n="$sreqs" '$1 ~ /^[0-9]/ {
        sub(/^(raw_)?syscalls:sys_enter_?/, "", $3); if ($3 == "") $3 = "all";
        printf "| %s | %.3f |\n", $3, $1 / n }' "$WORK/$t-syscalls.csv"
    echo
  } >>"$REPORT"
done

RESULTS=$BENCH/results/where-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Where the CPU goes under load, $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
  echo
  echo "- command: \`bash bench/where.sh\` (TARGETS=\"$TARGETS\" WORKLOAD=$WORKLOAD DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS SAMPLE_HZ=$SAMPLE_HZ)"
  echo "- built from: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) CPUs, kernel $(uname -r); wrk on CPU $LOADGEN_CPU, proxy and upstream on CPU $SERVER_CPU; RUST_LOG=${RUST_LOG:-info}"
  echo "- each part (threads, samples, system calls) is its own wrk run of WARMUP + DURATION + 1 s; perf's sampling slows the proxy it watches, so the rates differ"
  echo
  cat "$REPORT"
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
