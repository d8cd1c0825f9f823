#!/usr/bin/env bash
# N held UCWA long polls through nginx and through ringfence, one proxy after the other in the
# same run, each against a fresh plain upstream (bench/longpoll_upstream.py) that holds every
# `GET .../events` for HOLD seconds. Usage: bash bench/longpolls.sh
#
# For each target: RSS before (baseline), RSS with COUNT polls held (per-poll RSS = growth / COUNT),
# the peak (VmHWM), upstream connections SETTLE s after the answers (`ss -tn`, established, to the
# upstream's port), and RSS at AFTER_CLOSE seconds after every client closed.
# Knobs (environment): COUNT=10000 HOLD=60 SETTLE=5 AFTER_CLOSE="2 10 30" TARGETS="nginx ringfence"
#   (TARGETS may also name bench/bare-proxy's yardsticks, `bare`, `inline` and `relay`, on BARE_PORT:
#   what hyper's server and client, hyper alone, and a byte relay hold per poll)
#   VARIANTS="ringfence"  ringfence builds/settings to measure, each `label[:binary[:VAR=v+VAR=v]]`
#                         (binary default $RINGFENCE; the variables, separated by `+`, go into its environment),
#                         e.g. VARIANTS="ringfence glibc-arena2::MALLOC_ARENA_MAX=2 old:/tmp/rf-old"
#   SKIP_BUILD=1, RINGFENCE_WORKER_THREADS (default 1), and those of bench/lib.sh.
# The descriptor limit is raised to 2 x COUNT + 200 (the hard limit too where the process may, as
# root with CAP_SYS_RESOURCE); where it cannot be, COUNT is lowered to fit and the result file says so.
# Writes bench/results/longpolls-<UTC time>.md and prints the same table.
set -euo pipefail
# The upstream runs beside the clients, so that the proxy under test has a core to itself.
UPSTREAM_CPU=${UPSTREAM_CPU:-${LOADGEN_CPU:-0}}
source "$(dirname "$0")/lib.sh"
COUNT=${COUNT:-10000}
HOLD=${HOLD:-60}
SETTLE=${SETTLE:-5}
AFTER_CLOSE=${AFTER_CLOSE:-"2 10 30"}
TARGETS=${TARGETS:-"nginx ringfence"}
VARIANTS=${VARIANTS:-ringfence}
WORK=$(mktemp -d /tmp/ringfence-longpolls.XXXXXX)
trap 'cleanup; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# A proxy holds two descriptors per poll (client and upstream), the upstream and the clients one.
WANT_FDS=$((2 * COUNT + 200))
FD_NOTE="ulimit -n $WANT_FDS"
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$WANT_FDS" ]; then
  ulimit -Hn "$WANT_FDS" 2>/dev/null || true
fi
ulimit -n "$WANT_FDS" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$WANT_FDS" ]; then
  was=$COUNT
  COUNT=$((($(ulimit -n) - 200) / 2))
  [ "$COUNT" -gt 0 ] || die "ulimit -n $(ulimit -n) is too low"
  FD_NOTE="ulimit -n $(ulimit -n) (hard limit): COUNT lowered from $was to $COUNT"
  log "$FD_NOTE"
fi

ensure_tools
command -v ss >/dev/null || { apt-get install -y iproute2 >/dev/null 2>&1 || die "no ss"; }
build
EVENTS_PATH='/ucwa/oauth/v1/applications/192/events?ack=1&timeout=900'

