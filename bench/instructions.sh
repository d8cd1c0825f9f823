#!/usr/bin/env bash
# ringfence's CPU per request as instruction counts (callgrind), which a shared, noisy machine
# does not blur. Usage: bash bench/instructions.sh
#
# Starts the bench upstream (nginx `return 204;`, bench/lib.sh) and then, one after the other,
# each target under `valgrind --tool=callgrind` on the bench configuration (bench/gen_config.py,
# audit trail to a file, health probes every hour so none falls in a measured window):
#   ringfence  this tree's release build
#   reference  with REFERENCE=<commit>: ringfence built from that commit (git worktree, into
#              target/reference), to measure a change against what it replaced in the same run
#   bare       with BARE=1: bench/bare-proxy's `hyper` yardstick (hyper server + hyper-util's
#              pooled client, no policy), SPEC §11's bare hyper proxy
#   policy     with POLICY=1: bench/bare-proxy's `policy` yardstick (bare plus the least policy
#              work: targets of query and JSON body, prefix sets, a decision line written before
#              forwarding, the forwarding headers)
#   relay-policy with RELAY_POLICY=1: the same policy work on bench/bare-proxy's `relay` (the
#              bytes it parsed forwarded, issue 15's other design)
# Each target gets WARMUP guarded POSTs and WARMUP pass-through GETs (bench/wrk.lua's two
# requests; CONNECTIONS at a time, so that its upstream pool holds as many connections and no
# measured request waits for one to come back, which made runs differ by ~1,300), then, per workload, its counters are zeroed (`callgrind_control -z`), REQUESTS
# requests are sent one at a time, round robin over CONNECTIONS keep-alive connections
# (bench/seq_client.py: one in flight, so the count does not depend on timing), and the counters
# are dumped (`callgrind_control -d`). Every thread of the process is counted (the runtime's
# worker, the audit writer, ...). bench/callgrind_summary.py prints, per request: all
# instructions, those of memcpy/memmove (glibc copies blocks over a few KiB with `rep movsb`,
# which valgrind counts once per byte: large moves weigh far more here than in cycles), those in ringfence's own functions (self), and its top
# TOP functions by inclusive instructions.
# Knobs (environment): REQUESTS=2000 WARMUP=500 CONNECTIONS=4 TOP=25 REFERENCE= BARE=0 POLICY=0
# RELAY_POLICY=0
# AUDIT=file|off SKIP_BUILD=1 DUMPS=<dir> (keep the callgrind dumps and every function's counts
# there, for callgrind_annotate or bench/callgrind_summary.py --compare), and the ports of
# bench/lib.sh (its own defaults: UPSTREAM_PORT=18224, RINGFENCE_PORT=18226, ADMIN_PORT=18227).
# Writes bench/results/instructions-<UTC time>.md and prints it.
set -euo pipefail
# Ports of its own, so that it can run beside bench/run.sh (counts do not mind the load).
UPSTREAM_PORT=${UPSTREAM_PORT:-18224}
RINGFENCE_PORT=${RINGFENCE_PORT:-18226}
ADMIN_PORT=${ADMIN_PORT:-18227}
source "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-500}
CONNECTIONS=${CONNECTIONS:-4}
TOP=${TOP:-25}
REFERENCE=${REFERENCE:-}
BARE=${BARE:-0}
POLICY=${POLICY:-0}
RELAY_POLICY=${RELAY_POLICY:-0}
AUDIT=${AUDIT:-file}
DUMPS=${DUMPS:-}
WORKLOADS="post get"
TARGETS="ringfence${REFERENCE:+ reference}"
if [ "$BARE" = 1 ]; then TARGETS+=" bare"; fi
if [ "$POLICY" = 1 ]; then TARGETS+=" policy"; fi
if [ "$RELAY_POLICY" = 1 ]; then TARGETS+=" relay-policy"; fi

scratch instructions

ensure_tools
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  log "installing valgrind"
  DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null 2>&1 ||
    die "apt-get install valgrind failed"
fi
build

# The reference, built from its commit in a throw-away worktree (as bench/run.sh does).
if [ -n "$REFERENCE" ]; then
  build_reference
fi
BARE_BIN=$ROOT/target/bare-proxy/release/bare-proxy
if [ "$BARE" = 1 ] || [ "$POLICY" = 1 ] || [ "$RELAY_POLICY" = 1 ]; then
  build_bare
fi

