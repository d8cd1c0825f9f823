#!/usr/bin/env bash
# ringfence against nginx and bare HTTP/1.1 proxies, same run, loopback. Usage: bash bench/run.sh
#
# Starts one upstream (nginx `return 204;`), nginx as a plain keep-alive proxy_pass, the five
# yardsticks of bench/bare-proxy and ringfence with the full generated policy
# (bench/gen_config.py), then measures with wrk, in interleaved rounds, each target x each workload:
#   targets:   upstream (direct), nginx (proxy_pass), the yardsticks of SPEC §11 (no policy, one
#              thread, ringfence's hyper/hyper-util/tokio/httparse versions): bare (hyper server +
#              hyper-util pooled client, ringfence's shape), inline (hyper server + one hyper
#              client connection per client connection, same task), relay (httparse + byte copy,
#              Content-Length bodies only: a bound, not a proxy), policy (bare plus the least
#              policy work: targets of query and JSON body, prefix sets, a decision line written
#              before forwarding, forwarding headers), relay-policy (relay doing policy's work on
#              the bytes it parsed: the job on issue 15's other design), ringfence, and with
#              REFERENCE=<commit> also reference (ringfence built from that commit, to measure a
#              change against it)
#   workloads: post (guarded call-forwarding POST, target in query and JSON body), get (pass-through)
# Pinning (2 cores): wrk on LOADGEN_CPU (0); the proxy under test AND the upstream on SERVER_CPU
# (1); both proxies get the same single core and one worker (nginx worker_processes 1,
# ringfence RINGFENCE_WORKER_THREADS=1).
# Knobs (environment): ROUNDS=3 DURATION=10 WARMUP=2 CONNECTIONS=50 REFERENCE= (REFERENCE_BIN= a binary
# already built from it) WAIT_QUIET=1 (wait up to
# 25 min for a 1-minute load below 0.5) SKIP_BUILD=1 AUDIT=file|off TARGETS WORKLOADS, and those
# of bench/lib.sh (ports: BARE_PORT, BARE_INLINE_PORT, BARE_RELAY_PORT, ...).
# Writes bench/results/run-<UTC time>.md and prints the same table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-50}
WAIT_QUIET=${WAIT_QUIET:-1}
AUDIT=${AUDIT:-file}
REFERENCE=${REFERENCE:-}
TARGETS=${TARGETS:-"upstream nginx bare inline relay policy relay-policy ringfence${REFERENCE:+ reference}"}
WORKLOADS=${WORKLOADS:-"post get"}

scratch bench

ensure_tools
build

start_upstream
start_nginx_proxy
start_bare
if [ "$AUDIT" = file ]; then
  start_ringfence --audit "$WORK/audit.jsonl"
else
  start_ringfence --audit off
fi
if [ -n "$REFERENCE" ]; then
  start_reference
fi

port_of() {
  case $1 in
    upstream) echo "$UPSTREAM_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    bare) echo "$BARE_PORT" ;;
    inline) echo "$BARE_INLINE_PORT" ;;
    relay) echo "$BARE_RELAY_PORT" ;;
    policy) echo "$BARE_POLICY_PORT" ;;
    relay-policy) echo "$BARE_RELAY_POLICY_PORT" ;;
    ringfence) echo "$RINGFENCE_PORT" ;;
    reference) echo "$REFERENCE_PORT" ;;
    *) die "unknown target $1 (upstream nginx bare inline relay policy relay-policy ringfence reference)" ;;
  esac
}

# Every target must answer both workloads 204 before anything is measured.
POST_PATH='/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B14255550100'
for t in $TARGETS; do
  p=$(port_of "$t")
  s=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Host: lyncweb.contoso.com' \
    -H 'Content-Type: application/json' --data '{"target":"tel:+14255550100"}' \
    "http://127.0.0.1:$p$POST_PATH")
  [ "$s" = 204 ] || die "$t answered the guarded POST $s, not 204"
  s=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: lyncweb.contoso.com' \
    "http://127.0.0.1:$p/ucwa/oauth/v1/applications/192/me")
  [ "$s" = 204 ] || die "$t answered the pass-through GET $s, not 204"
done
# A denied target must not be answered by the pool (proof that the policy is on).
for port in $RINGFENCE_PORT ${REFERENCE:+$REFERENCE_PORT}; do
  s=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Host: lyncweb.contoso.com' \
    "http://127.0.0.1:$port${POST_PATH/14255550100/19005550100}")
  [ "$s" = 403 ] || die "ringfence on $port answered a denied target $s, not 403"
done

if [ "$WAIT_QUIET" = 1 ]; then
  wait_quiet 0.5 1500
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load before: $LOAD_BEFORE"

RAW=$WORK/raw.tsv
: >"$RAW"
run_wrk() { # target workload seconds
  WORKLOAD=$2 taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"$3"s --latency \
    -s "$BENCH/wrk.lua" "http://127.0.0.1:$(port_of "$1")"
}
for round in $(seq "$ROUNDS"); do
  for w in $WORKLOADS; do
    for t in $TARGETS; do
      run_wrk "$t" "$w" "$WARMUP" >/dev/null
      line=$(run_wrk "$t" "$w" "$DURATION" | grep '^RESULT ') || die "wrk printed no RESULT for $t $w"
      log "round $round $w $t: ${line#RESULT }"
      printf '%s\t%s\t%s\t%s\n' "$round" "$w" "$t" "${line#RESULT }" >>"$RAW"
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

RESULTS=$BENCH/results/run-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# ringfence benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/run.sh\` (ROUNDS=$ROUNDS DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS AUDIT=$AUDIT)"
  echo "- built from: $BUILT_FROM${REFERENCE:+; reference: ringfence at $REFERENCE_REV}"
  echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r)"
  echo "- $($NGINX -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$RINGFENCE" --version)"
  echo "- pinning: wrk on CPU $LOADGEN_CPU; proxy under test on CPU $SERVER_CPU; upstream on CPU $UPSTREAM_CPU; ringfence RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1}, nginx worker_processes 1"
  echo "- policy: $(grep -E 'global deny|contoso:' "$WORK/check-config.txt" | tr -s ' \n' ' ')"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER"
  echo "- ringfence RSS after the run: $(($(rss_kib "$RINGFENCE_PID") / 1024)) MiB"
  echo
  python3 "$BENCH/report.py" "$RAW"
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
