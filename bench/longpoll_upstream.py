#!/usr/bin/env python3
"""The plain upstream of bench/longpolls.sh: HTTP/1.1 keep-alive on every connection; a GET whose
path has `/events` is held HOLD seconds and then answered 200 with a small UCWA-like JSON body;
anything else (health probes) is answered 204 at once. Writes `held=H answered=A conns=C` to
STATUS every 0.2 s (written to a temporary file and renamed, so readers see whole lines).

usage: longpoll_upstream.py --port P --hold SECONDS --status FILE
"""
import argparse
import asyncio
import os

BODY = (b'{"_links":{"self":{"href":"/ucwa/oauth/v1/applications/192/events?ack=2"},'
        b'"next":{"href":"/ucwa/oauth/v1/applications/192/events?ack=3"}},"sender":[]}')
EVENTS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
OTHER = b"HTTP/1.1 204 No Content\r\n\r\n"

held = answered = conns = 0


async def serve(reader, writer, hold):
    global held, answered, conns
    conns += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                return
            line = head.split(b"\r\n", 1)[0]
            if b"/events" in line:
                held += 1
                try:
                    await asyncio.sleep(hold)
                finally:
                    held -= 1
                writer.write(EVENTS)
                answered += 1
            else:
                writer.write(OTHER)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        conns -= 1
        writer.close()


async def report(path):
    tmp = path + ".tmp"
    while True:
        with open(tmp, "w") as f:
            f.write(f"held={held} answered={answered} conns={conns}\n")
        os.replace(tmp, path)
        await asyncio.sleep(0.2)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hold", type=float, default=30)
    ap.add_argument("--status", required=True)
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, a.hold), a.host, a.port,
                                        backlog=4096)
    asyncio.ensure_future(report(a.status))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