start_upstream
python3 "$BENCH/gen_config.py" "$WORK/ringfence.toml" \
  --listen "127.0.0.1:$RINGFENCE_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
  --upstream "http://127.0.0.1:$UPSTREAM_PORT" --audit "$([ "$AUDIT" = file ] && echo "$WORK/audit.jsonl" || echo off)"
sed -i 's/interval = "5s"/interval = "1h"/' "$WORK/ringfence.toml"
"$RINGFENCE" check-config --config "$WORK/ringfence.toml" >"$WORK/check-config.txt" ||
  die "generated configuration is invalid: $WORK/check-config.txt"

POST_PATH='/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B14255550100'
status_of() { # workload-args... ; prints the status of one curl request to RINGFENCE_PORT
  curl -s -o /dev/null -w '%{http_code}' -H 'Host: lyncweb.contoso.com' "$@"
}

# measure TARGET COMMAND...: runs COMMAND under callgrind, listening on RINGFENCE_PORT, and
# writes $WORK/TARGET-WORKLOAD.txt (the summary) and .json (every function's counts).
measure() {
  local target=$1 pid w dumps=0 dump
  shift
  port_free "$RINGFENCE_PORT" || die "port $RINGFENCE_PORT is taken"
  RUST_LOG=${RUST_LOG:-info} RINGFENCE_WORKER_THREADS=${RINGFENCE_WORKER_THREADS:-1} \
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind --callgrind-out-file="$WORK/$target.cg" \
    "$@" 2>"$WORK/$target.log" &
  pid=$!
  PIDS+=("$pid")
  WAIT_PORT_SECONDS=300 wait_port "$RINGFENCE_PORT" "$pid"
  local s
  s=$(status_of -X POST -H 'Content-Type: application/json' --data '{"target":"tel:+14255550100"}' \
    "http://127.0.0.1:$RINGFENCE_PORT$POST_PATH")
  [ "$s" = 204 ] || die "$target answered the guarded POST $s, not 204"
  if [ "$target" != bare ]; then
    s=$(status_of -X POST "http://127.0.0.1:$RINGFENCE_PORT${POST_PATH/14255550100/19005550100}")
    [ "$s" = 403 ] || die "$target answered a denied target $s, not 403 (is the policy on?)"
  fi
  log "$target: warm-up, $WARMUP of each workload"
  for w in $WORKLOADS; do
    python3 "$BENCH/seq_client.py" "$RINGFENCE_PORT" "$w" "$WARMUP" --connections "$CONNECTIONS" --burst ||
      die "$target failed the $w warm-up"
  done
  for w in $WORKLOADS; do
    timeout 120 callgrind_control -z "$pid" >/dev/null 2>&1 || die "callgrind_control -z failed"
    python3 "$BENCH/seq_client.py" "$RINGFENCE_PORT" "$w" "$REQUESTS" --connections "$CONNECTIONS" ||
      die "$target failed the measured $w requests"
    timeout 120 callgrind_control -d "$pid" >/dev/null 2>&1 || die "callgrind_control -d failed"
    dumps=$((dumps + 1))
    dump=$WORK/$target.cg.$dumps
    [ -s "$dump" ] || die "no callgrind dump $dump"
    mv "$dump" "$WORK/$target-$w.cg"
    python3 "$BENCH/callgrind_summary.py" "$REQUESTS" "$WORK/$target-$w.cg" --top "$TOP" \
      --json "$WORK/$target-$w.json" >"$WORK/$target-$w.txt"
    log "$target $w: $(sed -n 1p "$WORK/$target-$w.txt" | sed 's/^ *//')"
  done
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

for t in $TARGETS; do
  case $t in
    ringfence) measure ringfence "$RINGFENCE" run --config "$WORK/ringfence.toml" ;;
    reference)
      sed "s#$WORK/audit.jsonl#$WORK/reference-audit.jsonl#" "$WORK/ringfence.toml" >"$WORK/reference.toml"
      measure reference "$ROOT/target/reference/release/ringfence" run --config "$WORK/reference.toml"
      ;;
    bare) measure bare "$BARE_BIN" hyper "127.0.0.1:$RINGFENCE_PORT" "127.0.0.1:$UPSTREAM_PORT" ;;
    policy)
      measure policy "$BARE_BIN" policy "127.0.0.1:$RINGFENCE_PORT" "127.0.0.1:$UPSTREAM_PORT" \
        "$WORK/policy-audit.jsonl"
      ;;
    relay-policy)
      measure relay-policy "$BARE_BIN" relay-policy "127.0.0.1:$RINGFENCE_PORT" \
        "127.0.0.1:$UPSTREAM_PORT" "$WORK/relay-policy-audit.jsonl"
      ;;
  esac
