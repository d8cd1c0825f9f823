#!/usr/bin/env bash
# RSS of ringfence with a stalled audit sink (a FIFO nobody reads) under a flood of denied
# guarded POSTs, in 5-second steps of wrk -c20 (issue 12: the queue is bounded).
# Usage: bash bench/audit_stall.sh [BINARY [LABEL]] (default: target/release/ringfence). Needs wrk,
# curl, mkfifo; uses 127.0.0.1:58080 and :59090.
set -u
BIN=${1:-$(dirname "$0")/../target/release/ringfence}; LABEL=${2:-ringfence}
D=$(mktemp -d /tmp/rss12.XXXX)
mkfifo "$D/audit.fifo"
exec 3<>"$D/audit.fifo"   # a reader that never reads
cat > "$D/rf.toml" <<TOML
[server]
listen = ["127.0.0.1:58080"]
[admin]
listen = "127.0.0.1:59090"
[upstream]
members = ["http://127.0.0.1:1"]
[audit]
sink = "file"
path = "$D/audit.fifo"
[policy]
default_organisation = "c"
deny_numbers = ["+1900"]
[[organisations]]
name = "c"
allow_numbers = ["+1425"]
TOML
"$BIN" run --config "$D/rf.toml" 2>"$D/log" &
PID=$!
sleep 1
cat > "$D/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/ucwa/v1/applications/1/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B19005550100"
wrk.headers["Host"] = "x"
LUA
total=0
for step in 1 2 3 4; do
  out=$(wrk -t1 -c20 -d5s -s "$D/post.lua" http://127.0.0.1:58080 2>&1)
  n=$(echo "$out" | awk '/requests in/{print $1}')
  total=$((total + n))
  rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
  m=$(curl -s http://127.0.0.1:59090/metrics | grep -E '^ringfence_audit_(queue_lines|lines_total)' | tr '\n' ' ')
  codes=$(echo "$out" | grep -i 'non-2xx' | tr -s ' ')
  echo "$LABEL after $total requests: RSS ${rss} kB; $codes; $m"
done
kill $PID; wait $PID 2>/dev/null
exec 3<&-
rm -rf "$D"
