#!/usr/bin/env python3
"""Soak test: many clients hammering RG.PYEXECUTE and friends for a while against one
redis-server with the module, checking every result.

    python3 bench/soak.py [--clients 50] [--seconds 60] [--module path/to/librustgears.so]
                          [--rss-bound-mb 32] [--abort-bound-ms 100] [--threads N] [--seed S]

Operations (chosen at random by every client):
  blocking     RG.PYEXECUTE of a script whose results are computed from a token the client
               chose (PythonReader squares, ShardsIDReader sha1): a wrong or missing value is
               detected
  unblocking   RG.PYEXECUTE ... UNBLOCKING, RG.GETRESULTSBLOCKING (checked), RG.DROPEXECUTION
  abort        UNBLOCKING execution that spins forever, RG.ABORTEXECUTION, its results must be
               empty with an "Execution was aborted" error (or it never started), then dropped
  disconnect   blocking RG.PYEXECUTE of a spinning script on a fresh connection that is closed
               while blocked (the module must abort the execution)
  error        a script that raises: the error reply must carry the client's token

At the end: no execution left running, no blocked client, the server alive. Reports operations
per kind, lost results (no reply / connection dropped), wrong results, errors by kind, and the
server's RSS (VmRSS) after warm-up and at the end. Exit status 1 if anything was lost or wrong,
the server died or was left busy, or RSS grew by more than --rss-bound-mb (32 MB: the
workers' interpreters warm their caches during the first minute; measured +9 MB over 60 s), or
RG.ABORTEXECUTION of a running pure-Python loop took more than --abort-bound-ms at p99 (issue:
"stops pure-Python loops within 100 ms"; the round trip includes the load of 50 clients).
"""

import argparse
import collections
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# The server launcher, RSS reading and RESP client of the test suite.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from harness import Error, RawConnection, ServerStartError, launch, module_path, rss_kb  # noqa: E402

REPLY_TIMEOUT = 120.0
SETTLE_DEADLINE = 120.0


# ----------------------------------------------------------------------------------------------
# Operations. Each returns None when the outcome was right, or a string describing a wrong
# result. Exceptions (timeouts, dropped connections) are counted as lost results.
# ----------------------------------------------------------------------------------------------


def squares_script(token):
    return f"GB('PythonReader').map(lambda x: x * x).run(lambda: iter([{token}, {token + 1}]))", \
        [str(token * token).encode(), str((token + 1) ** 2).encode()]


def sha_script(token):
    text = f"soak-{token}"
    return (f"import hashlib\nGB('ShardsIDReader').map(lambda x: hashlib.sha1({text!r}.encode()).hexdigest()).run()",
            [hashlib.sha1(text.encode()).hexdigest().encode()])


SPIN = "def spin(x):\n    while True:\n        pass\nGB('ShardsIDReader').map(spin).run()\n"


