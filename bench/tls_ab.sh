#!/usr/bin/env bash
# Keep-alive throughput over TLS, two ringfence binaries side by side: the same generated policy,
# the same nginx 204 upstream, wrk -t1 -c50 (TLS 1.3 without ALPN, so the auto builder serves it)
# for 5 s on each, interleaved ROUNDS times. For a change to the client TLS path (bench/run.sh is
# plain HTTP).
# Usage: A_BIN=path/to/before B_BIN=path/to/after [WORKLOAD=get|post] [ROUNDS=3] bash bench/tls_ab.sh
# Appends its figures to bench/results/tls-ab-<UTC time>.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${A_BIN:?A_BIN: the reference binary}" "${B_BIN:?B_BIN: the binary under test}"
WORKLOAD=${WORKLOAD:-get}
ROUNDS=${ROUNDS:-3}
B_PORT=${B_PORT:-18216}
B_ADMIN_PORT=${B_ADMIN_PORT:-18217}
WORK=$(mktemp -d /tmp/ringfence-tlsab.XXXXXX)
trap 'cleanup; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

ensure_tools
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=lyncweb.contoso.com -addext subjectAltName=DNS:lyncweb.contoso.com \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
start_upstream
RINGFENCE=$A_BIN start_ringfence --audit off --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
port_free "$B_PORT" || die "port $B_PORT is taken"
sed -e "s/127.0.0.1:$RINGFENCE_PORT/127.0.0.1:$B_PORT/" \
  -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$B_ADMIN_PORT/" "$WORK/ringfence.toml" >"$WORK/b.toml"
RUST_LOG=${RUST_LOG:-info} RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1} \
  taskset -c "$SERVER_CPU" "$B_BIN" run --config "$WORK/b.toml" 2>"$WORK/b.log" &
B_PID=$!
PIDS+=("$B_PID")
wait_port "$B_PORT" "$B_PID"
for port in "$RINGFENCE_PORT" "$B_PORT"; do
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Host: lyncweb.contoso.com' \
    "https://127.0.0.1:$port/ucwa/oauth/v1/applications/192/me")
  [ "$s" = 204 ] || die "a GET through port $port answered $s"
done
RESULTS=$BENCH/results/tls-ab-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# ringfence over TLS, A/B, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/tls_ab.sh\` (WORKLOAD=$WORKLOAD ROUNDS=$ROUNDS); wrk -t1 -c50 -d5s, keep-alive, TLS 1.3"
  echo "- A: $A_BIN; B: $B_BIN; RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1}; load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| round | binary | requests/s | p50 µs | p99 µs |"
  echo "|---|---|---:|---:|---:|"
} >"$RESULTS"
declare -A sum=([A]=0 [B]=0)
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    port=$RINGFENCE_PORT
    [ "$side" = B ] && port=$B_PORT
    line=$(WORKLOAD=$WORKLOAD taskset -c "$LOADGEN_CPU" wrk -t1 -c50 -d5s -s "$BENCH/wrk.lua" \
      "https://127.0.0.1:$port" | grep '^RESULT')
    rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$line")
    p99=$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$line")
    grep -q 'errors_connect=0 errors_read=0 errors_write=0 errors_status=0 errors_timeout=0' <<<"$line" ||
      log "errors: $line"
    echo "| $round | $side | $rps | $p50 | $p99 |" >>"$RESULTS"
    sum[$side]=$(awk -v a="${sum[$side]}" -v b="$rps" 'BEGIN { print a + b }')
  done
done
awk -v a="${sum[A]}" -v b="${sum[B]}" -v n="$ROUNDS" 'BEGIN {
  printf "\nMean requests/s: A %.0f, B %.0f; B/A %.2fx.\n", a / n, b / n, b / a }' >>"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
