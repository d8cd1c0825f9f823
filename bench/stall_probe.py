#!/usr/bin/env python3
"""One client sending pass-through GETs back to back on one keep-alive connection for SECONDS,
beside the load: prints the longest time any request waited (a request still waiting when time is
up is waited for, up to 300 s, so a stall longer than the run is measured in full).

usage: stall_probe.py HOST:PORT SECONDS
"""
import http.client
import sys
import time


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    seconds = float(sys.argv[2])
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    headers = {"Host": "lyncweb.contoso.com"}
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        conn.request("GET", "/ucwa/oauth/v1/applications/192/me", headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.monotonic() - started)
        if response.status >= 500:
            print(f"probe: answer {response.status}", file=sys.stderr)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0
    print(f"PROBE requests={len(latencies)} max_ms={latencies[-1] * 1000:.1f} p99_ms={p99 * 1000:.2f}")


if __name__ == "__main__":
    main()
