#!/usr/bin/env bash
# 10,000 idle TLS client connections to ringfence, RSS from /proc before and after.
# Usage: bash bench/idle_conns.sh   (COUNT=10000 SAMPLES="3 15 30" AFTER="2 30" SKIP_BUILD=1 REQUEST=1 TLS=1)
# Each connection completes a TLS handshake (none with TLS=0) and one pass-through GET (none with
# REQUEST=0), then stays idle (the bench configuration sets header_read_timeout and idle_timeout
# to 600s so none is closed). RSS is read SAMPLES seconds after the last connection opened: the
# first reading still holds what the opening burst freed, which jemalloc gives back to the system
# over its decay time (10 s), so the last reading is the steady state an operator sees.
# Another binary: SKIP_BUILD=1 RINGFENCE=path BUILT_FROM=label; allocator settings reach the
# process through its environment (_RJEM_MALLOC_CONF=...), and are recorded.
# Appends its figures to bench/results/idle-<UTC time>.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-10000}
SAMPLES=${SAMPLES:-3 15 30}
# RSS is read again these many seconds after the clients closed (what is given back).
AFTER=${AFTER:-2 30}
read -r -a sample_at <<<"$SAMPLES"
last_sample=${sample_at[${#sample_at[@]}-1]}
HOLD=${HOLD:-$((last_sample + 5))}
[ "$HOLD" -gt "$last_sample" ] || die "HOLD ($HOLD s) must outlast the last sample ($last_sample s)"
REQUEST=${REQUEST:-1}
TLS=${TLS:-1}
WORK=$(mktemp -d /tmp/ringfence-idle.XXXXXX)
trap 'cleanup; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((COUNT + 200)) ] || die "ulimit -n $(ulimit -n) is too low for $COUNT connections"

ensure_tools
build
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=lyncweb.contoso.com -addext subjectAltName=DNS:lyncweb.contoso.com \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
start_upstream
tls_args=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
[ "$TLS" = 1 ] || tls_args=()
start_ringfence --audit off "${tls_args[@]}" \
  --max-connections $((COUNT + 1000)) --header-read-timeout 600s --idle-timeout 600s
sleep 1
before=$(rss_kib "$RINGFENCE_PID")
log "ringfence RSS before: $before KiB"
extra=()
[ "$REQUEST" = 1 ] || extra+=(--no-request)
if [ "$TLS" = 1 ]; then extra+=(--ca "$WORK/cert.pem"); else extra+=(--plain); fi
taskset -c "$LOADGEN_CPU" python3 "$BENCH/idle_conns.py" --port "$RINGFENCE_PORT" \
  --count "$COUNT" --hold "$HOLD" "${extra[@]}" >"$WORK/client.out" &
CLIENT=$!
PIDS+=("$CLIENT")
for _ in $(seq 600); do
  grep -q '^OPEN' "$WORK/client.out" && break
  kill -0 "$CLIENT" 2>/dev/null || die "the client exited: $(cat "$WORK/client.out")"
  sleep 0.5
done
grep -q '^OPEN' "$WORK/client.out" || die "connections not open after 300 s"
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="^$1" '$0 ~ m { s += $2 } END { print s + 0 }'; }
opened=$(date +%s.%N)
rss_at=()
parked_at=()
for at in "${sample_at[@]}"; do
  sleep "$(awk -v o="$opened" -v a="$at" -v n="$(date +%s.%N)" 'BEGIN { w = o + a - n; print (w > 0 ? w : 0) }')"
  rss_at+=("$(rss_kib "$RINGFENCE_PID")")
  parked_at+=("$(metric ringfence_connections_parked)")
  [ -n "${open_metric:-}" ] || open_metric=$(metric ringfence_connections_open)
  log "RSS ${at}s after the last connection opened: ${rss_at[-1]} KiB (parked: ${parked_at[-1]})"
done
during=${rss_at[-1]}
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$RINGFENCE_PID/status")
wait "$CLIENT"
closed=$(date +%s.%N)
after_at=()
for at in $AFTER; do
  sleep "$(awk -v o="$closed" -v a="$at" -v n="$(date +%s.%N)" 'BEGIN { w = o + a - n; print (w > 0 ? w : 0) }')"
  after_at+=("$(rss_kib "$RINGFENCE_PID")")
  [ -n "${open_after:-}" ] || open_after=$(metric ringfence_connections_open)
  log "RSS ${at}s after the clients closed: ${after_at[-1]} KiB"
done
RESULTS=$BENCH/results/idle-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# ringfence: $COUNT idle $([ "$TLS" = 1 ] && echo TLS || echo plain-TCP) connections, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/idle_conns.sh\` (COUNT=$COUNT SAMPLES=\"$SAMPLES\" AFTER=\"$AFTER\" HOLD=${HOLD}s REQUEST=$REQUEST TLS=$TLS)"
  echo "- built from: $BUILT_FROM ($RINGFENCE); RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1}; _RJEM_MALLOC_CONF=${_RJEM_MALLOC_CONF:-(unset)}; $([ "$TLS" = 1 ] && echo "TLS 1.3, ECDSA P-256, ALPN http/1.1" || echo "plain TCP"); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- client: $(head -1 "$WORK/client.out"); $(grep '^ALIVE' "$WORK/client.out") still open after ${HOLD}s"
  echo "- ringfence_connections_open while held: $open_metric (parked at each reading: ${parked_at[*]}); after the clients closed: $open_after"
  echo
  echo "| ringfence RSS | KiB | MiB |"
  echo "|---|---:|---:|"
  echo "| before (idle, policy loaded) | $before | $((before / 1024)) |"
  for i in "${!sample_at[@]}"; do
    echo "| with $COUNT connections open, ${sample_at[$i]} s after the last opened | ${rss_at[$i]} | $((rss_at[i] / 1024)) |"
  done
  echo "| peak (VmHWM) | $hwm | $((hwm / 1024)) |"
  i=0
  for at in $AFTER; do
    echo "| ${at} s after the clients closed | ${after_at[$i]} | $((after_at[i] / 1024)) |"
    i=$((i + 1))
  done
  echo
  echo "Growth with the connections open, at ${last_sample} s: $(((during - before) / 1024)) MiB, $(((during - before) * 1024 / COUNT)) bytes per connection."
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
