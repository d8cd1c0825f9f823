# Shared by bench/run.sh, bench/idle_conns.sh and bench/soak.sh: tools, build, servers, clean-up.
# Every server started here is recorded in PIDS and stopped by PID on exit.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
RINGFENCE=${RINGFENCE:-$ROOT/target/release/ringfence}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$SERVER_CPU}
UPSTREAM_PORT=${UPSTREAM_PORT:-18204}
NGINX_PORT=${NGINX_PORT:-18205}
RINGFENCE_PORT=${RINGFENCE_PORT:-18206}
ADMIN_PORT=${ADMIN_PORT:-18207}
BARE_PORT=${BARE_PORT:-18208}
REFERENCE_PORT=${REFERENCE_PORT:-18209}
REFERENCE_ADMIN_PORT=${REFERENCE_ADMIN_PORT:-18210}
BARE_INLINE_PORT=${BARE_INLINE_PORT:-18211}
BARE_RELAY_PORT=${BARE_RELAY_PORT:-18212}
BARE_POLICY_PORT=${BARE_POLICY_PORT:-18213}
BARE_RELAY_POLICY_PORT=${BARE_RELAY_POLICY_PORT:-18214}
PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
}

# Debian's nginx and wrk (and python3 for the config generator) when missing.
ensure_tools() {
  local missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v python3 >/dev/null || missing+=(python3)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; } ||
      die "apt-get install ${missing[*]} failed"
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

build() {
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  fi
  [ -x "$RINGFENCE" ] || die "$RINGFENCE is missing"
  BUILT_FROM=${BUILT_FROM:-"$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' + uncommitted changes')"}
}

# A scratch directory in WORK (/tmp/ringfence-NAME.*), removed on exit with every server
# started; an interrupt exits (and so cleans up) too.
scratch() { # name
  WORK=$(mktemp -d "/tmp/ringfence-$1.XXXXXX")
  trap 'cleanup; rm -rf "$WORK"' EXIT
  trap 'exit 130' INT TERM
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid; WAIT_PORT_SECONDS (default 30) bounds the wait
  local port=$1 pid=$2 seconds=${WAIT_PORT_SECONDS:-30}
  for _ in $(seq $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || die "process $pid (port $port) exited; see $WORK"
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on $port after $seconds s"
}

# The upstream: nginx, one worker, answering every request 204 on keep-alive connections.
start_upstream() {
  port_free "$UPSTREAM_PORT" || die "port $UPSTREAM_PORT is taken"
  mkdir -p "$WORK/upstream"
  cat >"$WORK/upstream/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $WORK/upstream;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { return 204; }
  }
}
CONF
  taskset -c "$UPSTREAM_CPU" "$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" \
    -e "$WORK/upstream/error.log" &
  UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
  wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID"
}

# The reference: nginx's plain proxy_pass over pooled HTTP/1.1 keep-alive connections.
start_nginx_proxy() {
  port_free "$NGINX_PORT" || die "port $NGINX_PORT is taken"
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  upstream pool {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    -e "$WORK/nginx/error.log" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$NGINX_PORT" "$NGINX_PID"
}

# ringfence with the generated full policy; extra arguments go to bench/gen_config.py.
start_ringfence() {
  port_free "$RINGFENCE_PORT" || die "port $RINGFENCE_PORT is taken"
  port_free "$ADMIN_PORT" || die "port $ADMIN_PORT is taken"
  python3 "$BENCH/gen_config.py" "$WORK/ringfence.toml" \
    --listen "127.0.0.1:$RINGFENCE_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" "$@"
  "$RINGFENCE" check-config --config "$WORK/ringfence.toml" >"$WORK/check-config.txt" ||
    die "generated configuration is invalid: $WORK/check-config.txt"
  RUST_LOG=${RUST_LOG:-info} RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1} \
    taskset -c "$SERVER_CPU" "$RINGFENCE" run --config "$WORK/ringfence.toml" \
    2>"$WORK/ringfence.log" &
  RINGFENCE_PID=$!
  PIDS+=("$RINGFENCE_PID")
  wait_port "$RINGFENCE_PORT" "$RINGFENCE_PID"
}