done

# per_request TARGET WORKLOAD KEY: instructions per request from the summary's JSON.
per_request() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d[sys.argv[2]] / d["requests"]))' \
    "$WORK/$1-$2.json" "$3"
}
thousands() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }
ratio() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.3f}x")' "$1" "$2"; }

RESULTS=$BENCH/results/instructions-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# ringfence instructions per request, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- command: \`bash bench/instructions.sh\` (REQUESTS=$REQUESTS WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS AUDIT=$AUDIT${REFERENCE:+ REFERENCE=$REFERENCE} BARE=$BARE POLICY=$POLICY RELAY_POLICY=$RELAY_POLICY)"
  echo "- built from: $BUILT_FROM${REFERENCE:+; reference: ringfence at $REFERENCE_REV}"
  echo "- $(valgrind --version), callgrind; one request in flight; every thread of the proxy counted; $("$RINGFENCE" --version)"
  echo "- policy: $(grep -E 'global deny|contoso \(' "$WORK/check-config.txt" | tr -s ' \n' ' ')"
  echo
  echo "Instructions per request (all: the whole process; copies: memcpy/memmove, where valgrind counts a block over a few KiB once per byte; own: self instructions in \`ringfence::\` functions; runtime thread: main's, without the trail's writer, whose wake-ups with one request in flight move \`all\` by hundreds from run to run):"
  echo
  header="| workload |"
  rule="|---|"
  for t in $TARGETS; do
    header+=" $t all | copies |"
    rule+="---:|---:|"
    if [ "$t" = ringfence ] || [ "$t" = reference ]; then header+=" $t own | $t runtime thread |" rule+="---:|---:|"; fi
  done
  if [ -n "$REFERENCE" ]; then header+=" ringfence / reference (all) | own |" rule+="---:|---:|"; fi
  if [ "$BARE" = 1 ]; then header+=" ringfence / bare (all) |" rule+="---:|"; fi
  if [ "$POLICY" = 1 ]; then header+=" ringfence / policy (all) |" rule+="---:|"; fi
  if [ "$POLICY" = 1 ] && [ "$BARE" = 1 ]; then header+=" policy / bare (all) |" rule+="---:|"; fi
  if [ "$RELAY_POLICY" = 1 ] && [ "$BARE" = 1 ]; then header+=" relay-policy / bare (all) |" rule+="---:|"; fi
  echo "$header"
  echo "$rule"
  for w in $WORKLOADS; do
    row="| $w |"
    for t in $TARGETS; do
      row+=" $(thousands "$(per_request "$t" "$w" total)") | $(thousands "$(per_request "$t" "$w" copies)") |"
      if [ "$t" = ringfence ] || [ "$t" = reference ]; then
        row+=" $(thousands "$(per_request "$t" "$w" own_self)") | $(thousands "$(per_request "$t" "$w" main_thread)") |"
      fi
    done
    if [ -n "$REFERENCE" ]; then
      row+=" $(ratio "$(per_request ringfence "$w" total)" "$(per_request reference "$w" total)") |"
      row+=" $(ratio "$(per_request ringfence "$w" own_self)" "$(per_request reference "$w" own_self)") |"
    fi
    if [ "$BARE" = 1 ]; then
      row+=" $(ratio "$(per_request ringfence "$w" total)" "$(per_request bare "$w" total)") |"
    fi
    if [ "$POLICY" = 1 ]; then
      row+=" $(ratio "$(per_request ringfence "$w" total)" "$(per_request policy "$w" total)") |"
    fi
    if [ "$POLICY" = 1 ] && [ "$BARE" = 1 ]; then
      row+=" $(ratio "$(per_request policy "$w" total)" "$(per_request bare "$w" total)") |"
    fi
    if [ "$RELAY_POLICY" = 1 ] && [ "$BARE" = 1 ]; then
      row+=" $(ratio "$(per_request relay-policy "$w" total)" "$(per_request bare "$w" total)") |"
    fi
    echo "$row"
  done
  for t in $TARGETS; do
    case $t in bare | policy | relay-policy) continue ;; esac
    for w in $WORKLOADS; do
      echo
      echo "## $t, $w"
      echo
      echo '```'
      cat "$WORK/$t-$w.txt"
      echo '```'
    done
  done
} >"$RESULTS"
if [ -n "$DUMPS" ]; then
  mkdir -p "$DUMPS"
  cp "$WORK"/*.cg "$WORK"/*-*.json "$DUMPS/"
fi
cat "$RESULTS"
log "written to $RESULTS"
