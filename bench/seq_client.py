#!/usr/bin/env python3
"""Sends N requests of one bench/wrk.lua workload, one at a time, round robin over C keep-alive
connections, and checks every answer's status. For bench/instructions.sh: one request in flight
at a time makes the proxy's instruction count per request repeatable (no batching that depends
on timing), and the client's own speed does not matter there.

usage: seq_client.py PORT WORKLOAD N [--connections C] [--status S] [--burst]
  WORKLOAD: post (the guarded call-forwarding POST) or get (the pass-through GET)
  --burst: a request on every connection at once, C in flight (a warm-up: the proxy's upstream
           pool then holds C connections, so that no measured request waits for one to come back,
           which would make the count depend on timing)
Exits 1 on any other status, a closed connection or a timeout.
"""
import argparse
import socket
import sys

HOST = "lyncweb.contoso.com"
POST_PATH = (
    "/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/"
    "simultaneousRingToContact?target=tel:%2B14255550100"
)
POST_BODY = b'{"target":"tel:+14255550100"}'
GET_PATH = "/ucwa/oauth/v1/applications/192/me"


def request(workload):
    if workload == "post":
        head = (
            f"POST {POST_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(POST_BODY)}\r\n\r\n"
        )
        return head.encode() + POST_BODY
    if workload == "get":
        return f"GET {GET_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    sys.exit(f"unknown workload {workload} (post, get)")


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            sys.exit("the proxy closed a connection")
        self.buf += chunk

    def answer(self):
        """Reads one answer (head, and a Content-Length body), returns the status."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                sys.exit("chunked answers are not expected here")
        while len(self.buf) < length:
            self._fill()
        self.buf = self.buf[length:]
        return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("workload")
    ap.add_argument("n", type=int)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--status", type=int, default=204)
    ap.add_argument("--burst", action="store_true")
    a = ap.parse_args()
    raw = request(a.workload)
    conns = [Conn(a.port) for _ in range(a.connections)]
    sent = 0
    while sent < a.n:
        batch = conns[: min(len(conns), a.n - sent)] if a.burst else [conns[sent % len(conns)]]
        for c in batch:
            c.sock.sendall(raw)
        for c in batch:
            sent += 1
            status = c.answer()
            if status != a.status:
                sys.exit(f"request {sent}: status {status}, expected {a.status}")
    for c in conns:
        c.sock.close()


if __name__ == "__main__":
    main()
