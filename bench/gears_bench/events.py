"""The event sources and the client-side anchors of the registration workloads (R2-R5): writer
processes sending SETs or XADDs over raw sockets, a keyspace-notification subscriber (R2) and a
stream consumer (R3), each a helper process of its own so that the harness's own Python never
competes with them for the GIL; and watch(), which times how long the work takes to be done."""

import json
import select
import socket
import sys
import threading
import time

from .common import CMD_TIMEOUT, HOST, expect
from .servers import Child

R_WRITERS = 4  # writer processes for R2/R3/R5
R_PIPELINE = 100  # commands per round trip of one writer
R_POLL_S = 0.005  # how often the harness looks whether the work is done
R_STALL_S = 5.0  # no progress for this long after the writers finished: the rest is lost


# ---------------------------------------------------------------------------------------------
# writers


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_replies(sock, buf, n):
    """Reads n replies (simple, error, integer, bulk: what SET and XADD answer) from a raw
    socket. Returns (leftover bytes, error replies, first error text)."""
    errors, first, pos = 0, None, 0
    while n:
        end = buf.find(b"\r\n", pos)
        if end >= 0 and buf[pos:pos + 1] == b"$":
            size = int(buf[pos + 1:end])
            nxt = end + 2 + size + 2 if size >= 0 else end + 2
            if nxt > len(buf):
                end = -1
        else:
            nxt = end + 2
        if end < 0:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf = buf[pos:] + chunk
            pos = 0
            continue
        if buf[pos:pos + 1] == b"-":
            errors += 1
            first = first or buf[pos + 1:end].decode(errors="replace")
        elif buf[pos:pos + 1] not in (b"+", b":", b"$"):
            raise RuntimeError(f"unexpected reply {buf[pos:pos + 80]!r}")
        pos = nxt
        n -= 1
    return buf[pos:], errors, first


def _command_maker(spec):
    prefix, value = spec["prefix"], spec["value"]
    if spec["kind"] == "set":
        return lambda i: resp("SET", f"{prefix}{i}", value.format(i=i))
    if spec["kind"] == "xadd":
        return lambda i: resp("XADD", prefix, "*", "i", i)
    raise SystemExit(f"unknown writer kind {spec['kind']}")