stop_pid() { # pid: TERM, bounded wait, KILL
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

start_longpoll_upstream() {
  port_free "$UPSTREAM_PORT" || die "port $UPSTREAM_PORT is taken"
  rm -f "$WORK/upstream.status"
  taskset -c "$UPSTREAM_CPU" python3 "$BENCH/longpoll_upstream.py" --port "$UPSTREAM_PORT" \
    --hold "$HOLD" --status "$WORK/upstream.status" 2>"$WORK/upstream.log" &
  UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
  wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID"
}

upstream_field() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$WORK/upstream.status" 2>/dev/null || true; }

start_longpoll_nginx() {
  port_free "$NGINX_PORT" || die "port $NGINX_PORT is taken"
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
# worker_connections well above what is used: nginx closes connections still waiting for their
# request once fewer than 1/16 of worker_connections are free ("reusing connections").
events { worker_connections $((4 * COUNT + 1024)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  upstream pool {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 960s;
    }
  }
}
CONF
  taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    -e "$WORK/nginx/error.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "$NGINX_PORT" "$PROXY_PID"
  PROXY_PORT=$NGINX_PORT
  # The worker holds the connections; the master's RSS does not change with them.
  MEASURED_PID=$(pgrep -P "$PROXY_PID" | head -1)
  [ -n "$MEASURED_PID" ] || die "no nginx worker"
}

start_longpoll_ringfence() { # binary env-assignments (separated by +)
  local bin=$1 envs=$2
  port_free "$RINGFENCE_PORT" || die "port $RINGFENCE_PORT is taken"
  port_free "$ADMIN_PORT" || die "port $ADMIN_PORT is taken"
  [ -x "$bin" ] || die "$bin is missing"
  python3 "$BENCH/gen_config.py" "$WORK/ringfence.toml" \
    --listen "127.0.0.1:$RINGFENCE_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" --audit off \
    --max-connections $((COUNT + 1000)) --idle-timeout 600s
  "$bin" check-config --config "$WORK/ringfence.toml" >"$WORK/check-config.txt" 2>&1 ||
    die "generated configuration is invalid: $(cat "$WORK/check-config.txt")"
  local -a extra=()
  [ -z "$envs" ] || IFS=+ read -r -a extra <<<"$envs"
  env ${extra[@]+"${extra[@]}"} RUST_LOG=${RUST_LOG:-info} \
    RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1} \
    taskset -c "$SERVER_CPU" "$bin" run --config "$WORK/ringfence.toml" 2>"$WORK/ringfence.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "$RINGFENCE_PORT" "$PROXY_PID"
  PROXY_PORT=$RINGFENCE_PORT
  MEASURED_PID=$PROXY_PID
}

start_longpoll_bare() { # mode: one of bench/bare-proxy's yardsticks (hyper, inline, relay)
  port_free "$BARE_PORT" || die "port $BARE_PORT is taken"
  build_bare
  taskset -c "$SERVER_CPU" "$ROOT/target/bare-proxy/release/bare-proxy" "$1" "127.0.0.1:$BARE_PORT" \
    "127.0.0.1:$UPSTREAM_PORT" 2>"$WORK/bare-$1.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "$BARE_PORT" "$PROXY_PID"
  PROXY_PORT=$BARE_PORT
  MEASURED_PID=$PROXY_PID
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
upstream_conns() { ss -Htn state established "( dport = :$UPSTREAM_PORT )" | wc -l; }

ROWS=$WORK/rows.tsv
: >"$ROWS"
measure() { # label kind binary envs
  local label=$1 kind=$2 bin=${3:-} envs=${4:-}
  log "== $label: $COUNT long polls held ${HOLD}s"
  start_longpoll_upstream
  case $kind in
    nginx) start_longpoll_nginx ;;
    bare) start_longpoll_bare "$bin" ;;
    *) start_longpoll_ringfence "$bin" "$envs" ;;
  esac
  local s
  s=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: lyncweb.contoso.com' \
    "http://127.0.0.1:$PROXY_PORT/ucwa/oauth/v1/applications/192/me")
  [ "$s" = 204 ] || die "$label answered the pass-through GET $s, not 204"
  sleep 1
  local before held_rss hwm answered_rss upconns
  before=$(rss_kib "$MEASURED_PID")
  rm -f "$WORK/close"
  taskset -c "$LOADGEN_CPU" python3 "$BENCH/longpoll_clients.py" --port "$PROXY_PORT" \
    --count "$COUNT" --close-when "$WORK/close" >"$WORK/clients.out" 2>"$WORK/clients.err" &
  local clients=$!
  PIDS+=("$clients")
  local held=0 i=0
  for i in $(seq $((HOLD * 5))); do
    held=$(upstream_field held)
    [ "${held:-0}" -ge "$COUNT" ] && break
    [ $((i % 25)) != 0 ] || log "$label: $held held after $((i / 5)) s"
    kill -0 "$clients" 2>/dev/null || die "the clients exited: $(cat "$WORK/clients.out" "$WORK/clients.err")"
    sleep 0.2
  done
  [ "${held:-0}" -ge "$COUNT" ] || die "$label: only ${held:-0} of $COUNT polls reached the upstream; $(cat "$WORK/clients.out" "$WORK/clients.err")"
  sleep 1
  held_rss=$(rss_kib "$MEASURED_PID")
  local inflight=""
  [ "$kind" != ringfence ] || inflight=$(curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^ringfence_http_requests_in_flight / { print $2 }')
  log "$label: $held held, RSS $before -> $held_rss KiB${inflight:+, in flight $inflight}"
  for _ in $(seq $(((HOLD + 120) * 5))); do
    grep -q '^ANSWERED' "$WORK/clients.out" && break
    sleep 0.2
  done
  grep -q '^ANSWERED' "$WORK/clients.out" || die "$label: answers not in after $((HOLD + 120)) s"
  sleep "$SETTLE"
  answered_rss=$(rss_kib "$MEASURED_PID")
  upconns=$(upstream_conns)
  hwm=$(hwm_kib "$MEASURED_PID")
  log "$label: $(grep '^ANSWERED' "$WORK/clients.out"); ${SETTLE}s later $upconns upstream connections, RSS $answered_rss KiB"
  : >"$WORK/close"
  for _ in $(seq 300); do kill -0 "$clients" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$clients" 2>/dev/null && die "$label: the clients did not close"
  wait "$clients" || true
  local t=0 closed=""
  for at in $AFTER_CLOSE; do
    sleep $((at - t))
    t=$at
    closed+="$(rss_kib "$MEASURED_PID") "
  done
  log "$label: RSS after close (${AFTER_CLOSE// /, } s): $closed KiB"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$before" "$held_rss" "$hwm" \
    "$answered_rss" "$upconns" "$closed" "$(sed -n 's/^SENT //p' "$WORK/clients.out")" \
    "$(sed -n 's/^ANSWERED //p' "$WORK/clients.out")" "$envs" >>"$ROWS"
  stop_pid "$clients"
  stop_pid "$PROXY_PID"
  stop_pid "$UPSTREAM_PID"
  PIDS=()
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for target in $TARGETS; do
  case $target in
    nginx) measure nginx nginx ;;
    ringfence)
      for v in $VARIANTS; do
        IFS=: read -r label bin envs <<<"$v"
        measure "$label" ringfence "${bin:-$RINGFENCE}" "${envs:-}"
      done
      ;;
    bare | inline | relay)
      local_mode=$target
      [ "$target" != bare ] || local_mode=hyper
      measure "bare-proxy $local_mode" bare "$local_mode"
      ;;
    *) die "unknown target $target" ;;
  esac
