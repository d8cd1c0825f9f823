#!/usr/bin/env python3
"""The clients of bench/longpolls.sh: COUNT connections, each sends one UCWA event-channel GET
and waits for its answer. Prints `SENT n failed=f seconds=s` once every request is written,
`ANSWERED ok=n failed=f` once every answer is in (or failed), then keeps the connections open
until the file CLOSE_WHEN exists, closes them all and prints `CLOSED n`.

usage: longpoll_clients.py --port P --close-when FILE [--count 10000] [--concurrency 64]
"""
import argparse
import asyncio
import os
import sys
import time

REQUEST = (b"GET /ucwa/oauth/v1/applications/192/events?ack=1&timeout=900 HTTP/1.1\r\n"
           b"Host: lyncweb.contoso.com\r\nAccept: application/json\r\n\r\n")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--close-when", required=True)
    a = ap.parse_args()

    gate = asyncio.Semaphore(a.concurrency)
    writers = []
    failures = 0
    ok = 0

    def fail(e):
        nonlocal failures
        failures += 1
        if failures <= 3:
            print(f"request failed: {e!r}", file=sys.stderr, flush=True)

    async def open_one():
        async with gate:
            try:
                r, w = await asyncio.open_connection(a.host, a.port)
                w.write(REQUEST)
                await w.drain()
                writers.append(w)
                return r
            except Exception as e:  # counted and reported, the others carry on
                fail(e)
                return None

    async def answer(r):
        nonlocal ok
        if r is None:
            return
        try:
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n")[0].decode())
            length = 0
            for h in head.split(b"\r\n"):
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
            await r.readexactly(length)
            ok += 1
        except Exception as e:
            fail(e)

    started = time.monotonic()
    readers = await asyncio.gather(*(open_one() for _ in range(a.count)))
    print(f"SENT {len(writers)} failed={failures} seconds={time.monotonic() - started:.1f}",
          flush=True)
    await asyncio.gather(*(answer(r) for r in readers))
    print(f"ANSWERED ok={ok} failed={failures}", flush=True)
    while not os.path.exists(a.close_when):
        await asyncio.sleep(0.2)
    for w in writers:
        w.close()
    print(f"CLOSED {len(writers)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