def writer_main(spec):
    """Child process: sends one range of SET or XADD commands over a raw socket, `pipeline` per
    round trip, once 'go' arrives on stdin; prints JSON {t0, t1, sent, errors, first_error}."""
    spec = json.loads(spec)
    s = socket.create_connection((HOST, spec["port"]), timeout=CMD_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a, b, pipe = spec["start"], spec["end"], spec["pipeline"]
    make = _command_maker(spec)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    buf, errors, first = b"", 0, None
    t0 = time.perf_counter()
    for start in range(a, b, pipe):
        stop = min(start + pipe, b)
        s.sendall(b"".join(make(i) for i in range(start, stop)))
        buf, e, f = read_replies(s, buf, stop - start)
        errors += e
        first = first or f
    t1 = time.perf_counter()
    s.close()
    print(json.dumps({"t0": t0, "t1": t1, "sent": b - a, "errors": errors, "first_error": first}), flush=True)


class Writers:
    """`clients` writer processes sending commands 0..n-1 split in equal ranges; start() lets
    them go at once, join() returns {t_first, t_last, sent, errors}."""

    def __init__(self, port, kind, n, clients, prefix, value="", pipeline=R_PIPELINE):
        step = -(-n // clients)
        self.children = []
        for a in range(0, n, step):
            spec = {"port": port, "kind": kind, "start": a, "end": min(a + step, n), "pipeline": pipeline,
                    "prefix": prefix, "value": value}
            self.children.append(Child("--_writer", json.dumps(spec)))
        for ch in self.children:
            ch.wait_ready()
        self.n = n

    def start(self):
        for ch in self.children:
            ch.send("go")

    def join(self):
        try:
            res = [ch.result() for ch in self.children]
        finally:
            for ch in self.children:
                ch.close()
        out = {"t_first": min(r["t0"] for r in res), "t_last": max(r["t1"] for r in res),
               "sent": sum(r["sent"] for r in res), "errors": sum(r["errors"] for r in res),
               "first_error": next((r["first_error"] for r in res if r["first_error"]), None)}
        expect(out["errors"] == 0, f"writers got {out['errors']} error replies, first: {out['first_error']}")
        expect(out["sent"] == self.n, f"writers sent {out['sent']} commands, expected {self.n}")
        return out


def watch(probe, target, writers, deadline_s=CMD_TIMEOUT, stall_s=R_STALL_S, poll=R_POLL_S):
    """Polls probe() (an int that grows to `target`) from the moment the writers start; returns
    {t_done: time of the last growth, value, complete, writers: Writers.join()}. Gives up when
    the value has not grown for stall_s seconds after the writers finished (what is missing then
    is lost), or after deadline_s."""
    writers.start()
    t_start = time.perf_counter()
    value, t_change = probe(), time.perf_counter()
    done_writing = None
    done = []
    joiner = threading.Thread(target=lambda: done.append(writers.join()), daemon=True)
    joiner.start()
    while value < target:
        time.sleep(poll)
        v = probe()
        now = time.perf_counter()
        if v != value:
            value, t_change = v, now
        if done_writing is None and not joiner.is_alive():
            done_writing = now
        if done_writing is not None and now - max(t_change, done_writing) > stall_s:
            break
        if now - t_start > deadline_s:
            break
    joiner.join(timeout=CMD_TIMEOUT)
    if not done:
        raise RuntimeError("writers did not finish")
    return {"t_done": t_change, "value": value, "complete": value >= target, "writers": done[0]}


# ---------------------------------------------------------------------------------------------
# the client-side anchors (redis-py)


KEYSPACE_PREFIX = b"__keyspace@0__:"


def _subscribe(sub):
    p = sub.pubsub()
    p.psubscribe(KEYSPACE_PREFIX.decode() + "wb:*")
    while True:
        m = p.get_message(timeout=CMD_TIMEOUT)
        if m and m["type"] == "psubscribe":
            return p


def _collect_set_keys(p, batch, keys):
    """Appends to `keys` the keys of the `set` notifications that have arrived, up to `batch`
    of them (waiting 50 ms for the first). In place: the keys taken before a dropped connection
    are still mirrored."""
    m = p.get_message(timeout=0.05)
    while m is not None and len(keys) < batch:
        if m["type"] == "pmessage" and m["data"] == b"set":
            keys.append(m["channel"][len(KEYSPACE_PREFIX):])
        m = p.get_message(timeout=0) if len(keys) < batch else None


def _mirror_batch(data, keys):
    pipe = data.pipeline(transaction=False)
    for k in keys:
        pipe.get(k)
    values = pipe.execute()
    pipe = data.pipeline(transaction=False)
    for k, v in zip(keys, values):
        pipe.hset("mirror", k, v)
    pipe.execute()


def subscriber_main(spec):
    """Child process (the R2 anchor): a redis-py client subscribed to the keyspace notifications
    of wb:* keys that, for each `set`, GETs the key and HSETs it into `mirror`, until a line
    arrives on stdin. spec is '<port>:<style>'. Style 'per-event': one GET and one HSET round
    trip per notification. Style 'batched': it takes the notifications that have arrived (up to
    100) at a time and sends their GETs in one pipeline, then their HSETs in another. A pub/sub
    connection the server dropped (output buffer limit) is re-established, and counted: events
    sent meanwhile are lost."""
    import redis

    port, style = spec.split(":")
    batch = 100 if style == "batched" else 1
    sub = redis.Redis(host=HOST, port=port, socket_timeout=CMD_TIMEOUT)
    data = redis.Redis(host=HOST, port=port, socket_timeout=CMD_TIMEOUT)
    p = _subscribe(sub)
    print("ready", flush=True)
    processed = disconnects = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        keys = []
        try:
            _collect_set_keys(p, batch, keys)
        except (redis.ConnectionError, redis.TimeoutError):
            disconnects += 1
            p = _subscribe(sub)
        if not keys:
            continue
        if batch == 1:
            data.hset("mirror", keys[0], data.get(keys[0]))
        else:
            _mirror_batch(data, keys)
        processed += len(keys)
    print(json.dumps({"processed": processed, "disconnects": disconnects}), flush=True)


def consumer_main(port):
    """Child process (the R3 anchor): a redis-py consumer of stream `s` in group `g` reading
    100 entries per XREADGROUP, one INCR of `counter` per entry and one XACK per batch (one
    pipeline), until a line arrives on stdin."""
    import redis

    r = redis.Redis(host=HOST, port=port, socket_timeout=CMD_TIMEOUT)
    print("ready", flush=True)
    entries = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        reply = r.xreadgroup("g", "c", {"s": ">"}, count=100, block=50)
        for _stream, batch in reply or ():
            ids = [eid for eid, _ in batch]
            pipe = r.pipeline(transaction=False)
            for _ in ids:
                pipe.incr("counter")
            pipe.xack("s", "g", *ids)
            pipe.execute()
            entries += len(ids)
    print(json.dumps({"entries": entries}), flush=True)