class Client:
    def __init__(self, port, rng, stats):
        self.port = port
        self.rng = rng
        self.stats = stats
        self.conn = None

    def c(self):
        if self.conn is None:
            self.conn = RawConnection(self.port, REPLY_TIMEOUT)
        return self.conn

    def reset(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def check_results(self, reply, expected):
        if isinstance(reply, Error):
            self.stats.error(reply)
            return f"error reply {reply!r}"
        if reply != [expected, []]:
            return f"expected {[expected, []]!r}, got {reply!r}"
        return None

    def op_blocking(self):
        token = self.rng.randrange(1, 10**12)
        script, expected = self.rng.choice((squares_script, sha_script))(token)
        return self.check_results(self.c().call("RG.PYEXECUTE", script), expected)

    def op_unblocking(self):
        token = self.rng.randrange(1, 10**12)
        script, expected = self.rng.choice((squares_script, sha_script))(token)
        eid = self.c().call("RG.PYEXECUTE", script, "UNBLOCKING")
        if not isinstance(eid, bytes):
            return f"UNBLOCKING gave {eid!r}"
        wrong = self.check_results(self.c().call("RG.GETRESULTSBLOCKING", eid), expected)
        dropped = self.c().call("RG.DROPEXECUTION", eid)
        self.stats.count("drop")
        if dropped != "OK":
            return wrong or f"RG.DROPEXECUTION gave {dropped!r}"
        return wrong

    def op_abort(self):
        eid = self.c().call("RG.PYEXECUTE", SPIN, "UNBLOCKING")
        if not isinstance(eid, bytes):
            return f"UNBLOCKING gave {eid!r}"
        time.sleep(self.rng.uniform(0, 0.05))
        started = time.monotonic()
        # Answered once the execution has stopped (or at once if it never started).
        aborted = self.c().call("RG.ABORTEXECUTION", eid)
        took_ms = (time.monotonic() - started) * 1000
        if aborted != "OK":
            return f"RG.ABORTEXECUTION gave {aborted!r}"
        reply = self.c().call("RG.GETRESULTSBLOCKING", eid)
        dropped = self.c().call("RG.DROPEXECUTION", eid)
        if isinstance(reply, Error) or not isinstance(reply, list) or reply[0] != []:
            return f"aborted execution gave {reply!r}"
        errors = [e.decode(errors="replace") for e in reply[1]]
        # Aborted while running: one "Execution was aborted" error; before it started: none.
        if errors and not (len(errors) == 1 and "Execution was aborted" in errors[0]):
            return f"aborted execution gave errors {errors!r}"
        if errors:
            self.stats.abort_latency(took_ms)
        if errors and "stuck in native code" in errors[0]:
            # Not a lost result, but pure bytecode must be interrupted, not abandoned: the
            # watchdog retired a worker for it (counted, and failed on via the log check).
            self.stats.error("pure-Python spin abandoned as stuck in native code")
        if dropped != "OK":
            return f"RG.DROPEXECUTION gave {dropped!r}"
        return None

    def op_disconnect(self):
        c = RawConnection(self.port, REPLY_TIMEOUT)
        try:
            c.send("RG.PYEXECUTE", SPIN)
            time.sleep(self.rng.uniform(0, 0.1))
        finally:
            c.close()
        return None

    def op_error(self):
        token = self.rng.randrange(1, 10**12)
        reply = self.c().call("RG.PYEXECUTE", f"raise ValueError('soak-{token}')")
        if not isinstance(reply, Error):
            return f"expected an error, got {reply!r}"
        if f"soak-{token}" not in reply or "ValueError" not in reply:
            return f"error without the token: {reply!r}"
        return None


OPS = [("blocking", 40), ("unblocking", 30), ("abort", 10), ("disconnect", 8), ("error", 12)]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()
        self.lost = collections.Counter()
        self.wrong = collections.Counter()
        self.errors = collections.Counter()
        self.samples = []
        # RG.ABORTEXECUTION round trips of executions that were running when aborted.
        self.abort_ms = []

    def abort_latency(self, ms):
        with self.lock:
            self.abort_ms.append(ms)

    def count(self, kind, n=1):
        with self.lock:
            self.ops[kind] += n

    def error(self, text):
        key = text.split("(")[0][:60].strip() or text[:60]
        with self.lock:
            self.errors[key] += 1

    def add(self, counter, kind, detail):
        with self.lock:
            counter[kind] += 1
            if len(self.samples) < 10:
                self.samples.append(f"{kind}: {detail}")


def worker(port, seed, deadline, stats, stop):
    rng = random.Random(seed)
    client = Client(port, rng, stats)
    kinds = [k for k, _ in OPS]
    weights = [w for _, w in OPS]
    while time.monotonic() < deadline and not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        try:
            wrong = getattr(client, "op_" + kind)()
        except (OSError, ValueError) as e:
            stats.add(stats.lost, kind, repr(e))
            client.reset()
            continue
        stats.count(kind)
        if wrong:
            stats.add(stats.wrong, kind, wrong)
    client.reset()


def warm_up(port):
    c = RawConnection(port, REPLY_TIMEOUT)
    for i in range(20):
        script, expected = (squares_script if i % 2 else sha_script)(i + 1)
        assert c.call("RG.PYEXECUTE", script) == [expected, []]
    c.close()


def settle(port, log):
    """Waits until nothing runs and nobody is blocked; returns a problem or None."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    c = RawConnection(port, REPLY_TIMEOUT)
    try:
        while True:
            dump = c.call("RG.DUMPEXECUTIONS")
            running = [e[1] for e in dump if e[3] in (b"running", b"created")]
            info = c.call("INFO", "clients").decode()
            blocked = int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("blocked_clients:")))
            if not running and blocked == 0:
                return None
            if time.monotonic() > deadline:
                return f"after {SETTLE_DEADLINE}s still {len(running)} executions running/queued, {blocked} blocked clients"
            time.sleep(0.2)
    finally:
        c.close()


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line, " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)), line]
    out += [" | ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    out.append(line)
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--module", default=module_path())
    ap.add_argument("--rss-bound-mb", type=float, default=32)
    ap.add_argument("--abort-bound-ms", type=float, default=100)
    ap.add_argument("--threads", type=int, default=None, help="ExecutionThreads (module default if omitted)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    if not os.path.isfile(args.module):
        sys.exit(f"module not found: {args.module} (build it, or pass --module / set RUSTGEARS_MODULE)")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    module_args = ["ExecutionThreads", str(args.threads)] if args.threads else []
    workdir = tempfile.mkdtemp(prefix="rustgears-soak-")
    log = os.path.join(workdir, "redis.log")
    try:
        proc, port = launch(args.module, module_args, workdir, log)
    except ServerStartError as e:
        sys.exit(f"could not start redis-server with {args.module}: {e}")
    print(f"redis-server pid {proc.pid} port {port}, module {args.module}, {args.clients} clients, "
          f"{args.seconds:g} s, seed {seed}, log {log}", flush=True)

    failures = []
    try:
        warm_up(port)
        rss_start = rss_kb(proc.pid)
        stats = Stats()
        stop = threading.Event()
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [threading.Thread(target=worker, args=(port, seed + i, deadline, stats, stop), daemon=True)
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + REPLY_TIMEOUT * 4)
        stop.set()
        elapsed = time.monotonic() - started
        if any(t.is_alive() for t in threads):
            failures.append("some clients never finished their last operation")

        if proc.poll() is not None:
            failures.append(f"redis-server died (exit code {proc.returncode})")
            rss_end = 0
        else:
            problem = settle(port, log)
            if problem:
                failures.append(problem)
            rss_end = rss_kb(proc.pid)

        kinds = [k for k, _ in OPS] + ["drop"]
        rows = [(k, stats.ops[k], f"{stats.ops[k] / elapsed:.1f}", stats.lost[k], stats.wrong[k]) for k in kinds]
        rows.append(("total", sum(stats.ops.values()), f"{sum(stats.ops.values()) / elapsed:.1f}",
                     sum(stats.lost.values()), sum(stats.wrong.values())))
        print()
        print(table(rows, ["operation", "count", "per s", "lost", "wrong"]))
        if stats.errors:
            print()
            print(table(sorted(stats.errors.items(), key=lambda kv: -kv[1]), ["unexpected error reply", "count"]))
        if stats.samples:
            print("\nfirst problems:")
            for s in stats.samples:
                print("  " + s[:300])
        abort_ms = sorted(stats.abort_ms)
        if abort_ms:
            p50, p99 = abort_ms[len(abort_ms) // 2], abort_ms[min(len(abort_ms) - 1, len(abort_ms) * 99 // 100)]
            print()
            print(table([(len(abort_ms), f"{p50:.1f}", f"{p99:.1f}", f"{abort_ms[-1]:.1f}", f"{args.abort_bound_ms:g}")],
                        ["aborts of running loops", "p50 ms", "p99 ms", "max ms", "p99 bound ms"]))
            if p99 > args.abort_bound_ms:
                failures.append(f"aborts took {p99:.1f} ms at p99 (bound {args.abort_bound_ms:g} ms)")
        growth_mb = (rss_end - rss_start) / 1024
        print()
        print(table([("after warm-up", f"{rss_start / 1024:.1f}"), ("end", f"{rss_end / 1024:.1f}"),
                     ("growth", f"{growth_mb:+.1f} (bound {args.rss_bound_mb:g})")], ["server RSS", "MB"]))

        lost = sum(stats.lost.values())
        wrong = sum(stats.wrong.values())
        if lost:
            failures.append(f"{lost} lost results")
        if wrong:
            failures.append(f"{wrong} wrong results")
        if rss_end and growth_mb > args.rss_bound_mb:
            failures.append(f"RSS grew by {growth_mb:.1f} MB (bound {args.rss_bound_mb:g} MB)")
        with open(log, errors="replace") as f:
            stuck = sum(1 for line in f if "is stuck in native code" in line)
        if stuck:
            failures.append(f"{stuck} workers reported stuck in native code (no native loop was run)")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    print()
    if failures:
        print("FAIL: " + "; ".join(failures) + f" (server dir kept: {workdir})")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
