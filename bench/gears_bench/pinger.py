"""The PING-latency probe of P4 and R4: a separate process PINGs the server in a tight loop
while a job runs, and reports the latency of the PINGs that were in flight during the job."""

import array
import json
import select
import socket
import sys
import time

from .common import CMD_TIMEOUT, HOST
from .servers import Child

PING = b"*1\r\n$4\r\nPING\r\n"


def _latency_stats(xs):
    if not xs:
        return {"count": 0}
    return {"count": len(xs), "max_ms": xs[-1] * 1e3, "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1e3,
            "p50_ms": xs[len(xs) // 2] * 1e3, "mean_ms": sum(xs) / len(xs) * 1e3}


class _Pings:
    """PINGs over one raw socket, keeping each one's send time and latency."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=CMD_TIMEOUT)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = array.array("d")
        self.lat = array.array("d")
        self.errors = 0

    def one(self):
        t = time.perf_counter()
        self.s.sendall(PING)
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        d = time.perf_counter() - t
        if buf != b"+PONG\r\n":
            self.errors += 1
        self.sent.append(t)
        self.lat.append(d)


def pinger_main(port):
    """Child process: PING over a raw socket until a line 't0 t1' arrives on stdin; then print
    JSON stats of the PINGs in flight at any time within [t0, t1], i.e. sent before t1 and
    answered after t0 (a PING sent just before a blocking job starts waits for all of it).
    perf_counter is CLOCK_MONOTONIC on Linux: comparable between processes."""
    pings = _Pings(port)
    for _ in range(100):  # warm-up, not counted
        pings.one()
    del pings.sent[:], pings.lat[:]
    print("ready", flush=True)
    window = None
    for i in range(1, 50_000_001):
        pings.one()
        if i % 32 == 0 and select.select([sys.stdin], [], [], 0)[0]:
            window = [float(x) for x in sys.stdin.readline().split()]
            break
    pings.s.close()
    t0, t1 = window if window and len(window) == 2 else (float("-inf"), float("inf"))
    w = sorted(d for t, d in zip(pings.sent, pings.lat) if t <= t1 and t + d >= t0)
    print(json.dumps({"window": _latency_stats(w), "all": _latency_stats(sorted(pings.lat)),
                      "errors": pings.errors}), flush=True)


def with_pinger(server, job, settle=0.2):
    """Runs job() while a pinger process PINGs the server; returns (job seconds, ping stats)."""
    with Child("--_pinger", str(server.port), what="pinger") as p:
        p.wait_ready()
        time.sleep(settle)
        t0 = time.perf_counter()
        job()
        t1 = time.perf_counter()
        time.sleep(settle)
        p.send(f"{t0!r} {t1!r}")
        return t1 - t0, p.result()


def pinged(srv, job, out):
    """Runs job() under the pinger; puts the ping statistics in out['ping'] (no pinger when
    out is None). Returns what job() returned."""
    if out is None:
        return job()
    got = []
    secs, st = with_pinger(srv, lambda: got.append(job()))
    out["ping"] = {"job_s": secs, **st}
    return got[0]


def window_ms(run, field):
    """A latency figure of a pinged run's window, NaN when no PING completed in it (for logs)."""
    return run["window"].get(field, float("nan"))
