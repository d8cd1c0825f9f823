-- wrk script of the benchmark. WORKLOAD=post: the guarded call-forwarding POST, with the target
-- in the query AND in the JSON body; WORKLOAD=get: a pass-through GET. done() prints one
-- machine-readable line with p50/p99/p99.9 (wrk's own table stops at p99).
local workload = os.getenv("WORKLOAD") or "post"

wrk.headers["Host"] = "lyncweb.contoso.com"
-- FORWARDED=1 (bench/cpu_split.sh's bare-fwd): the headers ringfence adds for the pool (SPEC §7),
-- sent by the client instead, so that a yardstick's upstream parses what ringfence's parses.
if os.getenv("FORWARDED") == "1" then
  wrk.headers["X-Forwarded-For"] = "127.0.0.1"
  wrk.headers["X-Forwarded-Proto"] = "http"
  wrk.headers["X-Forwarded-Host"] = "lyncweb.contoso.com"
  wrk.headers["X-Request-Id"] = "04d64a6677fb635300000000"
end
if workload == "post" then
  wrk.method = "POST"
  wrk.path = "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact?target=tel:%2B14255550100"
  wrk.body = '{"target":"tel:+14255550100"}'
  wrk.headers["Content-Type"] = "application/json"
else
  wrk.method = "GET"
  wrk.path = "/ucwa/oauth/v1/applications/192/me"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
