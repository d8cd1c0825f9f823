#!/usr/bin/env python3
"""Opens COUNT TLS connections to ringfence, sends one pass-through GET on each (so each is an
idle keep-alive connection that has served a request), holds them all open for HOLD seconds,
then reports how many are still open. Prints `OPEN n` once every connection is up.

usage: idle_conns.py --port P (--ca CERT.pem | --plain) [--count 10000] [--hold 20]
       [--concurrency 64] [--no-request]
"""
import argparse
import asyncio
import ssl
import sys
import time

REQUEST = (b"GET /ucwa/oauth/v1/applications/192/me HTTP/1.1\r\n"
           b"Host: lyncweb.contoso.com\r\n\r\n")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca")
    ap.add_argument("--sni", default="lyncweb.contoso.com")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--hold", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--no-request", action="store_true", help="handshake only, no request")
    ap.add_argument("--plain", action="store_true", help="plain TCP, no TLS")
    a = ap.parse_args()

    ctx = None
    if not a.plain:
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(a.concurrency)
    conns = []
    failures = 0

    async def open_one():
        nonlocal failures
        async with gate:
            try:
                r, w = await asyncio.open_connection(a.host, a.port, ssl=ctx,
                                                     server_hostname=a.sni if ctx else None)
                if not a.no_request:
                    w.write(REQUEST)
                    await w.drain()
                    head = await r.readuntil(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 204"):
                        raise RuntimeError(head.split(b"\r\n")[0].decode())
                conns.append((r, w))
            except Exception as e:  # counted and reported, the others carry on
                failures += 1
                if failures <= 3:
                    print(f"connection failed: {e!r}", file=sys.stderr)

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(a.count)))
    print(f"OPEN {len(conns)} failed={failures} seconds={time.monotonic() - started:.1f}",
          flush=True)
    await asyncio.sleep(a.hold)
    await asyncio.sleep(0)
    alive = sum(1 for r, _ in conns if not r.at_eof())
    print(f"ALIVE {alive}", flush=True)
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