# bench/bare-proxy into target/bare-proxy. SKIP_BUILD=1 still rebuilds a binary older than its
# sources (one built before the modes came would refuse the MODE argument).
build_bare() {
  local bin=$ROOT/target/bare-proxy/release/bare-proxy src=$BENCH/bare-proxy stale=0 file
  for file in "$src"/src/*.rs "$src/Cargo.toml" "$src/Cargo.lock"; do
    [ "$file" -nt "$bin" ] && stale=1
  done
  if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$bin" ] || [ "$stale" = 1 ]; then
    log "cargo build --release (bench/bare-proxy)"
    CARGO_TARGET_DIR=$ROOT/target/bare-proxy cargo build --release --quiet --locked \
      --manifest-path "$src/Cargo.toml" || die "building bench/bare-proxy failed"
  fi
}

# ringfence at the commit REFERENCE, built in a throw-away git worktree into target/reference
# (kept between runs); sets REFERENCE_REV.
build_reference() {
  REFERENCE_REV=$(cd "$ROOT" && git rev-parse --short "$REFERENCE") || die "no commit $REFERENCE"
  (cd "$ROOT" && git worktree add --detach --force "$WORK/reference-src" "$REFERENCE" >/dev/null 2>&1) ||
    die "git worktree add $REFERENCE failed"
  log "cargo build --release (ringfence at $REFERENCE_REV)"
  (cd "$WORK/reference-src" && CARGO_TARGET_DIR=$ROOT/target/reference cargo build --release --quiet) ||
    die "building ringfence at $REFERENCE_REV failed"
  (cd "$ROOT" && git worktree remove --force "$WORK/reference-src")
}

# The yardsticks of SPEC §11: bench/bare-proxy, HTTP/1.1 proxies with no policy on ringfence's
# hyper, hyper-util, tokio and httparse versions, one thread each, pinned like the proxies under
# test. One binary, five modes: hyper (server + hyper-util's pooled client, ringfence's shape) on
# BARE_PORT, inline (server + one hyper client connection per client connection, same task) on
# BARE_INLINE_PORT, relay (httparse heads + byte copy, Content-Length bodies only) on
# BARE_RELAY_PORT, and policy (hyper plus the least a policy gateway does: the targets of the
# query and a JSON body looked up in 10,000-prefix deny and allow sets, one decision line written
# to $WORK/policy-audit.jsonl before forwarding, SPEC §7's forwarding headers) on
# BARE_POLICY_PORT, and relay-policy (relay doing policy's work on the bytes it parsed, its trail in
# $WORK/relay-policy-audit.jsonl) on BARE_RELAY_POLICY_PORT. Built into target/bare-proxy unless SKIP_BUILD=1 and the binary is up to date.
start_bare() {
  local port
  for port in "$BARE_PORT" "$BARE_INLINE_PORT" "$BARE_RELAY_PORT" "$BARE_POLICY_PORT" \
    "$BARE_RELAY_POLICY_PORT"; do
    port_free "$port" || die "port $port is taken"
  done
  local target=$ROOT/target/bare-proxy
  build_bare
  local mode pid
  for mode in "hyper $BARE_PORT" "inline $BARE_INLINE_PORT" "relay $BARE_RELAY_PORT" \
    "policy $BARE_POLICY_PORT" "relay-policy $BARE_RELAY_POLICY_PORT"; do
    port=${mode#* } mode=${mode% *}
    local audit=()
    case $mode in policy | relay-policy) audit=("$WORK/$mode-audit.jsonl") ;; esac
    taskset -c "$SERVER_CPU" "$target/release/bare-proxy" "$mode" "127.0.0.1:$port" \
      "127.0.0.1:$UPSTREAM_PORT" "${audit[@]}" 2>"$WORK/bare-$mode.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid"
  done
}

# ringfence as built from the commit REFERENCE (say, the commit before a change), on the same
# generated policy, so a change is measured against what it replaced in the same run. Built in a
# git worktree under $WORK into target/reference (kept between runs).
start_reference() {
  port_free "$REFERENCE_PORT" || die "port $REFERENCE_PORT is taken"
  port_free "$REFERENCE_ADMIN_PORT" || die "port $REFERENCE_ADMIN_PORT is taken"
  REFERENCE_REV=$(cd "$ROOT" && git rev-parse --short "$REFERENCE") || die "no commit $REFERENCE"
  local bin=${REFERENCE_BIN:-$ROOT/target/reference/release/ringfence}
  # REFERENCE_BIN: a binary already built from REFERENCE (it is not checked that it was).
  [ -n "${REFERENCE_BIN:-}" ] || build_reference
  sed -e "s/127.0.0.1:$RINGFENCE_PORT/127.0.0.1:$REFERENCE_PORT/" \
    -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$REFERENCE_ADMIN_PORT/" \
    -e "s#$WORK/audit.jsonl#$WORK/reference-audit.jsonl#" \
    "$WORK/ringfence.toml" >"$WORK/reference.toml"
  RUST_LOG=${RUST_LOG:-info} RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1} \
    taskset -c "$SERVER_CPU" "$bin" run --config "$WORK/reference.toml" \
    2>"$WORK/reference.log" &
  REFERENCE_PID=$!
  PIDS+=("$REFERENCE_PID")
  wait_port "$REFERENCE_PORT" "$REFERENCE_PID"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Waits (bounded) for the 1-minute load average to drop below $1.
wait_quiet() {
  local limit=$1 max_s=$2 waited=0
  while awk -v l="$limit" '{ exit !($1 >= l) }' /proc/loadavg; do
    if [ "$waited" -ge "$max_s" ]; then
      log "load still $(cut -d' ' -f1-3 /proc/loadavg) after ${max_s}s; measuring anyway"
      return 0
    fi
    log "waiting for a quiet machine: load $(cut -d' ' -f1-3 /proc/loadavg)"
    sleep 30
    waited=$((waited + 30))
  done
}