done

RESULTS=$BENCH/results/longpolls-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# $COUNT held long polls, nginx and ringfence, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/longpolls.sh\` (COUNT=$COUNT HOLD=${HOLD}s SETTLE=${SETTLE}s AFTER_CLOSE=\"$AFTER_CLOSE\" VARIANTS=\"$VARIANTS\")"
  echo "- descriptors: $FD_NOTE"
  echo "- built from: $BUILT_FROM; RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1}; $($NGINX -v 2>&1) (worker_processes 1, keepalive 256; the worker's RSS); plain HTTP/1.1 on loopback"
  echo "- load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  python3 - "$ROWS" "$COUNT" "$AFTER_CLOSE" <<'PY'
import sys
rows, count, after = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
print("| target | RSS before | with %d held | per held poll | peak | after the answers | upstream conns after the answers | %s | growth given back | clients |"
      % (count, " | ".join(f"RSS {a} s after close" for a in after)))
print("|---|---:|---:|---:|---:|---:|---:|%s---:|---|" % ("---:|" * len(after)))
mib = lambda k: f"{int(k) / 1024:.1f} MiB"
for line in open(rows):
    label, before, held, hwm, answered, up, closed, sent, ans, envs = line.rstrip("\n").split("\t")
    before, held, hwm, answered = int(before), int(held), int(hwm), int(answered)
    closed = [int(c) for c in closed.split()]
    growth = max(hwm - before, 1)
    back = (hwm - closed[-1]) / growth
    name = label + (f" ({envs})" if envs else "")
    print(f"| {name} | {mib(before)} | {mib(held)} | {(held - before) / count:.1f} KiB | {mib(hwm)} | {mib(answered)} | {up} | "
          + " | ".join(mib(c) for c in closed) + f" | {back * 100:.0f}% | sent {sent}; answered {ans} |")
PY
  echo
  echo "Per held poll: (RSS with $COUNT held - RSS before) / $COUNT. Growth given back: (peak - RSS at the last after-close sample) / (peak - RSS before)."
} >"$RESULTS"
cat "$RESULTS"
log "results written to ${RESULTS#$ROOT/}"
